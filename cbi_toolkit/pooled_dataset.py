"""The samples of a spec with several ``targets``: each commodity's own samples (its own
frame, calendar, features and forward returns, exactly as a single-commodity spec with
that target builds them), kept on the origin dates they all share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from cbi_toolkit.data import DataReport
from cbi_toolkit.dataset import Samples, load_samples
from cbi_toolkit.errors import DataError
from cbi_toolkit.features.pooled import PooledWindows
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import Spec


@dataclass
class PooledSamples:
    """One sample per shared origin date. ``members[c]`` is commodity ``c``'s `Samples`
    on exactly these dates; ``y`` is ``[n, C * H]``, commodity-major (column
    ``c * H + j`` is commodity ``c`` at horizon ``j``), NaN where a future is unknown."""

    members: dict[str, Samples]

    @property
    def commodities(self) -> list[str]:
        return list(self.members)

    @property
    def horizons(self) -> list[str]:
        return next(iter(self.members.values())).horizons

    @property
    def dates(self) -> pd.DatetimeIndex:
        return next(iter(self.members.values())).dates

    @property
    def X(self) -> PooledWindows:  # noqa: N802 - sklearn's name
        return PooledWindows([s.X for s in self.members.values()])

    @property
    def y(self) -> np.ndarray:
        return np.concatenate([s.y for s in self.members.values()], axis=1)

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def trainable(self) -> np.ndarray:
        """Origins where every commodity has at least one known target."""
        return np.logical_and.reduce([s.trainable for s in self.members.values()])

    def columns(self, series: str) -> slice:
        """The columns of ``y`` (and of the net's output) that belong to ``series``."""
        c, h = self.commodities.index(series), len(self.horizons)
        return slice(c * h, (c + 1) * h)

    def training_set(self, rows, history: bool = True,  # noqa: ARG002 - Samples' signature
                     valid_fraction: float | None = None) -> tuple[PooledWindows, np.ndarray]:
        """``X, y`` of the origins ``rows`` (the pooled net takes no extra history)."""
        return self.X[rows], self.y[rows]

    def fold_predictions(self, model: str, fold: int, role: str, rows: np.ndarray,
                         mu: np.ndarray, sigma: np.ndarray) -> list[FoldPrediction]:
        """The pooled output ``[len(rows), C * H]`` split per commodity (``series``), each
        as its own samples' `Samples.fold_predictions`."""
        return [p for c, member in self.members.items()
                for p in member.fold_predictions(model, fold, role, rows, mu[:, self.columns(c)],
                                                 sigma[:, self.columns(c)], series=c)]

    def subset(self, idx) -> PooledSamples:
        return PooledSamples({c: s.subset(idx) for c, s in self.members.items()})


def shared_origins(members: dict[str, Samples]) -> PooledSamples:
    """Each commodity's samples on the origin dates all of them have."""
    common = None
    for s in members.values():
        common = s.dates if common is None else common.intersection(s.dates)
    if common is None or not len(common):
        raise DataError(f"the targets {list(members)} share no origin date; check their data")
    return PooledSamples({c: s.subset(s.dates.get_indexer(common)) for c, s in members.items()})


def load_pooled_samples(spec: Spec, ctx: SourceContext, allow_ended: bool = False
                        ) -> tuple[dict[str, DataReport], PooledSamples]:
    """Every target's samples as its single-commodity spec builds them, on shared dates."""
    reports, members = {}, {}
    for series in spec.commodities:
        reports[series] = DataReport()
        _, members[series] = load_samples(spec.for_target(series), ctx, reports[series],
                                          allow_ended=allow_ended)
    return reports, shared_origins(members)


def labelled_pooled(pooled: PooledSamples) -> PooledSamples:
    """The origins where every commodity has a known target (horizon masks do the rest)."""
    return pooled.subset(np.flatnonzero(pooled.trainable))
