"""The record of an out-of-sample prediction (`FoldPrediction`) and the metrics that score
one: point errors, intervals, coverage, pinball, CRPS. Both the calibration and the
evaluation build on these; they import nothing of the toolkit's but the horizons.

Models predict forward log returns with a mean and a sigma; the distribution metrics
(coverage, pinball, CRPS) are computed on log returns, where the model's Gaussian lives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from cbi_toolkit.targets import HORIZONS

LEVELS = (0.80, 0.95)
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
    """Closed-form CRPS of N(mu, sigma²) at y (Gneiting & Raftery 2007), the mean."""
    return float(np.mean(crps_gaussian_each(y, mu, sigma)))


def crps_gaussian_each(y: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The CRPS of each origin."""
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))


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
    role: str = "test"  # "selection" or "test" (cbi_toolkit.walkforward)
    series: str | None = None  # the commodity, where one pooled net predicts several


def dm_lags(horizon: str, stride: int = 1) -> int:
    """Newey-West lags for h-step errors scored every ``stride`` origins: the errors of
    origins less than h trading days apart overlap, so the strided series is MA(lags);
    the HLN correction then takes lags + 1 as its h."""
    return max(0, int(np.ceil(HORIZONS[horizon] / stride)) - 1)
