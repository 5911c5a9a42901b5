"""The spec: a YAML file validated into typed objects.

`load_spec(path)` reads YAML with a safe loader, resolves `extends:` chains
(deep merge of mappings, lists replaced), validates with pydantic and turns
every failure into a one-line `SpecError` naming the file, the key path, the
YAML line where it has one, and what is allowed.
"""

from __future__ import annotations

import difflib
import json
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cbi_toolkit.errors import SpecError, safe_text
from cbi_toolkit.features.params import PARAMS as FEATURES
from cbi_toolkit.features.params import validate_feature_params
from cbi_toolkit.sinks.config import DuckDBSinkConfig, SinkConfig
from cbi_toolkit.sources.config import SourceConfig
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.targets import HORIZONS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class LossWeights(_Strict):
    nll: float = Field(1.0, ge=0)
    mae: float = Field(0.0, ge=0)
    direction: float = Field(0.0, ge=0)


#: the largest net a spec may ask for (the design net, 256 x 3, is 1.6 M)
MAX_WEIGHTS = 50_000_000


class ModelConfig(_Strict):
    hidden_dim: int = Field(256, gt=0, le=2048)
    num_layers: int = Field(3, gt=0, le=8)
    num_heads: int = Field(8, gt=0, le=64)
    dropout: float = Field(0.1, ge=0, lt=1)
    attention: bool = True
    ensemble: int = Field(
        1, ge=1, le=16, description="independently initialised nets trained side by side on the "
        "same batches and averaged (mean; the mixture's sigma); k costs k times the training")
    loss: LossWeights = LossWeights()
    target_scale: Literal["none", "volatility"] = Field(
        "none", description="volatility: the net learns each forward log return divided by the "
        "trailing 63-session volatility at its origin x sqrt(h) and scales its mean and sigma "
        "back, so volatile years weigh no more in the loss than calm ones; none: the log "
        "returns themselves")

    @model_validator(mode="after")
    def _bounded_size(self) -> ModelConfig:
        # an LSTM layer holds about 8 * hidden^2 weights; Adam keeps two more copies
        weights = 8 * self.hidden_dim ** 2 * self.num_layers * self.ensemble
        if weights > MAX_WEIGHTS:
            raise ValueError(f"hidden_dim {self.hidden_dim} x num_layers {self.num_layers} "
                             f"x ensemble {self.ensemble} is about {weights / 1e6:.0f} M weights "
                             f"(at most {MAX_WEIGHTS / 1e6:.0f} M); use a smaller net")
        return self

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelConfig:
        if self.attention and self.hidden_dim % self.num_heads:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be a multiple of num_heads ({self.num_heads})"
            )
        return self


