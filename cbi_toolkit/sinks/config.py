"""The ``sink:`` section of a spec."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cbi_toolkit.sinks.bigquery import BigQuerySinkConfig


class DuckDBSinkConfig(BaseModel):
    """An embedded DuckDB file; a relative path is taken from the working directory."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["duckdb"] = "duckdb"
    path: str = "runs/forecasts.duckdb"
    table: str = Field("predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    view: str = Field("latest_predictions", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


# New sink kinds join this union (use Annotated[A | B, Field(discriminator="kind")]).
SinkConfig = Annotated[DuckDBSinkConfig | BigQuerySinkConfig, Field(discriminator="kind")]
