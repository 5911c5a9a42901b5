"""Scoring a saved model on newer origins (``cbi-run --evaluate``): the net, the shipped
model and the baselines of one commodity's samples, per horizon; shared by single and
pooled runs (`cbi_toolkit.run.saved`, `cbi_toolkit.pooled_saved`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.calibration import NET, VOL, Calibration, ShippedModel, widened
from cbi_toolkit.dataset import Samples
from cbi_toolkit.errors import CbiError
from cbi_toolkit.evaluation import summarise
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.run.gate import MODEL
from cbi_toolkit.run.options import RunEvents
from cbi_toolkit.skill import baselines_for
from cbi_toolkit.spec import Spec
from cbi_toolkit.storage import atomic_write_text


def score_since(spec: Spec, samples: Samples,
                net: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], meta: dict,
                since: pd.Timestamp, train_end: pd.Timestamp) -> pd.DataFrame:
    """The saved net (``net(rows)``: its mean and sigma at the origins ``rows`` of
    ``samples``), the shipped model (``meta``'s combination and calibrations) and the
    baselines (fitted on the origins up to ``train_end``) scored per horizon on the
    origins from ``since`` whose target is known."""
    labelled = labelled_samples(samples)
    train = np.flatnonzero(labelled.dates <= train_end)
    shipping = ShippedModel.from_meta(meta)
    baselines = {name: base.fit(labelled.X[train], labelled.y[train])
                 for name, base in baselines_for(spec).items()}
    for model in baselines.values():  # missing features of ended drivers: their training mean
        model.set_params(scale__fill_missing=True)
    preds, cals = [], {}
    for j, horizon in enumerate(samples.horizons):
        test = np.flatnonzero((samples.dates >= since) & np.isfinite(samples.y[:, j]))
        if not len(test):
            continue
        sub = samples.subset(test)
        out = {NET: net(test), **{name: predict_dist(model, sub.X)
                                  for name, model in baselines.items()}}
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
    return summarise(preds, cals=widened(preds, cals))


def warn_in_sample(since: pd.Timestamp, train_end: pd.Timestamp, events: RunEvents) -> None:
    if since <= train_end:
        events.note(f"warning: --since {since:%Y-%m-%d} is not after the model's training data "
                    f"(ends {train_end:%Y-%m-%d}); those origins are in-sample")


def save_evaluation(path: Path, since: pd.Timestamp, summary: pd.DataFrame) -> Path:
    """``evaluations/since-<date>.csv`` in the run folder."""
    out_csv = path / "evaluations" / f"since-{since:%Y-%m-%d}.csv"
    out_csv.parent.mkdir(exist_ok=True)
    atomic_write_text(out_csv, summary.to_csv(index=False))
    return out_csv
