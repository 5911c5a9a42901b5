"""Feature names a spec may list, and their transformers."""

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


def validate_feature_params(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming the feature if ``params`` are unknown or out of range."""
    cls = FEATURES[name]
    allowed = [p for p in cls._get_param_names() if p not in ("target", "roles")]
    unknown = [p for p in params if p not in allowed]
    if unknown:
        raise ValueError(f"feature {name!r}: unknown parameter {unknown[0]!r}; "
                         f"allowed: {', '.join(allowed) or '(none)'}")
    try:
        make_feature(name, params).check_params()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r}: {exc}") from None