class TrainingConfig(_Strict):
    batch_size: int = Field(32, gt=0, le=8192)
    lr: float = Field(0.001, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    max_epochs: int = Field(100, gt=0, le=100_000)
    patience: int = Field(10, gt=0, le=100_000)
    grad_clip: float = Field(1.0, gt=0)
    lr_schedule: Literal["plateau", "cosine"] = Field(
        "plateau", description="plateau: linear warm-up over warmup_steps optimizer steps, then the "
                               "rate halved after 2 epochs without a better validation loss; "
                               "cosine: warm-up over a warmup fraction of max_epochs, cosine to 0")
    warmup: float = Field(0.1, ge=0, lt=1, description="cosine schedule: warm-up fraction of all steps")
    warmup_steps: int = Field(25, ge=0, le=1_000_000,
                              description="plateau schedule: warm-up length in optimizer steps")
    stride: int = Field(1, gt=0, le=252, description="each epoch trains on every k-th training "
                        "origin from a random phase; the validation tail stays whole")
    bptt_steps: int | None = Field(
        None, gt=0, le=25_200, description="truncated backpropagation through time: gradients "
        "flow through the last k steps of each window only (the forward pass still reads the "
        "whole window); none: the whole window")
    valid_fraction: float = Field(0.1, gt=0, lt=0.5)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "fp32"
    threads: Literal["auto"] | int | None = Field(
        None, description="torch intra-op threads while training: a number, auto, or torch's default")
    seed: int = 0
    n_jobs: Literal["auto"] | int = Field(
        "auto", description="worker processes (one torch thread each) for the independent fits: "
                            "walk-forward refits and the final fit; auto: one per core; 1: in this "
                            "process with `threads` threads")
    scheduler: str | None = Field(
        None, description="a Dask scheduler address (tcp://host:8786): the fits run on its workers")

    @field_validator("n_jobs", "threads")
    @classmethod
    def _positive_count(cls, count: Any, info: ValidationInfo) -> Any:
        if isinstance(count, int) and count < 1:
            raise ValueError(f"{info.field_name} must be a positive integer or 'auto'")
        return count


class ValidationConfig(_Strict):
    n_splits: int = Field(5, ge=2, le=100)
    gap: int | None = Field(None, ge=0, le=2520,
                            description="trading days; default: the longest horizon")
    test_size: int | None = Field(None, gt=0, le=25_200,
                                  description="origins per test fold; default: sklearn's")
    warm_start: bool = Field(False, description="start each fold's net from the previous fold's weights")
    warm_epochs: int | None = Field(
        None, gt=0, description="max epochs of a warm-started fold; default: training.max_epochs")
    refit_every: int = Field(
        1, gt=0, description="refit every k-th fold; the folds between reuse the last fitted models")
    test_start: date | None = Field(
        None, description="first origin of the reported test span; the n_splits folds before it "
                          "select (combination weights, calibration, early stopping, grid search)")
    stride: int = Field(1, gt=0, description="score every k-th origin of each fold")


class CalibrationConfig(_Strict):
    """How the bands are calibrated (variance scale and conformal quantiles, for the model
    and every baseline alike; `cbi_toolkit.calibration`)."""

    mode: Literal["fixed", "online"] = Field(
        "online", description="fixed: fitted once on the selection folds; online: refitted at "
                              "every fold on every residual realised before its first origin")
    halflife: int | Literal["auto"] | None = Field(
        "auto", description="online only: recency half-life of the residuals' weights, in "
                            "sessions; auto: chosen per horizon on the selection folds; null: "
                            "every residual weighs the same")
    every: int | None = Field(
        5, description="online only: recalibrate every this many sessions inside a fold, "
                       "on the residuals realised by then (the model is still refitted once "
                       "a fold); null: once, at the fold's first origin")

    @field_validator("halflife")
    @classmethod
    def _positive_halflife(cls, halflife: Any) -> Any:
        if isinstance(halflife, int) and not 1 <= halflife <= 25_200:
            raise ValueError("halflife is a number of sessions from 1 to 25200, 'auto' or null")
        return halflife

    @field_validator("every")
    @classmethod
    def _positive_every(cls, every: int | None) -> int | None:
        if every is not None and not 1 <= every <= 2520:
            raise ValueError("every is a number of sessions from 1 to 2520, or null")
        return every

    @model_validator(mode="after")
    def _online_only(self) -> CalibrationConfig:
        if self.mode == "fixed" and "halflife" in self.model_fields_set and self.halflife != "auto":
            raise ValueError("halflife weighs the residuals of the online calibration; with "
                             "mode: fixed remove it (or set mode: online)")
        if self.mode == "fixed" and "every" in self.model_fields_set and self.every is not None:
            raise ValueError("every recalibrates the online calibration inside a fold; with "
                             "mode: fixed remove it (or set mode: online)")
        return self


class ForecastConfig(_Strict):
    intervals: Literal["gaussian", "conformal"] = "conformal"
    combine: bool = Field(
        True, description="forecast w*net + (1-w)*random walk with w and the sigma source chosen on "
                          "the selection folds; false: the net alone")
    calibration: CalibrationConfig = CalibrationConfig()


class HistoryConfig(_Strict):
    """Extra training history for the net: another real series of the target commodity
    (e.g. the Quandl second month back to 1959) whose windows train the net before the
    target's own data starts. Returns only: features from its own prices, targets its own
    forward log returns; never spliced into the target's price level, never in a
    validation tail or a scored fold."""

    source: FileSource = Field(..., description="a file source whose one column is named as "
                                                "the target, e.g. {path: zl/..._BO2_daily.csv, "
                                                "columns: {settle: zl}}")
    start: date | None = Field(None, description="first date of the history used")


class GateConfig(_Strict):
    """Thresholds a run must meet (on every horizon) before it writes forecasts."""

    max_mase: float | None = Field(None, gt=0, description="pooled MASE on the reported span")
    worse_p: float | None = Field(
        0.1, gt=0, le=1, description="fail when the random walk beats the model with a "
                                     "Diebold-Mariano p below this (absolute errors)")
    coverage_80: tuple[float, float] | None = (0.75, 0.85)
    coverage_95: tuple[float, float] | None = (0.90, 1.0)

    @field_validator("coverage_80", "coverage_95")
    @classmethod
    def _band(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0 <= band[0] <= band[1] <= 1:
            raise ValueError("a coverage band is [low, high] with 0 <= low <= high <= 1")
        return band


FeatureItem = str | dict[str, dict[str, Any] | None]

DEFAULT_FEATURES: list[FeatureItem] = list(FEATURES)


_CLI_FLAG = {"runs_dir": "--runs-dir", "sink.path": "--sink duckdb:///PATH", "output": "--output"}


#: names of `cbi_toolkit.models.baselines.BASELINES` (kept here so loading a spec
#: does not import torch; a test keeps the two in step)
BASELINE_NAMES = ("random_walk", "drift", "ridge", "vol_random_walk", "garch",
                  "auto_arima", "auto_ets")
DEFAULT_BASELINES = ["random_walk", "drift", "ridge", "vol_random_walk", "garch"]


def check_output_path(value: str, key: str) -> str:
    """Refuse an output path from a spec that would leave the working directory:
    absolute, ``~``, or with a ``..`` part. Paths given on the command line
    (``--runs-dir``, ``--sink``) are the explicit way to write elsewhere."""
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if (not value.strip() or value.startswith(("/", "~", "\\")) or ".." in parts
            or PureWindowsPath(value).drive):
        raise ValueError(f"{key} {value!r} would write outside the working directory; use a "
                         f"relative path without '..', or choose the place on the command line "
                         f"({_CLI_FLAG.get(key, '--' + key)})")
    try:
        base = Path.cwd().resolve()
        leads_out = not (base / value).resolve().is_relative_to(base)
    except (OSError, RuntimeError):  # no working directory, or a symlink loop: judged on use
        leads_out = False
    if leads_out:  # a symlink on the way leads out
        raise ValueError(f"{key} {value!r} leads outside the working directory through a "
                         f"symbolic link; remove the link, or choose the place on the command "
                         f"line ({_CLI_FLAG.get(key, '--' + key)})")
    return value


class Spec(_Strict):
    name: str = Field(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
                      description="letters, digits, _ . -; names the run folders")
    description: str = ""
    target: str = Field(..., min_length=1, description="series name of the price to forecast")
    data: list[SourceConfig] = Field(..., min_length=1)
    targets: list[str] | None = Field(
        None, description="several price series forecast by one pooled network "
                          "(docs/pooled.md); target is then the first of them")
    features: list[FeatureItem] = Field(default_factory=lambda: list(DEFAULT_FEATURES), min_length=1)
    horizons: list[str] = Field(default_factory=lambda: ["1m"], min_length=1)
    window: int = Field(252, gt=1, le=2520, description="trading days per sample (10 years at most)")
    max_gap_days: int = Field(
        10, gt=0, description="calendar days; a longer gap in the target is a data error"
    )
    end: date | None = Field(
        None, description="last target date the run uses (the frame stops there), e.g. where a "
                          "driver's data ends; default: the target's last date")
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    validation: ValidationConfig = ValidationConfig()
    forecast: ForecastConfig = ForecastConfig()
    gate: GateConfig = GateConfig()
    baselines: list[str] = Field(default_factory=lambda: list(DEFAULT_BASELINES))
    history: HistoryConfig | None = Field(
        None, description="extra training history for the net before the target's data "
                          "(features of the target's own prices only; drivers at the training "
                          "fold's mean)")
    sink: SinkConfig = Field(default_factory=DuckDBSinkConfig)
    runs_dir: str = "runs"

    @model_validator(mode="before")
    @classmethod
    def _target_from_targets(cls, doc: Any) -> Any:
        if isinstance(doc, dict) and isinstance(doc.get("targets"), list) and doc["targets"]:
            doc = {**doc, "target": doc["targets"][0]}
        return doc

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, targets: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if targets is None:
            return None
        if len(targets) < 2:
            raise ValueError(f"targets lists {len(targets)} series; a pooled model needs at "
                             "least two (for one, write target: NAME)")
        if len(set(targets)) != len(targets):
            raise ValueError(f"duplicate series in targets {targets}")
        sources = info.data.get("data")
        if sources is None:  # data itself is invalid: that error is reported
            return targets
        prices = [c for s in sources if s.role == "price" for c in s.columns.values()]
        for name in targets:
            if name not in prices:
                raise ValueError(f"{name!r} is not a price series named in data"
                                 f"{_did_you_mean(name, prices)}; price series: "
                                 f"{', '.join(prices)}")
        return targets

    @field_validator("runs_dir")
    @classmethod
    def _runs_dir_inside(cls, value: str) -> str:
        return check_output_path(value, "runs_dir")

    @field_validator("sink")
    @classmethod
    def _sink_path_inside(cls, sink: Any) -> Any:
        if getattr(sink, "kind", None) == "duckdb":
            check_output_path(sink.path, "sink.path")
        return sink

    @field_validator("horizons")
    @classmethod
    def _known_horizons(cls, horizons: list[str]) -> list[str]:
        for h in horizons:
            if h not in HORIZONS:
                raise ValueError(f"unknown horizon {h!r}; allowed: {', '.join(HORIZONS)}")
        if len(set(horizons)) != len(horizons):
            raise ValueError(f"duplicate horizons in {horizons}")
        return sorted(horizons, key=HORIZONS.__getitem__)

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in BASELINE_NAMES:
                raise ValueError(f"unknown baseline {name!r}{_did_you_mean(name, BASELINE_NAMES)}; "
                                 f"allowed: {', '.join(BASELINE_NAMES)}")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate baselines in {names}")
        if "random_walk" not in names:
            raise ValueError("baselines must include random_walk: every score is relative to it")
        return names

    @field_validator("features", mode="before")
    @classmethod
    def _known_features(cls, items: Any) -> Any:
        if not isinstance(items, list):
            return items  # the type check reports it
        seen = set()
        for i, item in enumerate(items):
            shape_ok = isinstance(item, str) or (
                isinstance(item, dict) and len(item) == 1
                and isinstance(next(iter(item.values())), dict | None))
            if not shape_ok:
                raise ValueError(f"item {i} ({item!r}): a feature is a name or a one-key mapping "
                                 "name: {param: value}, e.g. rsi: {window: 14}")
            name = item if isinstance(item, str) else next(iter(item))
            if name not in FEATURES:
                raise ValueError(f"unknown feature {name!r}{_did_you_mean(name, FEATURES)}; "
                                 f"allowed: {', '.join(FEATURES)}")
            if name in seen:
                raise ValueError(f"feature {name!r} is listed twice")
            seen.add(name)
            params = {} if isinstance(item, str) else (item[name] or {})
            validate_feature_params(name, params)
        return items

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        names = [col for src in self.data for col in src.columns.values()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"series names must be unique across data; repeated: {dupes}")
        if self.target not in names:
            raise ValueError(f"target {self.target!r} is not a series named in data "
                             f"(series: {', '.join(names)})")
        if self.history is not None and list(self.history.source.columns.values()) != [self.target]:
            raise ValueError(f"history.source.columns must name one series, the target "
                             f"{self.target!r} (e.g. {{settle: {self.target}}})")
        if self.validation.gap is not None and self.validation.gap < self.max_horizon:
            raise ValueError(f"validation.gap ({self.validation.gap}) must be at least the "
                             f"longest horizon ({self.max_horizon} trading days)")
        return self

    # -- derived values -------------------------------------------------
    @property
    def commodities(self) -> list[str]:
        """The series the spec forecasts: ``targets``, or ``[target]``."""
        return list(self.targets) if self.targets else [self.target]

    def for_target(self, series: str) -> Spec:
        """The single-commodity spec of one of ``targets``: same data, features, model,
        folds and name, with ``series`` as its target."""
        if series not in self.commodities:
            raise ValueError(f"{series!r} is not one of the spec's targets {self.commodities}")
        return self.model_copy(update={"target": series, "targets": None})

    @property
    def horizon_days(self) -> list[int]:
        return [HORIZONS[h] for h in self.horizons]

    @property
    def max_horizon(self) -> int:
        return max(self.horizon_days)

    @property
    def gap(self) -> int:
        return self.validation.gap if self.validation.gap is not None else self.max_horizon

    def feature_items(self) -> list[tuple[str, dict[str, Any]]]:
        """Features as (name, params) pairs."""
        out = []
        for item in self.features:
            if isinstance(item, str):
                out.append((item, {}))
            else:
                name, params = next(iter(item.items()))
                out.append((name, dict(params or {})))
        return out

    def source_for(self, series: str) -> SourceConfig:
        return next(s for s in self.data if series in s.columns.values())

    def to_yaml(self) -> str:
        """The fully resolved spec (no `extends:`), as YAML."""
        return yaml.safe_dump(json.loads(self.model_dump_json()), sort_keys=False)


# ---------------------------------------------------------------------------
# loading

#: Spec parts that change nothing a run computes: where it writes, what it says, where its
#: fits run.
NOT_FINGERPRINTED: dict[str, Any] = {"sink": True, "runs_dir": True, "description": True,
                                     "training": {"n_jobs", "scheduler"}}


def spec_fingerprint(spec: Spec, exclude: set[str] | dict[str, Any] | None = None) -> str:
    """sha256 (hex) of the resolved spec less ``exclude`` (pydantic's exclude: a set of
    sections or a nested mapping; default `NOT_FINGERPRINTED`): the one fingerprint of a
    spec (a run's model version, a search variant's hash, the search's sample groups).

    Keys left at their defaults are not part of it, so a release that adds a spec key
    leaves the fingerprints of existing specs, and so their saved runs, valid."""
    from cbi_toolkit.storage import json_sha256

    exclude = NOT_FINGERPRINTED if exclude is None else exclude
    return json_sha256(json.loads(spec.model_dump_json(exclude=exclude, exclude_defaults=True)))


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read, resolve `extends:` and validate a spec file.

    `overrides` maps dotted key paths (``model.hidden_dim``) to values applied
    after `extends:` resolution, before validation.
    """
    path = Path(path)
    doc, lines = resolve_spec_file(path)
    doc.pop("search", None)  # a grid over this spec, read by cbi-grid (docs/search.md)
    for key, value in (overrides or {}).items():
        set_path(doc, key, value)
    doc.setdefault("name", path.stem)
    return validate_spec(doc, source=str(path), lines=lines)


def resolve_spec_file(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """The spec file's mapping with `extends:` resolved, not yet validated, and
    the YAML line of every key path (for error messages)."""
    return _resolve(Path(path), chain=())


def validate_spec(doc: dict[str, Any], source: str = "<spec>",
                  lines: dict[tuple, int] | None = None) -> Spec:
    """Validate a plain mapping into a Spec, raising a one-line SpecError."""
    try:
        return Spec.model_validate(doc)
    except ValidationError as exc:
        raise SpecError(_format_error(exc, source, lines or {})) from None


#: bounds on what a spec file may ask of the parser (each a one-line SpecError)
MAX_SPEC_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 50_000  # after alias expansion: a "billion laughs" file is refused, not expanded
MAX_EXTENDS = 8


def _resolve(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[tuple, int]]:
    path = path.resolve() if path.exists() else path
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise SpecError(f"{chain[-1]}: extends: cycle {cycle}; remove one of the links")
    if len(chain) > MAX_EXTENDS:
        raise SpecError(f"{chain[-1]}: extends: chain longer than {MAX_EXTENDS} links; "
                        "merge some of the parents")
    where = f"{chain[-1]}: extends: " if chain else ""
    if chain and path.suffix.lower() not in (".yaml", ".yml"):
        raise SpecError(f"{where}{safe_text(str(path))} is not a .yaml or .yml file; a spec "
                        "extends another spec")
    if not path.is_file():
        raise SpecError(f"{where}spec file {safe_text(str(path))} not found; check the path")
    node, doc = _read_yaml(path, quiet=bool(chain))
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: a spec is a YAML mapping of keys, got {type(doc).__name__}")
    lines = _line_map(node)
    parent = doc.pop("extends", None)
    if parent is None:
        return doc, lines
    if not isinstance(parent, str):
        raise SpecError(f"{path}: extends: must be a file path, got {_short(parent)}")
    base, base_lines = _resolve(path.parent / parent, (*chain, path))
    return deep_merge(base, doc), {**base_lines, **lines}


#: libyaml's safe loader where PyYAML has it (ten times faster); same documents.
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, quiet: bool = False) -> tuple[yaml.Node | None, Any]:
    """The file's YAML node tree and document, within MAX_SPEC_BYTES, MAX_DEPTH and
    MAX_NODES, as UTF-8. ``quiet``: a parent file, whose text is never quoted."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES >> 10} KiB; a spec is a short "
                        "YAML file (put data in files under the data directory)")
    text = _decode(path, data)
    try:
        try:
            node, doc = _parse(text, path, _FAST_LOADER)
        except yaml.YAMLError:  # parsed again by the pure-Python loader, which words the error
            node, doc = _parse(text, path, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if quiet:  # the parent may be any file: name the line, never show its text
            problem = "not valid YAML"
        raise SpecError(f"{path}{line}: malformed YAML: {safe_text(problem)[:160]}; fix the "
                        "syntax") from None
    return node, doc


def _parse(text: str, path: Path, loader: type) -> tuple[yaml.Node | None, Any]:
    _check_shape(text, path, loader)
    node = yaml.compose(text, Loader=loader)
    _check_size(node, path)
    return node, yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader


def _decode(path: Path, data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{path}: the file is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: byte 0x{data[exc.start]:02x} at offset {exc.start} is not "
                        "UTF-8 (a Latin-1 or Windows-1252 file?); save the file as UTF-8") \
            from None


def _check_shape(text: str, path: Path, loader: type = yaml.SafeLoader) -> None:
    """Nesting depth from the event stream (the composer recurses; this does not)."""
    depth = 0
    for n, event in enumerate(yaml.parse(text, Loader=loader)):
        if n > 2 * MAX_NODES:
            raise SpecError(f"{path}: more than {MAX_NODES} values; a spec is a short file "
                            "(put data in files under the data directory)")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1
                raise SpecError(f"{path} (line {line}): nested deeper than {MAX_DEPTH} levels; "
                                "a spec needs a few")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_size(node: yaml.Node | None, path: Path) -> None:
    """Refuse a document that expands (through aliases) to more than MAX_NODES nodes."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in open_nodes:
            raise SpecError(f"{path} (line {n.start_mark.line + 1}): an alias refers to the "
                            "mapping or list it is in; write the value out")
        if id(n) in sizes:
            return sizes[id(n)]
        open_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        elif isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(v) for v in n.value)
        else:
            total = 1
        open_nodes.discard(id(n))
        sizes[id(n)] = total
        if total > MAX_NODES:
            raise SpecError(f"{path}: expands to more than {MAX_NODES} values (YAML aliases "
                            "repeated inside each other?); write the spec out plainly")
        return total

    if node is not None:
        size(node)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; any other value (lists included) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in nested mappings, creating mappings on the way."""
    *parents, leaf = dotted.split(".")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"key path {dotted!r}: {key!r} is not a mapping")
    node[leaf] = value


def _line_map(node: yaml.Node | None, prefix: tuple = ()) -> dict[tuple, int]:
    out: dict[tuple, int] = {}
    if node is None:
        return out
    out[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = (*prefix, key_node.value)
            out.update(_line_map(value_node, key))
            out[key] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_line_map(item, (*prefix, str(i))))
    return out


def _format_error(exc: ValidationError, source: str, lines: dict[tuple, int]) -> str:
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc, model = _walk(err["loc"])
    key = ".".join(loc) or "(top level)"
    line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
    where = f"{source}: {key}" + (f" (line {line})" if line else "")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        allowed = list(getattr(model, "model_fields", {}))
        msg = f"unknown key {loc[-1]!r}{_did_you_mean(loc[-1], allowed)}"
        if allowed:
            msg += f"; allowed: {', '.join(allowed)}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown kind {err['ctx']['tag']!r}; allowed: {err['ctx']['expected_tags']}"
    elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
        msg += f"; got {_short(err['input'])}"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{where}: {msg}{more}")


def one_line(text: str) -> str:
    """Keys and values from a spec may hold line breaks or terminal control codes; a
    message never does."""
    return safe_text(text)


def _walk(raw_loc: tuple) -> tuple[tuple[str, ...], Any]:
    """The key path of an error without pydantic's union tags, and the model
    whose fields the last key belongs to."""
    model: Any = Spec
    parent: Any = Spec
    out: list[str] = []
    for part in raw_loc:
        members = _union_members(model)
        if members and isinstance(part, str):
            tagged = next((m for m in members if _kind(m) == part), None)
            if tagged is not None:  # a discriminated union's tag, not a key
                model = tagged
                continue
        out.append(str(part))
        if isinstance(part, int):
            continue
        parent = model
        field = getattr(model, "model_fields", {}).get(part)
        model = _unwrap(field.annotation) if field is not None else None
    return tuple(out), parent


def _union_members(tp: Any) -> list[Any]:
    args = getattr(tp, "__args__", ())
    if getattr(tp, "__metadata__", None):  # Annotated[Union, Field(...)]
        args = getattr(args[0], "__args__", ())
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _kind(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    return field.default if field is not None else None


def _unwrap(tp: Any) -> Any:
    """list[X] -> X; Optional[Model] -> Model; anything else unchanged."""
    if getattr(tp, "__origin__", None) is list:
        return tp.__args__[0]
    members = _union_members(tp)
    if len(members) == 1 and not getattr(tp, "__metadata__", None):
        return members[0]
    return tp


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema of the spec, for editor autocompletion."""
    schema = Spec.model_json_schema()
    schema["properties"]["extends"] = {"type": "string", "description": "parent spec path"}
    return schema

