"""Peer baselines from well-known libraries, on the same samples and folds as the network.

Each reads the target's log price path from ``Windows.context`` (see
`Windows.history`), is fitted on the path up to the last training origin and,
at every origin it predicts, uses only the path up to that origin with the
parameters fixed at fit time. They follow the baselines' interface:
``fit(X, y)``, ``predict(X)`` (mean log return per horizon) and
``predict_dist(X) -> (mu, sigma)``; ``horizons`` are the horizon lengths in
trading days in the order of y's columns.

- `GarchRandomWalk`: mu = 0, sigma from a GARCH(1,1) (``arch``).
- `AutoARIMA`, `AutoETS`: statsforecast's automatic ARIMA / ETS on the log
  price (season_length=1); mu = forecast - log P(origin), sigma from the
  forecast interval.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from cbi_toolkit.features.windows import Windows, as_windows
from cbi_toolkit.models.checks import check_horizons as _check_horizons
from cbi_toolkit.models.checks import check_y as _check_y

log = logging.getLogger(__name__)


def _path_start(end: int, window: int | None) -> int:
    """First context row of the path that ends at row ``end`` (a trailing ``window`` of returns)."""
    return 0 if window is None else max(0, end - int(window))


def _training_path(win: Windows, window: int | None) -> tuple[int, np.ndarray]:
    """The log price path up to the last training origin (and its first row)."""
    context = win._require_context()
    last = int(win.ends.max())
    start = _path_start(last, window)
    path = context[start: last + 1]
    if not np.isfinite(path).all():
        raise ValueError("the price context has gaps before the last training origin")
    return start, path


class GarchRandomWalk(RegressorMixin, BaseEstimator):
    """Random walk with a GARCH(1,1) band.

    Fitted on the training path's daily log returns in percent, zero mean,
    Student-t innovations (``dist``): ZL's daily returns are fat-tailed, the t
    likelihood keeps single shocks from inflating alpha, and arch scales the t
    to unit variance, so the variance forecasts are the returns' variance as
    the Gaussian evaluation needs. Zero mean, because the band sits around the
    random walk's mu = 0. At each origin the conditional variance is filtered
    forward with the fixed fitted parameters over the returns up to that
    origin, and sigma_h = sqrt(sum of the 1..h step variance forecasts).
    ``window`` (trading days) limits the fit to a trailing window of returns;
    None uses the whole path up to the last training origin. With fewer than
    ``min_returns`` returns there (tiny data) the band uses their constant variance.
    """

    min_returns = 100

    def __init__(self, horizons: tuple[int, ...] = (21,), window: int | None = None,
                 dist: str = "t"):
        self.horizons = horizons
        self.window = window
        self.dist = dist

    def _model(self, returns: np.ndarray):
        from arch import arch_model

        return arch_model(100.0 * returns, mean="Zero", vol="GARCH", p=1, q=1, dist=self.dist)

    def fit(self, X, y):
        win = as_windows(X)
        y = _check_y(y, len(win))
        self.horizons_ = _check_horizons(self.horizons, y)
        self.start_row_, path = _training_path(win, self.window)
        returns = np.diff(path)
        self.n_train_returns_ = len(returns)
        if len(returns) < self.min_returns:
            log.warning("GARCH: only %d daily returns before the last training origin (< %d); "
                        "using their constant variance", len(returns), self.min_returns)
            self.params_ = None
            self.unconditional_var_ = float(np.var(returns, ddof=1)) if len(returns) > 1 else np.nan
            self.n_horizons_ = y.shape[1]
            return self
        res = self._model(returns).fit(disp="off")
        if res.convergence_flag != 0:
            log.warning("GARCH fit did not converge (flag %s); using its last parameters",
                        res.convergence_flag)
        self.params_ = res.params
        persistence = float(res.params["alpha[1]"] + res.params["beta[1]"])
        self.persistence_ = persistence
        # the long-run daily variance (or the sample variance if the fit is not stationary)
        self.unconditional_var_ = (float(res.params["omega"]) / (1 - persistence) / 1e4
                                   if persistence < 1 else float(np.var(returns)))
        self.n_horizons_ = y.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return np.zeros((len(as_windows(X)), self.n_horizons_))

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        win = as_windows(X)
        context = win._require_context()
        ends = win.ends
        days = np.asarray(self.horizons_)
        sigma = np.full((len(ends), len(days)), np.nan)
        if len(ends) and self.params_ is not None:
            start = min(self.start_row_, max(int(ends.min()) - 1, 0))
            returns = np.diff(context[start: int(ends.max()) + 1])
            pos = ends - start - 1                       # index of the return ending at each origin
            ok = pos >= 0
            if ok.any():
                first = int(pos[ok].min())
                fc = self._model(returns).forecast(params=self.params_, horizon=int(days.max()),
                                                   start=first, reindex=False)
                cum = np.cumsum(fc.variance.to_numpy(), axis=1) / 1e4
                sigma[ok] = np.sqrt(cum[pos[ok] - first][:, days - 1])
        fallback = np.sqrt(self.unconditional_var_ * days)
        sigma = np.where(np.isfinite(sigma), sigma, fallback)
        return self.predict(win), sigma


class _StatsForecastPath(RegressorMixin, BaseEstimator):
    """A statsforecast model fitted on the training log price path, applied per origin."""

    #: central interval whose width gives sigma (Gaussian: width = 2 z sigma)
    _level = 80

    def __init__(self, horizons: tuple[int, ...] = (21,), window: int | None = None):
        self.horizons = horizons
        self.window = window

    def _new_model(self):
        raise NotImplementedError

    def fit(self, X, y):
        win = as_windows(X)
        y = _check_y(y, len(win))
        self.horizons_ = _check_horizons(self.horizons, y)
        _, path = _training_path(win, self.window)
        if len(path) < 30:
            raise ValueError(f"{type(self).__name__} needs at least 30 prices before the last "
                             f"training origin, got {len(path)}")
        self.model_ = self._new_model().fit(path)
        self.n_horizons_ = y.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self.predict_dist(X)[0]

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self)
        win = as_windows(X)
        context = win._require_context()
        days = np.asarray(self.horizons_)
        z = norm.ppf(0.5 + self._level / 200)
        mu = np.empty((len(win), len(days)))
        sigma = np.empty_like(mu)
        for i, end in enumerate(win.ends):
            path = context[_path_start(int(end), self.window): int(end) + 1]
            out = self.model_.forward(y=path, h=int(days.max()), level=[self._level])
            mean = np.asarray(out["mean"])[days - 1]
            lo = np.asarray(out[f"lo-{self._level}"])[days - 1]
            hi = np.asarray(out[f"hi-{self._level}"])[days - 1]
            mu[i] = mean - path[-1]
            sigma[i] = (hi - lo) / (2 * z)
        return mu, sigma


class AutoARIMA(_StatsForecastPath):
    """statsforecast AutoARIMA on the log price (season_length=1), orders chosen per fold.

    ``window`` (trading days) fits on, and forecasts from, a trailing window of
    the path; None (the default) uses the whole path: fitting takes ~3 s and
    forecasting ~10 ms per origin (five horizons) on the ZL snapshot, cheap
    beside the network, so no trailing window is needed by default.
    """

    def _new_model(self):
        from statsforecast.models import AutoARIMA as _AutoARIMA

        return _AutoARIMA(season_length=1)


class AutoETS(_StatsForecastPath):
    """statsforecast AutoETS on the log price (season_length=1), the model chosen per fold.

    ``window`` as for `AutoARIMA`.
    """

    def _new_model(self):
        from statsforecast.models import AutoETS as _AutoETS

        return _AutoETS(season_length=1)
