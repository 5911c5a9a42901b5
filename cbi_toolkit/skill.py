"""A spec's walk-forward skill: refit the net and the baselines on every fold, build the
shipped model from them (the combination, `cbi_toolkit.calibration`), calibrate, and
score everything beside the random walk on the same origins.

`cbi-run` and ``cbi.evaluate`` both call `assess`, so a script sees the run's numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cbi_toolkit.backtest import backtest
from cbi_toolkit.calibration import (
    MODEL,
    NET,
    VOL,
    Combination,
    ShippedModel,
    calibration_for,
    combination_for,
    combine,
)
from cbi_toolkit.dataset import Samples
from cbi_toolkit.evaluation import FoldPrediction, calibrations, dm_table, score_folds, summarise
from cbi_toolkit.pipeline import build_baselines, build_pipeline
from cbi_toolkit.spec import Spec


@dataclass
class Assessment:
    """Walk-forward results. ``summary``: pooled over the reported span (the test folds
    with ``validation.test_start``) per model and horizon, with Diebold-Mariano tests
    against the random walk; ``selection``: the same over the selection folds (None
    without ``test_start``); ``folds``: per fold; ``versus``: the model against every
    baseline; ``combinations``: the combination each fold used; ``predictions``: the
    out-of-sample predictions of every model; ``calibrations``: per (model, horizon, fold)."""

    spec: Spec
    predictions: list[FoldPrediction]
    calibrations: dict
    folds: pd.DataFrame
    summary: pd.DataFrame
    selection: pd.DataFrame | None
    versus: pd.DataFrame
    combinations: dict[tuple[str, int], Combination]
    fit_seconds: dict[str, list[float]]
    final: Pipeline | None = None  # the net fitted on every labelled origin, when asked for

    def shipped(self) -> ShippedModel:
        """The combination and calibration the final model ships with, from every fold."""
        spec, stride = self.spec, self.spec.validation.stride
        return ShippedModel(
            {h: combination_for(self.predictions, h, None, stride) if spec.forecast.combine
             else Combination(1.0, NET) for h in spec.horizons},
            {h: calibration_for(self.predictions, MODEL, h, None) for h in spec.horizons})

    def weights(self) -> dict[str, list[dict]]:
        """Per horizon, the combination of each fold (for the report and metrics.json)."""
        return {h: [c.to_json() | {"fold": k} for (hh, k), c in sorted(self.combinations.items())
                    if hh == h] for h in self.spec.horizons}


def baselines_for(spec: Spec) -> dict:
    """The spec's baselines, always with the volatility random walk the combination
    takes its sigma from."""
    models = build_baselines(spec)
    if VOL not in models:
        models[VOL] = build_baselines(spec.model_copy(update={"baselines": [VOL]}))[VOL]
    return models


def shipped_predictions(preds: list[FoldPrediction], combine_net: bool, stride: int = 1
                        ) -> tuple[list[FoldPrediction], dict]:
    """The ``model`` rows: the net combined with the random walk (weights from earlier
    folds), or with ``combine: false`` the net itself."""
    if combine_net:
        return combine(preds, stride)
    mine = [FoldPrediction(MODEL, p.fold, p.horizon, p.y, p.mu, p.sigma, p.price, p.dates, p.role)
            for p in preds if p.model == NET]
    return mine, {(p.horizon, p.fold): Combination(1.0, NET, len(p.y)) for p in mine}


def assess(spec: Spec, labelled: Samples, verbose: int = 0, checkpoint_dir: Path | None = None,
           on_fold: Callable[[int, int], None] | None = None, final: bool = False) -> Assessment:
    """Backtest the spec's net and baselines on ``labelled`` samples and score them;
    with ``final``, also fit the net on all of them (beside the folds, in parallel)."""
    models = {NET: build_pipeline(spec, verbose=verbose), **baselines_for(spec)}
    preds, fit_seconds, fitted = backtest(
        spec, labelled, models, checkpoint_dir=checkpoint_dir, on_fold=on_fold,
        final=build_pipeline(spec, verbose=verbose) if final else None)
    return scored(spec, preds, fit_seconds, fitted)


def scored(spec: Spec, preds: list[FoldPrediction], fit_seconds: dict[str, list[float]],
           final: Pipeline | None = None) -> Assessment:
    """The shipped model's predictions from the net's, calibrations, and every metric, from
    the out-of-sample predictions of the net and the baselines on the spec's folds."""
    stride = spec.validation.stride
    shipped, used = shipped_predictions(preds, spec.forecast.combine, stride)
    preds = shipped + preds
    fit_seconds[MODEL] = fit_seconds[NET]
    cals = calibrations(preds)
    folds = score_folds(preds, cals)
    summary = summarise(preds, folds, stride=stride, cals=cals)
    summary["fit_seconds"] = summary["model"].map(lambda m: float(np.mean(fit_seconds[m])))
    selection = (summarise(preds, folds, role="selection", stride=stride, cals=cals)
                 if spec.validation.test_start is not None else None)
    return Assessment(spec, preds, cals, folds, summary, selection,
                      dm_table(preds, stride=stride), used, fit_seconds, final)
