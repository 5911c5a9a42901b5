"""Walk-forward splits, forecast metrics and comparison tables.

Models predict forward log returns with a mean and a sigma; metrics are on the
price P[t]·exp(·) except where they are about the distribution (coverage,
pinball, CRPS), which are computed on log returns, where the model's Gaussian
lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.model_selection import TimeSeriesSplit

from cbi_toolkit.targets import HORIZONS

LEVELS = (0.80, 0.95)
#: Display order: the model first, then the baselines.
MODEL_ORDER = ("model", "random_walk", "drift", "ridge")


def walk_forward(spec, n_samples: int | None = None) -> TimeSeriesSplit:
    """Expanding-window folds with a gap of at least the longest horizon.

    ``gap`` counts samples; origins are consecutive trading days, so it is at
    least that many trading days.
    """
    test_size = spec.validation.test_size
    if test_size is None and n_samples is not None:
        test_size = max(1, (n_samples - spec.gap) // (spec.validation.n_splits + 1))
    return TimeSeriesSplit(n_splits=spec.validation.n_splits, gap=spec.gap, test_size=test_size)


# -- point and interval metrics -------------------------------------------------

def mae(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - predicted)))


def mape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return float(100 * np.mean(np.abs((actual - predicted) / actual)))


def direction_accuracy(y: np.ndarray, mu: np.ndarray) -> tuple[float, int]:
    """Share of origins where the predicted move has the sign of the real one,
    over origins where both moved (a zero prediction or move has no direction)."""
    moved = (y != 0) & (mu != 0)
    n = int(moved.sum())
    if n == 0:
        return float("nan"), 0
    return float(np.mean(np.sign(y[moved]) == np.sign(mu[moved]))), n


def interval(mu: np.ndarray, sigma: np.ndarray, level: float,
             scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Central interval in log-return space: mu ± q·sigma, with q the Gaussian
    quantile or, if given, a conformal ``scale``."""
    q = norm.ppf(0.5 + level / 2) if scale is None else scale
    return mu - q * sigma, mu + q * sigma


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    return float(np.mean((y >= lower) & (y <= upper)))


def pinball(y: np.ndarray, q_pred: np.ndarray, tau: float) -> float:
    diff = y - q_pred
    return float(np.mean(np.maximum(tau * diff, (tau - 1) * diff)))


def crps_gaussian(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> float:
    """Closed-form CRPS of N(mu, sigma²) at y (Gneiting & Raftery 2007)."""
    z = (y - mu) / sigma
    return float(np.mean(sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))))


def conformal_scale(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray, level: float) -> float:
    """Split-conformal quantile of |y - mu| / sigma with the finite-sample correction."""
    scores = np.sort(np.abs(y - mu) / sigma)
    n = len(scores)
    k = int(np.ceil((n + 1) * level))
    return float(scores[min(k, n) - 1]) if n else float("nan")


@dataclass
class FoldPrediction:
    """Out-of-sample predictions of one model on one fold (log returns)."""

    model: str
    fold: int
    horizon: str
    y: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    price: np.ndarray
    dates: pd.DatetimeIndex


