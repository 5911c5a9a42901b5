"""Which sink a run writes to (the spec's, or ``--sink``), and the checks made on it
before training: a bad URL, an in-memory or remote DuckDB "file", a folder that
cannot be written all fail before a run folder exists."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cbi_toolkit.errors import SinkError


def sink_config(spec_sink: Any, override: str | None) -> Any:
    """The sink config for ``--sink`` (or the spec's when there is none)."""
    if not override:
        return spec_sink
    try:
        if override.startswith("duckdb://"):
            from cbi_toolkit.sinks.config import DuckDBSinkConfig

            return DuckDBSinkConfig(path=override.removeprefix("duckdb://"))
        if override.startswith("bigquery://"):
            from cbi_toolkit.sinks.bigquery import sink_from_url

            return sink_from_url(override, spec_sink)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SinkError(f"--sink {override!r}: {err['msg'].removeprefix('Value error, ')}") \
            from None
    raise SinkError(f"--sink {override!r}: expected duckdb:///path/file.duckdb or "
                    "bigquery://PROJECT/DATASET")


def preflight(sink: Any) -> None:
    """Checks a sink can make without writing rows (a DuckDB sink's folder is writable)."""
    check = getattr(sink, "check_writable", None)
    if check is not None:
        check()
