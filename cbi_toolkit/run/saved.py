"""Commands on a saved run folder: resume it, write its forecasts to the sink, forecast
from newer data with its model, score that model on newer origins. (Exporting it:
`cbi_toolkit.export.export_run`.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from cbi_toolkit import track_record
from cbi_toolkit.artifacts import load_pipeline
from cbi_toolkit.calibration import ShippedModel
from cbi_toolkit.dataset import Samples
from cbi_toolkit.errors import ArtifactError, CbiError
from cbi_toolkit.forecast import forecast_latest
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.run.folder import model_version, open_run_folder, read_status
from cbi_toolkit.run.options import EvaluationResult, RunEvents, RunOptions, RunResult
from cbi_toolkit.run.prepare import data_summary, prepare
from cbi_toolkit.run.publish import write_sink
from cbi_toolkit.run.scoring import save_evaluation, score_since, warn_in_sample
from cbi_toolkit.spec import Spec
from cbi_toolkit.storage import atomic_write_text

log = logging.getLogger(__name__)


def resume_run(run_dir: str | Path, options: RunOptions | None = None,
               events: RunEvents | None = None) -> RunResult:
    """Continue an interrupted run from its checkpoints (``cbi-run --resume RUN_DIR``);
    its sink is ``options.sink``, else the one it was started with."""
    from cbi_toolkit.run.stages import run_spec

    events, options = events or RunEvents(), options or RunOptions()
    path, spec, invocation = open_run_folder(run_dir)
    state = read_status(path).get("state")
    if state == "done":
        events.note(f"{path}: the run already finished; nothing to resume")
        return RunResult("done", path)
    if state == "sink_failed" or (state == "gate_failed" and (path / "forecasts.csv").is_file()):
        events.note(f"{path}: training finished ({state}); use `cbi-run --sink-only {path}` to "
                    "write the forecasts")
        return RunResult(state, path)
    options = RunOptions(options.data_dir, options.runs_dir,
                         options.sink or invocation.get("sink"), options.quiet)
    report, samples = prepare(spec, options.data_dir)
    return run_spec(spec, samples, options, data_summary(spec, report, samples), run_dir=path,
                    events=events)


def sink_only(run_dir: str | Path, sink: str | None = None,
              events: RunEvents | None = None) -> RunResult:
    """Write a finished run's forecasts to the sink (``cbi-run --sink-only RUN_DIR``)."""
    events = events or RunEvents()
    path, spec, invocation = open_run_folder(run_dir)
    csv = path / "forecasts.csv"
    if not csv.is_file():
        raise ArtifactError(f"{path}: no forecasts.csv; the run did not finish; continue it "
                            f"with `cbi-run --resume {path}`")
    from cbi_toolkit.checkpoint import verify_files

    verify_files(path, ["forecasts.csv", "metrics.json"])
    try:
        gate = json.loads((path / "metrics.json").read_text())["gate"]
    except (OSError, ValueError, KeyError):
        raise ArtifactError(f"{path}: metrics.json is missing or unreadable; cannot tell "
                            "whether the run passed its deploy gate") from None
    if not gate.get("passed"):
        events.note(f"{path}: the run failed its deploy gate; forecasts not written to the sink")
        return RunResult("gate_failed", path, failures=list(gate.get("failures", [])))
    forecasts = pd.read_csv(csv, dtype={"horizon": str, "model_version": str, "run_id": str})
    if "series" not in forecasts:  # a run folder from before the series key
        forecasts.insert(0, "series", spec.target)
        forecasts.insert(1, "kind", "forecast")
    n = write_sink(spec, sink or invocation.get("sink"), forecasts, path, events,
                   extra=track_record.load(path))
    return RunResult("done", path, forecasts, sink_rows=n)


