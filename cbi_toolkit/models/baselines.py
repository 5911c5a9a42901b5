"""Baselines on the same samples as the network (X: Windows, y: forward log returns [n, H]).

Each is a sklearn regressor with `predict` (mean log return per horizon) and
`predict_dist` -> (mu, sigma), where sigma is the standard deviation of the
training residuals per horizon, constant across samples.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge

from cbi_toolkit.features.windows import as_windows


def _check_y(y, n: int) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or len(y) != n:
        raise ValueError(f"y must be [n_samples, n_horizons] with n_samples={n}, "
                         f"got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinite targets; pass only labelled samples")
    if n < 1:
        raise ValueError("no samples to fit")
    return y


def _n_samples(X) -> int:
    return len(X) if hasattr(X, "__len__") else np.asarray(X).shape[0]


class _Baseline(RegressorMixin, BaseEstimator):
    def _fit_sigma(self, residuals: np.ndarray) -> None:
        ddof = 1 if len(residuals) > 1 else 0
        self.sigma_ = residuals.std(axis=0, ddof=ddof)
        self.n_horizons_ = residuals.shape[1]

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        mu = self.predict(X)
        return mu, np.broadcast_to(self.sigma_, mu.shape).copy()


class RandomWalk(_Baseline):
    """No change: predicts a log return of 0 at every horizon."""

    def fit(self, X, y):
        y = _check_y(y, _n_samples(X))
        self._fit_sigma(y)
        return self

    def predict(self, X) -> np.ndarray:
        return np.zeros((_n_samples(X), self.n_horizons_))


class Drift(_Baseline):
    """The mean training log return per horizon (random walk with drift)."""

    def fit(self, X, y):
        y = _check_y(y, _n_samples(X))
        self.mean_ = y.mean(axis=0)
        self._fit_sigma(y - self.mean_)
        return self

    def predict(self, X) -> np.ndarray:
        return np.tile(self.mean_, (_n_samples(X), 1))


class LastStepRidge(_Baseline):
    """Ridge regression of the log returns on the features at the origin (last window step)."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X, y):
        Z = as_windows(X).last_step().astype(np.float64)
        y = _check_y(y, len(Z))
        if not np.isfinite(Z).all():
            raise ValueError("X contains NaN or infinite features at the origins")
        self.ridge_ = Ridge(alpha=self.alpha).fit(Z, y)
        self.n_features_in_ = Z.shape[1]
        self._fit_sigma(y - self.ridge_.predict(Z).reshape(y.shape))
        return self

    def predict(self, X) -> np.ndarray:
        Z = as_windows(X).last_step().astype(np.float64)
        return self.ridge_.predict(Z).reshape(len(Z), -1)


BASELINES = {"random_walk": RandomWalk, "drift": Drift, "ridge": LastStepRidge}
