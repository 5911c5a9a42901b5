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
    ONLINE,
    VOL,
    CalibrationPolicy,
    Combination,
    ShippedModel,
    calibration_for,
    choose_halflife,
    combination_for,
    combine,
    combined,
    model_calibrations,
    residuals,
    sigma_on_record,
    sigma_record,
    sourced,
    widened,
)
from cbi_toolkit.dataset import Samples
from cbi_toolkit.evaluation import calibrations, dm_table, score_folds, summarise
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.pipeline import build_baselines, build_pipeline
from cbi_toolkit.spec import Spec
from cbi_toolkit.walkforward import DEFAULT_TEST_SIZE


@dataclass
class Assessment:
    """Walk-forward results. ``summary``: pooled over the reported span (the test folds
    with ``validation.test_start``) per model and horizon, with Diebold-Mariano tests
    against the random walk; ``selection``: the same over the selection folds (None
    without ``test_start``); ``folds``: per fold; ``versus``: the model against every
    baseline; ``combinations``: the combination each fold used; ``predictions``: the
    out-of-sample predictions of every model; ``calibrations``: per (model, horizon, fold);
    ``origins``: the samples' origin dates; ``policy``: how folds were calibrated, with
    ``halflife_errors`` the selection folds' coverage error per half-life tried."""

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
    origins: pd.DatetimeIndex | None = None
    policy: CalibrationPolicy = CalibrationPolicy()
    halflife_errors: dict[str, dict[str, float]] | None = None

    def final_calibration(self, model: str, horizon: str):
        """The calibration of ``model`` for a fit on every origin: from every residual (the
        shipped model's standardised by the sigma it ships with, `model_calibrations`)."""
        preds = self.predictions
        if model == MODEL and self.spec.forecast.combine:
            preds = sourced(preds, horizon, self.final_combination(horizon).sigma)
        return calibration_for(preds, model, horizon, None, self.origins, self.policy)

    def shipped(self) -> ShippedModel:
        """The combination and calibration the final model ships with, from every fold."""
        return ShippedModel({h: self.final_combination(h) for h in self.spec.horizons},
                            {h: self.final_calibration(MODEL, h) for h in self.spec.horizons})

    def final_combination(self, horizon: str) -> Combination:
        """The final model's combination, from every fold; the net's sigma only where it
        held up on the folds that used it (`sigma_record`)."""
        if not self.spec.forecast.combine:
            return Combination(1.0, NET)
        comb = combination_for(self.predictions, horizon, None, self.spec.validation.stride)
        roles = {p.role for p in self.predictions}
        if comb.sigma == NET and not sigma_record(self.predictions, self.calibrations,
                                                  self.combinations, horizon, roles,
                                                  self.spec.validation.stride):
            return Combination(comb.weight, VOL, comb.n)
        return comb

    def calibration_all(self) -> dict[str, dict]:
        """Every model's final calibration, ``{"model/horizon": json}`` (for --evaluate)."""
        return {f"{m}/{h}": c.to_json() for m in {p.model for p in self.predictions}
                for h in self.spec.horizons if (c := self.final_calibration(m, h)) is not None}

    def combination_line(self, horizon: str) -> str:
        """How much the shipped forecast at ``horizon`` leans on the random walk, for the
        table's reader."""
        if not self.spec.forecast.combine:
            return "model = the net alone (forecast.combine: false)"
        weights = self.weights()[horizon]
        w = [c["weight"] for c in weights]
        sig = sorted({c["sigma"] for c in weights})
        return (f"model = w*net + (1-w)*random walk, w chosen per fold on earlier (selection) "
                f"folds: mean {np.mean(w):.2f} (min {min(w):.2f}, max {max(w):.2f}); sigma from "
                f"{', '.join(sig)}, calibrated; w = 0 means the mean is the random walk's")

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
    return score_predictions(spec, preds, fit_seconds, labelled.dates, fitted)


def calibration_policy(spec: Spec, preds: list[FoldPrediction], origins: pd.DatetimeIndex
                       ) -> tuple[CalibrationPolicy, dict[str, dict[str, float]] | None]:
    """The spec's calibration with ``halflife: auto`` resolved per horizon on the shipped
    model's selection folds (`choose_halflife`), and the coverage error of each candidate."""
    cfg = spec.forecast.calibration
    if cfg.mode != ONLINE:
        return CalibrationPolicy(cfg.mode), None
    if cfg.halflife != "auto":
        return CalibrationPolicy(ONLINE, {h: cfg.halflife for h in spec.horizons}, cfg.every), None
    block = cfg.every or spec.validation.test_size or DEFAULT_TEST_SIZE
    chosen, errors = {}, {}
    for h in spec.horizons:
        res = residuals(preds, MODEL, h, origins)
        chosen[h], errors[h] = choose_halflife(res, block) if res is not None else (None, {})
    return CalibrationPolicy(ONLINE, chosen, cfg.every), errors


def _calibrated(spec: Spec, preds: list[FoldPrediction], origins: pd.DatetimeIndex, used: dict):
    """The calibration policy, per-fold calibrations and per-fold scores of ``preds``, the
    shipped model's folds calibrated on the sigma each ships with (``used``), every band at
    least as wide as the same origin's at a shorter horizon (`widened`)."""
    policy, errors = calibration_policy(spec, preds, origins)
    cals = calibrations(preds, origins, policy) | model_calibrations(preds, used, origins, policy)
    cals = widened(preds, cals)
    return policy, cals, score_folds(preds, cals), errors


def score_predictions(spec: Spec, preds: list[FoldPrediction], fit_seconds: dict[str, list[float]],
                      origins: pd.DatetimeIndex, final: Pipeline | None = None) -> Assessment:
    """Build the shipped model from the backtest's predictions, calibrate every model and
    score it (`assess` without the fits; also re-scores a run's saved fold predictions)."""
    stride = spec.validation.stride
    shipped, used = shipped_predictions(preds, spec.forecast.combine, stride)
    policy, cals, folds, errors = _calibrated(spec, shipped + preds, origins, used)
    checked = sigma_on_record(shipped + preds, cals, used, stride) if spec.forecast.combine else used
    if checked != used:
        used, shipped = checked, combined(preds, checked)  # and score it again
        policy, cals, folds, errors = _calibrated(spec, shipped + preds, origins, used)
    preds = shipped + preds
    fit_seconds = {**fit_seconds, MODEL: fit_seconds[NET]}
    summary = summarise(preds, folds, stride=stride, cals=cals)
    summary["fit_seconds"] = summary["model"].map(lambda m: float(np.mean(fit_seconds[m])))
    selection = (summarise(preds, folds, role="selection", stride=stride, cals=cals)
                 if spec.validation.test_start is not None else None)
    return Assessment(spec, preds, cals, folds, summary, selection,
                      dm_table(preds, stride=stride), used, fit_seconds, final, origins, policy,
                      errors)
