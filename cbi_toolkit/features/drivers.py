"""Features of the drivers: their own changes, their correlation with the
target, and market regimes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbi_toolkit.features.base import CausalFeature
from cbi_toolkit.seasonal import causal_monthly_z


def _change(series: pd.Series, role: str, lag: int) -> pd.Series:
    """Log change for prices and levels that stay positive; plain difference for
    rates (they can be zero or negative)."""
    if role == "rate" or (series <= 0).any():
        return series - series.shift(lag)
    logs = np.log(series)
    return logs - logs.shift(lag)


class DriverChanges(CausalFeature):
    """Change of every price, rate and level driver over each lag."""

    def __init__(self, target: str = "zl", roles=None, lags=(1, 5, 21)):
        self.target, self.roles, self.lags = target, roles, lags

    @property
    def lookback(self):
        return max(self.lags)

    def _compute(self, frame):
        out = {}
        for col in self.series_with_role(frame, "price", "rate", "level"):
            for k in self.lags:
                out[f"{col}_chg_{k}"] = _change(frame[col], self.roles[col], k)
        return pd.DataFrame(out, index=frame.index)


class RollingCorrelation(CausalFeature):
    """Rolling correlation of the target's daily returns with each price and level
    driver's. Rates are left out: they sit unchanged for months (zero variance,
    undefined correlation)."""

    def __init__(self, target: str = "zl", roles=None, window: int = 30):
        self.target, self.roles, self.window = target, roles, window

    @property
    def lookback(self):
        return self.window + 1

    def _compute(self, frame):
        r = self.log_price(frame).diff()
        out = {}
        for col in self.series_with_role(frame, "price", "level"):
            d = _change(frame[col], self.roles[col], 1)
            out[f"corr_{col}_{self.window}"] = r.rolling(self.window).corr(d)
        return pd.DataFrame(out, index=frame.index)


class Regimes(CausalFeature):
    """Volatility regime (21-day vol over its trailing median), trend regime
    (MA50 above MA200) and rate regime (each rate minus its trailing mean)."""

    def __init__(self, target: str = "zl", roles=None, window: int = 252):
        self.target, self.roles, self.window = target, roles, window

    @property
    def lookback(self):
        return self.window + 21

    def _compute(self, frame):
        p = frame[self.target]
        vol = np.log(p).diff().rolling(21).std()
        out = {
            "regime_vol": vol / vol.rolling(self.window).median(),
            "regime_trend": (p.rolling(50).mean() > p.rolling(200).mean()).astype(float)
            .where(p.rolling(200).count() == 200),
        }
        for col in self.series_with_role(frame, "rate"):
            out[f"regime_{col}"] = frame[col] - frame[col].rolling(self.window).mean()
        return pd.DataFrame(out, index=frame.index)


class Calendar(CausalFeature):
    """Seasonality: sine and cosine of the day of the year (crop cycle) and of
    the day of the week."""

    def __init__(self, target: str = "zl", roles=None):
        self.target, self.roles = target, roles

    def _compute(self, frame):
        idx = frame.index
        doy = 2 * np.pi * (idx.day_of_year.to_numpy() - 1) / 365.25
        dow = 2 * np.pi * idx.day_of_week.to_numpy() / 5
        return pd.DataFrame({"doy_sin": np.sin(doy), "doy_cos": np.cos(doy),
                             "dow_sin": np.sin(dow), "dow_cos": np.cos(dow)}, index=idx)


class Positioning(CausalFeature):
    """CFTC positioning: level, change over ``change`` trading days and z-score
    over a trailing ``zscore`` window, for every positioning series. The series
    are already on their publication dates (see ``release: cftc_weekly``)."""

    def __init__(self, target: str = "zl", roles=None, change: int = 21, zscore: int = 756):
        self.target, self.roles, self.change, self.zscore = target, roles, change, zscore

    @property
    def lookback(self):
        return max(self.change, self.zscore)

    def _compute(self, frame):
        out = {}
        for col in self.series_with_role(frame, "positioning"):
            s = frame[col]
            mean = s.rolling(self.zscore, min_periods=self.zscore // 2).mean()
            std = s.rolling(self.zscore, min_periods=self.zscore // 2).std()
            out[f"{col}"] = s
            out[f"{col}_chg_{self.change}"] = s - s.shift(self.change)
            out[f"{col}_z"] = (s - mean) / std
        return pd.DataFrame(out, index=frame.index)


class WeatherAnomalies(CausalFeature):
    """For weather series: the trailing ``window``-day mean minus the mean of the
    same calendar month in *earlier* years only (so the climatology is causal),
    over the standard deviation of those earlier years. Precipitation series
    (names containing ``prcp``) are summed instead of averaged."""

    def __init__(self, target: str = "zl", roles=None, window: int = 21, min_years: int = 3):
        self.target, self.roles, self.window, self.min_years = target, roles, window, min_years

    @property
    def lookback(self):
        return self.window

    def _compute(self, frame):
        out = {}
        for col in self.series_with_role(frame, "weather"):
            roll = frame[col].rolling(self.window, min_periods=self.window // 2)
            agg = roll.sum() if "prcp" in col else roll.mean()
            out[f"{col}_anom"] = causal_monthly_z(agg, self.min_years)
        return pd.DataFrame(out, index=frame.index)
