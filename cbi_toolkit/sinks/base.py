"""The sink interface and the forecast table's schema, shared by every sink."""

from __future__ import annotations

from typing import Protocol

import pandas as pd

from cbi_toolkit.errors import SinkError

#: Column -> logical type, in table order. BigQuery types; DuckDB maps them.
PREDICTION_SCHEMA: dict[str, str] = {
    "origin_date": "DATE",
    "horizon": "STRING",
    "target_date": "DATE",
    "predicted_price": "FLOAT64",
    "lower_80": "FLOAT64",
    "upper_80": "FLOAT64",
    "lower_95": "FLOAT64",
    "upper_95": "FLOAT64",
    "sigma": "FLOAT64",
    "model_version": "STRING",
    "run_id": "STRING",
    "created_at": "TIMESTAMP",
}

#: A forecast row is identified by these; writing again replaces it.
PREDICTION_KEY = ("origin_date", "horizon", "model_version")


class Sink(Protocol):
    """Where forecasts go. ``write`` is an idempotent upsert on PREDICTION_KEY
    that either applies the whole batch or none of it."""

    def write(self, forecasts: pd.DataFrame) -> int:
        """Upsert the batch; return the number of rows written."""

    def read_latest(self) -> pd.DataFrame:
        """The newest forecast per horizon (what the ``latest_predictions`` view holds)."""


def check_batch(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Return the batch with the schema's columns in order and normalised types,
    or raise SinkError naming what is wrong."""
    missing = [c for c in PREDICTION_SCHEMA if c not in forecasts.columns]
    if missing:
        raise SinkError(f"forecast batch lacks column(s) {missing}; expected {list(PREDICTION_SCHEMA)}")
    nulls = [c for c in PREDICTION_KEY if forecasts[c].isna().any()]
    if nulls:
        raise SinkError(f"forecast batch has null values in key column(s) {nulls}")
    out = forecasts[list(PREDICTION_SCHEMA)].copy()
    for col, kind in PREDICTION_SCHEMA.items():
        if kind == "DATE":
            out[col] = pd.to_datetime(out[col]).dt.date
        elif kind == "TIMESTAMP":
            out[col] = pd.to_datetime(out[col], utc=True)
        elif kind == "FLOAT64":
            out[col] = out[col].astype(float)
        else:
            out[col] = out[col].astype(str)
    if out.duplicated(list(PREDICTION_KEY)).any():
        raise SinkError(f"forecast batch repeats a key {PREDICTION_KEY}; one row per key")
    return out
