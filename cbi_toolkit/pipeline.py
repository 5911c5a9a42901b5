"""Spec -> scikit-learn Pipeline (scaling -> skorch regressor), and the baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.baselines import BASELINES
from cbi_toolkit.models.ensemble import EnsembleNet
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.spec import Spec

#: the baselines of a run without a spec (no horizon lengths known)
_NO_SPEC_BASELINES = ("random_walk", "drift", "ridge")
#: keyword arguments per baseline beyond the spec's horizons
_BASELINE_KWARGS = {"ridge": {"alpha": 10.0}}
#: ``model.target_scale: volatility`` divides the targets by this trailing volatility (the
#: `vol_random_walk` baseline's window)
TARGET_VOL_WINDOW = 63


def build_pipeline(spec: Spec, verbose: int = 1) -> Pipeline:
    """``Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(...))])``.

    Every spec value is a pipeline parameter, e.g. ``net__module__hidden_dim``,
    ``net__lr``, ``net__criterion__mae``, so GridSearchCV can search it.
    """
    scaled = ({"target_vol_window": TARGET_VOL_WINDOW, "horizon_days": tuple(spec.horizon_days)}
              if spec.model.target_scale == "volatility" else {})
    net = regressor_from_spec(spec.model, spec.training, n_horizons=len(spec.horizons),
                              valid_gap=spec.max_horizon, verbose=verbose, **scaled)
    # with extra history a driver's features are missing there: held at the fold's mean
    return Pipeline([("scale", WindowScaler(fill_missing=spec.history is not None)), ("net", net)])


def regressor_from_spec(model_cfg, training_cfg, n_horizons: int | None = None,
                        valid_gap: int = 0, **overrides: Any) -> ForecastRegressor:
    """A `ForecastRegressor` from a spec's `ModelConfig` and `TrainingConfig`.

    ``n_horizons`` may be left to fit time; ``valid_gap`` is the number of
    samples left out between the training part and the validation tail
    (the longest horizon, in trading days). ``overrides`` go to the constructor.
    """
    params: dict[str, Any] = dict(
        module__hidden_dim=model_cfg.hidden_dim,
        module__num_layers=model_cfg.num_layers,
        module__num_heads=model_cfg.num_heads,
        module__dropout=model_cfg.dropout,
        module__attention=model_cfg.attention,
        criterion__nll=model_cfg.loss.nll,
        criterion__mae=model_cfg.loss.mae,
        criterion__direction=model_cfg.loss.direction,
        lr=training_cfg.lr,
        weight_decay=training_cfg.weight_decay,
        batch_size=training_cfg.batch_size,
        max_epochs=training_cfg.max_epochs,
        patience=training_cfg.patience,
        grad_clip=training_cfg.grad_clip,
        lr_schedule=training_cfg.lr_schedule,
        warmup=training_cfg.warmup,
        warmup_steps=training_cfg.warmup_steps,
        train_stride=training_cfg.stride,
        valid_fraction=training_cfg.valid_fraction,
        valid_gap=int(valid_gap),
        device=training_cfg.device,
        precision=training_cfg.precision,
        seed=training_cfg.seed,
    )
    threads = getattr(training_cfg, "threads", None)
    if threads is not None:
        params["threads"] = threads
    if getattr(training_cfg, "bptt_steps", None) is not None:
        params["module__bptt_steps"] = int(training_cfg.bptt_steps)
    if n_horizons is not None:
        params["module__n_horizons"] = int(n_horizons)
    if getattr(model_cfg, "ensemble", 1) > 1:
        params.update(module=EnsembleNet, module__members=int(model_cfg.ensemble))
    params.update(overrides)
    return ForecastRegressor(**params)


def build_baselines(spec: Spec | None = None) -> dict[str, Pipeline]:
    """The references every model is shown beside, on the same samples: the
    spec's ``baselines`` list, each as ``Pipeline([scale, model])``.

    Baselines that need the horizon lengths (volatility bands, GARCH, ARIMA,
    ETS) get them from ``spec.horizons``; without a spec, the horizon-free
    random walk, drift and ridge.
    """
    names = _NO_SPEC_BASELINES if spec is None else spec.baselines
    out = {}
    for name in names:
        cls = BASELINES[name]
        kwargs = dict(_BASELINE_KWARGS.get(name, {}))
        if spec is not None and "horizons" in cls().get_params():
            kwargs["horizons"] = tuple(spec.horizon_days)
        out[name] = Pipeline([("scale", WindowScaler()), ("model", cls(**kwargs))])
    return out


def predict_dist(pipe: Pipeline, X) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma of the forward log return per horizon, through the pipeline."""
    return pipe[-1].predict_dist(pipe[:-1].transform(X))
