"""Forecast sinks: where forecasts are written (DuckDB by default, BigQuery in production)."""
