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

``--history`` lays the same residuals of the Quandl second month (CHRIS/CME_BO2, 1959-07 ..),
computed on its own prices until the front month's data starts (2004-08), before the front
month's, so every calibration also draws on sixty years of 6m and 12m outcomes, the 1970s and
2008 among them. ``--selection-from YEAR`` starts the selection span there (default 2009; with
``--history`` it can reach back to the 1960s, so the half-life is chosen on sixty years).
``--windows``: also the coverage of the chosen half-life's band on each five-year window from
the selection span's start, the test span the last: how far one window's coverage strays from
the nominal when the band is calibrated over the whole span.

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
TEST = ("2019-01-02", "2024-01-01")


def zl_log_prices(data_dir: Path) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return np.log(frame.set_index("date")["close"].sort_index())


def second_month_log_prices(data_dir: Path, before: pd.Timestamp) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_quandl_CHRIS_CME_BO2_daily.csv", parse_dates=["date"])
    settle = frame.set_index("date")["settle"].sort_index()
    return np.log(settle[settle.index < before])


def standardised(lp: pd.Series, h: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Origins (positions) and |z| of the trailing-volatility random walk at horizon h."""
    r = lp.diff()
    vol = r.rolling(window).std().to_numpy()
    t = np.arange(window + 1, len(lp) - h)
    z = np.abs((lp.to_numpy()[t + h] - lp.to_numpy()[t]) / (vol[t] * np.sqrt(h)))
    ok = np.isfinite(z)
    return t[ok], z[ok]


def spliced(parts: list[pd.Series], h: int, window: int
            ) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    """The dates, origin positions and |z| of several price series laid end to end, each
    standardised on its own prices, so no residual straddles two series."""
    dates, ts, zs, offset = [], [], [], 0
    for lp in parts:
        t, z = standardised(lp, h, window)
        dates.append(lp.index)
        ts.append(t + offset)
        zs.append(z)
        offset += len(lp)
    return dates[0].append(dates[1:]), np.concatenate(ts), np.concatenate(zs)


def block_hits(dates: pd.DatetimeIndex, t: np.ndarray, z: np.ndarray, h: int,
               halflife: float | None, span: tuple[str, str], block: int = 63,
               stride: int = 5) -> dict[float, float]:
    """Coverage on ``span`` of the bands recalibrated every ``block`` origins, each on every
    residual realised before its block."""
    realised, scores = t + h, z
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
    ap.add_argument("--selection-from", type=int, default=2009, metavar="YEAR",
                    help="first year of the selection span (it ends where the test span starts)")
    ap.add_argument("--windows", action="store_true",
                    help="also the chosen band's coverage on each five-year window")
    args = ap.parse_args(argv)
    lp = zl_log_prices(args.data_dir)
    parts = [lp]
    if args.history:
        hist = second_month_log_prices(args.data_dir, lp.index[0])
        parts.insert(0, hist)
        print(f"calibration pool also holds the second month's residuals, "
              f"{hist.index[0]:%Y-%m-%d} .. {hist.index[-1]:%Y-%m-%d}")
    selection = (f"{args.selection_from}-01-01", TEST[0])
    if pd.Timestamp(selection[0]) < parts[0].index[0] + pd.DateOffset(years=2):
        ap.error(f"--selection-from {args.selection_from}: the data start "
                 f"{parts[0].index[0]:%Y-%m}; leave two years to calibrate on "
                 "(--history reaches back to 1959)")
    print(f"ZL {lp.index[0]:%Y-%m-%d} .. {lp.index[-1]:%Y-%m-%d}, trailing {args.window}-session "
          "volatility band, online conformal calibration every 63 origins, scored every 5th")
    print(f"selection span {selection[0]} .. {selection[1]}, test span {TEST[0]} .. {TEST[1]}")
    print(f"{'horizon':<8}{'half-life':>10}{'selection 80/95':>18}{'test 80/95':>14}")
    for name, h in HORIZONS.items():
        dates, t, z = spliced(parts, h, args.window)
        rows = {hl: (block_hits(dates, t, z, h, hl, selection),
                     block_hits(dates, t, z, h, hl, TEST)) for hl in HALFLIVES}
        gap = {hl: np.mean([abs(c - lv) for lv, c in sel.items()]) for hl, (sel, _) in rows.items()}
        chosen = min(HALFLIVES, key=lambda hl: gap[hl])
        for hl, (sel, test) in rows.items():
            mark = "  <- chosen on the selection span" if hl == chosen else ""
            print(f"{name:<8}{'equal' if hl is None else hl:>10}"
                  f"{sel[0.8]:>10.3f} /{sel[0.95]:.3f}{test[0.8]:>8.3f} /{test[0.95]:.3f}{mark}")
        if args.windows:
            print(five_year_windows(dates, t, z, h, chosen, args.selection_from))
    return 0


def five_year_windows(dates: pd.DatetimeIndex, t: np.ndarray, z: np.ndarray, h: int,
                      halflife: float | None, first: int, tolerance: float = 0.03) -> str:
    """One line: the band's 80 / 95 coverage on each five-year window from ``first`` to the
    test span's end, and how many windows before the test span miss either by > ``tolerance``."""
    end = pd.Timestamp(TEST[1]).year
    cells, outside, before = [], 0, 0
    for year in range(first, end, 5):
        cov = block_hits(dates, t, z, h, halflife, (f"{year}-01-01", f"{min(year + 5, end)}-01-01"))
        cells.append(f"{year}: {cov[0.8]:.2f} / {cov[0.95]:.2f}")
        if year + 5 <= pd.Timestamp(TEST[0]).year:
            before += 1
            outside += any(abs(c - lv) > tolerance for lv, c in cov.items())
    return (f"{'':<8}five-year windows ({outside} of {before} before the test span outside "
            f"±{tolerance * 100:.0f} points): " + ", ".join(cells))


if __name__ == "__main__":
    raise SystemExit(main())
