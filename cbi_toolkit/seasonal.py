"""Seasonal statistics that see only the past: shared by a source (GHCN-D weather
anomalies) and the driver features."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cbi_toolkit.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")



def causal_monthly_z(x: pd.Series, min_years: int) -> pd.Series:
    """z-score of x against the same calendar month of previous years only."""
    year, month = x.index.year, x.index.month
    monthly = x.groupby([year, month]).agg(["sum", "count"])
    monthly["sq"] = (x ** 2).groupby([year, month]).sum()
    monthly.index.names = ["year", "month"]
    # cumulate over earlier years of the same month, excluding the current year
    cum = monthly.groupby(level="month").cumsum() - monthly
    years_seen = monthly["count"].gt(0).groupby(level="month").cumsum() - 1
    n = cum["count"]
    mean = cum["sum"] / n
    std = np.sqrt((cum["sq"] / n - mean ** 2).clip(lower=0) * n / (n - 1))
    stats = pd.DataFrame({"mean": mean, "std": std}).where(years_seen >= min_years)
    keys = pd.MultiIndex.from_arrays([year, month])
    mean_t = stats["mean"].reindex(keys).to_numpy()
    std_t = stats["std"].reindex(keys).to_numpy()
    return pd.Series((x.to_numpy() - mean_t) / std_t, index=x.index)
