"""Can a trailing-volatility band hold its coverage at 3, 6 and 12 months on 2019-2023?

    python bench/long_horizon_bands.py [--data-dir DIR]

The random walk's band needs no fitted model, so its standardised residuals
z = log(P[t+h] / P[t]) / (vol_w(t) * sqrt(h)) exist at every origin of the ZL
snapshot (2004-11 ..), not only on a spec's selection folds. This script runs
the toolkit's online calibration on them (`cbi_toolkit.calibration`: every
63 origins, the weighted conformal quantiles of the residuals realised before
the block, recency half-life in sessions or equal weights) and scores the
bands every 5th origin on two spans: the selection span 2009-2018, where a
spec's choices are made, and the test span 2019-2023, which is only reported.
Printed per horizon and variant: coverage of the 80% and 95% bands on each
span, and the half-life the selection span would choose.

``--history`` adds to every calibration (never to what is scored) the same residuals of the
Quandl second month (CHRIS/CME_BO2, 1959-07 ..), computed on its own prices before the front
month's data starts (2004-08): sixty years of 6m and 12m outcomes, the 1970s and 2008 among
them, placed before the front month's first session.

A research script for docs/skill.md, never part of the test suite.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit.calibration import weighted_conformal_scale

HORIZONS = {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}
HALFLIVES = (None, 1260, 756, 504, 252, 126)
SELECTION, TEST = ("2009-01-01", "2019-01-02"), ("2019-01-02", "2024-01-01")


def zl_log_prices(data_dir: Path) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return np.log(frame.set_index("date")["close"].sort_index())


def second_month_log_prices(data_dir: Path, before: pd.Timestamp) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_quandl_CHRIS_CME_BO2_daily.csv", parse_dates=["date"])
    settle = frame.set_index("date")["settle"].sort_index()
    return np.log(settle[settle.index < before])


def history_pool(lp_hist: pd.Series, h: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Realisation positions (negative: sessions before the front month's first one) and |z|
    of the second month's residuals, all realised before the front month starts."""
    t, z = standardised(lp_hist, h, window)
    ok = np.isfinite(z)
    return (t + h - len(lp_hist))[ok], z[ok]


def standardised(lp: pd.Series, h: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins (positions) and |z| of the trailing-volatility random walk at horizon h."""
    r = lp.diff()
    vol = r.rolling(window).std().to_numpy()
    t = np.arange(window + 1, len(lp) - h)
    z = np.abs((lp.to_numpy()[t + h] - lp.to_numpy()[t]) / (vol[t] * np.sqrt(h)))
    return t, z


def block_hits(dates: pd.DatetimeIndex, t: np.ndarray, z: np.ndarray, h: int,
               halflife: float | None, span: tuple[str, str], block: int = 63,
               stride: int = 5, pool: tuple[np.ndarray, np.ndarray] | None = None
               ) -> dict[float, float]:
    """Coverage on ``span`` of the bands recalibrated every ``block`` origins; ``pool``:
    earlier residuals (realisation positions, |z|) every calibration also uses."""
    realised, scores = t + h, z
    if pool is not None:
        realised, scores = np.concatenate([pool[0], realised]), np.concatenate([pool[1], z])
    scored = t[(dates[t] >= span[0]) & (dates[t] < span[1])]
    hits: dict[float, list[bool]] = {0.8: [], 0.95: []}
    for start in range(int(scored[0]), int(scored[-1]) + 1, block):
        usable = realised < start
        weights = (np.ones(usable.sum()) if halflife is None
                   else 0.5 ** ((start - realised[usable]) / halflife))
        q = {lv: weighted_conformal_scale(scores[usable], weights, lv) for lv in hits}
        inside = scored[(scored >= start) & (scored < start + block)][::stride]
        for lv in hits:
            hits[lv].extend(z[np.searchsorted(t, inside)] <= q[lv])
    return {lv: float(np.mean(v)) for lv, v in hits.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2]
                    / "shared" / "data")
    ap.add_argument("--window", type=int, default=63, help="trailing volatility window")
    ap.add_argument("--history", action="store_true",
                    help="also calibrate on the second month's residuals from before 2004-08")
    args = ap.parse_args(argv)
    lp = zl_log_prices(args.data_dir)
    hist = second_month_log_prices(args.data_dir, lp.index[0]) if args.history else None
    if hist is not None:
        print(f"calibration pool also holds the second month's residuals, "
              f"{hist.index[0]:%Y-%m-%d} .. {hist.index[-1]:%Y-%m-%d}")
    print(f"ZL {lp.index[0]:%Y-%m-%d} .. {lp.index[-1]:%Y-%m-%d}, trailing {args.window}-session "
          "volatility band, online conformal calibration every 63 origins, scored every 5th")
    print(f"{'horizon':<8}{'half-life':>10}{'selection 80/95':>18}{'test 80/95':>14}")
    for name, h in HORIZONS.items():
        t, z = standardised(lp, h, args.window)
        pool = None if hist is None else history_pool(hist, h, args.window)
        rows = {hl: (block_hits(lp.index, t, z, h, hl, SELECTION, pool=pool),
                     block_hits(lp.index, t, z, h, hl, TEST, pool=pool)) for hl in HALFLIVES}
        gap = {hl: np.mean([abs(c - lv) for lv, c in sel.items()]) for hl, (sel, _) in rows.items()}
        chosen = min(HALFLIVES, key=lambda hl: gap[hl])
        for hl, (sel, test) in rows.items():
            mark = "  <- chosen on the selection span" if hl == chosen else ""
            print(f"{name:<8}{'equal' if hl is None else hl:>10}"
                  f"{sel[0.8]:>10.3f} /{sel[0.95]:.3f}{test[0.8]:>8.3f} /{test[0.95]:.3f}{mark}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
