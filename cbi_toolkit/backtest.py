"""Walk-forward backtest: refit every model on each expanding training fold and
predict the fold after the gap."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from cbi_toolkit.dataset import Samples
from cbi_toolkit.evaluation import FoldPrediction
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.spec import Spec
from cbi_toolkit.walkforward import walk_forward

log = logging.getLogger(__name__)


def labelled_samples(samples: Samples) -> Samples:
    """The origins with at least one known target: every head trains (and is scored) on
    the origins whose own target is known (a horizon mask), so a 12m head does not cut
    the 1w head's history a year short."""
    return samples.subset(np.flatnonzero(samples.trainable))


def backtest(spec: Spec, samples: Samples, models: dict[str, Pipeline],
             on_fold: Callable[[int, int], None] | None = None,
             checkpoint_dir: Path | None = None,
             ) -> tuple[list[FoldPrediction], dict[str, list[float]]]:
    """Out-of-sample predictions of every model on every fold, and fit times (s).

    ``samples`` must be labelled. Fold k trains on all origins up to the gap
    before its test block, so no training target overlaps a test origin.
    With ``validation.refit_every = r`` only folds 0, r, 2r, ... fit (fit time
    0 is recorded for the others, which the last fitted models predict). With
    ``validation.warm_start`` a network starts from the previous fit's weights
    (at most ``validation.warm_epochs`` epochs) instead of a fresh initialisation.

    With ``checkpoint_dir``, a finished fold's predictions are saved there and
    a fold already saved is loaded instead of refitted; a skorch net inside a
    fold checkpoints every epoch (see `cbi_toolkit.checkpoint`), so a run
    killed part-way resumes where it stopped with the same result.
    """
    from cbi_toolkit.checkpoint import load_fold, save_fold
    folds = walk_forward(spec, len(samples), samples.dates).folds(len(samples))
    preds: list[FoldPrediction] = []
    fit_seconds: dict[str, list[float]] = {name: [] for name in models}
    fitted: dict[str, Pipeline] = {}  # the last fitted pipeline of each model
    refit_every = getattr(spec.validation, "refit_every", 1)
    warm = getattr(spec.validation, "warm_start", False)
    warm_epochs = getattr(spec.validation, "warm_epochs", None)
    for k, fold in enumerate(folds):
        train, test, d = fold.train, fold.test, samples.dates
        # warm_start chains each fold's net to the previous fold's weights, which the fold
        # checkpoint does not hold: a resumed warm-started backtest refits from fold 0
        done = load_fold(checkpoint_dir, k) if checkpoint_dir is not None and not warm else None
        if done is not None:
            log.info("fold %d/%d: loaded from its checkpoint", k + 1, len(folds))
            preds.extend(done[0])
            for name in models:
                fit_seconds[name].append(done[1][name])
            if on_fold:
                on_fold(k, len(folds))
            continue
        fold_preds: list[FoldPrediction] = []
        fold_seconds: dict[str, float] = {}
        log.info("fold %d/%d (%s): train %s..%s (%d), test %s..%s (%d), gap %d", k + 1,
                 len(folds), fold.role, f"{d[train[0]]:%Y-%m-%d}", f"{d[train[-1]]:%Y-%m-%d}",
                 len(train), f"{d[test[0]]:%Y-%m-%d}", f"{d[test[-1]]:%Y-%m-%d}", len(test),
                 spec.gap)
        for name, proto in models.items():
            if k % refit_every == 0 or name not in fitted:
                # after folds loaded from checkpoints no model is fitted yet: fit the one an
                # uninterrupted run would use, on the training set of its refit fold
                base = k - k % refit_every
                est = clone(proto)
                if warm and name in fitted and hasattr(est[-1], "warm_start_from"):
                    est[-1].warm_start_from(fitted[name][-1], warm_epochs)
                if checkpoint_dir is not None:
                    with_epoch_checkpoint(est, checkpoint_dir / f"fit-{base}-{name}")
                start = time.perf_counter()
                fit_rows = folds[base].train
                est.fit(*samples.training_set(fit_rows, history=name == "net",
                                              valid_fraction=spec.training.valid_fraction))
                fold_seconds[name] = time.perf_counter() - start if base == k else 0.0
                fitted[name] = est
            else:  # refit_every > 1: the last fitted model (older data only) predicts
                est = fitted[name]
                fold_seconds[name] = 0.0
            mu, sigma = predict_dist(est, samples.X[test])
            for j, horizon in enumerate(samples.horizons):
                known = np.isfinite(samples.y[test, j])  # near the end a long horizon is unknown
                if not known.any():
                    continue
                at = test[known]
                fold_preds.append(FoldPrediction(
                    model=name, fold=k, horizon=horizon, y=samples.y[at, j], mu=mu[known, j],
                    sigma=sigma[known, j], price=samples.price[at], dates=d[at], role=fold.role))
        if checkpoint_dir is not None:
            save_fold(checkpoint_dir, k, fold_preds, fold_seconds)
            for name in models:
                shutil.rmtree(checkpoint_dir / f"fit-{k - k % refit_every}-{name}",
                              ignore_errors=True)
        preds.extend(fold_preds)
        for name, seconds in fold_seconds.items():
            fit_seconds[name].append(seconds)
        if on_fold:
            on_fold(k, len(folds))
    return preds, fit_seconds


def with_epoch_checkpoint(est: Pipeline, directory: Path) -> Pipeline:
    """Give the pipeline's skorch net (if it has one) a per-epoch checkpoint in ``directory``."""
    from skorch import NeuralNet

    from cbi_toolkit.checkpoint import EpochCheckpoint

    step, last = est.steps[-1] if isinstance(est, Pipeline) else (None, est)
    if isinstance(last, NeuralNet):
        callbacks = [c for c in (last.callbacks or []) if not (isinstance(c, tuple)
                                                              and c[0] == "checkpoint")]
        callbacks.append(("checkpoint", EpochCheckpoint(directory)))
        if step is None:
            last.set_params(callbacks=callbacks)
        else:
            est.set_params(**{f"{step}__callbacks": callbacks})
    return est
