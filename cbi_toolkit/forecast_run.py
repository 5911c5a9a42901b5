"""The forecasting run: walk-forward evaluation, deploy gate, final fit,
forecast with intervals, run artifacts and the sink write. Also forecasting and
scoring from a saved run."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit import track_record
from cbi_toolkit.artifacts import load_pipeline, save_pipeline
from cbi_toolkit.backtest import backtest, labelled_samples, with_epoch_checkpoint
from cbi_toolkit.checkpoint import CHECKPOINTS, atomic_write_text
from cbi_toolkit.dataset import Samples
from cbi_toolkit.errors import ArtifactError, CbiError, SinkError
from cbi_toolkit.evaluation import FoldPrediction, format_table, score, score_folds, summarise
from cbi_toolkit.forecast import conformal_scales, forecast_frame
from cbi_toolkit.pipeline import build_baselines, build_pipeline, predict_dist
from cbi_toolkit.report import plot_coverage, plot_forecasts, write_report
from cbi_toolkit.runs import prepare
from cbi_toolkit.sinks import make_sink
from cbi_toolkit.spec import GateConfig, Spec, load_spec

log = logging.getLogger(__name__)

GATE_FAILED = 3
INTERRUPTED = 130
MODEL = "model"
STATUS = "status.json"
INVOCATION = "invocation.json"


class RunInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt
    """Ctrl-C during a run. Not a KeyboardInterrupt, which skorch would take as
    "stop training early" and carry on with a half-trained model."""

    def __init__(self, run_dir: Path):
        super().__init__(f"interrupted; resume with `cbi-run --resume {run_dir}`")
        self.run_dir = run_dir


@contextlib.contextmanager
def _interrupts_raise(run_dir: Path):
    """SIGINT raises RunInterrupted while the run is in progress."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise RunInterrupted(run_dir)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def set_status(run_dir: Path, state: str, **extra) -> None:
    """``status.json``: running, interrupted, failed, gate_failed, sink_failed or done."""
    atomic_write_text(run_dir / STATUS, json.dumps(
        {"state": state, "updated": pd.Timestamp.now(tz="UTC").isoformat(), **extra}))


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {}


def model_version(spec: Spec) -> str:
    """Stable for the same spec: re-running it upserts instead of adding rows."""
    doc = json.loads(spec.model_dump_json(exclude={"sink", "runs_dir", "description"}))
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    return f"{spec.name}-{digest[:12]}"


def new_run_dir(spec: Spec, runs_dir: str | None) -> tuple[str, Path]:
    root = Path(runs_dir or spec.runs_dir)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    run_id = f"{spec.name}-{stamp}"
    path = root / run_id
    n = 1
    while path.exists():
        n += 1
        path = root / f"{run_id}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise CbiError(f"cannot create the run folder {path} ({exc.strerror or exc}); choose "
                       "another --runs-dir or free space") from None
    check_writable(path, remove_on_failure=True)
    return path.name, path


def check_writable(path: Path, remove_on_failure: bool = False, size: int = 1 << 20) -> None:
    """Write and remove a 1 MiB probe file; CbiError if the folder is read-only or full."""
    probe = path / ".write_test"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        if remove_on_failure:
            shutil.rmtree(path, ignore_errors=True)
        raise CbiError(f"cannot write the run folder {path} ({exc.strerror or exc}); choose "
                       "another --runs-dir or free space") from None


def check_gate(gate: GateConfig, summary: pd.DataFrame, intervals: str) -> list[str]:
    """Reasons the model fails the deploy gate (empty: it passes)."""
    failures = []
    prefix = "conformal_coverage" if intervals == "conformal" else "coverage"
    for row in summary[summary["model"] == MODEL].itertuples():
        if gate.max_mase is not None and not row.mase <= gate.max_mase:
            failures.append(f"{row.horizon}: MASE {row.mase:.3f} > max_mase {gate.max_mase}")
        for pct, band in (("80", gate.coverage_80), ("95", gate.coverage_95)):
            value = getattr(row, f"{prefix}_{pct}")
            if band is not None and not band[0] <= value <= band[1]:
                failures.append(f"{row.horizon}: {intervals} {pct}% coverage {value:.3f} outside "
                                f"[{band[0]}, {band[1]}]")
    return failures


def sink_for(spec: Spec, override: str | None):
    if not override:
        return make_sink(spec.sink)
    if override.startswith("duckdb://"):
        from cbi_toolkit.sinks.config import DuckDBSinkConfig

        return make_sink(DuckDBSinkConfig(path=override.removeprefix("duckdb://")))
    if override.startswith("bigquery://"):
        from cbi_toolkit.sinks.bigquery import sink_from_url

        return make_sink(sink_from_url(override, spec.sink))
    raise CbiError(f"--sink {override!r}: expected duckdb:///path/file.duckdb or "
                   "bigquery://PROJECT/DATASET")


