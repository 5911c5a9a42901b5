"""Walk-forward folds: which origins each fit trains on and which it is scored on.

Without ``validation.test_start`` the folds are scikit-learn's expanding
`TimeSeriesSplit` with a gap of at least the longest horizon, and every fold is
reported. With ``test_start`` (the peer protocol) the origins split in two:

* **selection folds**: ``n_splits`` expanding folds over the origins whose
  targets are all realised before ``test_start`` (the origin plus the gap lies
  before the first test origin). Every choice made from out-of-sample results
  (combination weights, sigma source, calibration, grid search) is made here.
* **test folds**: consecutive blocks of ``test_size`` origins from
  ``test_start`` to the end, each fitted on every origin up to the gap before
  it (a refit every ``test_size`` origins on an expanding window). These are
  only reported.

``stride`` scores every k-th origin of a fold (the peers score every 5th);
training always uses every origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import TimeSeriesSplit

from cbi_toolkit.errors import SpecError

SELECTION, TEST = "selection", "test"
#: test fold length when ``test_start`` is set and ``test_size`` is not: a quarter of sessions
DEFAULT_TEST_SIZE = 63


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    test: np.ndarray
    role: str  # SELECTION or TEST


class WalkForward:
    """The folds of a spec over ``n`` origins dated ``dates`` (oldest first).

    Also a scikit-learn CV splitter: ``split`` yields the folds of ``part``
    (``"all"``, ``"selection"`` or ``"test"``), so ``GridSearchCV(cv=...)``
    with ``part="selection"`` never sees the test span.
    """

    def __init__(self, n_splits: int, gap: int, test_size: int | None = None,
                 test_start: pd.Timestamp | None = None, stride: int = 1,
                 dates: pd.DatetimeIndex | None = None, part: str = "all"):
        self.n_splits, self.gap, self.test_size = n_splits, gap, test_size
        self.test_start, self.stride, self.dates, self.part = test_start, stride, dates, part

    def folds(self, n: int) -> list[Fold]:
        if self.test_start is None:
            splitter = TimeSeriesSplit(n_splits=self.n_splits, gap=self.gap,
                                       test_size=self.test_size)
            return [Fold(train, test[::self.stride], TEST)
                    for train, test in splitter.split(np.zeros(n))]
        if self.dates is None or len(self.dates) != n:
            raise ValueError("validation.test_start needs the origin dates of the samples")
        first_test = int(np.searchsorted(self.dates, self.test_start))
        if first_test >= n:
            raise SpecError(f"validation.test_start {self.test_start:%Y-%m-%d} is after the last "
                            f"labelled origin ({self.dates[-1]:%Y-%m-%d}); choose an earlier date")
        selectable = first_test - self.gap  # origins whose targets are realised before test_start
        size = self.test_size or DEFAULT_TEST_SIZE
        min_train = self.gap + 2
        if selectable < (self.n_splits + 1) + self.gap + min_train:
            raise SpecError(f"validation.test_start {self.test_start:%Y-%m-%d} leaves {max(0, selectable)} "
                            f"origins before it for {self.n_splits} selection folds; choose a later "
                            "test_start or fewer validation.n_splits")
        selection = TimeSeriesSplit(n_splits=self.n_splits, gap=self.gap)
        folds = [Fold(train, test[::self.stride], SELECTION)
                 for train, test in selection.split(np.zeros(selectable))]
        for start in range(first_test, n, size):
            test = np.arange(start, min(start + size, n))
            folds.append(Fold(np.arange(0, start - self.gap), test[::self.stride], TEST))
        return folds

    # -- scikit-learn splitter protocol ---------------------------------
    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # noqa: ARG002
        # without test_start there is no split: every fold both selects and reports
        for fold in self.folds(len(X)):
            if self.part == "all" or self.test_start is None or fold.role == self.part:
                yield fold.train, fold.test

    def get_n_splits(self, X=None, y=None, groups=None) -> int:  # noqa: ARG002
        if X is None:
            return self.n_splits
        return sum(1 for _ in self.split(X))


def walk_forward(spec, n_samples: int | None = None, dates: pd.DatetimeIndex | None = None,
                 part: str = "all") -> WalkForward:
    """The spec's folds. ``gap`` counts samples; origins are consecutive trading
    days, so it is at least that many trading days."""
    v = spec.validation
    test_size = v.test_size
    if v.test_start is None and test_size is None and n_samples is not None:
        test_size = max(1, (n_samples - spec.gap) // (v.n_splits + 1))
    start = pd.Timestamp(v.test_start) if v.test_start is not None else None
    return WalkForward(v.n_splits, spec.gap, test_size, start, v.stride, dates, part)
