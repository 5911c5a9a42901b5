"""The grid file: a YAML grid over spec key paths, expanded into validated variants."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sklearn.model_selection import ParameterGrid, ParameterSampler

from cbi_toolkit.errors import SpecError
from cbi_toolkit.search.scoring import METRICS
from cbi_toolkit.spec import (
    Spec,
    resolve_spec_file,
    set_path,
    spec_fingerprint,
    validate_spec,
)

#: Metrics where higher is better (default goal max); all others: lower is better.
HIGHER_IS_BETTER = {"direction"}
#: A variant's hash ignores where it is written and its name and description.
_NOT_HASHED = {"name", "description", "sink", "runs_dir"}


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
    n_jobs: int = Field(1, ge=-1, description="local worker processes; -1: all cores (not 0)")
    dask: DaskConfig | None = None
    output: str | None = Field(None, description="default: <runs_dir>/search/<name>")

    @field_validator("n_jobs")
    @classmethod
    def _some_workers(cls, value: int) -> int:
        if value == 0:
            raise ValueError("n_jobs 0 runs nothing; use 1 (in this process), N workers or -1 "
                             "(all cores)")
        return value

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
    return spec_fingerprint(spec, _NOT_HASHED)[:12]


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
