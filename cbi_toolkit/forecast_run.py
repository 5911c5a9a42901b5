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
from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.calibration import (
    NET,
    VOL,
    Calibration,
    ShippedModel,
    calibration_for,
)
from cbi_toolkit.checkpoint import CHECKPOINTS, atomic_write_text
from cbi_toolkit.dataset import Samples
from cbi_toolkit.errors import ArtifactError, CbiError, SinkError, StorageError
from cbi_toolkit.evaluation import FoldPrediction, format_table, summarise
from cbi_toolkit.forecast import forecast_frame
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.progress import FoldProgress
from cbi_toolkit.report import plot_coverage, plot_fan, plot_forecasts, plot_skill, write_report
from cbi_toolkit.runs import prepare
from cbi_toolkit.sinks import make_sink
from cbi_toolkit.skill import assess, baselines_for
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


def set_status(run_dir: Path, state: str, **extra) -> bool:
    """``status.json``: running, interrupted, failed, gate_failed, sink_failed or done.

    Never raises: on a full disk the atomic rename fails, so the file is rewritten in
    place (its old blocks are freed first); on a read-only one it stays as it was.
    Returns whether the status was written."""
    text = json.dumps({"state": state, "updated": pd.Timestamp.now(tz="UTC").isoformat(),
                       **extra})
    try:
        atomic_write_text(run_dir / STATUS, text)
        return True
    except CbiError:
        pass
    try:
        with open(run_dir / STATUS, "r+b") as fh:
            fh.truncate(0)
            fh.write(text.encode())
        return True
    except OSError:
        log.warning("%s: could not record status %s", run_dir / STATUS, state)
        return False


def _remove_temp_files(run_dir: Path) -> None:
    """Temporary files of interrupted writes (``.name.tmp``), which would keep a full disk
    full and make ``--resume`` refuse."""
    for tmp in run_dir.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {}


def spec_digest(spec: Spec) -> str:
    """sha256 of the resolved spec, less what does not change the model (where it is
    written, and where its fits run)."""
    doc = json.loads(spec.model_dump_json(exclude={
        "sink": True, "runs_dir": True, "description": True,
        "training": {"n_jobs", "scheduler"}}))
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def model_version(spec: Spec) -> str:
    """Stable for the same spec: re-running it upserts instead of adding rows."""
    return f"{spec.name}-{spec_digest(spec)[:12]}"


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
    """Reasons the model fails the deploy gate (empty: it passes), from the pooled
    metrics of the reported span."""
    failures = []
    prefix = "conformal_coverage" if intervals == "conformal" else "coverage"
    for row in summary[summary["model"] == MODEL].itertuples():
        if gate.max_mase is not None and not row.mase <= gate.max_mase:
            failures.append(f"{row.horizon}: MASE {row.mase:.3f} > max_mase {gate.max_mase}")
        if gate.worse_p is not None and row.dm_stat_abs > 0 and row.dm_p_abs < gate.worse_p:
            failures.append(f"{row.horizon}: worse than the random walk (MASE {row.mase:.3f}, "
                            f"Diebold-Mariano p {row.dm_p_abs:.3f} < gate.worse_p {gate.worse_p})")
        for pct, band in (("80", gate.coverage_80), ("95", gate.coverage_95)):
            value = getattr(row, f"{prefix}_{pct}")
            if band is not None and not band[0] <= value <= band[1]:
                failures.append(f"{row.horizon}: {intervals} {pct}% coverage {value:.3f} outside "
                                f"[{band[0]}, {band[1]}]")
    return failures


def sink_for(spec: Spec, override: str | None):
    from cbi_toolkit.sinks.resolve import sink_config

    return make_sink(sink_config(spec.sink, override))


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


def write_evidence(sink, record: dict[str, pd.DataFrame]) -> None:
    """After a failed gate: the track record (backtest, actuals, the run's skill and gate
    result) still goes to the sink, so the dashboard shows why no forecast was published;
    a sink failure here is reported, not raised (the run's outcome is the gate's)."""
    try:
        written = track_record.write(sink, record)
    except SinkError as exc:
        print(f"sink: the track record was not written either ({exc})")
        return
    print("sink: wrote the track record only (" + ", ".join(f"{k} {v} rows" for k, v
                                                            in written.items()) + ")")


