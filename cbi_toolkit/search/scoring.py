"""Spec variants as scikit-learn searches: nested pipeline params and a forecast scorer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ParameterGrid

from cbi_toolkit.errors import CbiError
from cbi_toolkit.evaluation import dm_lags, score
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.significance import DMResult, diebold_mariano_pooled, dm_moments
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


#: prefix of the scorer's Diebold-Mariano moments (`significance.dm_moments` as scalars)
DM_PREFIX = "dmx_"


class ForecastScorer:
    """sklearn multi-metric scorer: every `evaluation.score` metric per horizon
    (``mase_1m``...), MASE against the random walk on the same test fold, and the fold's
    Diebold-Mariano moments against the random walk (``dmx_*``; `pooled_dm` turns the
    folds' moments into the DM test over all of them, as the evaluation pools its folds).

    The price at each test origin comes from ``price_by_row[X.ends]``: a window's
    origin row in the feature matrix identifies the origin. ``stride``: the folds score
    every ``stride``-th origin (the spec's ``validation.stride``), which sets the DM lags."""

    def __init__(self, samples, stride: int = 1):
        n_rows = len(samples.X.values)
        self.price_by_row = np.full(n_rows, np.nan)
        self.price_by_row[samples.X.ends] = samples.price
        self.date_by_row = np.zeros(n_rows, dtype="datetime64[ns]")
        self.date_by_row[samples.X.ends] = samples.dates.values
        self.horizons = list(samples.horizons)
        self.stride = stride

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
            lags = dm_lags(horizon, self.stride)
            if not known.any():
                out.update({f"{m}_{horizon}": float("nan") for m in METRICS})
                out.update(_dm_scalars(np.array([]), lags, horizon))
                continue
            row = score(FoldPrediction("model", 0, horizon, y[known, j], mu[known, j],
                                       sigma[known, j], price[known], dates[known]))
            out.update({f"{m}_{horizon}": float(row[m]) for m in METRICS})
            p, actual = price[known], price[known] * np.exp(y[known, j])
            d = np.abs(actual - p * np.exp(mu[known, j])) - np.abs(actual - p)
            out.update(_dm_scalars(d, lags, horizon))
        out["torch_threads"] = float(torch.get_num_threads())
        return out


def _dm_scalars(d: np.ndarray, lags: int, horizon: str) -> dict[str, float]:
    """`dm_moments` of one fold as a fixed set of scalars (head and tail NaN-padded)."""
    m = dm_moments(d, lags)
    out = {f"{DM_PREFIX}n_{horizon}": m["n"], f"{DM_PREFIX}sum_{horizon}": m["sum"]}
    out.update({f"{DM_PREFIX}cross{k}_{horizon}": float(v) for k, v in enumerate(m["cross"])})
    for part in ("head", "tail"):
        padded = np.full(lags, np.nan)
        padded[:len(m[part])] = m[part]
        out.update({f"{DM_PREFIX}{part}{i}_{horizon}": float(v) for i, v in enumerate(padded)})
    return out


def pooled_dm(folds: list[dict[str, float]], horizon: str, stride: int) -> DMResult:
    """Diebold-Mariano test (absolute price errors, HLN, ceil(h / stride) - 1 lags) of the
    scored model against the random walk over every fold, from the scorer's ``dmx_*``
    values of each fold in time order: the same number `evaluation.summarise` gives
    for the same predictions."""
    lags = dm_lags(horizon, stride)
    parts = []
    for f in folds:
        n = int(f[f"{DM_PREFIX}n_{horizon}"])
        keep = min(n, lags)
        parts.append({
            "n": n, "sum": f[f"{DM_PREFIX}sum_{horizon}"],
            "cross": np.array([f[f"{DM_PREFIX}cross{k}_{horizon}"] for k in range(lags + 1)]),
            **{part: np.array([f[f"{DM_PREFIX}{part}{i}_{horizon}"] for i in range(keep)])
               for part in ("head", "tail")}})
    return diebold_mariano_pooled(parts, lags + 1, lags)


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
