"""The exchange's trading calendar: target dates of forecasts made ``h`` sessions ahead.

CBOT grains and oilseeds (ZL, ZS, ZM, ZC, ZW) follow pandas_market_calendars'
``CBOT_Agriculture`` calendar. Checked against the real ZL bars in the data
snapshot, it gets the closures right that the alternatives miss: President Ford's
day of mourning (2007-01-02), Good Friday, Juneteenth (from 2022), MLK Day,
Presidents' Day and Thanksgiving. exchange_calendars has no grains calendar (its
``CMES`` is CME Globex equity, open on MLK Day and Thanksgiving), and
pandas_market_calendars' ``CMEGlobex_Grains`` misses Ford's funeral and Juneteenth.

Two days where the library disagrees with both ZL sources in the snapshot are
corrected here: CBOT grains were shut on 2001-09-11 and 2001-09-12 (no bars), and
traded a full session on 2018-12-05 (President Bush's funeral; ~40,000 contracts).
Horizons over history are still counted in rows of the target's own data
(:mod:`cbi_toolkit.targets`); this calendar only dates what lies ahead of the data.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

CALENDAR = "CBOT_Agriculture"
FIRST = pd.Timestamp("1990-01-01")
CLOSED = pd.DatetimeIndex(["2001-09-11", "2001-09-12"])
OPEN = pd.DatetimeIndex(["2018-12-05"])


@lru_cache(maxsize=8)
def _sessions(end_year: int) -> pd.DatetimeIndex:
    import pandas_market_calendars as mcal  # slow import (~1 s): only when a date is needed

    days = mcal.get_calendar(CALENDAR).valid_days(FIRST, pd.Timestamp(f"{end_year}-12-31"))
    days = pd.DatetimeIndex(days).tz_localize(None).normalize()
    return days.difference(CLOSED).union(OPEN)


def sessions(start, end) -> pd.DatetimeIndex:
    """CBOT grain sessions from ``start`` to ``end`` inclusive (tz-naive midnight)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    days = _sessions(max(end.year, pd.Timestamp.now().year) + 1)
    return days[(days >= start) & (days <= end)]


def is_session(day) -> bool:
    day = pd.Timestamp(day).normalize()
    return bool(len(sessions(day, day)))


def add_sessions(origin, n: int) -> pd.Timestamp:
    """The ``n``-th session after ``origin`` (``origin`` itself need not be a session)."""
    origin = pd.Timestamp(origin).normalize()
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    end_year = max(origin.year + n // 200 + 2, pd.Timestamp.now().year + 1)
    days = _sessions(end_year)
    pos = int(np.searchsorted(days.values, origin.to_datetime64(), side="right"))
    return days[pos + n - 1]


def target_date(origin, steps: int) -> date:
    """The date a forecast ``steps`` sessions ahead of ``origin`` is for."""
    return add_sessions(origin, steps).date()
