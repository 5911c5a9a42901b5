"""The transformer of each feature a spec may list (their parameters and checks:
`cbi_toolkit.features.params`)."""

from __future__ import annotations

from typing import Any

from cbi_toolkit.features.base import CausalFeature
from cbi_toolkit.features.drivers import (
    Calendar,
    DriverChanges,
    Positioning,
    Regimes,
    RollingCorrelation,
    WeatherAnomalies,
)
from cbi_toolkit.features.technical import (
    MACD,
    RSI,
    Bollinger,
    LogReturns,
    MovingAverages,
    Volatility,
)

FEATURES: dict[str, type[CausalFeature]] = {
    "returns": LogReturns,
    "ma": MovingAverages,
    "rsi": RSI,
    "macd": MACD,
    "bollinger": Bollinger,
    "volatility": Volatility,
    "drivers": DriverChanges,
    "correlation": RollingCorrelation,
    "regimes": Regimes,
    "calendar": Calendar,
    "cot": Positioning,
    "weather": WeatherAnomalies,
}


def make_feature(name: str, params: dict[str, Any], target: str = "zl",
                 roles: dict[str, str] | None = None) -> CausalFeature:
    return FEATURES[name](target=target, roles=roles, **params)
