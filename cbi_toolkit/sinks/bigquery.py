"""The production sink: BigQuery ``predictions``, ``actuals`` and ``runs`` tables and the
``latest_predictions`` and ``scorecard`` views.

A write loads the batch into a staging table (a Parquet load job), applies it with
one ``MERGE`` keyed on the table's key (for predictions: series, kind, origin_date,
horizon, model_version), then drops the staging table. A failed load or MERGE leaves
the table as it was. The client (credentials, retries, error messages) is
`cbi_toolkit.bq_client`; the ``sink:`` section is `cbi_toolkit.sinks.config.BigQuerySinkConfig`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import uuid
from typing import TYPE_CHECKING

import pandas as pd

from cbi_toolkit import bq_identifiers as ids
from cbi_toolkit.bq_client import make_client, retry_policy, translated
from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.base import (
    LEGACY_COLUMNS,
    PREDICTION_KEY,
    PREDICTION_SCHEMA,
    Table,
    UpsertWrites,
    actuals_table,
    runs_table,
)
from cbi_toolkit.sinks.config import BigQuerySinkConfig
from cbi_toolkit.sinks.scorecard import latest_select, scorecard_select

if TYPE_CHECKING:
    from google.cloud import bigquery

#: API type names BigQuery reports -> the names PREDICTION_SCHEMA uses.
_TYPE_ALIASES = {"FLOAT": "FLOAT64", "INTEGER": "INT64", "BOOLEAN": "BOOL"}


def _api_type(kind: str) -> str:
    return _TYPE_ALIASES.get(kind.upper(), kind.upper())


SCORECARD = "scorecard"


class BigQuerySink(UpsertWrites):
    """Upserts forecasts into ``project.dataset.table`` keyed on PREDICTION_KEY, and the
    target's closes and the run's skill into ``actuals`` and ``runs``."""

    def __init__(self, config: BigQuerySinkConfig):
        self.config = config
        self._client_: bigquery.Client | None = None

    # names
    @property
    def label(self) -> str:
        c = self.config
        return f"bigquery sink {c.project}.{c.dataset}.{c.table}"

    @property
    def predictions(self) -> Table:
        return Table(self.config.table, PREDICTION_SCHEMA, PREDICTION_KEY)

    def _path(self, name: str) -> str:
        return ids.quote(self.config.project, self.config.dataset, name)

    def _ref(self, name: str) -> str:
        return f"{self.config.project}.{self.config.dataset}.{name}"

    # client plumbing
    def _client(self) -> bigquery.Client:
        if self._client_ is None:
            c = self.config
            self._client_ = make_client(c.project, c.location, c.api_endpoint, SinkError,
                                        self.label)
        return self._client_

    @property
    def _retry(self):
        return retry_policy(self.config.retry_deadline_s)

    def _errors(self, hint: str = ""):
        return translated(SinkError, self.label, self.config.api_endpoint, hint)

    def _run(self, sql: str, params: list | None = None):
        from google.cloud import bigquery

        # job_retry=None: the client's job re-insert retry has its own ten-minute deadline
        # that would wrap ours; API calls still retry transient errors within the deadline.
        job = self._client().query(
            sql, job_config=bigquery.QueryJobConfig(query_parameters=params or []),
            retry=self._retry, job_retry=None, timeout=self.config.retry_deadline_s)
        return job.result(retry=self._retry, timeout=self.config.job_timeout_s)

    # schema
    @staticmethod
    def schema(table: Table | None = None) -> list:
        from google.cloud import bigquery

        schema, key = (table.schema, table.key) if table else (PREDICTION_SCHEMA, PREDICTION_KEY)
        return [bigquery.SchemaField(name, kind, mode="REQUIRED" if name in key else "NULLABLE")
                for name, kind in schema.items()]

    def view_sql(self) -> str:
        return (f"CREATE OR REPLACE VIEW {self._path(self.config.view)} AS\n"
                + latest_select(self._path(self.config.table), PREDICTION_SCHEMA))

    def scorecard_sql(self) -> str:
        return (f"CREATE OR REPLACE VIEW {self._path(SCORECARD)} AS\n"
                + scorecard_select(self._path(self.config.table),
                                   self._path(actuals_table().name)))

    def merge_sql(self, staging: str, table: Table | None = None) -> str:
        table = table or self.predictions
        cols = list(table.schema)
        on = " AND ".join(f"T.{k} = S.{k}" for k in table.key)
        updates = ", ".join(f"{c} = S.{c}" for c in cols if c not in table.key)
        matched = f"WHEN MATCHED THEN UPDATE SET {updates}\n" if updates else ""
        return (f"MERGE {self._path(table.name)} AS T\n"
                f"USING {self._path(staging)} AS S\nON {on}\n{matched}"
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) "
                f"VALUES ({', '.join('S.' + c for c in cols)})")

    def ensure(self) -> None:
        """Create the dataset, tables and views when missing; check (and where it predates
        the series key, migrate) an existing predictions table."""
        with self._errors():
            self._ensure_all()

    def _ensure_all(self) -> None:
        self._ensure_dataset()
        migrated = self._ensure_table(self.predictions)
        self._ensure_table(actuals_table())
        self._ensure_table(runs_table())
        self._ensure_views(replace=migrated)

    def _ensure_dataset(self) -> None:
        from google.api_core.exceptions import NotFound
        from google.cloud import bigquery

        client, c = self._client(), self.config
        ref = f"{c.project}.{c.dataset}"
        try:
            dataset = client.get_dataset(ref, retry=self._retry, timeout=c.retry_deadline_s)
        except NotFound:
            dataset = bigquery.Dataset(ref)
            dataset.location = c.location
            client.create_dataset(dataset, exists_ok=True, retry=self._retry,
                                  timeout=c.retry_deadline_s)
            return
        if dataset.location and dataset.location.lower() != c.location.lower():
            raise SinkError(f"{self.label}: dataset {ref} is in location {dataset.location}, "
                            f"the spec says {c.location}; set the sink's location: "
                            f"{dataset.location} or use another dataset")

    def _ensure_table(self, spec: Table) -> bool:
        """Create ``spec``'s table when missing, else check it; True when it is a migrated
        predictions table (its views are then replaced)."""
        from google.api_core.exceptions import BadRequest, NotFound
        from google.cloud import bigquery

        client, c = self._client(), self.config
        try:
            table = client.get_table(self._ref(spec.name), retry=self._retry,
                                     timeout=c.retry_deadline_s)
        except NotFound:
            table = bigquery.Table(self._ref(spec.name), schema=self.schema(spec))
            if spec.name == c.table:
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.DAY, field="origin_date")
                table.clustering_fields = ["series", "horizon"]
            try:
                client.create_table(table, exists_ok=True, retry=self._retry,
                                    timeout=c.retry_deadline_s)
            except BadRequest as exc:  # a server without partitioning or clustering
                if not any(w in str(exc).lower() for w in ("partition", "cluster")):
                    raise
                client.create_table(bigquery.Table(self._ref(spec.name),
                                                   schema=self.schema(spec)),
                                    exists_ok=True, retry=self._retry, timeout=c.retry_deadline_s)
            return False
        if spec.name != c.table:
            self._check_schema(table, spec)
            return False
        if not set(LEGACY_COLUMNS) <= {f.name for f in table.schema}:  # (or half-migrated)
            self._check_schema(table, spec, legacy=True)
            table = self._add_series_columns(table)
        self._check_schema(table, spec)
        modes = {f.name: f.mode for f in table.schema}
        if any(modes[name] != "REQUIRED" for name in LEGACY_COLUMNS):
            self._label_legacy_rows()
            return True
        return False

    def _add_series_columns(self, table):
        """Migration, step 1: add ``series`` and ``kind`` (NULLABLE: BigQuery adds no
        REQUIRED column to a table with rows). DDL, metadata only; no row is touched."""
        from google.cloud import bigquery

        client, c = self._client(), self.config
        for name in LEGACY_COLUMNS:  # one statement each: the emulator takes one ALTER at a time
            self._run(f"ALTER TABLE {self._path(c.table)} ADD COLUMN IF NOT EXISTS {name} STRING")
        table = client.get_table(self._ref(c.table), retry=self._retry, timeout=c.retry_deadline_s)
        missing = [n for n in LEGACY_COLUMNS if n not in {f.name for f in table.schema}]
        if missing:  # a server (the emulator) that keeps the schema apart from the storage
            table.schema = [*table.schema, *(bigquery.SchemaField(n, "STRING") for n in missing)]
            table = client.update_table(table, ["schema"], retry=self._retry,
                                        timeout=c.retry_deadline_s)
        return table

    def _label_legacy_rows(self) -> None:
        """Migration, step 2 (idempotent, so a write interrupted between the steps finishes
        it next time): label rows from before the series key LEGACY_COLUMNS."""
        sets = ", ".join(f"{name} = COALESCE({name}, '{value}')"
                         for name, value in LEGACY_COLUMNS.items())
        where = " OR ".join(f"{name} IS NULL" for name in LEGACY_COLUMNS)
        self._run(f"UPDATE {self._path(self.config.table)} SET {sets} WHERE {where}")

    def _check_schema(self, table, spec: Table, legacy: bool = False) -> None:
        have = {f.name: _api_type(f.field_type) for f in table.schema}
        want = {n: k for n, k in spec.schema.items() if not (legacy and n in LEGACY_COLUMNS)}
        problems = []
        for name, kind in want.items():
            if name not in have:
                problems.append(f"{name} missing")
            elif have[name] != kind:
                problems.append(f"{name} is {have[name]}, expected {kind}")
        required = [f.name for f in table.schema
                    if f.mode == "REQUIRED" and f.name not in spec.schema]
        problems += [f"extra REQUIRED column {name}" for name in required]
        if problems:
            raise SinkError(f"bigquery sink {self._ref(spec.name)}: the existing table has an "
                            f"incompatible schema ({'; '.join(problems)}); point the sink at a "
                            "new table (sink.table) or migrate this one (see docs/bigquery.md)")

    def _ensure_views(self, replace: bool = False) -> None:
        from google.api_core.exceptions import NotFound

        for name, sql in ((self.config.view, self.view_sql()),
                          (SCORECARD, self.scorecard_sql())):
            if not replace:
                try:
                    self._client().get_table(self._ref(name), retry=self._retry,
                                             timeout=self.config.retry_deadline_s)
                    continue
                except NotFound:
                    pass
            self._run(sql)

    # writing
    def _upsert(self, table: Table, batch: pd.DataFrame) -> int:
        if batch.empty:
            return 0
        keep = "; the forecasts stay in the run folder, write them again once fixed"
        with self._errors(keep):
            self._ensure_all()
            staging = f"{table.name}_staging_{uuid.uuid4().hex[:12]}"
            try:
                self._load(batch, staging, table)
                self._run(self.merge_sql(staging, table))
            finally:
                with contextlib.suppress(Exception):  # it expires within a day regardless
                    self._client().delete_table(self._ref(staging), not_found_ok=True,
                                                retry=retry_policy(5.0), timeout=5.0)
        return len(batch)

    def _load(self, batch: pd.DataFrame, staging: str, table: Table | None = None) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        spec = table or self.predictions
        client, c = self._client(), self.config
        target = bigquery.Table(self._ref(staging), schema=self.schema(spec))
        target.expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        client.create_table(target, retry=self._retry, timeout=c.retry_deadline_s)
        arrow = pa.Table.from_pandas(batch, schema=_arrow_schema(spec), preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(arrow, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        schema=self.schema(spec),
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        # No size: a resumable upload (emulators refuse the multipart form); few retries.
        job = client.load_table_from_file(buffer, self._ref(staging), job_config=config,
                                          num_retries=3, timeout=c.retry_deadline_s)
        job.result(retry=self._retry, timeout=c.job_timeout_s)

    # reading
    def read_latest(self) -> pd.DataFrame:
        """The view: the newest forecast per series and horizon."""
        cols = ", ".join(PREDICTION_SCHEMA)
        return self._read(f"SELECT {cols} FROM {self._path(self.config.view)} "
                          "ORDER BY series, horizon")

    def read_all(self, model_version: str | None = None,
                 kind: str | None = "forecast") -> pd.DataFrame:
        """The prediction rows of ``kind`` (live forecasts by default; None: every row,
        backtests included), optionally of one model version."""
        from google.cloud import bigquery

        cols = ", ".join(PREDICTION_SCHEMA)
        where, params = [], []
        if model_version is not None:
            where.append("model_version = @model_version")
            params.append(bigquery.ScalarQueryParameter("model_version", "STRING",
                                                        model_version))
        if kind is not None:
            where.append("kind = @kind")
            params.append(bigquery.ScalarQueryParameter("kind", "STRING", kind))
        sql = f"SELECT {cols} FROM {self._path(self.config.table)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._read(sql + " ORDER BY series, kind, origin_date, horizon, model_version",
                          params)

    def read(self, name: str) -> pd.DataFrame:
        """A table or view by role (``sinks.base.READABLE``); empty when it is not there."""
        from google.api_core.exceptions import NotFound

        actual = {"predictions": self.config.table,
                  "latest_predictions": self.config.view}.get(name, name)
        with self._errors():
            try:
                self._client().get_table(self._ref(actual), retry=self._retry,
                                         timeout=self.config.retry_deadline_s)
            except NotFound:
                return pd.DataFrame()
        return self._read(f"SELECT * FROM {self._path(actual)}")

    def _read(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self._errors():
            rows = self._run(sql, params)
            return rows.to_arrow(create_bqstorage_client=False).to_pandas()


def _arrow_schema(table: Table | None = None):
    import pyarrow as pa

    schema, key = (table.schema, table.key) if table else (PREDICTION_SCHEMA, PREDICTION_KEY)
    types = {"DATE": pa.date32(), "STRING": pa.string(), "FLOAT64": pa.float64(),
             "TIMESTAMP": pa.timestamp("us", tz="UTC"), "INT64": pa.int64(), "BOOL": pa.bool_()}
    return pa.schema([pa.field(name, types[kind], nullable=name not in key)
                      for name, kind in schema.items()])
