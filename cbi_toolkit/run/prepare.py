"""The data stage of a run: the spec's sources (fetched where live) -> the aligned frame ->
samples, and the summary of what was loaded."""

from __future__ import annotations

import logging

from cbi_toolkit.data import DataReport, resolve_data_dir
from cbi_toolkit.dataset import Samples, load_samples
from cbi_toolkit.errors import DataError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import Spec

log = logging.getLogger("cbi_toolkit")


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
    from cbi_toolkit.sources.live import ensure_cached

    ensure_cached(spec, ctx, progress=log.info)  # live series without a file: fetched or refreshed
    report = DataReport()
    _, samples = load_samples(spec, ctx, report, allow_ended=allow_ended)
    return report, samples
