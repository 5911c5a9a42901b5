"""Grid and random search over spec variants, on one machine or a Dask cluster.

A grid (a separate YAML file naming a ``base:`` spec, or a ``search:`` section
inside a spec) lists values for any dotted spec key path. Each combination is a
*variant*: the base spec with those overrides, validated like any spec.

The spec grid is translated to scikit-learn searches, not run by a second
implementation:

* variants are grouped by the part of the spec that shapes the samples and the
  folds (data, features, horizons, window, validation, ...); each group's
  samples are prepared once, and every group is cut to the origin dates that
  all groups share, so every variant is scored on the same walk-forward folds;
* inside a group, variants differ only in pipeline parameters: the difference
  between ``build_pipeline(variant)`` and ``build_pipeline(first variant)`` is
  a nested parameter dict (``net__module__hidden_dim``, ``net__lr``, ...), and
  the group runs as ``GridSearchCV(build_pipeline(spec), param_grid,
  cv=walk_forward(spec, n), scoring=ForecastScorer(...))``;
* `ForecastScorer` computes every metric of `evaluation.score` (MASE against
  the random walk included) on the test fold; it finds each test origin's
  price from the window's origin row (``X.ends``), so no custom splitter is
  needed.

Execution goes through joblib: ``n_jobs`` locally (loky, one torch/BLAS thread
per worker) or dask.distributed's joblib backend on a cluster (a worker plugin
sets one torch thread). Finished variants are appended to ``results.jsonl`` in
the search folder as they complete, keyed by the variant's hash and the
fingerprint of the evaluation origins, and skipped on re-run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, ParameterGrid, ParameterSampler

from cbi_toolkit.errors import CbiError, SpecError
from cbi_toolkit.evaluation import FoldPrediction, mae, score, walk_forward
from cbi_toolkit.spec import Spec, resolve_spec_file, set_path, validate_spec

log = logging.getLogger(__name__)

#: Metrics of `evaluation.score` the scorer reports per horizon.
METRICS = ("mae", "mape", "mase", "direction", "direction_n", "coverage_80", "coverage_95",
           "pinball_80", "pinball_95", "crps")
#: Metrics where higher is better (default goal max); all others: lower is better.
HIGHER_IS_BETTER = {"direction"}
RESULTS_FILE = "results.jsonl"
#: Spec parts that change neither the samples nor the folds (only the pipeline or nothing).
PIPELINE_KEYS = {"model", "training", "gate", "forecast", "sink", "runs_dir", "name", "description"}
_NOT_HASHED = {"name", "description", "sink", "runs_dir"}
STORE_VERSION = 1


# ---------------------------------------------------------------------------
# the grid file

class DaskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheduler: str = Field(..., min_length=1, description="e.g. tcp://host:8786")


class SearchConfig(BaseModel):
    """A grid file (with ``base:``) or the ``search:`` section of a spec (without)."""

    model_config = ConfigDict(extra="forbid")
    base: str | None = Field(None, description="base spec, relative to the grid file")
    name: str | None = None
    method: Literal["grid", "random"] = "grid"
    n: int | None = Field(None, gt=0, description="random: number of variants to sample")
    seed: int = 0
    grid: dict[str, list[Any]] = Field(..., description="spec key path -> values")
    set: dict[str, Any] = Field(default_factory=dict, description="overrides for every variant")
    metric: str = "mase"
    horizon: str | None = Field(None, description="default: the base spec's first horizon")
    goal: Literal["min", "max"] | None = None
    max_variants: int = Field(64, gt=0)
    n_jobs: int = 1
    dask: DaskConfig | None = None
    output: str | None = Field(None, description="default: <runs_dir>/search/<name>")

    @field_validator("output")
    @classmethod
    def _output_inside(cls, value: str | None) -> str | None:
        # a grid file may not write outside the working directory; --output may
        if value is not None:
            from cbi_toolkit.spec import check_output_path

            check_output_path(value, "output")
        return value

    @field_validator("grid")
    @classmethod
    def _not_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not grid:
            raise ValueError("the grid is empty; list at least one key path with values, "
                             "e.g. model.hidden_dim: [64, 128]")
        for key, values in grid.items():
            if not values:
                raise ValueError(f"{key}: no values; give a non-empty list")
        return grid

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
        return metric

    @property
    def greater_is_better(self) -> bool:
        return (self.goal or ("max" if self.metric in HIGHER_IS_BETTER else "min")) == "max"


@dataclass
class Variant:
    params: dict[str, Any]  # grid key path -> value
    spec: Spec

    @property
    def hash(self) -> str:
        return variant_hash(self.spec)

    def label(self) -> str:
        return " ".join(f"{k}={_compact(v)}" for k, v in self.params.items())


@dataclass
class Grid:
    config: SearchConfig
    source: str
    base_doc: dict[str, Any]
    base_lines: dict[tuple, int]
    base_source: str
    name: str
    variants: list[Variant] = field(default_factory=list)

    @property
    def base_spec(self) -> Spec:
        return self._spec({})

    @property
    def horizon(self) -> str:
        return self.config.horizon or self.base_spec.horizons[0]

    @property
    def n_total(self) -> int:
        return len(ParameterGrid(self.config.grid))

    @property
    def n_planned(self) -> int:
        if self.config.method == "random":
            return min(self.config.n or 0, self.n_total)
        return self.n_total

    def output_dir(self, override: str | None = None) -> Path:
        if override:
            return Path(override)
        if self.config.output:
            return Path(self.config.output)
        return Path(self.base_spec.runs_dir) / "search" / self.name

    def _spec(self, overrides: dict[str, Any]) -> Spec:
        doc = copy.deepcopy(self.base_doc)
        for key, value in {**self.config.set, **overrides}.items():
            set_path(doc, key, copy.deepcopy(value))
        doc.setdefault("name", Path(self.base_source).stem)
        return validate_spec(doc, source=self.base_source, lines=self.base_lines)


def variant_hash(spec: Spec) -> str:
    """Stable for the same resolved spec, whatever its name, sink or runs folder."""
    doc = json.loads(spec.model_dump_json(exclude=_NOT_HASHED))
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


def load_grid(path: str | Path, yes: bool = False) -> Grid:
    """Read a grid file or a spec with a ``search:`` section; expand and validate
    every variant. Raises a one-line SpecError before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"grid file {path} not found; check the path")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise SpecError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a grid is a YAML mapping with base: and grid:, or a spec "
                        "with a search: section")
    if "search" in raw:  # a spec with its own search section
        doc, lines = resolve_spec_file(path)
        section = doc.pop("search")
        if not isinstance(section, dict) or "base" in section:
            raise SpecError(f"{path}: search: must be a mapping (grid:, method:, ...) without base:")
        config = _validate_config(section, f"{path}: search")
        base_source = str(path)
    else:
        config = _validate_config(raw, str(path))
        if not config.base:
            raise SpecError(f"{path}: base: is missing; name the spec the grid varies "
                            "(relative to the grid file), or put a search: section in a spec")
        base_path = path.parent / config.base
        doc, lines = resolve_spec_file(base_path)
        doc.pop("search", None)
        base_source = str(base_path)
    grid = Grid(config, str(path), doc, lines, base_source, config.name or path.stem)
    try:
        grid._spec({})
    except SpecError as exc:
        raise SpecError(f"{path}: set: {exc}") from None
    if config.method == "random" and not config.n:
        raise SpecError(f"{path}: method random needs n: (how many variants to sample)")
    if grid.n_planned > config.max_variants and not yes:
        raise SpecError(f"{path}: the grid has {grid.n_planned} variants, more than max_variants "
                        f"{config.max_variants}; pass --yes (yes=True) to run them all, or "
                        "raise max_variants")
    grid.variants = [_make_variant(grid, point) for point in _points(config)]
    for v in grid.variants:
        if grid.horizon not in v.spec.horizons:
            raise SpecError(f"{path}: ranking horizon {grid.horizon!r} is not among the horizons "
                            f"{v.spec.horizons} of variant {v.label()}; set horizon:")
    seen: dict[str, Variant] = {}
    for v in grid.variants:
        if v.hash in seen:
            raise SpecError(f"{path}: variants {seen[v.hash].label()} and {v.label()} resolve to "
                            "the same spec; remove the duplicate value")
        seen[v.hash] = v
    return grid


