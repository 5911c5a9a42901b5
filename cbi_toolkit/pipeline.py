"""Spec -> scikit-learn Pipeline (scaling -> skorch regressor), and the baselines."""

from __future__ import annotations

import numpy as np
from sklearn.pipeline import Pipeline

from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.baselines import Drift, LastStepRidge, RandomWalk
from cbi_toolkit.models.regressor import regressor_from_spec
from cbi_toolkit.spec import Spec


def build_pipeline(spec: Spec, verbose: int = 1) -> Pipeline:
    """``Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(...))])``.

    Every spec value is a pipeline parameter, e.g. ``net__module__hidden_dim``,
    ``net__lr``, ``net__criterion__mae``, so GridSearchCV can search it.
    """
    net = regressor_from_spec(spec.model, spec.training, n_horizons=len(spec.horizons),
                              valid_gap=spec.max_horizon, verbose=verbose)
    return Pipeline([("scale", WindowScaler()), ("net", net)])


def build_baselines() -> dict[str, Pipeline]:
    """The naive references every model is shown beside, on the same samples."""
    return {
        "random_walk": Pipeline([("scale", WindowScaler()), ("model", RandomWalk())]),
        "drift": Pipeline([("scale", WindowScaler()), ("model", Drift())]),
        "ridge": Pipeline([("scale", WindowScaler()), ("model", LastStepRidge(alpha=10.0))]),
    }


def predict_dist(pipe: Pipeline, X) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sigma of the forward log return per horizon, through the pipeline."""
    return pipe[-1].predict_dist(pipe[:-1].transform(X))
