"""The few calls a script needs, re-exported as ``import cbi_toolkit as cbi``.

``load_spec`` -> ``load_data`` -> ``evaluate`` (walk-forward, beside the baselines) ->
``fit`` -> ``forecast`` (prices, target dates on the exchange calendar, 80%/95% bands).
The fitted model is the plain scikit-learn Pipeline of ``build_pipeline``: its
``fit``/``predict`` work on windows and forward log returns as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cbi_toolkit.dataset import Samples
from cbi_toolkit.spec import Spec

__all__ = ["build_pipeline", "evaluate", "fit", "forecast", "load_data", "load_spec"]


def load_spec(path: str | Path, overrides: dict[str, Any] | None = None) -> Spec:
    """Read and validate a spec; ``overrides`` as on the command line's ``--set``,
    e.g. ``{"training.max_epochs": 3}``."""
    from cbi_toolkit.spec import load_spec as _load

    return _load(path, overrides=overrides)


def load_data(spec: Spec, data_dir: str | Path | None = None) -> Samples:
    """The spec's samples: one window of causal features per origin, forward log-return
    targets (NaN where the future is not known yet), the price and date of each origin.
    ``data_dir`` defaults as for ``cbi-run``: ``$CBI_DATA_DIR``, else ../shared/data.
    A spec with ``targets``: `cbi_toolkit.pooled_dataset.PooledSamples` (every commodity's
    samples on their shared origins)."""
    from cbi_toolkit.run.prepare import prepare

    if spec.targets:
        from cbi_toolkit.pooled_run import prepare_pooled

        return prepare_pooled(spec, None if data_dir is None else str(data_dir))[1]

    return prepare(spec, None if data_dir is None else str(data_dir))[1]


def build_pipeline(spec: Spec, verbose: int = 0) -> Pipeline:
    """The spec's unfitted Pipeline (scaler -> network); ``verbose=1`` prints epochs.
    A spec with ``targets``: the pooled network on every commodity's windows."""
    from cbi_toolkit.pipeline import build_pipeline as _build

    if spec.targets:
        from cbi_toolkit.pooled import build_pooled_pipeline

        return build_pooled_pipeline(spec, verbose=verbose)

    return _build(spec, verbose=verbose)


def evaluate(spec: Spec, data: Samples, verbose: int = 0):
    """Walk-forward evaluation exactly as ``cbi-run`` does it: the net, the spec's baselines
    and the shipped model (the net combined with the random walk where it earns a weight)
    on the spec's folds, pooled over the reported span with Diebold-Mariano p-values.
    Returns a `cbi_toolkit.skill.Assessment` (``.summary``, ``.folds``, ``.versus``...);
    for a spec with ``targets`` a `cbi_toolkit.pooled.PooledAssessment` (``.series[name]``
    per commodity, ``.comparison``: pooled against single-commodity nets)."""
    from cbi_toolkit.backtest import labelled_samples
    from cbi_toolkit.skill import assess

    if spec.targets:
        from cbi_toolkit.pooled import assess_pooled
        from cbi_toolkit.pooled_dataset import labelled_pooled

        return assess_pooled(spec, labelled_pooled(data), verbose=verbose)

    return assess(spec, labelled_samples(data), verbose=verbose)


def fit(spec: Spec, data: Samples, verbose: int = 0) -> Pipeline:
    """The spec's Pipeline fitted on every origin whose targets are known."""
    from cbi_toolkit.backtest import labelled_samples
    from cbi_toolkit.pooled_dataset import labelled_pooled

    if spec.targets:
        train = labelled_pooled(data)
        return build_pipeline(spec, verbose=verbose).fit(train.X, train.y)
    train = labelled_samples(data)
    return build_pipeline(spec, verbose=verbose).fit(
        *train.training_set(np.arange(len(train)), valid_fraction=spec.training.valid_fraction))


def forecast(model: Pipeline, data: Samples, evaluation=None) -> pd.DataFrame:
    """Forecast every horizon from the newest origin in prices: one row per horizon with
    the origin and target date (the exchange calendar), the predicted price, the 80% and
    95% bounds and sigma. Without an ``evaluation``: the net's own mean and Gaussian band;
    with one (from `evaluate`): the shipped forecast, the net combined with the random walk
    and its conformal band calibrated on the walk-forward residuals, as ``cbi-run`` ships it."""
    from cbi_toolkit.calibration import ShippedModel
    from cbi_toolkit.forecast import forecast_latest

    if evaluation is None:
        intervals, shipping, series = "gaussian", ShippedModel({}, {}), ""
    else:
        intervals, shipping = "conformal", evaluation.shipped()
        series = evaluation.spec.target
    frame = forecast_latest(model, data, intervals, shipping, version="", run_id="",
                            series=series)
    return frame.drop(columns=["model_version", "run_id", "created_at"], errors="ignore")
