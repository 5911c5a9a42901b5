"""Plausibility rules: values no market, rate or station makes are refused at the
data stage, naming the file, the date, the value and the fix.

Each source's ``checks:`` mapping states its rules; anything left out takes the
default of the source's role (``ROLE_DEFAULTS``), chosen with a wide margin over
the real snapshot (docs/reliability.md has the measured maxima):

- ``max_move`` (prices): the largest ``|log(P[t] / P[t-1])|`` between consecutive
  observations. Real ZL's largest is 0.105 (2023-06-21, -10%), ZS's TradingView
  roll jumps are 0.165 (-15%); a unit error x100 is 4.6, a cut ``47.56`` -> ``4`` 2.5.
- ``max_jump`` (rates, levels, positioning): the largest one-step change in units
  of the series' interquartile range (robust to the outliers it looks for). WTI's
  fall to -36.98 on 2020-04-20 is 1.7 IQR, VIX's 2020-03-16 jump 2.9; a rate
  x100 is ~200.
- ``range``: ``[low, high]``, values outside are refused (weather, rates).
- ``sentinels``: provider missing-value codes (GHCN's -9999, its tenths -999.9,
  99999 fillers) that must be blank instead, never a number.

``false`` (YAML ``off``) turns ``max_move``, ``max_jump`` or ``range`` off for that
source, ``sentinels: []`` the sentinel rule; a rule left out or null takes the default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cbi_toolkit.errors import DataError
from cbi_toolkit.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

_COMMON_SENTINELS = (-99999.0, -9999.0, -999.9, 9999.0, 99999.0)

#: role -> rules used where the spec leaves a rule out (None: the rule is off)
ROLE_DEFAULTS: dict[str, dict] = {
    "price": {"max_move": 0.4, "max_jump": None, "range": None,
              "sentinels": _COMMON_SENTINELS},
    "rate": {"max_move": None, "max_jump": 10.0, "range": (-20.0, 100.0),
             "sentinels": _COMMON_SENTINELS},
    "level": {"max_move": None, "max_jump": 10.0, "range": None,
              "sentinels": _COMMON_SENTINELS},
    "positioning": {"max_move": None, "max_jump": 10.0, "range": None,
                    "sentinels": (-99999.0, -9999.0, -999.9)},
    "weather": {"max_move": None, "max_jump": None, "range": (-90.0, 1000.0),
                "sentinels": _COMMON_SENTINELS},
}


class Checks(BaseModel):
    """``checks: {max_move: 0.4, max_jump: 10, range: [lo, hi], sentinels: [-9999]}``.

    A rule left out (or null) takes the role's default; ``false`` (YAML ``off``)
    turns it off, as does ``sentinels: []``."""

    model_config = ConfigDict(extra="forbid")

    max_move: float | Literal[False] | None = Field(
        None, description="prices: largest |log change| between consecutive values")
    max_jump: float | Literal[False] | None = Field(
        None, description="largest one-step change, in interquartile ranges of the series")
    range: tuple[float, float] | Literal[False] | None = Field(
        None, description="[low, high] plausible values")
    sentinels: list[float] | None = Field(
        None, max_length=64, description="provider missing-value codes, refused as values")

    @field_validator("max_move", "max_jump", mode="before")
    @classmethod
    def _positive_or_off(cls, value):
        if value is None or value is False:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError("a positive number, or false (off) to turn the rule off")
        return float(value)

    @field_validator("range")
    @classmethod
    def _ordered(cls, value):
        if value not in (None, False) and not value[0] < value[1]:
            raise ValueError("range is [low, high] with low < high")
        return value

    def resolved(self, role: str) -> dict:
        """This source's rules, role defaults filled in; a rule that is off is None."""
        out = dict(ROLE_DEFAULTS.get(role, ROLE_DEFAULTS["level"]))
        for key in out:
            value = getattr(self, key)
            if value is False:
                out[key] = None
            elif value is not None:
                out[key] = value
        return out


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def check_series(series: pd.Series, checks: Checks, role: str, label: str, where: str) -> None:
    """Refuse the first implausible value of ``series`` (provider dates, NaN = blank).

    ``where`` names the spec entry (``data[0]``) for the fix."""
    rules = checks.resolved(role)
    obs = series.dropna()
    if obs.empty:
        return
    name = series.name
    values = obs.to_numpy(dtype=float)
    dates = obs.index
    fix_key = f"{where}.checks"

    sentinels = np.asarray(rules["sentinels"] or [], dtype=float)
    if sentinels.size:
        hit = np.isin(values, sentinels)
        if hit.any():
            i = int(hit.argmax())
            raise DataError(f"{label}: series {name!r} holds {_fmt(values[i])} on "
                            f"{dates[i]:%Y-%m-%d}, a missing-value code ({int(hit.sum())} such "
                            f"cells); blank those cells, or set {fix_key}.sentinels if the value "
                            "is real")
    if rules["range"] is not None:
        low, high = rules["range"]
        out = (values < low) | (values > high)
        if out.any():
            i = int(out.argmax())
            raise DataError(f"{label}: series {name!r} is {_fmt(values[i])} on "
                            f"{dates[i]:%Y-%m-%d}, outside the plausible range [{_fmt(low)}, "
                            f"{_fmt(high)}] ({int(out.sum())} values); fix the cells, or widen "
                            f"{fix_key}.range if they are real")
    if len(values) < 2:
        return
    max_move = rules["max_move"]
    if max_move is not None and (values > 0).all():
        moves = np.abs(np.diff(np.log(values)))
        big = moves > max_move
        if big.any():
            i = int(big.argmax()) + 1
            raise DataError(
                f"{label}: series {name!r} moves from {_fmt(values[i - 1])} on "
                f"{dates[i - 1]:%Y-%m-%d} to {_fmt(values[i])} on {dates[i]:%Y-%m-%d} (log move "
                f"{np.log(values[i] / values[i - 1]):+.3f}, max_move {_fmt(max_move)}); no market "
                "moves so far in one day: a unit error, a cut line or a bad tick? fix the file, "
                f"or raise {fix_key}.max_move if the move is real")
    max_jump = rules["max_jump"]
    if max_jump is not None:
        q1, q3 = np.quantile(values, [0.25, 0.75])
        scale = (q3 - q1) or (values.max() - values.min())
        if scale > 0:
            jumps = np.abs(np.diff(values)) / scale
            big = jumps > max_jump
            if big.any():
                i = int(big.argmax()) + 1
                raise DataError(
                    f"{label}: series {name!r} jumps from {_fmt(values[i - 1])} on "
                    f"{dates[i - 1]:%Y-%m-%d} to {_fmt(values[i])} on {dates[i]:%Y-%m-%d} "
                    f"({jumps[i - 1]:.1f} interquartile ranges, max_jump {_fmt(max_jump)}); a "
                    f"unit error or a bad value? fix the file, or raise {fix_key}.max_jump if "
                    "the change is real")
