"""Scoring walk-forward predictions: per fold, pooled over the reported span beside the
random walk (Diebold-Mariano), and the comparison tables. The metrics themselves are
`cbi_toolkit.metrics`.

Models predict forward log returns with a mean and a sigma; metrics are on the
price P[t]·exp(·) except where they are about the distribution (coverage,
pinball, CRPS), which are computed on log returns, where the model's Gaussian
lives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbi_toolkit.metrics import (
    LEVELS,
    FoldPrediction,
    coverage,
    crps_gaussian,
    direction_accuracy,
    dm_lags,
    interval,
    mae,
    mape,
    pinball,
)
from cbi_toolkit.significance import coverage_test, interval_score
from cbi_toolkit.targets import HORIZONS

#: Display order: the shipped model, the raw net, then the baselines.
MODEL_ORDER = ("model", "net", "random_walk", "vol_random_walk", "garch", "drift", "auto_arima",
               "auto_ets", "ridge")


def calibrated(pred: FoldPrediction, cal) -> dict[str, np.ndarray]:
    """Per-origin arrays of a prediction under its calibration (None: uncalibrated):
    sigma times the variance scale, and the conformal bounds per level (NaN without one)."""
    c = cal.variance_scale if cal is not None else 1.0
    out = {"sigma_cal": c * pred.sigma}
    for level in LEVELS:
        pct = int(round(level * 100))
        scale = (cal.conformal if cal is not None else {}).get(level)
        if scale is not None and np.all(np.isfinite(scale)):
            out[f"lo_{pct}"], out[f"hi_{pct}"] = interval(pred.mu, c * pred.sigma, level, scale)
        else:
            out[f"lo_{pct}"] = out[f"hi_{pct}"] = np.full(len(pred.y), np.nan)
    return out


def _metrics(y, mu, sigma, price, cal: dict[str, np.ndarray]) -> dict:
    """Every metric of one model on a set of origins (pooled or one fold)."""
    actual, predicted = price * np.exp(y), price * np.exp(mu)
    rw_mae = mae(actual, price)
    acc, n_dir = direction_accuracy(y, mu)
    row = {"n": len(y), "mae": mae(actual, predicted), "mape": mape(actual, predicted),
           "mase": mae(actual, predicted) / rw_mae if rw_mae > 0 else float("nan"),
           "direction": acc, "direction_n": n_dir,
           "crps": crps_gaussian(y, mu, sigma), "crps_cal": crps_gaussian(y, mu, cal["sigma_cal"])}
    for level in LEVELS:
        pct = int(round(level * 100))
        lo, hi = interval(mu, sigma, level)
        row[f"coverage_{pct}"] = coverage(y, lo, hi)
        tail = (1 - level) / 2
        row[f"pinball_{pct}"] = (pinball(y, lo, tail) + pinball(y, hi, 1 - tail)) / 2
        lo_c, hi_c = cal[f"lo_{pct}"], cal[f"hi_{pct}"]
        known = np.isfinite(lo_c)
        row[f"conformal_coverage_{pct}"] = (coverage(y[known], lo_c[known], hi_c[known])
                                            if known.any() else float("nan"))
        row[f"interval_score_{pct}"] = (interval_score(y[known], lo_c[known], hi_c[known], 1 - level)
                                        if known.any() else float("nan"))
    return row


def _coverage_tests(y, cal: dict[str, np.ndarray], lags: int) -> dict:
    """Per level, the HAC standard error of the conformal coverage and the p-value of
    "the band holds its level" (`coverage_test`; ``lags`` as the Diebold-Mariano test's)."""
    out = {}
    for level in LEVELS:
        pct = int(round(level * 100))
        lo, hi = cal[f"lo_{pct}"], cal[f"hi_{pct}"]
        known = np.isfinite(lo)
        held = coverage_test((y[known] >= lo[known]) & (y[known] <= hi[known]), level, lags)
        out[f"conformal_coverage_{pct}_se"], out[f"conformal_coverage_{pct}_p"] = held.se, held.p_value
    return out


def score(pred: FoldPrediction, cal=None) -> dict:
    """All metrics of one model/fold/horizon; ``cal`` is its `Calibration` (or None).

    MASE divides by the random walk's MAE on the same origins: it predicts no
    change, so its error is |P[t+h] - P[t]| and needs no prediction of its own.
    """
    row = {"model": pred.model, "fold": pred.fold, "role": pred.role, "horizon": pred.horizon,
           "start": pred.dates[0].date().isoformat(), "end": pred.dates[-1].date().isoformat()}
    row.update(_metrics(pred.y, pred.mu, pred.sigma, pred.price, calibrated(pred, cal)))
    return row


def calibrations(preds: list[FoldPrediction], origins: pd.DatetimeIndex | None = None,
                 policy=None) -> dict[tuple[str, str, int], object]:
    """``{(model, horizon, fold): Calibration}`` from earlier folds only (None for the first);
    with ``origins``, from residuals realised before the fold only, under ``policy``
    (`cbi_toolkit.calibration.CalibrationPolicy`: fixed or online)."""
    from cbi_toolkit.calibration import calibration_for

    return {(p.model, p.horizon, p.fold): calibration_for(preds, p.model, p.horizon, p.fold,
                                                          origins, policy)
            for p in preds}


def score_folds(preds: list[FoldPrediction], cals: dict | None = None) -> pd.DataFrame:
    """One row per model, fold and horizon. Calibration (variance scale, conformal
    scales) of fold k comes from the model's residuals on earlier folds only
    (`cbi_toolkit.calibration.calibration_folds`)."""
    cals = calibrations(preds) if cals is None else cals
    rows = [score(p, cals[(p.model, p.horizon, p.fold)])
            for p in sorted(preds, key=lambda p: (HORIZONS[p.horizon], p.fold, p.model))]
    return pd.DataFrame(rows)


def _reported(preds: list[FoldPrediction], role: str) -> list[FoldPrediction]:
    """The predictions of folds of ``role``, or all when no fold has it."""
    return [p for p in preds if p.role == role] or preds


def summarise(preds: list[FoldPrediction], folds: pd.DataFrame | None = None,
              role: str = "test", stride: int = 1, cals: dict | None = None) -> pd.DataFrame:
    """Per horizon and model, the metrics pooled over every origin of the folds of
    ``role`` (the reported span), beside the random walk on the same origins:
    Diebold-Mariano tests on absolute and squared errors (``dm_p_abs``, ``dm_p_sq``;
    ``dm_stat_abs > 0``: the model's errors are larger), direction with its base rate
    and binomial p, CRPS (Gaussian, and calibrated) relative to the random walk with
    a trailing-volatility band, and the fold spread of MASE."""
    from cbi_toolkit.significance import diebold_mariano, direction_test

    cals = calibrations(preds) if cals is None else cals
    folds = score_folds(preds, cals) if folds is None else folds
    chosen = _reported(preds, role)
    rows = []
    groups: dict[tuple[str, str], list[FoldPrediction]] = {}
    for p in chosen:
        groups.setdefault((p.horizon, p.model), []).append(p)
    pooled = {}
    for (horizon, model), items in groups.items():
        items = sorted(items, key=lambda p: p.fold)
        cal = [calibrated(p, cals.get((p.model, p.horizon, p.fold))) for p in items]
        arrays = {a: np.concatenate([getattr(p, a) for p in items])
                  for a in ("y", "mu", "sigma", "price")}
        arrays["dates"] = items[0].dates.append([p.dates for p in items[1:]])
        arrays["cal"] = {k: np.concatenate([c[k] for c in cal]) for k in cal[0]}
        pooled[(horizon, model)] = arrays
    for (horizon, model), a in pooled.items():
        row = {"horizon": horizon, "model": model}
        lags = dm_lags(horizon, stride)
        row.update(_metrics(a["y"], a["mu"], a["sigma"], a["price"], a["cal"]))
        row.update(_coverage_tests(a["y"], a["cal"], lags))
        row["start"], row["end"] = f"{a['dates'][0]:%Y-%m-%d}", f"{a['dates'][-1]:%Y-%m-%d}"
        rw = pooled.get((horizon, "random_walk"))
        for loss, power in (("abs", 1), ("sq", 2)):
            row[f"dm_stat_{loss}"] = row[f"dm_p_{loss}"] = float("nan")
            if rw is not None and model != "random_walk" and len(rw["y"]) == len(a["y"]):
                actual = a["price"] * np.exp(a["y"])
                dm = diebold_mariano(np.abs(actual - a["price"] * np.exp(a["mu"])) ** power,
                                     np.abs(actual - a["price"]) ** power, lags + 1, lags=lags)
                row[f"dm_stat_{loss}"], row[f"dm_p_{loss}"] = dm.stat, dm.p_value
        d = direction_test(a["y"], a["mu"])
        row["direction_base"], row["direction_p"] = d.base_rate, d.p_value
        vol = pooled.get((horizon, "vol_random_walk"))
        row["crps_rel_vol"] = (row["crps_cal"] / crps_gaussian(vol["y"], vol["mu"],
                                                                vol["cal"]["sigma_cal"])
                               if vol is not None else float("nan"))
        in_role = folds[(folds["horizon"] == horizon) & (folds["model"] == model)
                        & folds["fold"].isin({p.fold for p in chosen})]
        row["mase_std"] = float(in_role["mase"].std()) if len(in_role) > 1 else float("nan")
        row["folds"] = int(in_role["fold"].nunique())
        rows.append(row)
    out = pd.DataFrame(rows)
    order = {name: i for i, name in enumerate(MODEL_ORDER)}
    out["_order"] = out["model"].map(lambda m: order.get(m, len(order)))
    out["_h"] = out["horizon"].map(HORIZONS)
    return out.sort_values(["_h", "_order", "model"]).drop(columns=["_order", "_h"]) \
        .reset_index(drop=True)


def dm_table(preds: list[FoldPrediction], model: str = "model", role: str = "test",
             stride: int = 1) -> pd.DataFrame:
    """The model against every other model per horizon on the pooled origins of ``role``:
    Diebold-Mariano statistic and p on absolute and squared price errors."""
    from cbi_toolkit.significance import diebold_mariano

    chosen = _reported(preds, role)
    rows = []
    for horizon in sorted({p.horizon for p in chosen}, key=HORIZONS.__getitem__):
        def errors(name, horizon=horizon):
            items = sorted((p for p in chosen if p.model == name and p.horizon == horizon),
                           key=lambda p: p.fold)
            if not items:
                return None
            y, mu, price = (np.concatenate([getattr(p, a) for p in items])
                            for a in ("y", "mu", "price"))
            return price * np.exp(y) - price * np.exp(mu)
        mine = errors(model)
        if mine is None:
            continue
        for other in sorted({p.model for p in chosen} - {model},
                            key=lambda m: MODEL_ORDER.index(m) if m in MODEL_ORDER else 99):
            theirs = errors(other)
            if theirs is None or len(theirs) != len(mine):
                continue
            row = {"horizon": horizon, "model": model, "versus": other, "n": len(mine)}
            for loss, power in (("abs", 1), ("sq", 2)):
                lags = dm_lags(horizon, stride)
                dm = diebold_mariano(np.abs(mine) ** power, np.abs(theirs) ** power, lags + 1,
                                     lags=lags)
                row[f"dm_stat_{loss}"], row[f"dm_p_{loss}"] = dm.stat, dm.p_value
            rows.append(row)
    return pd.DataFrame(rows)


def format_table(summary: pd.DataFrame, horizon: str) -> str:
    """A fixed-width table of one horizon, model beside baselines."""
    rows = summary[summary["horizon"] == horizon]
    if rows.empty:
        return f"horizon {horizon}: no scored origins"
    first = rows.iloc[0]
    head = (f"{'model':<16}{'MAE':>7}{'MASE':>7}{'DM p':>7}{'dir':>6}{'base':>6}{'p':>6}"
            f"{'conf80':>7}{'conf95':>7}{'CRPS':>8}{'vs vol':>7}")
    lines = [f"horizon {horizon}: {int(first.n)} origins {first.start} .. {first.end}", head,
             "-" * len(head)]
    for r in rows.itertuples():
        lines.append(
            f"{r.model:<16}{r.mae:>7.3f}{r.mase:>7.3f}{_p(r.dm_p_abs):>7}{_f(r.direction):>6}"
            f"{_f(r.direction_base):>6}{_p(r.direction_p):>6}{_f(r.conformal_coverage_80):>7}"
            f"{_f(r.conformal_coverage_95):>7}{r.crps_cal:>8.5f}{_f(r.crps_rel_vol):>7}")
    return "\n".join(lines)


def _f(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"


def _p(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}" if value >= 0.001 else "<.001"
