"""The ``sink:`` section of a spec: a DuckDB file or a BigQuery dataset."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cbi_toolkit import bq_identifiers as ids


class DuckDBSinkConfig(BaseModel):
    """An embedded DuckDB file; a relative path is taken from the working directory."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["duckdb"] = "duckdb"
    path: str = "runs/forecasts.duckdb"
    table: str = Field("predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    view: str = Field("latest_predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

    @field_validator("path")
    @classmethod
    def _real_file(cls, path: str) -> str:
        return check_duckdb_path(path)


#: DuckDB reads these as something other than a file: ``:memory:`` (gone at exit),
#: ``md:``/``motherduck:`` (loads an extension from the internet), ``s3://`` and friends
_NOT_A_FILE = re.compile(r"^\s*(:|[A-Za-z][A-Za-z0-9+.\-]+:)")


def check_duckdb_path(path: str) -> str:
    """A DuckDB sink is a real file: refuse in-memory and remote databases and folders."""
    if not path.strip():
        raise ValueError("the DuckDB sink path is empty; name a file, e.g. runs/forecasts.duckdb")
    if _NOT_A_FILE.match(path):
        raise ValueError(f"{path!r} is not a file: DuckDB would keep the forecasts in memory or "
                         "elsewhere; name a file, e.g. runs/forecasts.duckdb")
    if path.endswith(("/", "\\")):
        raise ValueError(f"{path!r} names a folder; name a file in it, e.g. "
                         f"{path}forecasts.duckdb")
    return path


class BigQuerySinkConfig(BaseModel):
    """``sink: {kind: bigquery, project, dataset, table, view, location, api_endpoint}``.

    Credentials are never part of the spec: they come from application default
    credentials (``gcloud auth application-default login``, ``GOOGLE_APPLICATION_CREDENTIALS``,
    the metadata server). ``api_endpoint`` points the client at an emulator or a private
    endpoint; ``retry_deadline_s`` bounds the retries of transient errors (5xx, 429,
    network) per call.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bigquery"] = "bigquery"
    project: str
    dataset: str
    table: str = "predictions"
    view: str = "latest_predictions"
    location: str = "US"
    api_endpoint: str | None = None
    retry_deadline_s: float = Field(30.0, gt=0, le=600)
    job_timeout_s: float = Field(600.0, gt=0, le=6 * 3600)

    @field_validator("project", "dataset", "table", "view", "location")
    @classmethod
    def _identifier(cls, value: str, info) -> str:
        return ids.check(info.field_name, value)

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"api_endpoint {value!r} must be an http(s) URL")
        return value


# New sink kinds join this union (use Annotated[A | B, Field(discriminator="kind")]).
SinkConfig = Annotated[DuckDBSinkConfig | BigQuerySinkConfig, Field(discriminator="kind")]
