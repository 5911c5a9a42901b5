"""Forecast horizons and forward log-return targets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cbi_toolkit.lazy import lazy_import

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

#: Horizon name -> trading days ahead.
HORIZONS: dict[str, int] = {"1w": 5, "1m": 21, "3m": 63, "6m": 126, "12m": 252}


def forward_log_returns(price: pd.Series, horizons: dict[str, int]) -> pd.DataFrame:
    """y_h(t) = log(P[t+h] / P[t]) per horizon; NaN where P[t+h] is not yet known.

    Rows with NaN targets are kept: they are the origins we forecast from.
    """
    logp = np.log(price.astype(float))
    return pd.DataFrame(
        {f"y_{name}": logp.shift(-days) - logp for name, days in horizons.items()},
        index=price.index,
    )
