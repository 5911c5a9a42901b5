"""Shared base of the causal feature transformers.

Every transformer is a stateless sklearn transformer: ``transform(frame)``
takes the aligned daily frame (one column per series) and returns feature
columns on the same index. The value on date t uses only rows up to t, so
computing features on the full history before the walk-forward split leaks
nothing; anything *fitted* (scaling) happens later, inside each fold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin


class CausalFeature(TransformerMixin, BaseEstimator):
    """Base class; subclasses implement ``_compute(frame) -> DataFrame``.

    ``target`` names the price series; ``roles`` maps every series to its role
    (price, rate, level, positioning, weather) so a transformer can pick the
    driver columns it applies to.
    """

    target: str
    roles: dict[str, str] | None

    def fit(self, frame: pd.DataFrame, y=None):  # noqa: ARG002 - sklearn signature
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = self._compute(frame)
        return out.replace([np.inf, -np.inf], np.nan)

    def _compute(self, frame: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    @property
    def lookback(self) -> int:
        """Rows of history the longest computation needs before its first value."""
        return 1

    # -- helpers ----------------------------------------------------------
    def series_with_role(self, frame: pd.DataFrame, *roles: str) -> list[str]:
        return [c for c, r in (self.roles or {}).items()
                if r in roles and c != self.target and c in frame.columns]

    def log_price(self, frame: pd.DataFrame) -> pd.Series:
        return np.log(frame[self.target])