def load_run(run_dir: str | Path, data_dir: str | None, allow_ended: bool = False,
             events: RunEvents | None = None) -> tuple[Spec, Samples, object, dict, Path]:
    """A saved run's spec, the current data's samples, its fitted pipeline, its meta and
    its folder; refuses a model from another run or data whose features differ."""
    events = events or RunEvents()
    path, spec, _ = open_run_folder(run_dir)
    if spec.targets:
        raise ArtifactError(f"{path}: a pooled run ({', '.join(spec.targets)}); exporting a "
                            "model works on single-commodity runs only (`cbi-run --predict` "
                            "and `--evaluate` take a pooled run)")
    pipe, meta = load_pipeline(path / "model")
    if "model_version" in meta and meta["model_version"] != model_version(spec):
        raise ArtifactError(f"{path / 'model'}: saved by model version "
                            f"{str(meta.get('model_version'))[:80]!r}, but this run's spec.yaml "
                            f"gives {model_version(spec)!r}: the model comes from another run; "
                            "use that run's folder")
    report, samples = prepare(spec, data_dir, allow_ended=allow_ended)
    if report.ended:
        ended = ", ".join(f"{k} ({v:%Y-%m-%d})" for k, v in report.ended.items())
        events.note(f"drivers that end before the target: {ended}; after that their features "
                    f"({', '.join(report.missing_features)}) are held at their training mean")
    if samples.feature_names != meta["feature_names"]:
        raise ArtifactError(f"{path}: the data now gives features {len(samples.feature_names)} "
                            f"that differ from the saved model's {len(meta['feature_names'])}")
    return spec, samples, pipe, meta, path


def predict_run(run_dir: str | Path, options: RunOptions | None = None,
                events: RunEvents | None = None) -> RunResult:
    """Forecast from a saved run and the current data, without retraining; the forecasts
    go to ``predictions/origin-<date>.csv`` and, if the run passed its gate, to the sink.
    A pooled run: `cbi_toolkit.pooled_saved.predict_pooled_run`."""
    from cbi_toolkit.serving import serving_model

    events, options = events or RunEvents(), options or RunOptions()
    if _is_pooled(run_dir):
        from cbi_toolkit.pooled_saved import predict_pooled_run

        return predict_pooled_run(run_dir, options, events)
    spec, samples, pipe, meta, path = load_run(run_dir, options.data_dir, events=events)
    served = serving_model(path, pipe)  # an exported ONNX/TorchScript model if checked, else eager
    log.info("forecasting with the %s model", served.kind)
    forecasts = forecast_latest(served, samples, meta["intervals"], ShippedModel.from_meta(meta),
                                meta["model_version"], meta["run_id"], spec.target)
    out = path / "predictions" / f"origin-{samples.dates[-1]:%Y-%m-%d}.csv"
    out.parent.mkdir(exist_ok=True)
    atomic_write_text(out, forecasts.to_csv(index=False))
    events.forecast(forecasts, (95,))
    if not meta.get("gate_passed", False):
        events.note(f"the run failed its deploy gate; forecasts kept in {out}, not written to "
                    "the sink")
        return RunResult("gate_failed", path, forecasts)
    closes = track_record.target_closes(spec, options.data_dir)  # newer data scores older ones
    n = write_sink(spec, options.sink, forecasts, path, events, kept=out,
                   extra={"actuals": track_record.actual_rows(closes, spec.target)})
    return RunResult("done", path, forecasts, sink_rows=n)


def evaluate_run(run_dir: str | Path, since: str | pd.Timestamp | None,
                 data_dir: str | None = None, events: RunEvents | None = None
                 ) -> EvaluationResult:
    """Score a saved model beside the baselines on origins from ``since`` on: each
    horizon on the origins whose own target the data now holds (true out-of-sample
    checking), through the run's saved combination and calibration. A pooled run:
    `cbi_toolkit.pooled_saved.evaluate_pooled_run`."""
    if not since:
        raise CbiError("--evaluate needs --since YYYY-MM-DD: the first origin date to score")
    events = events or RunEvents()
    since = pd.Timestamp(since)
    if _is_pooled(run_dir):
        from cbi_toolkit.pooled_saved import evaluate_pooled_run

        return evaluate_pooled_run(run_dir, since, data_dir, events)
    spec, samples, pipe, meta, path = load_run(run_dir, data_dir, allow_ended=True,
                                               events=events)
    pipe.set_params(scale__fill_missing=True)  # missing features of ended drivers: their mean
    train_end = pd.Timestamp(meta["train_end"])
    warn_in_sample(since, train_end, events)
    summary = score_since(spec, samples, lambda rows: predict_dist(pipe, samples.X[rows]), meta,
                          since, train_end)
    return EvaluationResult(summary, list(samples.horizons), since,
                            save_evaluation(path, since, summary))


def _is_pooled(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a pooled run's folder (its spec has ``targets``)."""
    return bool(open_run_folder(run_dir)[1].targets)
