"""Compose the spec's feature transformers into one feature frame."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from cbi_toolkit.features.registry import make_feature


class FeatureBuilder(TransformerMixin, BaseEstimator):
    """Concatenate the outputs of the named causal transformers.

    ``features`` is a list of ``(name, params)`` pairs as in the spec.
    """

    def __init__(self, features: list[tuple[str, dict[str, Any]]], target: str = "zl",
                 roles: dict[str, str] | None = None):
        self.features, self.target, self.roles = features, target, roles

    def _transformers(self):
        return [(name, make_feature(name, params, self.target, self.roles))
                for name, params in self.features]

    def fit(self, frame: pd.DataFrame, y=None):  # noqa: ARG002 - sklearn signature
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        parts = [t.fit(frame).transform(frame) for _, t in self._transformers()]
        out = pd.concat([p for p in parts if p.shape[1]], axis=1)
        dupes = out.columns[out.columns.duplicated()].tolist()
        if dupes:
            raise ValueError(f"two features produce the same column names: {dupes}")
        return out.astype("float32")

    @property
    def lookback(self) -> int:
        return max((t.lookback for _, t in self._transformers()), default=1)
