"""The sink interface and the warehouse's tables, shared by every sink.

Tables (logical BigQuery types; DuckDB maps them):

- ``predictions``: forecasts, keyed by PREDICTION_KEY. ``kind`` is ``forecast`` (a live
  forecast from the newest origin) or ``backtest`` (a walk-forward out-of-sample
  prediction of the same model version, so the scorecard has a track record at once).
- ``actuals``: the target's closes, keyed by (series, date).
- ``runs``: one row per run, series and horizon: spec, model version, walk-forward skill
  beside the random walk's, the deploy gate's result.
- ``latest_predictions`` (view): the newest live forecast per series and horizon.
- ``scorecard`` (view): every prediction whose target date has an actual close, with its
  errors and the random walk's from the same origin (see ``sinks.scorecard``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cbi_toolkit.errors import SinkError
from cbi_toolkit.lazy import lazy_import

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

#: Column -> logical type, in table order.
PREDICTION_SCHEMA: dict[str, str] = {
    "series": "STRING",
    "kind": "STRING",
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
PREDICTION_KEY = ("series", "kind", "origin_date", "horizon", "model_version")
KINDS = ("forecast", "backtest")

#: Tables written before the series key existed (cbi_toolkit <= the single-target version)
#: held only live forecasts of ZL, the one target the toolkit had; a migration labels
#: their rows so.
LEGACY_COLUMNS = {"series": "zl", "kind": "forecast"}

ACTUALS_SCHEMA: dict[str, str] = {"series": "STRING", "date": "DATE", "close": "FLOAT64"}
ACTUALS_KEY = ("series", "date")

RUNS_SCHEMA: dict[str, str] = {
    "run_id": "STRING",
    "series": "STRING",
    "horizon": "STRING",
    "spec_name": "STRING",
    "model_version": "STRING",
    "created_at": "TIMESTAMP",
    "intervals": "STRING",
    "n_folds": "INT64",
    "mae": "FLOAT64",
    "rw_mae": "FLOAT64",
    "mape": "FLOAT64",
    "rw_mape": "FLOAT64",
    "mase": "FLOAT64",
    "direction": "FLOAT64",
    "coverage_80": "FLOAT64",
    "coverage_95": "FLOAT64",
    "gate_passed": "BOOL",
    "gate_failures": "STRING",
}
RUNS_KEY = ("run_id", "series", "horizon")


@dataclass(frozen=True)
class Table:
    """A warehouse table: its name in the sink, its columns and its upsert key."""

    name: str
    schema: dict[str, str]
    key: tuple[str, ...]


def actuals_table() -> Table:
    return Table("actuals", ACTUALS_SCHEMA, ACTUALS_KEY)


def runs_table() -> Table:
    return Table("runs", RUNS_SCHEMA, RUNS_KEY)


#: What the dashboard reads: view/table role -> default name.
READABLE = ("predictions", "latest_predictions", "actuals", "runs", "scorecard")


class Sink(Protocol):
    """Where forecasts go. Every write is an idempotent upsert on the table's key that
    either applies the whole batch or none of it."""

    def write(self, forecasts: pd.DataFrame) -> int:
        """Upsert prediction rows (live forecasts and backtests); return the rows written."""

    def write_actuals(self, actuals: pd.DataFrame) -> int:
        """Upsert the target's closes into ``actuals``."""

    def write_runs(self, runs: pd.DataFrame) -> int:
        """Upsert one row per run, series and horizon into ``runs``."""

    def read_latest(self) -> pd.DataFrame:
        """The newest forecast per series and horizon (the ``latest_predictions`` view)."""

    def read(self, name: str) -> pd.DataFrame:
        """A whole table or view of READABLE; an empty frame where it does not exist."""


class UpsertWrites:
    """The `Sink` writes, each a checked batch upserted into its table; a sink class gives
    ``predictions`` (its prediction `Table`) and ``_upsert(table, batch)``."""

    def write(self, forecasts: pd.DataFrame) -> int:
        """Upsert the batch: all of it or, on any error, none of it."""
        return self._upsert(self.predictions, check_batch(forecasts))

    def write_actuals(self, actuals: pd.DataFrame) -> int:
        table = actuals_table()
        return self._upsert(table, check_rows(actuals, table.schema, table.key, "actuals batch"))

    def write_runs(self, runs: pd.DataFrame) -> int:
        table = runs_table()
        return self._upsert(table, check_rows(runs, table.schema, table.key, "runs batch"))


def check_batch(forecasts: pd.DataFrame) -> pd.DataFrame:
    """A prediction batch with the schema's columns in order and normalised types,
    or SinkError naming what is wrong."""
    out = check_rows(forecasts, PREDICTION_SCHEMA, PREDICTION_KEY, "forecast batch")
    bad = sorted(set(out["kind"]) - set(KINDS))
    if bad:
        raise SinkError(f"forecast batch has kind(s) {bad}; expected one of {list(KINDS)}")
    return out


def check_rows(frame: pd.DataFrame, schema: dict[str, str], key: tuple[str, ...],
               what: str) -> pd.DataFrame:
    """``frame`` with ``schema``'s columns in order and normalised types, one row per key."""
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise SinkError(f"{what} lacks column(s) {missing}; expected {list(schema)}")
    nulls = [c for c in key if frame[c].isna().any()]
    if nulls:
        raise SinkError(f"{what} has null values in key column(s) {nulls}")
    out = frame[list(schema)].copy()
    for col, kind in schema.items():
        if kind == "DATE":
            out[col] = pd.to_datetime(out[col]).dt.date
        elif kind == "TIMESTAMP":
            out[col] = pd.to_datetime(out[col], utc=True)
        elif kind == "FLOAT64":
            out[col] = out[col].astype(float)
        elif kind == "INT64":
            out[col] = out[col].astype("int64")
        elif kind == "BOOL":
            out[col] = out[col].astype(bool)
        else:
            out[col] = out[col].where(out[col].isna(), out[col].astype(str))
    if out.duplicated(list(key)).any():
        raise SinkError(f"{what} repeats a key {key}; one row per key")
    return out
