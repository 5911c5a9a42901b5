"""``cbi-run --predict`` and ``--evaluate`` on a pooled run's folder: its saved pooled
model (``model/``, `cbi_toolkit.artifacts`) on the current data, each commodity through
its own shipped combination and calibration, as the run forecast and scored it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cbi_toolkit import track_record
from cbi_toolkit.artifacts import load_pipeline
from cbi_toolkit.calibration import ShippedModel
from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.pooled_dataset import PooledSamples
from cbi_toolkit.pooled_run import pooled_forecasts, prepare_pooled
from cbi_toolkit.run.folder import model_version, open_run_folder
from cbi_toolkit.run.options import EvaluationResult, RunEvents, RunOptions, RunResult
from cbi_toolkit.run.publish import write_sink
from cbi_toolkit.run.scoring import save_evaluation, score_since, warn_in_sample
from cbi_toolkit.spec import Spec
from cbi_toolkit.storage import atomic_write_text


def load_pooled_run(run_dir: str | Path, data_dir: str | None, allow_ended: bool = False
                    ) -> tuple[Spec, PooledSamples, Pipeline, dict, Path]:
    """A pooled run's spec, the current data's pooled samples, its fitted pooled pipeline,
    its meta and its folder; refuses a model from another run or features that differ."""
    path, spec, _ = open_run_folder(run_dir)
    if not (path / "model").is_dir():
        raise ArtifactError(f"{path}: no model/; the run did not finish (or predates saved "
                            "pooled models); run `cbi-run SPEC` again")
    pipe, meta = load_pipeline(path / "model")
    if meta.get("model_version") != model_version(spec) or meta.get("targets") != spec.commodities:
        raise ArtifactError(f"{path / 'model'}: saved by model version "
                            f"{str(meta.get('model_version'))[:80]!r} for "
                            f"{meta.get('targets')!r}, but this run's spec.yaml gives "
                            f"{model_version(spec)!r} for {spec.commodities!r}: the model comes "
                            "from another run; use that run's folder")
    _, pooled = prepare_pooled(spec, data_dir, allow_ended=allow_ended)
    for c, member in pooled.members.items():
        saved = meta["series"][c]["feature_names"]
        if member.feature_names != saved:
            raise ArtifactError(f"{path}: the data now gives {c} features "
                                f"{len(member.feature_names)} that differ from the saved "
                                f"model's {len(saved)}")
    return spec, pooled, pipe, meta, path


def predict_pooled_run(run_dir: str | Path, options: RunOptions | None = None,
                       events: RunEvents | None = None) -> RunResult:
    """Every commodity's forecast from the newest shared origin of the current data,
    without retraining, to ``predictions/origin-<date>.csv``; the forecasts (and actuals)
    of the commodities that passed their gate go to the sink. ``gate_failed`` when any
    commodity failed its gate, as the run."""
    events, options = events or RunEvents(), options or RunOptions()
    spec, pooled, pipe, meta, path = load_pooled_run(run_dir, options.data_dir)
    shipping = {c: ShippedModel.from_meta(meta["series"][c]) for c in pooled.commodities}
    forecasts = pooled_forecasts(pipe, pooled, shipping, meta["intervals"],
                                 meta["model_version"], meta["run_id"])
    out = path / "predictions" / f"origin-{pooled.dates[-1]:%Y-%m-%d}.csv"
    out.parent.mkdir(exist_ok=True)
    atomic_write_text(out, forecasts.to_csv(index=False))
    events.forecast(forecasts, (95,))
    passed = [c for c in pooled.commodities if meta["series"][c].get("gate_passed", False)]
    held = [c for c in pooled.commodities if c not in passed]
    if not passed:
        events.note(f"the run failed its deploy gate for every commodity; forecasts kept in "
                    f"{out}, not written to the sink")
        return RunResult("gate_failed", path, forecasts, held)
    actuals = pd.concat([track_record.actual_rows(
        track_record.target_closes(spec.for_target(c), options.data_dir), c) for c in passed],
        ignore_index=True)
    n = write_sink(spec, options.sink, forecasts[forecasts["series"].isin(passed)], path, events,
                   kept=out, extra={"actuals": actuals})
    if held:
        events.note(f"the run failed its deploy gate for {', '.join(held)}; their forecasts are "
                    f"kept in {out}, not written to the sink")
        return RunResult("gate_failed", path, forecasts, held, n)
    return RunResult("done", path, forecasts, sink_rows=n)


def evaluate_pooled_run(run_dir: str | Path, since: pd.Timestamp, data_dir: str | None = None,
                        events: RunEvents | None = None) -> EvaluationResult:
    """Each commodity scored as `cbi_toolkit.run.saved.evaluate_run` scores a single run:
    the pooled net's output for it, its shipped model and its baselines on the origins
    from ``since``; one summary with a ``series`` column."""
    events = events or RunEvents()
    spec, pooled, pipe, meta, path = load_pooled_run(run_dir, data_dir, allow_ended=True)
    pipe.set_params(scale__fill_missing=True)  # missing features of ended drivers: their mean
    scored = np.flatnonzero(pooled.dates >= since)
    mu = np.full((len(pooled), pooled.y.shape[1]), np.nan)
    sigma = mu.copy()
    if len(scored):
        mu[scored], sigma[scored] = predict_dist(pipe, pooled.X[scored])
    train_end = pd.Timestamp(meta["train_end"])
    warn_in_sample(since, train_end, events)
    tables = []
    for c, member in pooled.members.items():
        cols = pooled.columns(c)
        summary = score_since(spec.for_target(c), member,
                              lambda rows, cols=cols: (mu[rows, cols], sigma[rows, cols]),
                              meta["series"][c], since, train_end)
        tables.append(summary.assign(series=c))
    summary = pd.concat(tables, ignore_index=True)
    return EvaluationResult(summary, list(pooled.horizons), since,
                            save_evaluation(path, since, summary))
