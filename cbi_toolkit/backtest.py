"""Walk-forward backtest: refit every model on each expanding training fold and
predict the fold after the gap."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from cbi_toolkit.dataset import Samples
from cbi_toolkit.evaluation import FoldPrediction, walk_forward
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.spec import Spec

log = logging.getLogger(__name__)


def labelled_samples(samples: Samples) -> Samples:
    return samples.subset(np.flatnonzero(samples.labelled))


def backtest(spec: Spec, samples: Samples, models: dict[str, Pipeline],
             on_fold: Callable[[int, int], None] | None = None,
             ) -> tuple[list[FoldPrediction], dict[str, list[float]]]:
    """Out-of-sample predictions of every model on every fold, and fit times (s).

    ``samples`` must be labelled. Fold k trains on all origins up to the gap
    before its test block, so no training target overlaps a test origin.
    """
    splitter = walk_forward(spec, len(samples))
    folds = list(splitter.split(np.zeros(len(samples))))
    preds: list[FoldPrediction] = []
    fit_seconds: dict[str, list[float]] = {name: [] for name in models}
    for k, (train, test) in enumerate(folds):
        d = samples.dates
        log.info("fold %d/%d: train %s..%s (%d), test %s..%s (%d), gap %d", k + 1, len(folds),
                 f"{d[train[0]]:%Y-%m-%d}", f"{d[train[-1]]:%Y-%m-%d}", len(train),
                 f"{d[test[0]]:%Y-%m-%d}", f"{d[test[-1]]:%Y-%m-%d}", len(test), spec.gap)
        for name, proto in models.items():
            est = clone(proto)
            start = time.perf_counter()
            est.fit(samples.X[train], samples.y[train])
            fit_seconds[name].append(time.perf_counter() - start)
            mu, sigma = predict_dist(est, samples.X[test])
            for j, horizon in enumerate(samples.horizons):
                preds.append(FoldPrediction(
                    model=name, fold=k, horizon=horizon, y=samples.y[test, j], mu=mu[:, j],
                    sigma=sigma[:, j], price=samples.price[test], dates=d[test]))
        if on_fold:
            on_fold(k, len(folds))
    return preds, fit_seconds
