"""Spec -> scikit-learn Pipeline (scaling -> skorch regressor), and the baselines."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.baselines import BASELINES
from cbi_toolkit.models.regressor import regressor_from_spec
from cbi_toolkit.spec import Spec

#: the baselines of a run without a spec (no horizon lengths known)
_NO_SPEC_BASELINES = ("random_walk", "drift", "ridge")
#: keyword arguments per baseline beyond the spec's horizons
_BASELINE_KWARGS = {"ridge": {"alpha": 10.0}}


def build_pipeline(spec: Spec, verbose: int = 1) -> Pipeline:
    """``Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(...))])``.

    Every spec value is a pipeline parameter, e.g. ``net__module__hidden_dim``,
    ``net__lr``, ``net__criterion__mae``, so GridSearchCV can search it.
    """
    net = regressor_from_spec(spec.model, spec.training, n_horizons=len(spec.horizons),
                              valid_gap=spec.max_horizon, verbose=verbose)
    # with extra history a driver's features are missing there: held at the fold's mean
    return Pipeline([("scale", WindowScaler(fill_missing=spec.history is not None)), ("net", net)])


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
