"""Spec variants as scikit-learn searches: nested pipeline params and a forecast scorer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ParameterGrid

from cbi_toolkit.errors import CbiError
from cbi_toolkit.evaluation import score
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.spec import Spec, spec_fingerprint

#: Metrics of `evaluation.score` the scorer reports per horizon.
METRICS = ("mae", "mape", "mase", "direction", "direction_n", "coverage_80", "coverage_95",
           "pinball_80", "pinball_95", "crps")
#: Spec parts that change neither the samples nor the folds (only the pipeline or nothing).
PIPELINE_KEYS = {"model", "training", "gate", "forecast", "sink", "runs_dir", "name", "description"}


# ---------------------------------------------------------------------------
# spec variants -> sklearn searches

def group_key(spec: Spec) -> str:
    """Equal for variants that share samples and folds."""
    return spec_fingerprint(spec, PIPELINE_KEYS)


def _plain_params(pipe) -> dict[str, Any]:
    """Pipeline parameters with plain values (the ones a spec sets)."""
    out = {}
    for key, value in pipe.get_params(deep=True).items():
        if "callbacks__" in key or key.endswith("_params_to_validate"):
            continue  # derived from patience/warmup at fit time
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
        elif isinstance(value, tuple | list) and all(isinstance(v, int | float | str) for v in value):
            out[key] = tuple(value)
    return out


def param_grid_for(specs: Sequence[Spec]) -> list[dict[str, list[Any]]]:
    """GridSearchCV ``param_grid`` (one point per spec) over nested pipeline names,
    relative to ``build_pipeline(specs[0])``. All specs must share `group_key`."""
    from cbi_toolkit.pipeline import build_pipeline

    base = build_pipeline(specs[0], verbose=0)
    plain = [_plain_params(build_pipeline(s, verbose=0)) for s in specs]
    keys = sorted({k for p in plain for k in p if p[k] != plain[0].get(k)})
    grid = [{k: [p[k]] for k in keys} for p in plain]
    for spec, point, want in zip(specs, grid, plain, strict=True):
        got = _plain_params(clone(base).set_params(**{k: v[0] for k, v in point.items()}))
        if got != want:
            diff = sorted(k for k in want if got.get(k) != want[k])
            raise CbiError(f"variant {spec.name}: cannot express it as pipeline parameters "
                           f"({diff}); vary it as a data key instead")
    return grid


class ForecastScorer:
    """sklearn multi-metric scorer: every `evaluation.score` metric per horizon
    (``mase_1m``...), MASE against the random walk on the same test fold.

    The price at each test origin comes from ``price_by_row[X.ends]``: a window's
    origin row in the feature matrix identifies the origin."""

    def __init__(self, samples):
        n_rows = len(samples.X.values)
        self.price_by_row = np.full(n_rows, np.nan)
        self.price_by_row[samples.X.ends] = samples.price
        self.date_by_row = np.zeros(n_rows, dtype="datetime64[ns]")
        self.date_by_row[samples.X.ends] = samples.dates.values
        self.horizons = list(samples.horizons)

    def __call__(self, estimator, X, y) -> dict[str, float]:
        import torch

        from cbi_toolkit.pipeline import predict_dist

        price = self.price_by_row[X.ends]
        dates = pd.DatetimeIndex(self.date_by_row[X.ends])
        mu, sigma = predict_dist(estimator, X)
        y = np.asarray(y).reshape(len(price), -1)
        out: dict[str, float] = {}
        for j, horizon in enumerate(self.horizons):
            known = np.isfinite(y[:, j])  # horizon mask: near the data's end a long target is unknown
            if not known.any():
                out.update({f"{m}_{horizon}": float("nan") for m in METRICS})
                continue
            row = score(FoldPrediction("model", 0, horizon, y[known, j], mu[known, j],
                                       sigma[known, j], price[known], dates[known]))
            out.update({f"{m}_{horizon}": float(row[m]) for m in METRICS})
        out["torch_threads"] = float(torch.get_num_threads())
        return out


class ChunkedGridSearchCV(GridSearchCV):
    """GridSearchCV that evaluates its candidates ``chunk_size`` at a time (all folds
    of a chunk in parallel) and calls ``on_chunk(cv_results, first, count)`` after
    each chunk, so finished candidates can be stored before the search ends."""

    _parameter_constraints = {**GridSearchCV._parameter_constraints,
                              "chunk_size": "no_validation", "on_chunk": "no_validation"}

    def __init__(self, estimator, param_grid, *, scoring=None, n_jobs=None, refit=False, cv=None,
                 verbose=0, pre_dispatch="2*n_jobs", error_score="raise",
                 return_train_score=False, chunk_size=1, on_chunk=None):
        super().__init__(estimator, param_grid, scoring=scoring, n_jobs=n_jobs, refit=refit,
                         cv=cv, verbose=verbose, pre_dispatch=pre_dispatch,
                         error_score=error_score, return_train_score=return_train_score)
        self.chunk_size = chunk_size
        self.on_chunk = on_chunk

    def _run_search(self, evaluate_candidates):
        candidates = list(ParameterGrid(self.param_grid))
        step = max(1, int(self.chunk_size))
        for first in range(0, len(candidates), step):
            chunk = candidates[first:first + step]
            results = evaluate_candidates(chunk)
            if self.on_chunk is not None:
                self.on_chunk(results, first, len(chunk))
