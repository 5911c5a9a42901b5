"""What every source shares: its config fields and the checks on its output."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cbi_toolkit.errors import DataError, safe_text
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources.plausibility import Checks

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

Role = Literal["price", "rate", "level", "positioning", "weather"]


@dataclass(frozen=True)
class SourceContext:
    """Where sources read from: the data directory and the cache."""

    data_dir: Path | None = None
    cache_dir: Path | None = None
    refresh: bool = False


class SourceBase(BaseModel):
    """Fields every source declares in the spec.

    ``columns`` maps the provider's column name to the series name used in the
    spec (``{close: zl}``). ``role`` tells the feature builders what the series
    is. ``ffill_limit`` is how many trading days a value may be carried
    forward when the source has no row for a target trading day. ``release``
    and ``lag_days`` move a value from the date it describes to the date it
    became known. ``checks`` holds the plausibility rules
    (`cbi_toolkit.sources.plausibility`).
    """

    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str] = Field(..., min_length=1)
    role: Role = "level"
    ffill_limit: int = Field(0, ge=0, le=260)
    release: Literal["same_day", "cftc_weekly"] = "same_day"
    lag_days: int = Field(0, ge=0, le=30, description="trading days between date and publication")
    checks: Checks = Field(default_factory=Checks,
                           description="plausibility rules; defaults per role (docs/sources.md)")

    @field_validator("columns")
    @classmethod
    def _names(cls, columns: dict[str, str]) -> dict[str, str]:
        for name in columns.values():
            if not name.isidentifier():
                raise ValueError(f"series name {name!r} must be an identifier (letters, digits, _)")
        return columns

    @property
    def label(self) -> str:
        """How errors and logs name this source."""
        raise NotImplementedError

    def load(self, ctx: SourceContext) -> pd.DataFrame:
        """Return the raw tidy frame (provider dates, renamed columns)."""
        raise NotImplementedError


def tidy(frame: pd.DataFrame, date_column: str, columns: dict[str, str], label: str) -> pd.DataFrame:
    """Validate a provider frame and return it tidy: DatetimeIndex, renamed float columns.

    Refuses (``DataError`` naming ``label`` and the column) a missing column,
    unparseable or tz-mixed dates, duplicate or unsorted dates, non-numeric cells.
    """
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"{label}: no rows; check the file or the source")
    missing = [c for c in [date_column, *columns] if c not in frame.columns]
    if missing:
        names = [str(c) for c in frame.columns]
        if all(_COLUMN_NAME.match(n) for n in names) and len(names) <= 40:
            present = f"columns present: {', '.join(names)}"
        else:  # not a header of names: never echo a line of an unknown file
            present = "its first line is not a header of column names"
        raise DataError(f"{label}: missing column {safe_value(missing[0])}; {present}")
    odd = _ambiguous_dates(frame[date_column])
    if odd is not None:
        raise DataError(f"{label}: column {date_column!r}: {odd}; write every date as "
                        "YYYY-MM-DD")
    try:
        dates = pd.to_datetime(frame[date_column], format="mixed")
    except (ValueError, TypeError) as exc:
        if "timezone" in str(exc).lower():
            raise DataError(f"{label}: column {date_column!r} mixes time zones; write every "
                            "date in one zone (or as plain YYYY-MM-DD)") from None
        raise DataError(f"{label}: column {date_column!r} holds a value that is not a date "
                        f"({safe_text(str(exc).splitlines()[0])[:120]}); use ISO dates "
                        "YYYY-MM-DD") from None
    if not pd.api.types.is_datetime64_any_dtype(dates):
        raise DataError(f"{label}: column {date_column!r} mixes time zones; "
                        "write every date in one zone (or as plain YYYY-MM-DD)")
    if dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    dates = dates.dt.normalize()
    out = pd.DataFrame(index=pd.DatetimeIndex(dates, name="date").as_unit("ns"))
    for raw, name in columns.items():
        raw_cells = frame[raw]
        values = pd.to_numeric(raw_cells, errors="coerce").to_numpy(dtype=float)
        blank = raw_cells.isna() | raw_cells.astype(str).str.strip().isin(["", "."])
        bad = np.isnan(values) & ~blank.to_numpy()
        if bad.any():
            first = raw_cells[bad].iloc[0]
            raise DataError(f"{label}: column {raw!r} has a non-numeric value {safe_value(first)} on "
                            f"{dates[bad].iloc[0]:%Y-%m-%d}; fix or blank the cell")
        inf = np.isinf(values)
        if inf.any():
            raise DataError(f"{label}: column {raw!r} has an infinite value "
                            f"{safe_value(raw_cells[inf].iloc[0])} on {dates[inf].iloc[0]:%Y-%m-%d}; "
                            "fix or blank the cell")
        out[name] = values
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        for pos in np.flatnonzero(out.index == dup):
            odd = _odd_shape(frame[date_column], int(pos))
            if odd is not None:
                raise DataError(f"{label}: column {date_column!r}: {odd}; write every date "
                                "as YYYY-MM-DD")
        raise DataError(f"{label}: duplicate date {dup:%Y-%m-%d}; keep one row per date")
    if not out.index.is_monotonic_increasing:
        pos = int((out.index[1:] <= out.index[:-1]).argmax())
        odd = _odd_shape(frame[date_column], pos + 1)
        if odd is not None:
            raise DataError(f"{label}: column {date_column!r}: {odd}; write every date as "
                            "YYYY-MM-DD")
        raise DataError(f"{label}: dates out of order at {out.index[pos + 1]:%Y-%m-%d} "
                        f"(after {out.index[pos]:%Y-%m-%d}); sort the rows by date")
    return out


_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_ .%()\-]{0,63}$")
_SLASH_DATE = r"^\s*\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\s*$"


def _ambiguous_dates(cells: pd.Series) -> str | None:
    """Day-first or month-first text dates (01/02 is January or February)."""
    if cells.dtype != object:
        return None
    text = cells.dropna().astype(str)
    slash = text.str.match(_SLASH_DATE).to_numpy()
    if not slash.any():
        return None
    i = int(slash.argmax())
    return (f"{safe_value(text.iloc[i])} (row {i + 2}) is a DD/MM/YYYY or MM/DD/YYYY date, "
            "which is ambiguous")


def _odd_shape(cells: pd.Series, pos: int) -> str | None:
    """Why the date at ``pos`` breaks the order, when its text has another shape than
    most dates (a cut line: ``2023-12-2`` among ``2023-12-28``)."""
    if cells.dtype != object:
        return None
    text = cells.astype(str).str.strip()
    shapes = text.str.replace(r"\d", "9", regex=True)
    common = shapes.mode().iloc[0]
    if shapes.iloc[pos] == common:
        return None
    return (f"{safe_value(text.iloc[pos])} (row {pos + 2}) does not have the shape of the "
            f"other dates ({common.replace('9', 'N')}): a cut or mistyped line")


def safe_value(value: object, limit: int = 40) -> str:
    """A cell quoted for an error message: control codes escaped, length bounded."""
    text = safe_text(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
