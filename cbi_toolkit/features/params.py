"""The features a spec may list, their parameters with defaults, and the checks on them:
plain Python, so loading a spec (``cbi-run --check``) needs neither pandas nor scikit-learn.
The transformers (`cbi_toolkit.features.registry`) take the same parameters with the
same defaults (tests/test_features.py holds them equal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Feature name -> its parameters and their defaults (``target`` and ``roles`` come from
#: the spec, not from here).
PARAMS: dict[str, dict[str, Any]] = {
    "returns": {"lags": (1, 5, 10, 21, 63)},
    "ma": {"windows": (10, 50, 200)},
    "rsi": {"window": 14},
    "macd": {"fast": 12, "slow": 26, "signal": 9},
    "bollinger": {"window": 20, "k": 2.0},
    "volatility": {"windows": (21, 63)},
    "drivers": {"lags": (1, 5, 21)},
    "correlation": {"window": 30},
    "regimes": {"window": 252},
    "calendar": {},
    "cot": {"change": 21, "zscore": 756},
    "weather": {"window": 21, "min_years": 3},
}


def positive_ints(name: str, values, allow_empty: bool = False) -> None:
    values = list(values) if isinstance(values, list | tuple) else [values]
    if not values and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"{name} must hold positive integers, got {v!r}")


def _macd(p: dict[str, Any]) -> None:
    positive_ints("fast/slow/signal", [p["fast"], p["slow"], p["signal"]])
    if p["fast"] >= p["slow"]:
        raise ValueError(f"fast ({p['fast']}) must be shorter than slow ({p['slow']})")


def _bollinger(p: dict[str, Any]) -> None:
    positive_ints("window", p["window"])
    if not p["k"] > 0:
        raise ValueError(f"k must be positive, got {p['k']!r}")


def _volatility(p: dict[str, Any]) -> None:
    positive_ints("windows", p["windows"])
    if min(p["windows"]) < 2:
        raise ValueError("volatility windows must be at least 2 days")


def _correlation(p: dict[str, Any]) -> None:
    positive_ints("window", p["window"])
    if p["window"] < 5:
        raise ValueError("a correlation window needs at least 5 days")


def _regimes(p: dict[str, Any]) -> None:
    positive_ints("window", p["window"])
    if p["window"] < 200:
        raise ValueError("the regime window must be at least 200 days (it holds MA200)")


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "returns": lambda p: positive_ints("lags", p["lags"]),
    "ma": lambda p: positive_ints("windows", p["windows"]),
    "rsi": lambda p: positive_ints("window", p["window"]),
    "macd": _macd,
    "bollinger": _bollinger,
    "volatility": _volatility,
    "drivers": lambda p: positive_ints("lags", p["lags"]),
    "correlation": _correlation,
    "regimes": _regimes,
    "calendar": lambda p: None,
    "cot": lambda p: positive_ints("change/zscore", [p["change"], p["zscore"]]),
    "weather": lambda p: positive_ints("window/min_years", [p["window"], p["min_years"]]),
}


def validate_feature_params(name: str, params: dict[str, Any]) -> None:
    """Raise ValueError naming the feature if ``params`` are unknown or out of range."""
    allowed = sorted(PARAMS[name])
    unknown = [p for p in params if p not in allowed]
    if unknown:
        raise ValueError(f"feature {name!r}: unknown parameter {unknown[0]!r}; "
                         f"allowed: {', '.join(allowed) or '(none)'}")
    try:
        CHECKS[name]({**PARAMS[name], **params})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"feature {name!r}: {exc}") from None
