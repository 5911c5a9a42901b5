"""The ``sink:`` section of a spec."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cbi_toolkit.sinks.bigquery import BigQuerySinkConfig


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


# New sink kinds join this union (use Annotated[A | B, Field(discriminator="kind")]).
SinkConfig = Annotated[DuckDBSinkConfig | BigQuerySinkConfig, Field(discriminator="kind")]
