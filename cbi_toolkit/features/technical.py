"""Technical features of the target price: returns, moving averages, RSI, MACD,
Bollinger bands, realised volatility."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbi_toolkit.features.base import CausalFeature

ANNUAL = np.sqrt(252.0)


class LogReturns(CausalFeature):
    """log(P[t] / P[t-k]) for each lag k."""

    def __init__(self, target: str = "zl", roles=None, lags=(1, 5, 10, 21, 63)):
        self.target, self.roles, self.lags = target, roles, lags

    @property
    def lookback(self):
        return max(self.lags)

    def _compute(self, frame):
        lp = self.log_price(frame)
        return pd.DataFrame({f"ret_{k}": lp - lp.shift(k) for k in self.lags})


class MovingAverages(CausalFeature):
    """log(P / MA_w) per window, and log(MA_fast / MA_slow) of the two shortest."""

    def __init__(self, target: str = "zl", roles=None, windows=(10, 50, 200)):
        self.target, self.roles, self.windows = target, roles, windows

    @property
    def lookback(self):
        return max(self.windows)

    def _compute(self, frame):
        p = frame[self.target]
        ma = {w: p.rolling(w).mean() for w in self.windows}
        out = {f"px_ma_{w}": np.log(p / m) for w, m in ma.items()}
        if len(self.windows) >= 2:
            fast, slow = sorted(self.windows)[:2]
            out[f"ma_{fast}_{slow}"] = np.log(ma[fast] / ma[slow])
        return pd.DataFrame(out)


class RSI(CausalFeature):
    """Wilder's relative strength index, scaled to [0, 1]."""

    def __init__(self, target: str = "zl", roles=None, window: int = 14):
        self.target, self.roles, self.window = target, roles, window

    @property
    def lookback(self):
        return self.window

    def _compute(self, frame):
        diff = frame[self.target].diff()
        alpha = 1.0 / self.window
        gain = diff.clip(lower=0).ewm(alpha=alpha, min_periods=self.window, adjust=False).mean()
        loss = (-diff).clip(lower=0).ewm(alpha=alpha, min_periods=self.window, adjust=False).mean()
        return pd.DataFrame({f"rsi_{self.window}": gain / (gain + loss)})


class MACD(CausalFeature):
    """MACD line, signal and histogram, divided by price so they are unit-free."""

    def __init__(self, target: str = "zl", roles=None, fast: int = 12, slow: int = 26,
                 signal: int = 9):
        self.target, self.roles = target, roles
        self.fast, self.slow, self.signal = fast, slow, signal

    @property
    def lookback(self):
        return self.slow + self.signal

    def _compute(self, frame):
        p = frame[self.target]
        ema = lambda span: p.ewm(span=span, min_periods=span, adjust=False).mean()  # noqa: E731
        line = (ema(self.fast) - ema(self.slow)) / p
        signal = line.ewm(span=self.signal, min_periods=self.signal, adjust=False).mean()
        return pd.DataFrame({"macd": line, "macd_signal": signal, "macd_hist": line - signal})


class Bollinger(CausalFeature):
    """Position of price inside the band (-1 lower, +1 upper) and band width."""

    def __init__(self, target: str = "zl", roles=None, window: int = 20, k: float = 2.0):
        self.target, self.roles, self.window, self.k = target, roles, window, k

    @property
    def lookback(self):
        return self.window

    def _compute(self, frame):
        p = frame[self.target]
        mid, sd = p.rolling(self.window).mean(), p.rolling(self.window).std()
        return pd.DataFrame({"bb_pos": (p - mid) / (self.k * sd), "bb_width": 2 * self.k * sd / mid})


class Volatility(CausalFeature):
    """Annualised realised volatility of daily log returns per window, and the
    ratio of the shortest to the longest."""

    def __init__(self, target: str = "zl", roles=None, windows=(21, 63)):
        self.target, self.roles, self.windows = target, roles, windows

    @property
    def lookback(self):
        return max(self.windows) + 1

    def _compute(self, frame):
        r = self.log_price(frame).diff()
        vol = {w: r.rolling(w).std() * ANNUAL for w in self.windows}
        out = {f"vol_{w}": v for w, v in vol.items()}
        if len(self.windows) >= 2:
            lo, hi = min(self.windows), max(self.windows)
            out[f"vol_ratio_{lo}_{hi}"] = vol[lo] / vol[hi]
        return pd.DataFrame(out)