def write_sink(spec: Spec, override: str | None, forecasts: pd.DataFrame, run_dir: Path,
               sink=None, kept: Path | None = None, extra: dict | None = None) -> None:
    """Upsert the forecasts, then ``extra`` (``track_record`` tables); on failure keep them in
    the run folder and name ``--sink-only`` (``kept``: where forecasts other than the run's
    own forecasts.csv were saved)."""
    sink = sink if sink is not None else sink_for(spec, override)
    try:
        n = sink.write(forecasts)
        written = track_record.write(sink, extra or {})
    except SinkError as exc:
        if kept is not None:
            raise SinkError(f"{exc} -- the forecasts are kept in {kept}") from None
        set_status(run_dir, "sink_failed", error=str(exc))
        raise SinkError(f"{exc} -- the forecasts are kept in {run_dir / 'forecasts.csv'}; write "
                        f"them later with `cbi-run --sink-only {run_dir}`") from None
    print(f"sink: wrote {n} forecast rows ({type(sink).__name__})")
    if written:
        print("sink: also " + ", ".join(f"{k} {v} rows" for k, v in written.items()))
    if kept is not None:
        return
    (run_dir / "sink.json").write_text(json.dumps({"written": n, "sink": str(override or
                                                   spec.sink.model_dump())}))
    set_status(run_dir, "done", sink_rows=n)