def _validate_config(doc: dict[str, Any], where: str) -> SearchConfig:
    try:
        return SearchConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown key; allowed: {', '.join(SearchConfig.model_fields)}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "list_type":
            msg = f"values must be a list, got {err['input']!r}"
        raise SpecError(f"{where}: {loc}: {msg}") from None


def _points(config: SearchConfig) -> list[dict[str, Any]]:
    """Combinations in a stable order: sklearn's ParameterGrid / ParameterSampler."""
    keys = list(config.grid)
    if config.method == "random":
        n = min(config.n or 0, len(ParameterGrid(config.grid)))
        points = list(ParameterSampler(config.grid, n_iter=n, random_state=config.seed))
    else:
        points = list(ParameterGrid(config.grid))
    return [{k: p[k] for k in keys} for p in points]


def _make_variant(grid: Grid, point: dict[str, Any]) -> Variant:
    try:
        spec = grid._spec(point)
    except SpecError as exc:
        raise SpecError(f"{grid.source}: grid variant {_label(point)}: {exc}") from None
    spec = spec.model_copy(update={"name": f"{spec.name}-{variant_hash(spec)[:8]}"})
    return Variant(point, spec)


def _label(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={_compact(v)}" for k, v in point.items())


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else value


# ---------------------------------------------------------------------------
# spec variants -> sklearn searches

def group_key(spec: Spec) -> str:
    """Equal for variants that share samples and folds."""
    doc = json.loads(spec.model_dump_json(exclude=PIPELINE_KEYS))
    return json.dumps(doc, sort_keys=True)


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
            rw_mae = mae(price * np.exp(y[:, j]), price)  # the random walk predicts no change
            row = score(FoldPrediction("model", 0, horizon, y[:, j], mu[:, j], sigma[:, j],
                                       price, dates), rw_mae, None)
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


# ---------------------------------------------------------------------------
# the resume store

def load_store(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of ``results.jsonl`` by key; a line cut short by a kill is skipped."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d: unreadable (interrupted write?), ignored", path, n)
            continue
        if row.get("store_version") == STORE_VERSION:
            rows[row["key"]] = row
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (after a newline if a killed write left the last line open)."""
    with open(path, "a+b") as fh:
        fh.seek(0, 2)
        if fh.tell():
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(row, default=_json_default) + "\n").encode())
        fh.flush()
        with contextlib.suppress(OSError):
            import os

            os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------------------
# running

@dataclass
class _Group:
    variants: list[Variant]
    spec: Spec
    samples: Any = None


@dataclass
class SearchResult:
    leaderboard: pd.DataFrame
    output: Path
    best: Variant
    best_spec_path: Path
    ran: list[str]  # variant hashes evaluated in this call
    skipped: list[str]  # variant hashes taken from the store
    baselines: pd.DataFrame  # random walk, drift, ridge on the same folds


def prepare_groups(grid: Grid, data_dir: str | None) -> tuple[list[_Group], str, int]:
    """Samples per group, cut to the labelled origins all groups share.
    Returns the groups, the fingerprint of the evaluation origins and their count."""
    from cbi_toolkit.backtest import labelled_samples
    from cbi_toolkit.runs import prepare

    groups: dict[str, _Group] = {}
    for v in grid.variants:
        groups.setdefault(group_key(v.spec), _Group([], v.spec)).variants.append(v)
    for g in groups.values():
        _, samples = prepare(g.spec, data_dir)
        g.samples = labelled_samples(samples)
    common = None
    for g in groups.values():
        common = g.samples.dates if common is None else common.intersection(g.samples.dates)
    if common is None or len(common) == 0:
        raise CbiError(f"{grid.source}: the variants share no labelled origin dates")
    digest = hashlib.sha256()
    for g in groups.values():
        g.samples = g.samples.subset(np.flatnonzero(g.samples.dates.isin(common)))
        digest.update(g.samples.dates.asi8.tobytes())
        digest.update(np.ascontiguousarray(g.samples.price, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(g.samples.y, dtype=np.float64).tobytes())
    return list(groups.values()), digest.hexdigest()[:12], len(common)


@contextlib.contextmanager
def execution(n_jobs: int, scheduler: str | None) -> Iterator[tuple[int, int]]:
    """joblib backend for the search; yields (n_jobs, parallel slots).

    Local: loky with one BLAS/OpenMP thread per worker (``n_jobs`` 1: in
    process, torch set to one thread for the duration). Dask: the
    dask.distributed joblib backend on ``scheduler``; a worker plugin sets one
    torch thread on every worker."""
    import joblib
    import torch

    if scheduler:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover
            raise CbiError("--scheduler needs dask[distributed]: pip install 'dask[distributed]'"
                           ) from None
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise CbiError(f"cannot reach the Dask scheduler {scheduler} ({exc}); start it with "
                           "`dask scheduler` and workers with `dask worker ADDRESS`") from None
        try:
            client.register_plugin(TorchThreads(), name="cbi-torch-threads")
            slots = max(1, sum(client.nthreads().values()))
            with joblib.parallel_config(backend="dask", wait_for_workers_timeout=60):
                yield -1, slots
        finally:
            client.close()
        return
    if n_jobs == 1:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with joblib.parallel_config(backend="sequential"):
                yield 1, 1
        finally:
            torch.set_num_threads(saved)
        return
    slots = joblib.cpu_count() if n_jobs < 0 else n_jobs
    with joblib.parallel_config(backend="loky", n_jobs=n_jobs, inner_max_num_threads=1):
        yield n_jobs, slots


def _torch_threads_plugin_base():
    try:
        from distributed.diagnostics.plugin import WorkerPlugin
    except ImportError:  # pragma: no cover
        return object
    return WorkerPlugin


class TorchThreads(_torch_threads_plugin_base()):
    """Dask worker plugin: one torch thread per worker process."""

    def setup(self, worker):  # noqa: ARG002
        import torch

        torch.set_num_threads(1)


def run_search(grid: Grid, data_dir: str | None = None, *, output: str | Path | None = None,
               n_jobs: int | None = None, scheduler: str | None = None,
               on_variant: Callable[[dict[str, Any]], None] | None = None,
               quiet: bool = False) -> SearchResult:
    """Evaluate every variant not yet in the store; write the leaderboard and the best spec."""
    out = grid.output_dir(str(output) if output else None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CbiError(f"cannot create the search folder {out} ({exc.strerror})") from None
    store_path = out / RESULTS_FILE
    groups, fingerprint, n_origins = prepare_groups(grid, data_dir)
    store = load_store(store_path)
    say = (lambda *a: None) if quiet else print
    say(f"search {grid.name}: {len(grid.variants)} variants in {len(groups)} data group(s), "
        f"{n_origins} common labelled origins; store {store_path}")
    scheduler = scheduler or (grid.config.dask.scheduler if grid.config.dask else None)
    n_jobs = n_jobs if n_jobs is not None else grid.config.n_jobs
    ran: list[str] = []
    skipped: list[str] = []
    done = [0]
    with execution(n_jobs, scheduler) as (jobs, slots):
        for g in groups:
            todo = []
            for v in g.variants:
                if _key(v, fingerprint) in store:
                    skipped.append(v.hash)
                else:
                    todo.append(v)
            done[0] += len(g.variants) - len(todo)
            if not todo:
                continue
            search = make_search(g.spec, g.samples, [v.spec for v in todo], n_jobs=jobs,
                                 chunk_size=slots)
            n_splits = g.spec.validation.n_splits

            def on_chunk(results, first, count, todo=todo, g=g, n_splits=n_splits):
                for i in range(first, first + count):
                    v = todo[i]
                    row = _row(grid, v, results, i, n_splits, fingerprint, n_origins, g)
                    append_row(store_path, row)
                    store[row["key"]] = row
                    ran.append(v.hash)
                    done[0] += 1
                    say(f"[{done[0]}/{len(grid.variants)}] {v.hash} {v.label()}: "
                        f"{grid.config.metric} {row[f'{grid.config.metric}_{grid.horizon}']:.4f}"
                        f" (fit {row['fit_seconds']:.1f} s/fold)")
                    if on_variant is not None:
                        on_variant(row)

            search.set_params(on_chunk=on_chunk)
            search.fit(g.samples.X, g.samples.y)
    if skipped:
        say(f"skipped {len(skipped)} variant(s) already in the store")
    rows = [store[_key(v, fingerprint)] for v in grid.variants]
    board = leaderboard(grid, rows)
    refs = baseline_scores(grid, groups[0])
    best = next(v for v in grid.variants if v.hash == board.iloc[0]["variant"])
    best_path = write_outputs(grid, board, best, out, refs)
    return SearchResult(board, out, best, best_path, ran, skipped, refs)


def baseline_scores(grid: Grid, group: _Group) -> pd.DataFrame:
    """The baselines (random walk, drift, ridge) on the same folds and origins,
    scored by the same scorer: the reference for the leaderboard."""
    from sklearn.model_selection import cross_validate

    from cbi_toolkit.pipeline import build_baselines

    samples = group.samples
    cv = walk_forward(group.spec, len(samples))
    rows = []
    for name, pipe in build_baselines().items():
        res = cross_validate(pipe, samples.X, samples.y, cv=cv, scoring=ForecastScorer(samples),
                             n_jobs=1, error_score="raise")
        row: dict[str, Any] = {"model": name}
        for m in METRICS:
            key = f"test_{m}_{grid.horizon}"
            row[f"{m}_{grid.horizon}"] = float(np.mean(res[key]))
            if m != "direction_n":
                row[f"{m}_{grid.horizon}_std"] = float(np.std(res[key]))
        row["fit_seconds"] = float(np.mean(res["fit_time"]))
        rows.append(row)
    return pd.DataFrame(rows)


def make_search(spec: Spec, samples, variant_specs: Sequence[Spec], n_jobs: int = 1,
                chunk_size: int = 1) -> ChunkedGridSearchCV:
    """The sklearn search of variants that share ``samples``: GridSearchCV over
    the nested pipeline parameters in which they differ, on walk-forward folds."""
    from cbi_toolkit.pipeline import build_pipeline

    return ChunkedGridSearchCV(
        build_pipeline(variant_specs[0], verbose=0), param_grid_for(variant_specs),
        scoring=ForecastScorer(samples), cv=walk_forward(spec, len(samples)), n_jobs=n_jobs,
        refit=False, error_score="raise", chunk_size=chunk_size)


def _key(v: Variant, fingerprint: str) -> str:
    return f"{v.hash}-{fingerprint}"


def _row(grid: Grid, v: Variant, results: dict, i: int, n_splits: int, fingerprint: str,
         n_origins: int, g: _Group) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store_version": STORE_VERSION, "key": _key(v, fingerprint), "variant": v.hash,
        "evaluation": fingerprint, "spec_name": v.spec.name,
        "params": v.params, "pipeline_params": {k: _plain(val) for k, val in results["params"][i].items()},
        "folds": n_splits, "origins": n_origins,
        "first_origin": f"{g.samples.dates[0]:%Y-%m-%d}",
        "last_origin": f"{g.samples.dates[-1]:%Y-%m-%d}",
        "fit_seconds": float(results["mean_fit_time"][i]),
        "fit_seconds_std": float(results["std_fit_time"][i]),
        "score_seconds": float(results["mean_score_time"][i]),
        "finished_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    names = sorted({k.removeprefix("mean_test_") for k in results if k.startswith("mean_test_")})
    for name in names:
        row[name] = float(results[f"mean_test_{name}"][i])
        row[f"{name}_std"] = float(results[f"std_test_{name}"][i])
        row[f"{name}_folds"] = [float(results[f"split{k}_test_{name}"][i]) for k in range(n_splits)]
    return row


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------
# leaderboard and outputs

def leaderboard(grid: Grid, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per variant, best first: grid values, every metric's mean over folds
    and its fold spread (``_std``), fit time per fold."""
    metric = f"{grid.config.metric}_{grid.horizon}"
    records = []
    for r in rows:
        rec: dict[str, Any] = {"variant": r["variant"]}
        rec.update({k: _cell(v) for k, v in r["params"].items()})
        horizons = sorted({k.rsplit("_", 1)[1] for k in r if k.startswith("mase_")
                           and not k.endswith(("_std", "_folds"))},
                          key=lambda h: (h != grid.horizon, h))
        for h in horizons:
            for m in sorted(METRICS, key=lambda m: m != grid.config.metric):
                rec[f"{m}_{h}"] = r[f"{m}_{h}"]
                if m != "direction_n":
                    rec[f"{m}_{h}_std"] = r[f"{m}_{h}_std"]
        rec.update({k: r[k] for k in ("fit_seconds", "fit_seconds_std", "folds", "origins",
                                      "first_origin", "last_origin")})
        rec["torch_threads"] = int(r.get("torch_threads", 0))
        records.append(rec)
    board = pd.DataFrame(records)
    board = board.sort_values([metric, "variant"], ascending=[not grid.config.greater_is_better,
                                                              True], kind="mergesort")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board.reset_index(drop=True)


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None \
        else json.dumps(value, separators=(",", ":"))


def format_leaderboard(grid: Grid, board: pd.DataFrame) -> str:
    """A compact table: rank, variant, grid values, the ranking metric ± fold spread,
    MAE, direction, 80% coverage, fit time."""
    h = grid.horizon
    cols = ["rank", "variant", *grid.config.grid]
    show = board[cols].copy()
    metric = grid.config.metric
    show[f"{metric} {h}"] = [f"{m:.4f} ± {s:.4f}" for m, s in
                             zip(board[f"{metric}_{h}"], board[f"{metric}_{h}_std"], strict=True)]
    for m in ("mase", "mae", "direction", "coverage_80", "crps"):
        if m != metric:
            show[m] = board[f"{m}_{h}"].map(lambda x: f"{x:.4f}")
    show["fit s/fold"] = board["fit_seconds"].map(lambda x: f"{x:.1f}")
    return show.to_string(index=False)


def write_outputs(grid: Grid, board: pd.DataFrame, best: Variant, out: Path,
                  baselines: pd.DataFrame) -> Path:
    board.to_csv(out / "leaderboard.csv", index=False)
    baselines.to_csv(out / "baselines.csv", index=False)
    h, metric = grid.horizon, grid.config.metric
    head = (f"# Leaderboard: {grid.name}\n\nBase spec `{grid.base_source}`, {len(board)} variants, "
            f"ranked by mean {metric} on {h} over {int(board['folds'].iloc[0])} walk-forward "
            f"folds ({'higher' if grid.config.greater_is_better else 'lower'} is better); "
            f"{int(board['origins'].iloc[0])} labelled origins {board['first_origin'].iloc[0]} .. "
            f"{board['last_origin'].iloc[0]}. `_std` is the spread over folds; fit_seconds per "
            "fold.\n\n")
    refs = ("\n## Baselines on the same folds\n\n"
            + baselines.to_markdown(index=False, floatfmt=".4f") + "\n")
    (out / "leaderboard.md").write_text(head + board.to_markdown(index=False, floatfmt=".4f")
                                        + "\n" + refs)
    spec = best.spec
    path = out / "best_spec.yaml"
    row = board.iloc[0]
    path.write_text(
        f"# Best of grid {grid.name} ({grid.source}) by mean {metric} on {h}: "
        f"{row[f'{metric}_{h}']:.4f} ± {row[f'{metric}_{h}_std']:.4f}\n"
        f"# variant {best.hash}: {best.label()}\n" + spec.to_yaml())
    return path


# ---------------------------------------------------------------------------
# cbi-grid

EPILOG = """examples:
  cbi-grid specs/grids/zl_1m_small.yaml                  run the grid, print and save the leaderboard
  cbi-grid specs/grids/zl_1m_small.yaml --n-jobs 4       four local worker processes
  cbi-grid specs/grids/zl_1m_small.yaml --scheduler tcp://host:8786   on a Dask cluster
  cbi-grid specs/grids/zl_1m_small.yaml --check          validate and list the variants only
  cbi-grid specs/grids/zl_1m_small.yaml --run-best       then run the best variant like cbi-run

Re-running resumes: variants already in <output>/results.jsonl are skipped.
exit codes: 0 ok, 2 bad input (grid, spec, data), 3 best variant failed its deploy gate"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cbi-grid", description="Grid or random search over spec "
                                "variants, ranked on the same walk-forward folds.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", help="grid YAML (base: + grid:), or a spec with a search: section")
    p.add_argument("--data-dir", help="data directory (default: $CBI_DATA_DIR, else "
                                      "../shared/data beside the checkout)")
    p.add_argument("--output", help="search folder (default: the grid's output:, else "
                                     "<runs_dir>/search/<grid name>)")
    p.add_argument("--n-jobs", type=int, help="local worker processes (default: the grid's "
                                              "n_jobs, 1); -1: all cores")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--yes", action="store_true", help="run even if the grid exceeds max_variants")
    p.add_argument("--check", action="store_true", help="validate the grid, list variants, exit")
    p.add_argument("--run-best", action="store_true", help="then run the best variant (cbi-run)")
    p.add_argument("--runs-dir", help="with --run-best: where the run folder goes")
    p.add_argument("--sink", help="with --run-best: override the spec's sink")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return _main(args)
    except CbiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; finished variants are stored, re-run the same command to resume",
              file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    grid = load_grid(args.grid, yes=args.yes)
    if args.check:
        print(f"{args.grid}: ok: {len(grid.variants)} variants of {grid.base_source} "
              f"({grid.config.method}), ranked by {grid.config.metric} on {grid.horizon}")
        for v in grid.variants:
            print(f"  {v.hash} {v.label()}")
        return 0
    start = time.perf_counter()
    result = run_search(grid, args.data_dir, output=args.output, n_jobs=args.n_jobs,
                        scheduler=args.scheduler, quiet=args.quiet)
    print(format_leaderboard(grid, result.leaderboard))
    h, metric = grid.horizon, grid.config.metric
    print("baselines on the same folds: " + ", ".join(
        f"{r['model']} {metric} {r[f'{metric}_{h}']:.4f}" for _, r in result.baselines.iterrows()))
    print(f"{len(result.ran)} evaluated, {len(result.skipped)} from the store, "
          f"{math.ceil(time.perf_counter() - start)} s; leaderboard: {result.output}/leaderboard.csv "
          f"and .md; best spec: {result.best_spec_path}")
    if not args.run_best:
        return 0
    from cbi_toolkit import cli, runs
    from cbi_toolkit.spec import load_spec

    run_argv = [str(result.best_spec_path)]
    for flag, value in (("--data-dir", args.data_dir), ("--runs-dir", args.runs_dir),
                        ("--sink", args.sink)):
        if value:
            run_argv += [flag, value]
    if args.quiet:
        run_argv.append("-q")
    run_args = cli.build_parser().parse_args(run_argv)
    return runs.run_cli(load_spec(result.best_spec_path), run_args)


if __name__ == "__main__":
    sys.exit(main())
