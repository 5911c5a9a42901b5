"""Target dates follow the CBOT grains calendar, checked on real closures and real ZL bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.forecast import forecast_frame
from cbi_toolkit.trading_calendar import add_sessions, is_session, sessions, target_date

# Real CBOT grain closures on weekdays.
CLOSED = {
    "2007-01-02": "national day of mourning, President Ford",
    "2024-01-15": "Martin Luther King Jr. Day",
    "2024-02-19": "Presidents' Day",
    "2024-03-29": "Good Friday",
    "2023-04-07": "Good Friday",
    "2010-04-02": "Good Friday",
    "2024-06-19": "Juneteenth",
    "2022-06-20": "Juneteenth (observed)",
    "2023-11-23": "Thanksgiving",
    "2024-11-28": "Thanksgiving",
    "2004-06-11": "national day of mourning, President Reagan",
    "2001-09-11": "September 11 attacks",
    "2025-01-09": "national day of mourning, President Carter",
}


@pytest.mark.parametrize("day", sorted(CLOSED))
def test_closures_are_not_sessions(day):
    assert not is_session(day), CLOSED[day]


def test_ordinary_days_and_the_2018_12_05_session(data_dir):
    for day in ("2024-01-16", "2023-11-24", "2024-06-18", "2021-06-18"):
        assert is_session(day), day
    # President Bush's funeral: the exchange calendar library marks CBOT grains shut, but both
    # ZL sources hold a full-volume bar that day, so it is a session here.
    tv = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", index_col="date")
    assert tv.loc["2018-12-05", "volume"] > 10_000
    assert is_session("2018-12-05")


def test_main_zl_series_trades_only_on_sessions(data_dir):
    """Every bar of the main ZL series 2007..2020 falls on a calendar session (the
    series' own 2021-22 holiday labels are off by a day, see PROVENANCE.md)."""
    dates = pd.DatetimeIndex(pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv")["date"])
    dates = dates[(dates >= "2007-01-01") & (dates < "2021-01-01")]
    off = dates.difference(sessions(dates[0], dates[-1]))
    assert list(off.strftime("%Y-%m-%d")) == ["2010-04-02"]  # a TradingView bar on Good Friday
    for day in CLOSED:
        assert pd.Timestamp(day) not in dates or day == "2010-04-02"


def test_horizons_count_sessions_across_holidays():
    # 2023-12-29 + 5: Jan 2, 3, 4, 5, 8 (New Year's Day closed).
    assert target_date("2023-12-29", 5).isoformat() == "2024-01-08"
    # + 21: January 2024 has 21 sessions (New Year's Day and MLK Day closed).
    assert target_date("2023-12-29", 21).isoformat() == "2024-01-31"
    # + 63: February has 20 sessions (Presidents' Day), March 20 (Good Friday) -> Apr 2.
    assert target_date("2023-12-29", 63).isoformat() == "2024-04-02"
    # From a Wednesday before Thanksgiving, one session ahead is Friday.
    assert add_sessions("2023-11-22", 1) == pd.Timestamp("2023-11-24")
    assert add_sessions("2024-06-18", 1) == pd.Timestamp("2024-06-20")
    # An origin that is itself a holiday counts from the next session.
    assert add_sessions("2024-01-15", 1) == pd.Timestamp("2024-01-16")


def test_forecast_frame_dates_every_horizon_on_the_calendar():
    horizons = ["1w", "1m", "3m", "6m", "12m"]
    frame = forecast_frame(pd.Timestamp("2023-12-29"), 47.6, horizons, np.zeros(5),
                           np.full(5, 0.05), "gaussian", None, "v", "r", pd.Timestamp.now(tz="UTC"),
                           "zl")
    dates = [d.isoformat() for d in frame["target_date"]]
    assert dates[:3] == ["2024-01-08", "2024-01-31", "2024-04-02"]
    assert all(is_session(d) for d in dates)
    assert dates == sorted(dates)
