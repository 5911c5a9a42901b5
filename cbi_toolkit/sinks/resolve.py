"""Which sink a run writes to (the spec's, or a ``--sink`` URL), and the checks made on it
before training: a bad URL, an in-memory or remote DuckDB "file", a folder that
cannot be written all fail before a run folder exists. The one parser of sink URLs
(``cbi-run --sink``, ``cbi-grid --sink``, ``cbi-dashboard --sink``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.config import BigQuerySinkConfig, DuckDBSinkConfig

EXPECTED = "expected duckdb:///path/file.duckdb (or duckdb:PATH) or bigquery://PROJECT/DATASET"
_BIGQUERY_OPTIONS = {"table", "view", "location", "api_endpoint", "retry_deadline_s",
                     "job_timeout_s"}


def sink_config(spec_sink: Any, override: str | None) -> Any:
    """The sink config for ``--sink`` (or the spec's when there is none)."""
    return sink_from_url(override, spec_sink) if override else spec_sink


def sink_from_url(url: str, base_config: BaseModel | None = None) -> BaseModel:
    """The sink config a ``--sink`` URL names.

    ``duckdb:PATH``, ``duckdb://PATH`` or ``duckdb:///abs/path`` gives a DuckDB sink at PATH
    (its table and view from ``base_config`` when that is a DuckDB sink).
    ``bigquery://PROJECT/DATASET[/TABLE][?location=EU&view=V&api_endpoint=URL]`` gives a
    BigQuerySinkConfig; table, view, location, api_endpoint and the deadlines not in the
    URL come from ``base_config`` when it is a BigQuery sink, else the defaults.
    """
    parts = urlsplit(url)
    try:
        if parts.scheme == "duckdb":
            path = (parts.netloc + parts.path) if parts.netloc else parts.path
            if not path:
                raise SinkError(f"--sink {url!r}: no path; use duckdb:runs/forecasts.duckdb")
            keep = base_config.model_dump(include={"table", "view"}) \
                if isinstance(base_config, DuckDBSinkConfig) else {}
            return DuckDBSinkConfig(**{**keep, "path": path})
        if parts.scheme == "bigquery":
            return _bigquery(url, parts, base_config)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SinkError(f"--sink {url!r}: {err['msg'].removeprefix('Value error, ')}") \
            from None
    raise SinkError(f"--sink {url!r}: unknown scheme; {EXPECTED}")


def _bigquery(url: str, parts, base_config: BaseModel | None) -> BigQuerySinkConfig:
    segments = [s for s in parts.path.split("/") if s]
    if not parts.netloc or len(segments) not in (1, 2):
        raise SinkError(f"--sink {url!r}: expected bigquery://PROJECT/DATASET[/TABLE]")
    fields: dict = {}
    if isinstance(base_config, BigQuerySinkConfig):
        fields = base_config.model_dump(exclude={"kind", "project", "dataset"})
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - _BIGQUERY_OPTIONS)
    if unknown:
        raise SinkError(f"--sink {url!r}: unknown option(s) {unknown}; allowed: "
                        f"{sorted(_BIGQUERY_OPTIONS)}")
    fields.update({key: values[-1] for key, values in query.items()})
    fields.update(project=parts.netloc, dataset=segments[0])
    if len(segments) == 2:
        fields["table"] = segments[1]
    return BigQuerySinkConfig(**fields)


def preflight(sink: Any) -> None:
    """Checks a sink can make without writing rows (a DuckDB sink's folder is writable)."""
    check = getattr(sink, "check_writable", None)
    if check is not None:
        check()