def run_spec(spec: Spec, samples: Samples, args: argparse.Namespace, data_text: str = "",
             run_dir: Path | None = None) -> int:
    """The whole run. With ``run_dir`` (``--resume``) it continues that run from its
    checkpoints; otherwise it makes a new run folder."""
    sink = sink_for(spec, args.sink)  # a bad --sink fails before anything is written
    from cbi_toolkit.sinks.resolve import preflight

    preflight(sink)  # and so does a sink folder that cannot be written
    from cbi_toolkit.data import check_folds

    check_folds(spec, samples.dates[samples.trainable])  # and folds the history cannot hold
    from cbi_toolkit.checkpoint import bind_run, data_digest

    digest = spec_digest(spec)
    if run_dir is None:
        run_id, run_dir = new_run_dir(spec, args.runs_dir)
        (run_dir / "spec.yaml").write_text(spec.to_yaml())
        invocation = {"sink": args.sink, "spec": digest}
        atomic_write_text(run_dir / INVOCATION, json.dumps(
            {**invocation, "checksum": hashlib.sha256(json.dumps(
                invocation, sort_keys=True).encode()).hexdigest()}))
        print(f"run {run_id} -> {run_dir}")
    else:
        run_id = run_dir.name
        check_writable(run_dir)
        print(f"resuming run {run_id} in {run_dir}")
    bind_run(run_dir / CHECKPOINTS, digest, data_digest(samples))  # resumed: refuses changes
    set_status(run_dir, "running")
    try:
        with _interrupts_raise(run_dir):
            try:
                return _run_stages(spec, samples, args, data_text, run_id, run_dir, sink)
            except OSError as exc:  # a full, read-only or vanished folder mid-run
                from cbi_toolkit.checkpoint import storage_error

                err = storage_error(Path(exc.filename or run_dir), exc)
                raise StorageError(f"{err}, then `cbi-run --resume {run_dir}`") from None
            except StorageError as exc:
                raise StorageError(f"{exc}, then `cbi-run --resume {run_dir}`") from None
    except (RunInterrupted, KeyboardInterrupt):
        set_status(run_dir, "interrupted")
        raise RunInterrupted(run_dir) from None
    except CbiError as exc:
        _remove_temp_files(run_dir)
        if read_status(run_dir).get("state") != "sink_failed":
            if not set_status(run_dir, "failed", error=str(exc)):
                exc.args = (f"{exc} (status.json could not be updated either)",)
        raise
    except Exception as exc:
        set_status(run_dir, "failed", error=f"{type(exc).__name__}: {str(exc)[:200]}")
        raise


def _run_folder(value: str) -> tuple[Path, Spec, dict]:
    path = Path(value)
    if not (path / "spec.yaml").is_file():
        raise ArtifactError(f"{path}: no spec.yaml; is this a run folder (runs/<run_id>)?")
    spec = load_spec(path / "spec.yaml")
    return path, spec, read_invocation(path, spec)


