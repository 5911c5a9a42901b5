"""Models: the torch network (network), its skorch regressor (regressor: the estimator;
loss, batching, callbacks, persistence beside it) and the sklearn baselines and peers."""

from cbi_toolkit.models.baselines import BASELINES, Drift, LastStepRidge, RandomWalk, VolatilityRandomWalk
from cbi_toolkit.models.batching import TailSplit
from cbi_toolkit.models.callbacks import WarmupCosine, WarmupPlateau
from cbi_toolkit.models.device import resolve_device, resolve_precision
from cbi_toolkit.models.loss import GaussianForecastLoss
from cbi_toolkit.models.network import ForecastNet
from cbi_toolkit.models.peers import AutoARIMA, AutoETS, GarchRandomWalk
from cbi_toolkit.models.persistence import load_regressor, save_regressor
from cbi_toolkit.models.regressor import ForecastRegressor, TrainingDivergedError

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
    "WarmupPlateau",
    "load_regressor",
    "resolve_device",
    "resolve_precision",
    "save_regressor",
]
