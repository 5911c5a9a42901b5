"""Forecast sinks: where forecasts are written (DuckDB by default, BigQuery in production)."""

from __future__ import annotations

from cbi_toolkit.sinks.base import Sink


def make_sink(config) -> Sink:
    """The sink a spec's ``sink:`` section describes."""
    if config.kind == "duckdb":
        from cbi_toolkit.sinks.duckdb import DuckDBSink

        return DuckDBSink(config.path, config.table, config.view)
    if config.kind == "bigquery":
        from cbi_toolkit.sinks.bigquery import BigQuerySink

        return BigQuerySink(config)
    raise ValueError(f"unknown sink kind {config.kind!r}")