def read_invocation(path: Path, spec: Spec) -> dict:
    """``invocation.json``, checked: a cut or edited one would send ``--sink-only`` to
    the spec's default sink instead of the one the run was started with."""
    file = path / INVOCATION
    if not file.exists():
        return {}
    try:
        doc = json.loads(file.read_text())
        checksum = doc.pop("checksum", None)
        if not isinstance(doc, dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise ArtifactError(f"{file}: unreadable (cut off or edited); it records where the "
                            "run writes: pass --sink to say where, or restore it") from None
    if checksum is not None and checksum != hashlib.sha256(
            json.dumps(doc, sort_keys=True).encode()).hexdigest():
        raise ArtifactError(f"{file}: its checksum differs from its content (edited); pass "
                            "--sink to say where to write, or restore it")
    if doc.get("spec") not in (None, spec_digest(spec)):
        raise ArtifactError(f"{path / 'spec.yaml'}: changed since the run started (its digest "
                            f"differs from {file}); restore it or start a new run")
    return doc


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
    from cbi_toolkit.checkpoint import verify_files

    verify_files(path, ["forecasts.csv", "metrics.json"])
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
    from cbi_toolkit.checkpoint import data_digest

    version = model_version(spec)
    verbose = 0 if args.quiet else 1
    labelled = labelled_samples(samples)
    checkpoints = run_dir / CHECKPOINTS

    print(f"walk-forward and the final fit on {len(labelled)} labelled origins "
          f"({labelled.dates[0]:%Y-%m-%d} .. {labelled.dates[-1]:%Y-%m-%d})")
    result = assess(spec, labelled, verbose, checkpoints, FoldProgress(log), final=True)
    preds, cals, folds, summary = (result.predictions, result.calibrations, result.folds,
                                   result.summary)
    selection, versus, weights = result.selection, result.versus, result.weights()
    for horizon in spec.horizons:
        print(format_table(summary, horizon))
        print(combination_line(weights[horizon], spec.forecast.combine))
    folds.to_csv(run_dir / "metrics_folds.csv", index=False)
    summary.to_csv(run_dir / "metrics.csv", index=False)
    versus.to_csv(run_dir / "metrics_dm.csv", index=False)
    failures = check_gate(spec.gate, summary, spec.forecast.intervals)
    (run_dir / "metrics.json").write_text(json.dumps({
        "summary": summary.to_dict(orient="records"), "folds": folds.to_dict(orient="records"),
        "selection_summary": None if selection is None else selection.to_dict(orient="records"),
        "diebold_mariano": versus.to_dict(orient="records"), "combination": weights,
        "gate": {"passed": not failures, "failures": failures},
    }, indent=2, default=str))
    pd.DataFrame([{"series": spec.target, "model": p.model, "fold": p.fold, "role": p.role,
                   "horizon": p.horizon, "origin_date": d, "price": pr, "y": y, "mu": m, "sigma": s}
                  for p in preds for d, pr, y, m, s in zip(p.dates, p.price, p.y, p.mu, p.sigma,
                                                            strict=True)]
                 ).to_csv(run_dir / "oos_predictions.csv", index=False)

    pipe = result.final
    shipping = result.shipped()
    forecasts = forecast_latest(pipe, samples, spec.forecast.intervals, shipping, version, run_id,
                                spec.target)
    forecasts.to_csv(run_dir / "forecasts.csv", index=False)
    record = track_record.build(spec, args.data_dir, preds, MODEL, summary, failures, version,
                                run_id, forecasts["created_at"].iloc[0], cals)
    track_record.save(run_dir, record)
    from cbi_toolkit.checkpoint import record_files

    record_files(run_dir, ["forecasts.csv", "metrics.json"])  # --sink-only writes only these
    save_pipeline(pipe, run_dir / "model", meta={
        "spec": spec.name, "series": spec.target, "model_version": version, "run_id": run_id,
        "feature_names": samples.feature_names, "horizons": samples.horizons,
        "window": spec.window, "intervals": spec.forecast.intervals,
        **shipping.to_meta(),
        "calibration_all": {f"{m}/{h}": c.to_json() for m in {p.model for p in preds}
                            for h in spec.horizons
                            if (c := calibration_for(preds, m, h, None)) is not None},
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
                 intervals=spec.forecast.intervals, plots=plots,
                 notes={h: combination_line(weights[h], spec.forecast.combine)
                        for h in spec.horizons})
    print(forecasts[["horizon", "origin_date", "target_date", "predicted_price", "lower_80",
                     "upper_80", "lower_95", "upper_95"]].to_string(index=False))
    if failures:
        print("deploy gate FAILED, forecasts not written to the sink:\n  " + "\n  ".join(failures))
        write_evidence(sink, record)
        print(f"artifacts: {run_dir}")
        print(f"next: read why in {run_dir / 'report.md'} (skill.png, coverage.png beside it); "
              "change the spec's model or gate and run it again")
        set_status(run_dir, "gate_failed", failures=failures)
        return GATE_FAILED
    write_sink(spec, args.sink, forecasts, run_dir, sink, extra=record)
    print(f"artifacts: {run_dir} (report.md, metrics.json/csv, forecasts.csv, model/, plots)")
    print(next_steps(run_dir))
    return 0


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


def combination_line(weights: list[dict], combined: bool) -> str:
    """How much the shipped forecast leans on the random walk, for the table's reader."""
    if not combined:
        return "model = the net alone (forecast.combine: false)"
    w = [c["weight"] for c in weights]
    sig = sorted({c["sigma"] for c in weights})
    return (f"model = w*net + (1-w)*random walk, w chosen per fold on earlier (selection) folds: "
            f"mean {np.mean(w):.2f} (min {min(w):.2f}, max {max(w):.2f}); sigma from "
            f"{', '.join(sig)}, calibrated; w = 0 means the mean is the random walk's")


def forecast_latest(pipe, samples: Samples, intervals: str, shipping: ShippedModel,
                    version: str, run_id: str, series: str) -> pd.DataFrame:
    """Forecast every horizon from the newest origin: the net's output through the
    saved combination and calibration."""
    from cbi_toolkit.models.baselines import VolatilityRandomWalk
    from cbi_toolkit.targets import HORIZONS

    last = len(samples) - 1
    if hasattr(pipe, "steps"):
        mu, sigma = predict_dist(pipe, samples.X[[last]])
    else:  # a serving model (cbi_toolkit.export.ServingModel)
        mu, sigma = pipe.predict_dist(samples.X[[last]])
    known = np.flatnonzero(samples.trainable)
    vol = VolatilityRandomWalk(shipping.vol_window, tuple(HORIZONS[h] for h in samples.horizons))
    sigma_vol = vol.fit(samples.X[known], samples.y[known]).predict_dist(samples.X[[last]])[1]
    mu, sigma, scales = shipping.apply(samples.horizons, mu[0], sigma[0], sigma_vol[0])
    return forecast_frame(samples.dates[last], float(samples.price[last]), samples.horizons,
                          mu, sigma, intervals, scales, version, run_id,
                          pd.Timestamp.now(tz="UTC"), series)


def load_run(run_dir: str, data_dir: str | None, allow_ended: bool = False
             ) -> tuple[Spec, Samples, object, dict, Path]:
    path, spec, _ = _run_folder(run_dir)
    pipe, meta = load_pipeline(path / "model")
    if "model_version" in meta and meta["model_version"] != model_version(spec):
        raise ArtifactError(f"{path / 'model'}: saved by model version "
                            f"{str(meta.get('model_version'))[:80]!r}, but this run's spec.yaml "
                            f"gives {model_version(spec)!r}: the model comes from another run; "
                            "use that run's folder")
    report, samples = prepare(spec, data_dir, allow_ended=allow_ended)
    if report.ended:
        ended = ", ".join(f"{k} ({v:%Y-%m-%d})" for k, v in report.ended.items())
        print(f"drivers that end before the target: {ended}; after that their features "
              f"({', '.join(report.missing_features)}) are held at their training mean")
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
    forecasts = forecast_latest(served, samples, meta["intervals"], ShippedModel.from_meta(meta),
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
    """Score a saved model beside the baselines on origins from ``--since`` on: each
    horizon on the origins whose own target the data now holds (true out-of-sample
    checking), through the run's saved combination and calibration."""
    if not args.since:
        raise CbiError("--evaluate needs --since YYYY-MM-DD: the first origin date to score")
    since = pd.Timestamp(args.since)
    spec, samples, pipe, meta, path = load_run(args.evaluate, args.data_dir, allow_ended=True)
    train_end = pd.Timestamp(meta["train_end"])
    labelled = labelled_samples(samples)
    train = np.flatnonzero(labelled.dates <= train_end)
    if since <= train_end:
        print(f"warning: --since {since:%Y-%m-%d} is not after the model's training data "
              f"(ends {train_end:%Y-%m-%d}); those origins are in-sample")
    shipping = ShippedModel.from_meta(meta)
    models = {NET: pipe, **{name: base.fit(labelled.X[train], labelled.y[train])
                            for name, base in baselines_for(spec).items()}}
    for model in models.values():  # missing features of ended drivers: their training mean
        model.set_params(scale__fill_missing=True)
    preds, cals = [], {}
    for j, horizon in enumerate(samples.horizons):
        test = np.flatnonzero((samples.dates >= since) & np.isfinite(samples.y[:, j]))
        if not len(test):
            continue
        sub = samples.subset(test)
        out = {name: predict_dist(model, sub.X) for name, model in models.items()}
        out[MODEL] = shipping.combination(horizon).forecast(*out[NET], out[VOL][1])
        for name, (mu, sig) in out.items():
            preds.append(FoldPrediction(name, 0, horizon, sub.y[:, j], mu[:, j], sig[:, j],
                                        sub.price, sub.dates))
            saved = meta.get("calibration_all", {}).get(f"{name}/{horizon}")
            cals[(name, horizon, 0)] = Calibration.from_json(saved) if saved else (
                shipping.calibrations.get(horizon) if name == MODEL else None)
    if not preds:
        raise CbiError(f"no origin on or after {since:%Y-%m-%d} has a known target in this data; "
                       "point --data-dir at newer data or pick an earlier --since")
    summary = summarise(preds, cals=cals)
    for horizon in samples.horizons:
        print(format_table(summary, horizon))
    out_csv = path / "evaluations" / f"since-{since:%Y-%m-%d}.csv"
    out_csv.parent.mkdir(exist_ok=True)
    summary.to_csv(out_csv, index=False)
    print(f"scored origins from {since:%Y-%m-%d}; table saved to {out_csv}")
    return 0
