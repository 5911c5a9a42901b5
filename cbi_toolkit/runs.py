"""What `cbi-run` does, stage by stage; the CLI only parses and calls these."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml

from cbi_toolkit.data import DataReport, resolve_data_dir
from cbi_toolkit.dataset import Samples, load_samples
from cbi_toolkit.errors import CbiError, DataError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import Spec

log = logging.getLogger("cbi_toolkit")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.max_epochs=3"]`` -> ``{"training.max_epochs": 3}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CbiError(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_epochs=3")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CbiError(f"--set {key.strip()}: the value is not plain YAML ({problem}); "
                           "quote it or write a number, string, list or mapping") from None
    return out


def source_context(data_dir: str | None) -> SourceContext:
    resolved = resolve_data_dir(data_dir)
    return SourceContext(data_dir=resolved)


def data_summary(spec: Spec, report: DataReport, samples: Samples) -> str:
    labelled = int(samples.trainable.sum())
    lines = [
        f"spec {spec.name}: target {spec.target}, horizons {', '.join(spec.horizons)}, "
        f"window {spec.window}",
        f"aligned frame: {report.rows} trading days, {report.start:%Y-%m-%d} .. "
        f"{report.end:%Y-%m-%d}",
        "sources: " + ", ".join(f"{k} ({v} rows)" for k, v in report.sources.items()),
        f"features built: {len(samples.feature_names)} ({', '.join(samples.feature_names)})",
        f"samples: {len(samples)} origins {samples.dates[0]:%Y-%m-%d} .. "
        f"{samples.dates[-1]:%Y-%m-%d}; {labelled} labelled for training, "
        f"{len(samples) - labelled} awaiting their targets",
    ]
    dropped = report.dropped or {"(none)": 0}
    lines.append("rows dropped: " + "; ".join(f"{rule}: {n}" for rule, n in dropped.items()))
    return "\n".join(lines)


def prepare(spec: Spec, data_dir: str | None, allow_ended: bool = False
            ) -> tuple[DataReport, Samples]:
    ctx = source_context(data_dir)
    if ctx.data_dir is None and any(src.kind == "file" for src in spec.data):
        raise DataError("no data directory: pass --data-dir, set CBI_DATA_DIR, or place the "
                        "snapshot at ../shared/data beside the checkout")
    from cbi_toolkit.fetch import ensure_cached

    ensure_cached(spec, ctx, progress=log.info)  # live series without a file: fetched or refreshed
    report = DataReport()
    _, samples = load_samples(spec, ctx, report, allow_ended=allow_ended)
    return report, samples


def run_cli(spec: Spec, args: argparse.Namespace) -> int:
    if spec.targets:  # one pooled model for several commodities
        from cbi_toolkit.pooled_run import run_pooled_cli

        return run_pooled_cli(spec, args)
    report, samples = prepare(spec, args.data_dir)
    text = data_summary(spec, report, samples)
    print(text)
    if args.stage in ("data", "features"):
        return 0
    from cbi_toolkit.forecast_run import run_spec

    return run_spec(spec, samples, args, text)


def predict_cli(args: argparse.Namespace) -> int:
    from cbi_toolkit.forecast_run import predict_run

    return predict_run(args)


def evaluate_cli(args: argparse.Namespace) -> int:
    from cbi_toolkit.forecast_run import evaluate_run

    return evaluate_run(args)