def run_spec(spec: Spec, samples: Samples, args: argparse.Namespace, data_text: str = "",
             run_dir: Path | None = None) -> int:
    """The whole run. With ``run_dir`` (``--resume``) it continues that run from its
    checkpoints; otherwise it makes a new run folder."""
    sink = sink_for(spec, args.sink)  # a bad --sink fails before anything is written
    if run_dir is None:
        run_id, run_dir = new_run_dir(spec, args.runs_dir)
        (run_dir / "spec.yaml").write_text(spec.to_yaml())
        (run_dir / INVOCATION).write_text(json.dumps({"sink": args.sink}))
        print(f"run {run_id} -> {run_dir}")
    else:
        run_id = run_dir.name
        check_writable(run_dir)
        print(f"resuming run {run_id} in {run_dir}")
    set_status(run_dir, "running")
    try:
        with _interrupts_raise(run_dir):
            return _run_stages(spec, samples, args, data_text, run_id, run_dir, sink)
    except (RunInterrupted, KeyboardInterrupt):
        set_status(run_dir, "interrupted")
        raise RunInterrupted(run_dir) from None
    except CbiError as exc:
        if read_status(run_dir).get("state") != "sink_failed":
            set_status(run_dir, "failed", error=str(exc))
        raise
    except Exception as exc:
        set_status(run_dir, "failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        raise


def _run_folder(value: str) -> tuple[Path, Spec, dict]:
    path = Path(value)
    if not (path / "spec.yaml").is_file():
        raise ArtifactError(f"{path}: no spec.yaml; is this a run folder (runs/<run_id>)?")
    try:
        invocation = json.loads((path / INVOCATION).read_text())
    except (OSError, ValueError):
        invocation = {}
    return path, load_spec(path / "spec.yaml"), invocation


def resume_run(args: argparse.Namespace) -> int:
    """Continue an interrupted run from its checkpoints (``cbi-run --resume RUN_DIR``)."""
    from cbi_toolkit.runs import data_summary, prepare

    path, spec, invocation = _run_folder(args.resume)
    state = read_status(path).get("state")
    if state == "done":
        print(f"{path}: the run already finished; nothing to resume")
        return 0
    if state == "sink_failed" or (state == "gate_failed" and (path / "forecasts.csv").is_file()):
        print(f"{path}: training finished ({state}); use `cbi-run --sink-only {path}` to write "
              "the forecasts")
        return 0 if state == "sink_failed" else GATE_FAILED
    args.sink = args.sink or invocation.get("sink")
    report, samples = prepare(spec, args.data_dir)
    return run_spec(spec, samples, args, data_summary(spec, report, samples), run_dir=path)


def sink_only(args: argparse.Namespace) -> int:
    """Write a finished run's forecasts to the sink (``cbi-run --sink-only RUN_DIR``)."""
    path, spec, invocation = _run_folder(args.sink_only)
    csv = path / "forecasts.csv"
    if not csv.is_file():
        raise ArtifactError(f"{path}: no forecasts.csv; the run did not finish; continue it "
                            f"with `cbi-run --resume {path}`")
    try:
        gate = json.loads((path / "metrics.json").read_text())["gate"]
    except (OSError, ValueError, KeyError):
        raise ArtifactError(f"{path}: metrics.json is missing or unreadable; cannot tell "
                            "whether the run passed its deploy gate") from None
    if not gate.get("passed"):
        print(f"{path}: the run failed its deploy gate; forecasts not written to the sink")
        return GATE_FAILED
    forecasts = pd.read_csv(csv, dtype={"horizon": str, "model_version": str, "run_id": str})
    if "series" not in forecasts:  # a run folder from before the series key
        forecasts.insert(0, "series", spec.target)
        forecasts.insert(1, "kind", "forecast")
    write_sink(spec, args.sink or invocation.get("sink"), forecasts, path,
               extra=track_record.load(path))
    return 0


def _run_stages(spec: Spec, samples: Samples, args: argparse.Namespace, data_text: str,
                run_id: str, run_dir: Path, sink) -> int:
    version = model_version(spec)
    verbose = 0 if args.quiet else 1
    labelled = labelled_samples(samples)
    checkpoints = run_dir / CHECKPOINTS

    models = {MODEL: build_pipeline(spec, verbose=verbose), **build_baselines()}
    preds, fit_seconds = backtest(spec, labelled, models, checkpoint_dir=checkpoints)
    folds = score_folds(preds)
    summary = summarise(folds)
    summary["fit_seconds"] = summary["model"].map(lambda m: float(np.mean(fit_seconds[m])))
    for horizon in spec.horizons:
        print(format_table(summary, horizon))
    folds.to_csv(run_dir / "metrics_folds.csv", index=False)
    summary.to_csv(run_dir / "metrics.csv", index=False)
    failures = check_gate(spec.gate, summary, spec.forecast.intervals)
    (run_dir / "metrics.json").write_text(json.dumps({
        "summary": summary.to_dict(orient="records"), "folds": folds.to_dict(orient="records"),
        "gate": {"passed": not failures, "failures": failures},
    }, indent=2, default=str))
    pd.DataFrame([{"series": spec.target, "model": p.model, "fold": p.fold, "horizon": p.horizon,
                   "origin_date": d, "price": pr, "y": y, "mu": m, "sigma": s}
                  for p in preds for d, pr, y, m, s in zip(p.dates, p.price, p.y, p.mu, p.sigma,
                                                            strict=True)]
                 ).to_csv(run_dir / "oos_predictions.csv", index=False)

    print(f"final fit on {len(labelled)} labelled origins "
          f"({labelled.dates[0]:%Y-%m-%d} .. {labelled.dates[-1]:%Y-%m-%d})")
    pipe = with_epoch_checkpoint(build_pipeline(spec, verbose=verbose), checkpoints / "fit-final")
    pipe.fit(labelled.X, labelled.y)
    scales = conformal_scales(preds, MODEL)
    forecasts = forecast_latest(pipe, samples, spec.forecast.intervals, scales, version, run_id,
                                spec.target)
    forecasts.to_csv(run_dir / "forecasts.csv", index=False)
    record = track_record.build(spec, args.data_dir, preds, MODEL, summary, failures, version,
                                run_id, forecasts["created_at"].iloc[0])
    track_record.save(run_dir, record)
    save_pipeline(pipe, run_dir / "model", meta={
        "spec": spec.name, "series": spec.target, "model_version": version, "run_id": run_id,
        "feature_names": samples.feature_names, "horizons": samples.horizons,
        "window": spec.window, "intervals": spec.forecast.intervals,
        "conformal_scales": {h: {str(k): v for k, v in s.items()} for h, s in scales.items()},
        "train_end": f"{labelled.dates[-1]:%Y-%m-%d}",
        "gate_passed": not failures,
    })
    shutil.rmtree(checkpoints / "fit-final", ignore_errors=True)
    plots = [plot_forecasts(preds, run_dir / "forecast_vs_actual.png"),
             plot_coverage(summary, run_dir / "coverage.png")]
    write_report(run_dir / "report.md", spec_name=spec.name, run_id=run_id,
                 model_version=version, summary=summary, forecasts=forecasts,
                 gate_failures=failures, data_summary=data_text,
                 intervals=spec.forecast.intervals, plots=plots)
    print(forecasts[["horizon", "origin_date", "target_date", "predicted_price", "lower_80",
                     "upper_80", "lower_95", "upper_95"]].to_string(index=False))
    if failures:
        print("deploy gate FAILED, forecasts not written to the sink:\n  " + "\n  ".join(failures))
        print(f"artifacts: {run_dir}")
        set_status(run_dir, "gate_failed", failures=failures)
        return GATE_FAILED
    write_sink(spec, args.sink, forecasts, run_dir, sink, extra=record)
    print(f"artifacts: {run_dir} (report.md, metrics.json/csv, forecasts.csv, model/, plots)")
    return 0


def forecast_latest(pipe, samples: Samples, intervals: str, scales, version: str,
                    run_id: str, series: str) -> pd.DataFrame:
    """Forecast every horizon from the newest origin."""
    last = len(samples) - 1
    if hasattr(pipe, "steps"):
        mu, sigma = predict_dist(pipe, samples.X[[last]])
    else:  # a serving model (cbi_toolkit.export.ServingModel)
        mu, sigma = pipe.predict_dist(samples.X[[last]])
    return forecast_frame(samples.dates[last], float(samples.price[last]), samples.horizons,
                          mu[0], sigma[0], intervals, scales, version, run_id,
                          pd.Timestamp.now(tz="UTC"), series)


def _scales_from_meta(meta: dict) -> dict[str, dict[float, float]]:
    return {h: {float(k): v for k, v in s.items()} for h, s in meta["conformal_scales"].items()}


def load_run(run_dir: str, data_dir: str | None) -> tuple[Spec, Samples, object, dict, Path]:
    path, spec, _ = _run_folder(run_dir)
    pipe, meta = load_pipeline(path / "model")
    report, samples = prepare(spec, data_dir)
    if samples.feature_names != meta["feature_names"]:
        raise ArtifactError(f"{path}: the data now gives features {len(samples.feature_names)} "
                            f"that differ from the saved model's {len(meta['feature_names'])}")
    return spec, samples, pipe, meta, path


def predict_run(args: argparse.Namespace) -> int:
    """Forecast from a saved run and the current data, without retraining."""
    from cbi_toolkit.export import serving_model

    spec, samples, pipe, meta, path = load_run(args.predict, args.data_dir)
    served = serving_model(path, pipe)  # an exported ONNX/TorchScript model if checked, else eager
    log.info("forecasting with the %s model", served.kind)
    forecasts = forecast_latest(served, samples, meta["intervals"], _scales_from_meta(meta),
                                meta["model_version"], meta["run_id"], spec.target)
    out = path / "predictions" / f"origin-{samples.dates[-1]:%Y-%m-%d}.csv"
    out.parent.mkdir(exist_ok=True)
    forecasts.to_csv(out, index=False)
    print(forecasts[["horizon", "origin_date", "target_date", "predicted_price", "lower_95",
                     "upper_95"]].to_string(index=False))
    if not meta.get("gate_passed", False):
        print(f"the run failed its deploy gate; forecasts kept in {out}, not written to the sink")
        return GATE_FAILED
    closes = track_record.target_closes(spec, args.data_dir)  # newer data scores older forecasts
    write_sink(spec, args.sink, forecasts, path, kept=out,
               extra={"actuals": track_record.actual_rows(closes, spec.target)})
    return 0


def evaluate_run(args: argparse.Namespace) -> int:
    """Score a saved model beside the baselines on origins from ``--since`` on
    whose targets the data now holds (true out-of-sample checking)."""
    if not args.since:
        raise CbiError("--evaluate needs --since YYYY-MM-DD: the first origin date to score")
    since = pd.Timestamp(args.since)
    spec, samples, pipe, meta, path = load_run(args.evaluate, args.data_dir)
    labelled = labelled_samples(samples)
    train_end = pd.Timestamp(meta["train_end"])
    test = np.flatnonzero(labelled.dates >= since)
    train = np.flatnonzero(labelled.dates <= train_end)
    if not len(test):
        raise CbiError(f"no origin on or after {since:%Y-%m-%d} has known targets in this data; "
                       "point --data-dir at newer data or pick an earlier --since")
    if since <= train_end:
        print(f"warning: --since {since:%Y-%m-%d} is not after the model's training data "
              f"(ends {train_end:%Y-%m-%d}); those origins are in-sample")
    models = {MODEL: pipe}
    for name, base in build_baselines().items():
        models[name] = base.fit(labelled.X[train], labelled.y[train])
    preds = []
    for name, model in models.items():
        mu, sigma = predict_dist(model, labelled.X[test])
        for j, horizon in enumerate(labelled.horizons):
            preds.append(FoldPrediction(name, 0, horizon, labelled.y[test, j], mu[:, j],
                                        sigma[:, j], labelled.price[test], labelled.dates[test]))
    scales = _scales_from_meta(meta)
    rows = [score(p, scales[p.horizon] if p.model == MODEL else None) for p in preds]
    summary = summarise(pd.DataFrame(rows))
    for horizon in labelled.horizons:
        print(format_table(summary, horizon))
    out = path / "evaluations" / f"since-{since:%Y-%m-%d}.csv"
    out.parent.mkdir(exist_ok=True)
    summary.to_csv(out, index=False)
    print(f"scored {len(test)} origins {labelled.dates[test[0]]:%Y-%m-%d} .. "
          f"{labelled.dates[test[-1]]:%Y-%m-%d}; table saved to {out}")
    return 0
