"""Walk-forward backtest: refit every model on each expanding training fold and
predict the fold after the gap."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from cbi_toolkit.compute import in_worker
from cbi_toolkit.dataset import Samples
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.spec import Spec
from cbi_toolkit.walkforward import walk_forward

log = logging.getLogger(__name__)


def labelled_samples(samples: Samples) -> Samples:
    """The origins with at least one known target: every head trains (and is scored) on
    the origins whose own target is known (a horizon mask), so a 12m head does not cut
    the 1w head's history a year short."""
    return samples.subset(np.flatnonzero(samples.trainable))


@dataclass
class _Group:
    """One refit: the models fitted on fold ``base``'s training rows predict ``folds``."""

    base: int
    folds: list[int]


def _fit_group(models: dict[str, Pipeline], samples: Samples, folds: list, group: _Group,
               checkpoint_dir: Path | None, previous: dict[str, Pipeline] | None = None,
               warm_epochs: int | None = None, keep: bool = False, worker: dict | None = None,
               ) -> tuple[dict[int, list[FoldPrediction]], dict[str, float], dict | None]:
    """Fit every model of one refit group and predict its folds; with ``keep`` also
    return the fitted models. ``worker``: the `worker_context` when in a worker."""
    in_worker(worker)
    fit_rows = folds[group.base].train
    fitted, seconds = {}, {}
    for name, proto in models.items():
        est = clone(proto)
        if previous and name in previous and hasattr(est[-1], "warm_start_from"):
            est[-1].warm_start_from(previous[name][-1], warm_epochs)
        if checkpoint_dir is not None:
            with_epoch_checkpoint(est, checkpoint_dir / f"fit-{group.base}-{name}")
        if worker is not None:
            label_epoch_log(est, worker["label"])
        start = time.perf_counter()
        # the net trains on the extra history too (`Spec.history`), its tail kept the target's
        est.fit(*samples.training_set(fit_rows, history=name == "net",
                                      valid_fraction=getattr(est[-1], "valid_fraction", None)))
        seconds[name] = time.perf_counter() - start
        fitted[name] = est
    preds: dict[int, list[FoldPrediction]] = {}
    for k in group.folds:
        test = folds[k].test
        preds[k] = [p for name, est in fitted.items()
                    for p in samples.fold_predictions(name, k, folds[k].role, test,
                                                      *predict_dist(est, samples.X[test]))]
    return preds, seconds, fitted if keep else None


def _indexed(i: int, fn: Callable, *args):
    """``(i, fn(*args))``: results that arrive out of order name their task."""
    return i, fn(*args)


def _fit_final(pipe: Pipeline, samples: Samples, checkpoint_dir: Path | None,
               worker: dict | None = None) -> Pipeline:
    in_worker(worker)
    if checkpoint_dir is not None:
        with_epoch_checkpoint(pipe, checkpoint_dir / "fit-final")
    if worker is not None:
        label_epoch_log(pipe, worker["label"])
    return pipe.fit(*samples.training_set(np.arange(len(samples)),
                                          valid_fraction=getattr(pipe[-1], "valid_fraction", None)))


