"""A new (or resumed) run, stage by stage: data -> walk-forward beside the baselines ->
deploy gate -> final fit -> forecast -> artifacts and report -> sink. `run` is what
``cbi-run SPEC`` and ``cbi-grid --run-best`` call."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from cbi_toolkit import track_record
from cbi_toolkit.artifacts import save_pipeline
from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.calibration import NET, VOL
from cbi_toolkit.checkpoint import CHECKPOINTS, bind_run, data_digest, record_files
from cbi_toolkit.dataset import Samples
from cbi_toolkit.errors import CbiError, StorageError
from cbi_toolkit.forecast import forecast_latest
from cbi_toolkit.progress import FoldProgress
from cbi_toolkit.report import plot_coverage, plot_fan, plot_forecasts, plot_skill, write_report
from cbi_toolkit.run.folder import (
    check_writable,
    model_version,
    new_run_dir,
    read_status,
    remove_temp_files,
    set_status,
    spec_digest,
    write_invocation,
)
from cbi_toolkit.run.gate import MODEL, check_gate
from cbi_toolkit.run.interrupts import RunInterrupted, interrupts_raise
from cbi_toolkit.run.options import RunEvents, RunOptions, RunResult
from cbi_toolkit.run.prepare import data_summary, prepare
from cbi_toolkit.run.publish import sink_for, write_evidence, write_sink
from cbi_toolkit.skill import assess
from cbi_toolkit.spec import Spec
from cbi_toolkit.storage import atomic_write_text

log = logging.getLogger(__name__)


def run(spec: Spec, options: RunOptions | None = None, stage: str = "full",
        events: RunEvents | None = None) -> RunResult:
    """Load the spec's data (its summary goes to ``events.note``); unless ``stage`` is
    ``data`` or ``features``, run it end to end in a new run folder (`run_spec`)."""
    events, options = events or RunEvents(), options or RunOptions()
    if spec.targets:  # one pooled model for several commodities
        from cbi_toolkit.pooled_run import run_pooled_spec

        return run_pooled_spec(spec, options, stage, events)
    report, samples = prepare(spec, options.data_dir)
    text = data_summary(spec, report, samples)
    events.note(text)
    if stage in ("data", "features"):
        return RunResult("prepared")
    return run_spec(spec, samples, options, text, events=events)


def run_spec(spec: Spec, samples: Samples, options: RunOptions | None = None,
             data_text: str = "", run_dir: Path | None = None,
             events: RunEvents | None = None) -> RunResult:
    """The whole run on prepared ``samples``. With ``run_dir`` (``--resume``) it continues
    that run from its checkpoints; otherwise it makes a new run folder."""
    events, options = events or RunEvents(), options or RunOptions()
    sink = sink_for(spec, options.sink)  # a bad --sink fails before anything is written
    from cbi_toolkit.sinks.resolve import preflight

    preflight(sink)  # and so does a sink folder that cannot be written
    from cbi_toolkit.data import check_folds

    check_folds(spec, samples.dates[samples.trainable])  # and folds the history cannot hold
    digest = spec_digest(spec)
    if run_dir is None:
        run_id, run_dir = new_run_dir(spec, options.runs_dir)
        atomic_write_text(run_dir / "spec.yaml", spec.to_yaml())
        write_invocation(run_dir, options.sink, digest)
        events.note(f"run {run_id} -> {run_dir}")
    else:
        run_id = run_dir.name
        check_writable(run_dir)
        events.note(f"resuming run {run_id} in {run_dir}")
    bind_run(run_dir / CHECKPOINTS, digest, data_digest(samples))  # resumed: refuses changes
    set_status(run_dir, "running")
    try:
        with interrupts_raise(run_dir):
            try:
                return _run_stages(spec, samples, options, data_text, run_id, run_dir, sink,
                                   events)
            except OSError as exc:  # a full, read-only or vanished folder mid-run
                from cbi_toolkit.storage import storage_error

                err = storage_error(Path(exc.filename or run_dir), exc)
                raise StorageError(f"{err}, then `cbi-run --resume {run_dir}`") from None
            except StorageError as exc:
                raise StorageError(f"{exc}, then `cbi-run --resume {run_dir}`") from None
    except (RunInterrupted, KeyboardInterrupt):
        set_status(run_dir, "interrupted")
        raise RunInterrupted(run_dir) from None
    except CbiError as exc:
        remove_temp_files(run_dir)
        if read_status(run_dir).get("state") != "sink_failed":
            if not set_status(run_dir, "failed", error=str(exc)):
                exc.args = (f"{exc} (status.json could not be updated either)",)
        raise
    except Exception as exc:
        set_status(run_dir, "failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        raise


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write_text(path, frame.to_csv(index=False))


def _run_stages(spec: Spec, samples: Samples, options: RunOptions, data_text: str,
                run_id: str, run_dir: Path, sink, events: RunEvents) -> RunResult:
    version = model_version(spec)
    verbose = 0 if options.quiet else 1
    labelled = labelled_samples(samples)
    checkpoints = run_dir / CHECKPOINTS

    events.note(f"walk-forward and the final fit on {len(labelled)} labelled origins "
                f"({labelled.dates[0]:%Y-%m-%d} .. {labelled.dates[-1]:%Y-%m-%d})")
    result = assess(spec, labelled, verbose, checkpoints, FoldProgress(log), final=True)
    preds, cals, folds, summary = (result.predictions, result.calibrations, result.folds,
                                   result.summary)
    selection, versus, weights = result.selection, result.versus, result.weights()
    notes = {h: result.combination_line(h) for h in spec.horizons}
    events.assessed(summary, spec.horizons, notes)
    events.note(result.policy.describe())
    _write_csv(run_dir / "metrics_folds.csv", folds)
    _write_csv(run_dir / "metrics.csv", summary)
    _write_csv(run_dir / "metrics_dm.csv", versus)
    failures = check_gate(spec.gate, summary, spec.forecast.intervals)
    atomic_write_text(run_dir / "metrics.json", json.dumps({
        "summary": summary.to_dict(orient="records"), "folds": folds.to_dict(orient="records"),
        "selection_summary": None if selection is None else selection.to_dict(orient="records"),
        "diebold_mariano": versus.to_dict(orient="records"), "combination": weights,
        "calibration": result.policy.to_json() | {"halflife_errors": result.halflife_errors},
        "gate": {"passed": not failures, "failures": failures},
    }, indent=2, default=str))
    _write_csv(run_dir / "oos_predictions.csv", pd.DataFrame(
        [{"series": spec.target, "model": p.model, "fold": p.fold, "role": p.role,
          "horizon": p.horizon, "origin_date": d, "price": pr, "y": y, "mu": m, "sigma": s}
         for p in preds for d, pr, y, m, s in zip(p.dates, p.price, p.y, p.mu, p.sigma,
                                                   strict=True)]))

    pipe = result.final
    shipping = result.shipped()
    forecasts = forecast_latest(pipe, samples, spec.forecast.intervals, shipping, version, run_id,
                                spec.target)
    _write_csv(run_dir / "forecasts.csv", forecasts)
    record = track_record.build(spec, options.data_dir, preds, MODEL, summary, failures, version,
                                run_id, forecasts["created_at"].iloc[0], cals)
    track_record.save(run_dir, record)
    record_files(run_dir, ["forecasts.csv", "metrics.json"])  # --sink-only writes only these
    save_pipeline(pipe, run_dir / "model", meta={
        "spec": spec.name, "series": spec.target, "model_version": version, "run_id": run_id,
        "feature_names": samples.feature_names, "horizons": samples.horizons,
        "window": spec.window, "intervals": spec.forecast.intervals,
        **shipping.to_meta(),
        "calibration_all": result.calibration_all(),
        "train_end": f"{labelled.dates[-1]:%Y-%m-%d}",
        "gate_passed": not failures,
        "spec_digest": spec_digest(spec), "data_digest": data_digest(samples),
    })
    shutil.rmtree(checkpoints / "fit-final", ignore_errors=True)
    plots = [plot_fan(pd.Series(samples.price, index=samples.dates), forecasts,
                      run_dir / "fan_chart.png"),
             plot_skill(folds[(folds["role"] == "test") & folds["model"].isin(
                 [MODEL, NET, "random_walk", VOL, "drift"])], run_dir / "skill.png"),
             plot_forecasts(preds, run_dir / "forecast_vs_actual.png"),
             plot_coverage(summary, run_dir / "coverage.png")]
    write_report(run_dir / "report.md", spec_name=spec.name, run_id=run_id,
                 model_version=version, summary=summary, forecasts=forecasts,
                 gate_failures=failures, data_summary=data_text,
                 intervals=spec.forecast.intervals, plots=plots, notes=notes)
    events.forecast(forecasts, (80, 95))
    if failures:
        events.note("deploy gate FAILED, forecasts not written to the sink:\n  "
                    + "\n  ".join(failures))
        write_evidence(sink, record, events)
        events.note(f"artifacts: {run_dir}")
        events.note(f"next: read why in {run_dir / 'report.md'} (skill.png, coverage.png beside "
                    "it); change the spec's model or gate and run it again")
        set_status(run_dir, "gate_failed", failures=failures)
        return RunResult("gate_failed", run_dir, forecasts, failures)
    n = write_sink(spec, options.sink, forecasts, run_dir, events, sink, extra=record)
    events.note(f"artifacts: {run_dir} (report.md, metrics.json/csv, forecasts.csv, model/, "
                "plots)")
    events.note(next_steps(run_dir))
    return RunResult("done", run_dir, forecasts, [], n)


def next_steps(run_dir: Path) -> str:
    """The run summary's last lines: where the report is and what to run next."""
    return "\n".join([
        "next:",
        f"  read the report:  {run_dir / 'report.md'} (Markdown; open it in an editor or viewer "
        "that shows Markdown images, or look at fan_chart.png and skill.png beside it)",
        f"  forecast from newer data without retraining:  cbi-run --predict {run_dir} "
        "--data-dir DIR",
        f"  score it on data that arrived later:  cbi-run --evaluate {run_dir} --data-dir DIR "
        "--since YYYY-MM-DD",
    ])
