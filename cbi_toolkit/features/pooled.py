"""Samples of several commodities on the same origin dates, for one pooled network.

`PooledWindows` holds one `Windows` per commodity (each over its own feature matrix
and trading calendar), all with the same number of samples: sample ``i`` of every
member is the window that ends on the same origin date. Indexing selects the same
origins in every member, so sklearn's splitters and the walk-forward folds treat it
like `Windows`. `PooledWindowScaler` standardises each commodity with its own
`WindowScaler`, fitted on the rows its training samples read.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from cbi_toolkit.features.windows import Windows, WindowScaler


class PooledWindows:
    """``n`` samples of ``C`` commodities, each ``[window, F_c]``: ``members[c][i]`` is
    commodity ``c``'s window at origin ``i``."""

    def __init__(self, members: list[Windows]):
        members = list(members)
        if not members:
            raise ValueError("PooledWindows needs at least one member")
        if len({len(m) for m in members}) != 1 or len({m.window for m in members}) != 1:
            raise ValueError("every commodity needs the same number of samples and window; got "
                             f"{[(len(m), m.window) for m in members]}")
        self.members = members

    @property
    def window(self) -> int:
        return self.members[0].window

    @property
    def n_features(self) -> int:
        """Features per commodity after padding to the widest member."""
        return max(m.values.shape[1] for m in self.members)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), len(self.members), self.window, self.n_features)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.members[0])

    def __getitem__(self, key) -> PooledWindows:
        if isinstance(key, tuple):  # sklearn's _safe_indexing passes (key, ...)
            key = key[0]
        return PooledWindows([m[key] for m in self.members])

    def gather(self, idx: np.ndarray | slice | None = None) -> np.ndarray:
        """``[k, C, window, F]``; a member with fewer features is padded with zeros."""
        parts = [m.gather(idx) for m in self.members]
        out = np.zeros((len(parts[0]), len(parts), self.window, self.n_features),
                       dtype=parts[0].dtype)
        for c, part in enumerate(parts):
            out[:, c, :, :part.shape[2]] = part
        return out

    def __array__(self, dtype=None, copy=None):
        out = self.gather()
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return (f"PooledWindows(n={len(self)}, commodities={len(self.members)}, "
                f"window={self.window}, features={self.n_features})")


def as_pooled(X) -> PooledWindows:
    if isinstance(X, PooledWindows):
        return X
    raise ValueError(f"expected PooledWindows (one Windows per commodity), got "
                     f"{type(X).__name__}; build them with cbi_toolkit.pooled_dataset")


class PooledWindowScaler(TransformerMixin, BaseEstimator):
    """One `WindowScaler` per commodity, each fitted on the rows that commodity's
    training samples read (so inside the fold, never on its test span)."""

    def __init__(self, clip: float | None = 10.0, fill_missing: bool = False):
        self.clip = clip
        self.fill_missing = fill_missing

    def fit(self, X, y=None):  # noqa: ARG002 - sklearn signature
        pooled = as_pooled(X)
        self.scalers_ = [WindowScaler(self.clip, self.fill_missing).fit(m)
                         for m in pooled.members]
        self.n_commodities_ = len(self.scalers_)
        return self

    def transform(self, X) -> PooledWindows:
        pooled = as_pooled(X)
        if len(pooled.members) != self.n_commodities_:
            raise ValueError(f"X has {len(pooled.members)} commodities, the scaler was fitted "
                             f"on {self.n_commodities_}")
        return PooledWindows([s.set_params(fill_missing=self.fill_missing).transform(m)
                              for s, m in zip(self.scalers_, pooled.members, strict=True)])