def score(pred: FoldPrediction, conformal: dict[float, float] | None = None) -> dict:
    """All metrics of one model/fold/horizon; ``conformal`` maps level -> scale (or None).

    MASE divides by the random walk's MAE on the same origins: it predicts no
    change, so its error is |P[t+h] - P[t]| and needs no prediction of its own.
    """
    actual = pred.price * np.exp(pred.y)
    predicted = pred.price * np.exp(pred.mu)
    rw_mae = mae(actual, pred.price)
    acc, n_dir = direction_accuracy(pred.y, pred.mu)
    row = {
        "model": pred.model, "fold": pred.fold, "horizon": pred.horizon, "n": len(pred.y),
        "start": pred.dates[0].date().isoformat(), "end": pred.dates[-1].date().isoformat(),
        "mae": mae(actual, predicted), "mape": mape(actual, predicted),
        "mase": mae(actual, predicted) / rw_mae if rw_mae > 0 else float("nan"),
        "direction": acc, "direction_n": n_dir,
        "crps": crps_gaussian(pred.y, pred.mu, pred.sigma),
    }
    for level in LEVELS:
        pct = int(round(level * 100))
        lo, hi = interval(pred.mu, pred.sigma, level)
        row[f"coverage_{pct}"] = coverage(pred.y, lo, hi)
        tail = (1 - level) / 2
        row[f"pinball_{pct}"] = (pinball(pred.y, lo, tail) + pinball(pred.y, hi, 1 - tail)) / 2
        scale = (conformal or {}).get(level)
        if scale is not None and np.isfinite(scale):
            lo_c, hi_c = interval(pred.mu, pred.sigma, level, scale)
            row[f"conformal_coverage_{pct}"] = coverage(pred.y, lo_c, hi_c)
        else:
            row[f"conformal_coverage_{pct}"] = float("nan")
    return row


def score_folds(preds: list[FoldPrediction]) -> pd.DataFrame:
    """One row per model, fold and horizon. Conformal coverage on fold k uses
    scales calibrated on the model's residuals from folds before k only."""
    rows = []
    for p in sorted(preds, key=lambda p: (p.horizon, p.fold, p.model)):
        earlier = [q for q in preds if q.model == p.model and q.horizon == p.horizon
                   and q.fold < p.fold]
        conformal = None
        if earlier:
            y, mu, sigma = (np.concatenate([getattr(q, a) for q in earlier])
                            for a in ("y", "mu", "sigma"))
            conformal = {lv: conformal_scale(y, mu, sigma, lv) for lv in LEVELS}
        rows.append(score(p, conformal))
    return pd.DataFrame(rows)


SUMMARY_COLUMNS = ["mae", "mape", "mase", "direction", "direction_n", "coverage_80",
                   "coverage_95", "conformal_coverage_80", "conformal_coverage_95",
                   "pinball_80", "pinball_95", "crps"]


def summarise(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean over folds per horizon and model (direction_n summed), with the fold
    spread of MASE."""
    agg = {c: "mean" for c in SUMMARY_COLUMNS}
    agg["direction_n"] = "sum"
    out = folds.groupby(["horizon", "model"], sort=False).agg(agg)
    out["mase_std"] = folds.groupby(["horizon", "model"], sort=False)["mase"].std()
    out["folds"] = folds.groupby(["horizon", "model"], sort=False)["fold"].nunique()
    out = out.reset_index()
    order = {name: i for i, name in enumerate(MODEL_ORDER)}
    out["_order"] = out["model"].map(lambda m: order.get(m, len(order)))
    out["_h"] = out["horizon"].map(HORIZONS)
    return out.sort_values(["_h", "_order", "model"]).drop(columns=["_order", "_h"]) \
        .reset_index(drop=True)


def format_table(summary: pd.DataFrame, horizon: str) -> str:
    """A fixed-width table of one horizon, model beside baselines."""
    rows = summary[summary["horizon"] == horizon]
    head = (f"{'model':<14}{'MAE':>8}{'MAPE%':>8}{'MASE':>7}{'dir':>7}{'(n)':>7}"
            f"{'cov80':>7}{'cov95':>7}{'conf80':>8}{'conf95':>8}{'CRPS':>9}")
    lines = [f"horizon {horizon}", head, "-" * len(head)]
    for r in rows.itertuples():
        lines.append(
            f"{r.model:<14}{r.mae:>8.3f}{r.mape:>8.2f}{r.mase:>7.3f}{r.direction:>7.3f}"
            f"{int(r.direction_n):>7d}{r.coverage_80:>7.3f}{r.coverage_95:>7.3f}"
            f"{r.conformal_coverage_80:>8.3f}{r.conformal_coverage_95:>8.3f}{r.crps:>9.5f}")
    return "\n".join(lines)
