"""Forecasts with intervals from the newest origin, in the sink's row format: the net's
output through the shipped combination and calibration (`forecast_latest`), in prices
on the exchange calendar (`forecast_frame`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cbi_toolkit.calibration import ShippedModel, widened_half_widths
from cbi_toolkit.dataset import Samples
from cbi_toolkit.metrics import LEVELS, interval
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.targets import HORIZONS
from cbi_toolkit.trading_calendar import target_date


def forecast_frame(origin: pd.Timestamp, price: float, horizons: list[str], mu: np.ndarray,
                   sigma: np.ndarray, method: str, scales: dict[str, dict[float, float]] | None,
                   model_version: str, run_id: str, created_at: pd.Timestamp,
                   series: str) -> pd.DataFrame:
    """One row per horizon: target date, predicted price, 80%/95% bounds, sigma; ``series``
    (the spec's target) and ``kind='forecast'`` key it in the sink beside backtest rows.

    ``mu`` and ``sigma`` are the forward log return's mean and std at ``origin``;
    prices are P·exp(mu) and P·exp(mu ± q·sigma), with q Gaussian or conformal; a
    conformal band is never narrower than a shorter horizon's (`widened_half_widths`,
    as the backtest was scored).
    Target dates count sessions on the exchange calendar (:mod:`cbi_toolkit.trading_calendar`).
    """
    rows, half = [], {}
    for level in LEVELS:
        width = np.array([interval(0.0, sigma[j], level, scales[h][level]
                                   if method == "conformal" and scales else None)[1]
                          for j, h in enumerate(horizons)])
        half[level] = widened_half_widths(horizons, width) if method == "conformal" else width
    for j, horizon in enumerate(horizons):
        row = {
            "series": series, "kind": "forecast", "origin_date": origin.date(), "horizon": horizon,
            "target_date": target_date(origin, HORIZONS[horizon]),
            "predicted_price": float(price * np.exp(mu[j])),
        }
        for level in LEVELS:
            pct = int(round(level * 100))
            row[f"lower_{pct}"] = float(price * np.exp(mu[j] - half[level][j]))
            row[f"upper_{pct}"] = float(price * np.exp(mu[j] + half[level][j]))
        row.update(sigma=float(sigma[j]), model_version=model_version, run_id=run_id,
                   created_at=created_at)
        rows.append(row)
    return pd.DataFrame(rows)


def forecast_latest(pipe, samples: Samples, intervals: str, shipping: ShippedModel,
                    version: str, run_id: str, series: str) -> pd.DataFrame:
    """Forecast every horizon from the newest origin: the net's output through the
    saved combination and calibration."""
    from cbi_toolkit.models.baselines import VolatilityRandomWalk
    from cbi_toolkit.targets import HORIZONS

    last = len(samples) - 1
    if hasattr(pipe, "steps"):
        mu, sigma = predict_dist(pipe, samples.X[[last]])
    else:  # a serving model (cbi_toolkit.serving.ServingModel)
        mu, sigma = pipe.predict_dist(samples.X[[last]])
    known = np.flatnonzero(samples.trainable)
    vol = VolatilityRandomWalk(shipping.vol_window, tuple(HORIZONS[h] for h in samples.horizons))
    sigma_vol = vol.fit(samples.X[known], samples.y[known]).predict_dist(samples.X[[last]])[1]
    mu, sigma, scales = shipping.apply(samples.horizons, mu[0], sigma[0], sigma_vol[0])
    return forecast_frame(samples.dates[last], float(samples.price[last]), samples.horizons,
                          mu, sigma, intervals, scales, version, run_id,
                          pd.Timestamp.now(tz="UTC"), series)
