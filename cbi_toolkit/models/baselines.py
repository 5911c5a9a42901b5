"""Baselines on the same samples as the network (X: Windows, y: forward log returns [n, H]).

Each is a sklearn regressor with `predict` (mean log return per horizon) and
`predict_dist` -> (mu, sigma). For random_walk, drift and ridge sigma is the
standard deviation of the training residuals per horizon, constant across
samples; `VolatilityRandomWalk` (and the peers in `models.peers`) read the
price path up to each origin from ``Windows.context`` and give a sigma per origin.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from cbi_toolkit.features.windows import as_windows
from cbi_toolkit.models.checks import check_horizons as _check_horizons
from cbi_toolkit.models.checks import check_y as _check_y
from cbi_toolkit.models.checks import n_samples as _n_samples
from cbi_toolkit.models.peers import AutoARIMA, AutoETS, GarchRandomWalk


class _Baseline(RegressorMixin, BaseEstimator):
    def _fit_sigma(self, residuals: np.ndarray) -> None:
        n = np.isfinite(residuals).sum(axis=0)
        self.sigma_ = np.where(n > 1, np.nanstd(residuals, axis=0, ddof=1),
                               np.nanstd(residuals, axis=0))
        self.n_horizons_ = residuals.shape[1]

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        mu = self.predict(X)
        return mu, np.broadcast_to(self.sigma_, mu.shape).copy()


class RandomWalk(_Baseline):
    """No change: predicts a log return of 0 at every horizon."""

    def fit(self, X, y):
        y = _check_y(y, _n_samples(X))
        self._fit_sigma(y)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return np.zeros((_n_samples(X), self.n_horizons_))


class Drift(_Baseline):
    """The mean training log return per horizon (random walk with drift)."""

    def fit(self, X, y):
        y = _check_y(y, _n_samples(X))
        self.mean_ = np.nanmean(y, axis=0)
        self._fit_sigma(y - self.mean_)
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
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
        # one ridge per horizon, on the origins whose own target is known
        self.ridges_ = [Ridge(alpha=self.alpha).fit(Z[known], y[known, j])
                        for j, known in enumerate(np.isfinite(y).T)]
        self.n_features_in_ = Z.shape[1]
        self._fit_sigma(y - self._predict(Z))
        return self

    def _predict(self, Z: np.ndarray) -> np.ndarray:
        return np.column_stack([r.predict(Z) for r in self.ridges_])

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._predict(as_windows(X).last_step().astype(np.float64))


def daily_log_returns(win, n: int) -> np.ndarray:
    """``[n_samples, n]``: the last ``n`` daily log returns up to each origin (NaN where unknown)."""
    return np.diff(as_windows(win).history(n + 1), axis=1)


def trailing_volatility(win, window: int) -> np.ndarray:
    """Per origin, the sample std (ddof=1) of the last ``window`` daily log returns up to it;
    NaN where fewer than two are known."""
    r = daily_log_returns(win, window)
    ok = np.isfinite(r)
    n = ok.sum(axis=1)
    mean = np.where(ok, r, 0.0).sum(axis=1) / np.maximum(n, 1)
    ss = (np.where(ok, r - mean[:, None], 0.0) ** 2).sum(axis=1)
    return np.where(n >= 2, np.sqrt(ss / np.maximum(n - 1, 1)), np.nan)


class VolatilityRandomWalk(RegressorMixin, BaseEstimator):
    """Random walk with a trailing-volatility band.

    mu = 0; sigma_h = sample std (ddof=1) of the last ``window`` daily log
    returns up to the origin x sqrt(h). ``horizons`` are the horizon lengths in
    trading days, in the order of y's columns. An origin with fewer than two
    known returns in its window (the very start of the data) gets the median
    trailing volatility of the training origins.
    """

    def __init__(self, window: int = 63, horizons: tuple[int, ...] = (21,)):
        self.window = window
        self.horizons = horizons

    def fit(self, X, y):
        win = as_windows(X)
        y = _check_y(y, len(win))
        self.horizons_ = _check_horizons(self.horizons, y)
        vol = trailing_volatility(win, self.window)
        if not np.isfinite(vol).any():
            raise ValueError(f"no training origin has two daily returns in its {self.window}-day "
                             "window; pass windows with a longer price context")
        self.fallback_vol_ = float(np.nanmedian(vol))
        self.n_horizons_ = y.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return np.zeros((_n_samples(X), self.n_horizons_))

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        vol = trailing_volatility(X, self.window)
        vol = np.where(np.isfinite(vol), vol, self.fallback_vol_)
        sigma = vol[:, None] * np.sqrt(np.asarray(self.horizons_, dtype=np.float64))
        return self.predict(X), sigma


#: spec name -> class; the spec's ``baselines`` list picks from these names.
BASELINES: dict[str, type] = {
    "random_walk": RandomWalk, "drift": Drift, "ridge": LastStepRidge,
    "vol_random_walk": VolatilityRandomWalk, "garch": GarchRandomWalk,
    "auto_arima": AutoARIMA, "auto_ets": AutoETS,
}
