"""A BigQuery table or query, read into the same tidy frame as the file source.

``{kind: bigquery, project: my-proj, table: training.zl_daily, columns: {close: zl}}``
selects ``date_column`` and the ``columns`` keys from ``project.dataset.table``
(``dataset.table`` is taken in ``project``); ``start`` / ``end`` filter on the date
column through query parameters. ``query:`` instead runs your SQL; it may use the
parameters ``@start`` and ``@end`` (DATE), which are passed when it names them, and
the rows are filtered to [start, end] afterwards either way. Credentials and
``api_endpoint`` work as for the BigQuery sink (docs/bigquery.md).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from cbi_toolkit import bq_identifiers as ids
from cbi_toolkit.bq_client import make_client, retry_policy, translated
from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources.base import SourceBase, SourceContext, tidy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")


class BigQuerySource(SourceBase):
    kind: Literal["bigquery"] = "bigquery"
    project: str
    table: str | None = None
    query: str | None = None
    date_column: str = "date"
    start: dt.date | None = None
    end: dt.date | None = None
    location: str | None = None
    api_endpoint: str | None = None
    retry_deadline_s: float = Field(30.0, gt=0, le=600)
    job_timeout_s: float = Field(600.0, gt=0, le=6 * 3600)

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return ids.check("project", value)

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        return value if value is None else ids.check("location", value)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None:
            ids.split_table(value, "placeholder-project")
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://", value):
            raise ValueError(f"api_endpoint {value!r} must be an http(s) URL")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> BigQuerySource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table (dataset.table) or query (SQL)")
        if self.table is not None:  # columns become SQL identifiers: check them
            for name in [self.date_column, *self.columns]:
                ids.check("column", name)
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self

    @property
    def label(self) -> str:
        return f"bigquery {self.project}:{self.table}" if self.table else \
            f"bigquery {self.project}:query"

    def sql(self) -> tuple[str, list]:
        """The SQL and its query parameters."""
        from google.cloud import bigquery

        params = []
        if self.query is not None:
            sql = self.query
            for name in ("start", "end"):
                if re.search(rf"@{name}\b", sql):
                    params.append(bigquery.ScalarQueryParameter(name, "DATE",
                                                                getattr(self, name)))
            return sql, params
        path = ids.quote(*ids.split_table(self.table, self.project))
        date = ids.quote(self.date_column)
        cols = ", ".join(ids.quote(c) for c in [self.date_column, *self.columns])
        where = []
        for name, op in (("start", ">="), ("end", "<=")):
            if getattr(self, name) is not None:
                where.append(f"CAST({date} AS DATE) {op} @{name}")
                params.append(bigquery.ScalarQueryParameter(name, "DATE", getattr(self, name)))
        sql = f"SELECT {cols} FROM {path}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql + f" ORDER BY {date}", params

    def read(self) -> pd.DataFrame:
        """The raw rows as a frame (provider column names)."""
        from google.cloud import bigquery

        sql, params = self.sql()
        with translated(SourceError, self.label, self.api_endpoint):
            client = make_client(self.project, self.location, self.api_endpoint, SourceError,
                                 self.label)
            retry = retry_policy(self.retry_deadline_s)
            job = client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params),
                               retry=retry, job_retry=None, timeout=self.retry_deadline_s)
            rows = job.result(retry=retry, timeout=self.job_timeout_s)
            return rows.to_arrow(create_bqstorage_client=False).to_pandas()

    def load(self, ctx: SourceContext) -> pd.DataFrame:
        raw = self.read()
        if self.date_column in raw.columns:  # DATE / TIMESTAMP cells -> ISO text, as in a CSV
            raw[self.date_column] = raw[self.date_column].map(_iso)
        frame = tidy(raw, self.date_column, self.columns, self.label)
        if self.start is not None:
            frame = frame[frame.index >= pd.Timestamp(self.start)]
        if self.end is not None:
            frame = frame[frame.index <= pd.Timestamp(self.end)]
        return frame


def _iso(value):
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return value
    if isinstance(value, pd.Timestamp | dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