def backtest(spec: Spec, samples: Samples, models: dict[str, Pipeline],
             on_fold: Callable[[int, int], None] | None = None,
             checkpoint_dir: Path | None = None, final: Pipeline | None = None,
             ) -> tuple[list[FoldPrediction], dict[str, list[float]], Pipeline | None]:
    """Out-of-sample predictions of every model on every fold, fit times (s), and
    ``final`` fitted on all of ``samples`` (or None when not given).

    ``samples`` must be labelled. Fold k trains on all origins up to the gap
    before its test block, so no training target overlaps a test origin.
    With ``validation.refit_every = r`` only folds 0, r, 2r, ... fit (fit time
    0 is recorded for the others, which the last fitted models predict). With
    ``validation.warm_start`` a network starts from the previous fit's weights
    (at most ``validation.warm_epochs`` epochs) instead of a fresh initialisation.

    The refits and the final fit are independent: ``training.n_jobs`` worker
    processes (one torch thread each), or the Dask cluster at
    ``training.scheduler``, run them at once, largest first; a fixed seed gives
    the same predictions as one process with one thread. A warm-started
    backtest chains its folds and runs in this process.

    With ``checkpoint_dir``, a finished fold's predictions are saved there and
    a fold already saved is loaded instead of refitted; a skorch net inside a
    fit checkpoints every epoch (see `cbi_toolkit.checkpoint`), so a run
    killed part-way resumes where it stopped with the same result.
    """
    import joblib

    from cbi_toolkit.checkpoint import load_fold, save_fold
    from cbi_toolkit.compute import execution, resolve_jobs, worker_context

    folds = walk_forward(spec, len(samples), samples.dates).folds(len(samples))
    refit_every = getattr(spec.validation, "refit_every", 1)
    warm = getattr(spec.validation, "warm_start", False)
    groups = [_Group(b, list(range(b, min(b + refit_every, len(folds)))))
              for b in range(0, len(folds), refit_every)]
    preds: dict[int, list[FoldPrediction]] = {}
    seconds: dict[int, dict[str, float]] = {}
    # warm_start chains each fold's net to the previous fold's weights, which the fold
    # checkpoint does not hold: a resumed warm-started backtest refits from fold 0
    if checkpoint_dir is not None and not warm:
        for k in range(len(folds)):
            if (done := load_fold(checkpoint_dir, k)) is not None:
                log.info("fold %d/%d: loaded from its checkpoint", k + 1, len(folds))
                preds[k], seconds[k] = done
    todo = [g for g in groups if any(k not in preds for k in g.folds)]
    for g in todo:
        d, train = samples.dates, folds[g.base].train
        first, last = folds[g.folds[0]].test, folds[g.folds[-1]].test
        log.info("fold %s/%d (%s): train %s..%s (%d), test %s..%s (%d), gap %d",
                 "-".join(dict.fromkeys([str(g.folds[0] + 1), str(g.folds[-1] + 1)])), len(folds),
                 folds[g.base].role, f"{d[train[0]]:%Y-%m-%d}", f"{d[train[-1]]:%Y-%m-%d}",
                 len(train), f"{d[first[0]]:%Y-%m-%d}", f"{d[last[-1]]:%Y-%m-%d}",
                 sum(len(folds[k].test) for k in g.folds), spec.gap)
    done_count = len(folds) - sum(len(g.folds) for g in todo)

    def finish(g: _Group, result) -> None:
        nonlocal done_count
        group_preds, group_seconds, _ = result
        for k in g.folds:
            preds[k] = group_preds[k]
            seconds[k] = group_seconds if k == g.base else dict.fromkeys(group_seconds, 0.0)
            if checkpoint_dir is not None:
                save_fold(checkpoint_dir, k, preds[k], seconds[k])
        if checkpoint_dir is not None:
            for name in models:
                shutil.rmtree(checkpoint_dir / f"fit-{g.base}-{name}", ignore_errors=True)
        done_count += len(g.folds)
        if on_fold:
            on_fold(done_count - 1, len(folds))

    fitted_final = None
    # largest training set first, so the last to start is a short one
    tasks = [("fold", g) for g in sorted(todo, key=lambda g: -len(folds[g.base].train))]
    if final is not None:
        tasks.insert(0, ("final", None))
    n_jobs = 1 if warm else resolve_jobs(spec.training.n_jobs, len(tasks))
    if n_jobs == 1 and not spec.training.scheduler:  # in this process, in fold order
        previous = None
        for g in todo if not warm else groups:
            result = _fit_group(models, samples, folds, g, checkpoint_dir, previous,
                                getattr(spec.validation, "warm_epochs", None), keep=warm)
            finish(g, result)
            previous = result[2]
        if final is not None:
            fitted_final = _fit_final(final, samples, checkpoint_dir)
    else:
        with execution(n_jobs, spec.training.scheduler) as (jobs, _):
            calls = [joblib.delayed(_indexed)(i, _fit_final, final, samples, checkpoint_dir,
                                              worker_context("final fit"))
                     if kind == "final" else
                     joblib.delayed(_indexed)(i, _fit_group, models, samples, folds, g,
                                              checkpoint_dir, None, None, False,
                                              worker_context(f"fold {g.base + 1}"))
                     for i, (kind, g) in enumerate(tasks)]
            for i, result in joblib.Parallel(n_jobs=jobs, return_as="generator_unordered")(calls):
                kind, g = tasks[i]
                if kind == "final":
                    fitted_final = result
                else:
                    finish(g, result)
    fit_seconds = {name: [seconds[k][name] for k in range(len(folds))] for name in models}
    out = [p for k in range(len(folds)) for p in preds[k]]
    return out, fit_seconds, fitted_final


def label_epoch_log(est: Pipeline, label: str) -> None:
    """Prefix each line of the net's epoch table with ``label``, so the tables of fits
    running side by side can be told apart."""
    from skorch import NeuralNet

    step, last = est.steps[-1]
    if isinstance(last, NeuralNet) and last.verbose:
        names = {name for name, _ in last.get_default_callbacks()} & {"print_log", "early_stopping"}
        est.set_params(**{f"{step}__callbacks__{name}__sink": _LabelledPrint(label)
                          for name in names})


class _LabelledPrint:
    def __init__(self, label: str):
        self.label = label

    def __call__(self, text: str) -> None:
        print("\n".join(f"[{self.label}] {line}" for line in str(text).splitlines()), flush=True)


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
