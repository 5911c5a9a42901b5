"""Samples as windows over the feature matrix, without copying per sample.

A sample is the ``window`` rows of features that end at its forecast origin.
`Windows` keeps the 2D feature matrix once and the origin row of every sample;
indexing it (as sklearn's splitters and GridSearchCV do) selects origins and
never copies the matrix. Batches are gathered by index when a model asks.

``context`` (optional) carries one float64 per row of ``values``: the target's
log price on that row, unscaled. It is not a feature (no scaler touches it);
baselines that need the price path up to an origin (trailing volatility,
GARCH, ARIMA) read it through `Windows.history`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class Windows:
    """``n`` samples of shape ``[window, n_features]`` over ``values[T, F]``.

    Sample ``i`` is ``values[ends[i] - window + 1 : ends[i] + 1]``. ``context[r]``,
    when given, is the target's log price on row ``r`` of ``values``.
    """

    __array_priority__ = 10

    def __init__(self, values: np.ndarray, ends: np.ndarray, window: int,
                 context: np.ndarray | None = None):
        values = np.asarray(values)
        ends = np.asarray(ends, dtype=np.int64)
        if values.ndim != 2:
            raise ValueError(f"values must be 2D [time, features], got shape {values.shape}")
        if len(ends) and (ends.min() < window - 1 or ends.max() >= len(values)):
            raise ValueError("every window must lie inside values")
        if context is not None:
            context = np.asarray(context, dtype=np.float64)
            if context.shape != (len(values),):
                raise ValueError(f"context must hold one value per row of values "
                                 f"({len(values)}), got shape {context.shape}")
        self.values, self.ends, self.window = values, ends, int(window)
        self.context = context

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.ends), self.window, self.values.shape[1])

    @property
    def ndim(self) -> int:
        return 3

    @property
    def dtype(self):
        return self.values.dtype

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, key) -> Windows:
        if isinstance(key, tuple):  # sklearn's _safe_indexing passes (key, ...)
            key = key[0]
        if isinstance(key, int | np.integer):
            key = [key]
        return Windows(self.values, self.ends[key], self.window, self.context)

    def gather(self, idx: np.ndarray | slice | None = None) -> np.ndarray:
        """Materialise samples ``idx`` (default: all) as a ``[k, window, F]`` array."""
        ends = self.ends if idx is None else self.ends[idx]
        return self.values[ends[:, None] + self.offsets()]

    def offsets(self) -> np.ndarray:
        return np.arange(-self.window + 1, 1)

    def __array__(self, dtype=None, copy=None):
        out = self.gather()
        return out if dtype is None else out.astype(dtype)

    def last_step(self) -> np.ndarray:
        """Features at each origin, ``[n, F]``."""
        return self.values[self.ends]

    def covered_rows(self) -> slice:
        """The rows any sample reads: all known at the newest origin."""
        if not len(self.ends):
            return slice(0, 0)
        return slice(int(self.ends.min()) - self.window + 1, int(self.ends.max()) + 1)

    @staticmethod
    def concat(first: Windows, second: Windows) -> Windows:
        """The samples of ``first`` then those of ``second``, over both matrices stacked
        (no window reaches across: each still reads only its own matrix's rows)."""
        if first.window != second.window or first.values.shape[1] != second.values.shape[1]:
            raise ValueError("windows to concatenate need the same window and features")
        context = (None if first.context is None or second.context is None
                   else np.concatenate([first.context, second.context]))
        return Windows(np.concatenate([first.values, second.values]),
                       np.concatenate([first.ends, second.ends + len(first.values)]),
                       first.window, context)

    def with_values(self, values: np.ndarray) -> Windows:
        return Windows(values, self.ends, self.window, self.context)

    def _require_context(self) -> np.ndarray:
        if self.context is None:
            raise ValueError("these windows carry no price context (Windows.context is None); "
                             "build them with make_samples, not from a bare 3D array")
        return self.context

    def history(self, n: int) -> np.ndarray:
        """``[n_samples, n]``: the last ``n`` context rows up to and including each origin.

        Oldest first; NaN-padded at the start where fewer than ``n`` rows exist.
        Reads nothing after the origin, so it is causal like the features.
        """
        context = self._require_context()
        n = int(n)
        if n < 1:
            raise ValueError(f"history needs n >= 1, got {n}")
        rows = self.ends[:, None] + np.arange(-n + 1, 1)
        out = context[np.clip(rows, 0, None)]
        out[rows < 0] = np.nan
        return out

    @property
    def origin_log_price(self) -> np.ndarray:
        """The target's log price at each origin, ``[n_samples]``."""
        return self._require_context()[self.ends]

    def __repr__(self) -> str:
        return f"Windows(n={len(self)}, window={self.window}, features={self.values.shape[1]})"


def as_windows(X) -> Windows:
    """Accept `Windows` or a 3D array (converted to non-overlapping windows, no context)."""
    if isinstance(X, Windows):
        return X
    arr = np.asarray(X)
    if arr.ndim != 3:
        raise ValueError(f"expected Windows or a 3D array [samples, window, features], got {arr.shape}")
    n, w, f = arr.shape
    return Windows(arr.reshape(n * w, f), np.arange(w - 1, n * w, w), w)


class WindowScaler(TransformerMixin, BaseEstimator):
    """Standardise features with mean and std from the rows the training samples read.

    Fitted inside each fold's pipeline, so statistics never come from the test
    fold. Values are clipped to ``±clip`` standard deviations. The price
    ``context`` passes through unscaled.
    """

    def __init__(self, clip: float | None = 10.0, fill_missing: bool = False):
        self.clip = clip
        self.fill_missing = fill_missing

    def fit(self, X, y=None):  # noqa: ARG002 - sklearn signature
        win = as_windows(X)
        rows = win.values[win.covered_rows()].astype(np.float64)
        self.mean_ = np.nanmean(rows, axis=0)
        std = np.nanstd(rows, axis=0)
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        self.n_features_in_ = win.values.shape[1]
        return self

    def transform(self, X) -> Windows:
        win = as_windows(X)
        if win.values.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {win.values.shape[1]} features, the scaler was fitted "
                             f"on {self.n_features_in_}")
        scaled = ((win.values - self.mean_) / self.scale_).astype(np.float32)
        if self.clip is not None:
            np.clip(scaled, -self.clip, self.clip, out=scaled)
        if self.fill_missing:  # a missing feature at its training mean: it carries no signal
            np.nan_to_num(scaled, copy=False, nan=0.0)
        return win.with_values(scaled)
