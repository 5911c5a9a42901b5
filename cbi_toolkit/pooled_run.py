"""`cbi-run` on a spec with several ``targets``: the pooled walk-forward
(`cbi_toolkit.pooled`), a deploy gate per commodity, one final pooled fit, a forecast
per commodity keyed by its ``series``, the run folder and the sink.

The gate applies per commodity: the forecasts of those that pass are written; the
track record (backtest rows, actuals, skill and gate per horizon) of every commodity
is written either way. Exit 0 when every commodity passes (status ``done``), 3 when
any fails (status ``gate_failed``, naming the failures). The final pooled model is
saved in ``model/`` with each commodity's shipped combination and calibration, for
`cbi_toolkit.pooled_saved` (``--predict``, ``--evaluate``); ``--resume`` is for
single-commodity runs only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit import track_record
from cbi_toolkit.artifacts import save_pipeline
from cbi_toolkit.calibration import MODEL, NET, ShippedModel
from cbi_toolkit.checkpoint import data_digest
from cbi_toolkit.data import check_folds
from cbi_toolkit.errors import CbiError, DataError
from cbi_toolkit.evaluation import format_table
from cbi_toolkit.forecast import forecast_latest
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.pooled import (
    SINGLE,
    SINGLE_MODEL,
    PooledAssessment,
    assess_pooled,
    format_comparison,
)
from cbi_toolkit.pooled_dataset import PooledSamples, labelled_pooled, load_pooled_samples
from cbi_toolkit.progress import FoldProgress
from cbi_toolkit.report import plot_fan, write_report
from cbi_toolkit.run.folder import model_version, new_run_dir, set_status, spec_digest
from cbi_toolkit.run.gate import check_gate
from cbi_toolkit.run.options import RunEvents, RunOptions, RunResult
from cbi_toolkit.run.prepare import data_summary, source_context
from cbi_toolkit.run.publish import sink_for, write_evidence, write_sink
from cbi_toolkit.spec import Spec

log = logging.getLogger(__name__)


def prepare_pooled(spec: Spec, data_dir: str | None, allow_ended: bool = False
                   ) -> tuple[str, PooledSamples]:
    """Every target's samples on their shared origins, and the data summary per commodity
    (``allow_ended``: as `cbi_toolkit.run.prepare.prepare`'s, for scoring a saved model)."""
    ctx = source_context(data_dir)
    if ctx.data_dir is None and any(src.kind == "file" for src in spec.data):
        raise DataError("no data directory: pass --data-dir, set CBI_DATA_DIR, or place the "
                        "snapshot at ../shared/data beside the checkout")
    from cbi_toolkit.fetch import ensure_cached

    ensure_cached(spec, ctx, progress=log.info)
    reports, pooled = load_pooled_samples(spec, ctx, allow_ended=allow_ended)
    text = "\n\n".join(data_summary(spec.for_target(c), reports[c], pooled.members[c])
                       for c in pooled.commodities)
    text += (f"\n\npooled: {len(pooled)} shared origins {pooled.dates[0]:%Y-%m-%d} .. "
             f"{pooled.dates[-1]:%Y-%m-%d} of {', '.join(pooled.commodities)}")
    return text, pooled


def run_pooled_spec(spec: Spec, options: RunOptions, stage: str, events: RunEvents
                    ) -> RunResult:
    """`cbi_toolkit.run.stages.run` for a spec with ``targets``."""
    text, pooled = prepare_pooled(spec, options.data_dir)
    events.note(text)
    if stage in ("data", "features"):
        return RunResult("prepared")
    return run_pooled(spec, pooled, options, text, events)


class _Fixed:
    """The final pooled net's output for one commodity at the newest origin, as the
    ``predict_dist`` that `forecast_latest` asks of a serving model."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray):
        self.mu, self.sigma = mu, sigma

    def predict_dist(self, X):  # noqa: ARG002 - the output at the newest origin
        return self.mu, self.sigma


def run_pooled(spec: Spec, pooled: PooledSamples, options: RunOptions, data_text: str = "",
               events: RunEvents | None = None) -> RunResult:
    events = events or RunEvents()
    sink = sink_for(spec, options.sink)  # a bad --sink fails before anything is written
    from cbi_toolkit.sinks.resolve import preflight

    preflight(sink)
    labelled = labelled_pooled(pooled)
    check_folds(spec, labelled.dates)
    run_id, run_dir = new_run_dir(spec, options.runs_dir)
    (run_dir / "spec.yaml").write_text(spec.to_yaml())
    events.note(f"run {run_id} -> {run_dir}")
    set_status(run_dir, "running")
    try:
        return _stages(spec, pooled, labelled, options, data_text, run_id, run_dir, sink,
                       events)
    except CbiError as exc:
        set_status(run_dir, "failed", error=str(exc))
        raise
    except Exception as exc:
        set_status(run_dir, "failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        raise


def _stages(spec: Spec, pooled: PooledSamples, labelled: PooledSamples, options: RunOptions,
            data_text: str, run_id: str, run_dir: Path, sink, events: RunEvents) -> RunResult:
    verbose = 0 if options.quiet else 1
    version = model_version(spec)
    events.note(f"pooled walk-forward and the final pooled fit on {len(labelled)} labelled "
                f"origins ({labelled.dates[0]:%Y-%m-%d} .. {labelled.dates[-1]:%Y-%m-%d})")
    result = assess_pooled(spec, labelled, verbose, on_fold=FoldProgress(log, "pooled walk-forward"),
                           final=True)
    failures = {c: check_gate(spec.gate, a.summary, spec.forecast.intervals)
                for c, a in result.series.items()}
    for c, a in result.series.items():
        events.note(f"== {c}: pooled net ({NET}, shipped as {MODEL}) beside {SINGLE}, "
                    f"{SINGLE_MODEL} and the baselines")
        for horizon in spec.horizons:
            events.note(format_table(a.summary, horizon))
            events.note(a.combination_line(horizon))
    events.note(format_comparison(result.comparison))
    _write_metrics(run_dir, result, failures)

    shipping = {c: a.shipped() for c, a in result.series.items()}
    every = pooled_forecasts(result.final, pooled, shipping, spec.forecast.intervals, version,
                             run_id)
    created = every["created_at"].iloc[0]
    save_pipeline(result.final, run_dir / "model", meta={
        "spec": spec.name, "targets": spec.commodities, "model_version": version,
        "run_id": run_id, "horizons": pooled.horizons, "window": spec.window,
        "intervals": spec.forecast.intervals, "train_end": f"{labelled.dates[-1]:%Y-%m-%d}",
        "gate_passed": not any(failures.values()), "spec_digest": spec_digest(spec),
        "series": {c: {"feature_names": pooled.members[c].feature_names, **shipping[c].to_meta(),
                       "calibration_all": a.calibration_all(), "gate_passed": not failures[c],
                       "data_digest": data_digest(pooled.members[c])}
                   for c, a in result.series.items()}})
    record = {}
    for c, a in result.series.items():
        sub, frame = spec.for_target(c), every[every["series"] == c].reset_index(drop=True)
        rows = track_record.build(sub, options.data_dir, a.predictions, MODEL, a.summary,
                                  failures[c], version, run_id, created, a.calibrations)
        for name, table in rows.items():
            record[name] = pd.concat([record[name], table], ignore_index=True) \
                if name in record else table
        plots = [plot_fan(pd.Series(pooled.members[c].price, index=pooled.dates), frame,
                          run_dir / f"fan_chart_{c}.png")]
        write_report(run_dir / f"report_{c}.md", spec_name=spec.name, run_id=run_id,
                     model_version=version, summary=a.summary, forecasts=frame,
                     gate_failures=failures[c], data_summary=data_text,
                     intervals=spec.forecast.intervals, plots=plots,
                     notes={h: a.combination_line(h)
                            for h in spec.horizons})
    passed = [c for c in result.series if not failures[c]]
    shipped = every[every["series"].isin(passed)]
    shipped.to_csv(run_dir / "forecasts.csv", index=False)  # what the sink gets
    held = every[~every["series"].isin(passed)]
    if len(held):  # the forecasts the gate kept from the sink
        held.to_csv(run_dir / "forecasts_held.csv", index=False)
    track_record.save(run_dir, record)
    from cbi_toolkit.checkpoint import record_files

    record_files(run_dir, ["forecasts.csv", "metrics.json"])
    _write_overview(run_dir / "report.md", spec, run_id, version, result, failures)
    events.note(every[["series", "horizon", "origin_date", "target_date", "predicted_price",
                       "lower_80", "upper_80", "lower_95", "upper_95"]].to_string(index=False))
    held = [f"{c} {f}" for c, fs in failures.items() for f in fs]
    if held:
        events.note("deploy gate FAILED for " + ", ".join(c for c, f in failures.items() if f)
                    + "; their forecasts are not written (kept in forecasts_held.csv):\n  "
                    + "\n  ".join(held))
    if not passed:
        write_evidence(sink, record, events)
        set_status(run_dir, "gate_failed", failures=held)
        events.note(f"artifacts: {run_dir}")
        return RunResult("gate_failed", run_dir, every, held)
    n = write_sink(spec, options.sink, shipped, run_dir, events, sink, extra=record)
    events.note(f"forecasts written for {', '.join(passed)}; artifacts: {run_dir} (report.md, "
                "report_<series>.md, metrics.json/csv, comparison.csv, forecasts.csv, model/)")
    if held:  # as a single run whose gate fails, less the commodities that were written
        set_status(run_dir, "gate_failed", failures=held, written=passed, sink_rows=n)
        return RunResult("gate_failed", run_dir, every, held, n)
    return RunResult("done", run_dir, every, held, n)


def pooled_forecasts(pipe, pooled: PooledSamples, shipping: dict[str, ShippedModel],
                     intervals: str, version: str, run_id: str) -> pd.DataFrame:
    """Every commodity's forecast from the newest shared origin, keyed by ``series``:
    the pooled net's output for that commodity through its own shipped combination and
    calibration (`forecast_latest`), all stamped with one ``created_at``."""
    mu, sigma = predict_dist(pipe, pooled.X[[len(pooled) - 1]])
    created = pd.Timestamp.now(tz="UTC")
    return pd.concat([forecast_latest(_Fixed(mu[:, pooled.columns(c)], sigma[:, pooled.columns(c)]),
                                      pooled.members[c], intervals, shipping[c], version, run_id, c)
                      .assign(created_at=created) for c in pooled.commodities], ignore_index=True)


def _write_metrics(run_dir: Path, result: PooledAssessment, failures: dict[str, list[str]]
                   ) -> None:
    """metrics.csv / metrics_folds.csv with a series column, comparison.csv, metrics.json
    (per series as a single run's, and ``gate.passed``: some commodity may be written)."""
    tag = result.series
    pd.concat([a.summary.assign(series=c) for c, a in tag.items()]).to_csv(
        run_dir / "metrics.csv", index=False)
    pd.concat([a.folds.assign(series=c) for c, a in tag.items()]).to_csv(
        run_dir / "metrics_folds.csv", index=False)
    result.comparison.to_csv(run_dir / "comparison.csv", index=False)
    pd.DataFrame([{"series": c, "model": p.model, "fold": p.fold, "role": p.role,
                   "horizon": p.horizon, "origin_date": d, "price": pr, "y": y, "mu": m,
                   "sigma": s}
                  for c, a in tag.items() for p in a.predictions
                  for d, pr, y, m, s in zip(p.dates, p.price, p.y, p.mu, p.sigma, strict=True)]
                 ).to_csv(run_dir / "oos_predictions.csv", index=False)
    doc = {"series": {c: {
        "summary": a.summary.to_dict(orient="records"),
        "selection_summary": None if a.selection is None else a.selection.to_dict(
            orient="records"),
        "diebold_mariano": a.versus.to_dict(orient="records"), "combination": a.weights(),
        "gate": {"passed": not failures[c], "failures": failures[c]}} for c, a in tag.items()},
        "comparison": result.comparison.to_dict(orient="records"),
        "gate": {"passed": any(not f for f in failures.values()),
                 "failures": [f"{c} {f}" for c, fs in failures.items() for f in fs],
                 "written": [c for c, f in failures.items() if not f]}}
    (run_dir / "metrics.json").write_text(json.dumps(doc, indent=2, default=str))


def _write_overview(path: Path, spec: Spec, run_id: str, version: str,
                    result: PooledAssessment, failures: dict[str, list[str]]) -> None:
    lines = [f"# Run {run_id}", "", f"spec `{spec.name}` (pooled: {', '.join(spec.commodities)}), "
             f"model version `{version}`", "",
             "## Did pooling help?", "",
             "Per commodity, on the same folds and origins (the reported span): MASE against the "
             f"commodity's own random walk with the Diebold-Mariano p; `{MODEL}`/`{NET}` are the "
             f"pooled network shipped/raw, `{SINGLE_MODEL}`/`{SINGLE}` the commodity's own "
             "single-commodity network; the last column is the DM p of pooled against single "
             "(shipped / raw).", "", "```", format_comparison(result.comparison), "```", "",
             "## Deploy gate per commodity", ""]
    for c, fs in failures.items():
        lines.append(f"- {c}: " + ("passed, forecasts written" if not fs
                                    else "FAILED (not written): " + "; ".join(fs)))
    lines += ["", "Per commodity (metrics, forecast, fan chart): "
              + ", ".join(f"[{c}](report_{c}.md)" for c in result.series), ""]
    path.write_text("\n".join(lines))



def refuse_pooled_run(run_dir: str, flag: str) -> None:
    """``--resume`` continues a single-commodity run folder from its checkpoints; a
    pooled run keeps none, so it is refused by name instead of being taken for a run of
    its first target."""
    from cbi_toolkit.errors import ArtifactError
    from cbi_toolkit.spec import load_spec

    path = Path(run_dir) / "spec.yaml"
    try:
        spec = load_spec(path) if path.is_file() else None
    except CbiError:  # the command's own checks report it
        return
    if spec is not None and spec.targets:
        raise ArtifactError(f"{run_dir}: a pooled run ({', '.join(spec.targets)}); {flag} works "
                            "on single-commodity runs only; run `cbi-run SPEC` again (a finished "
                            "run: `cbi-run --sink-only RUN_DIR`, `--predict RUN_DIR`)")
