"""Models: the torch network, its skorch regressor and sklearn baselines."""

from cbi_toolkit.models.baselines import BASELINES, Drift, LastStepRidge, RandomWalk, VolatilityRandomWalk
from cbi_toolkit.models.device import resolve_device, resolve_precision
from cbi_toolkit.models.network import ForecastNet
from cbi_toolkit.models.peers import AutoARIMA, AutoETS, GarchRandomWalk
from cbi_toolkit.models.regressor import (
    ForecastRegressor,
    GaussianForecastLoss,
    TailSplit,
    TrainingDivergedError,
    WarmupCosine,
    load_regressor,
    regressor_from_spec,
    save_regressor,
)

__all__ = [
    "BASELINES",
    "AutoARIMA",
    "AutoETS",
    "Drift",
    "ForecastNet",
    "GarchRandomWalk",
    "ForecastRegressor",
    "GaussianForecastLoss",
    "LastStepRidge",
    "RandomWalk",
    "TailSplit",
    "TrainingDivergedError",
    "VolatilityRandomWalk",
    "WarmupCosine",
    "load_regressor",
    "regressor_from_spec",
    "resolve_device",
    "resolve_precision",
    "save_regressor",
]
