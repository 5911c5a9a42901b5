"""The sinks as they were before the series key (commit 8a932a7, cbi_toolkit/sinks/
duckdb.py, bigquery.py and base.py), kept verbatim but for imports and trimming to the
write path, so migration tests build their "existing table" with the code that really
wrote such tables, not with hand-made DDL."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from cbi_toolkit import bq_identifiers as ids
from cbi_toolkit.bq_client import make_client, retry_policy, translated
from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.bigquery import _api_type
from cbi_toolkit.sinks.config import BigQuerySinkConfig

PREDICTION_SCHEMA: dict[str, str] = {
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
PREDICTION_KEY = ("origin_date", "horizon", "model_version")


def check_batch(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Return the batch with the schema's columns in order and normalised types,
    or raise SinkError naming what is wrong."""
    missing = [c for c in PREDICTION_SCHEMA if c not in forecasts.columns]
    if missing:
        raise SinkError(f"forecast batch lacks column(s) {missing}; expected {list(PREDICTION_SCHEMA)}")
    nulls = [c for c in PREDICTION_KEY if forecasts[c].isna().any()]
    if nulls:
        raise SinkError(f"forecast batch has null values in key column(s) {nulls}")
    out = forecasts[list(PREDICTION_SCHEMA)].copy()
    for col, kind in PREDICTION_SCHEMA.items():
        if kind == "DATE":
            out[col] = pd.to_datetime(out[col]).dt.date
        elif kind == "TIMESTAMP":
            out[col] = pd.to_datetime(out[col], utc=True)
        elif kind == "FLOAT64":
            out[col] = out[col].astype(float)
        else:
            out[col] = out[col].astype(str)
    if out.duplicated(list(PREDICTION_KEY)).any():
        raise SinkError(f"forecast batch repeats a key {PREDICTION_KEY}; one row per key")
    return out


DUCKDB_TYPES = {"DATE": "DATE", "STRING": "VARCHAR", "FLOAT64": "DOUBLE",
                "TIMESTAMP": "TIMESTAMP WITH TIME ZONE"}


class LegacyDuckDBSink:
    """Upserts forecasts into ``table`` keyed on (origin_date, horizon, model_version)."""

    def __init__(self, path: str | Path, table: str = "predictions",
                 view: str = "latest_predictions"):
        self.path, self.table, self.view = Path(path), table, view

    def _connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0]
            hint = ("another process holds it open; close it or wait, then write again"
                    if "lock" in first.lower() else "check the path and its permissions")
            raise SinkError(f"duckdb sink {self.path}: cannot open ({first}); {hint}") from None

    def write(self, forecasts: pd.DataFrame) -> int:
        batch = check_batch(forecasts)
        con = self._connect()
        try:
            con.execute("BEGIN TRANSACTION")
            self._ensure_table(con)
            con.register("batch", batch)
            cols = ", ".join(PREDICTION_SCHEMA)
            updates = ", ".join(f"{c} = excluded.{c}" for c in PREDICTION_SCHEMA
                                if c not in PREDICTION_KEY)
            con.execute(f'INSERT INTO "{self.table}" ({cols}) SELECT {cols} FROM batch '
                        f"ON CONFLICT ({', '.join(PREDICTION_KEY)}) DO UPDATE SET {updates}")
            con.execute(
                f'CREATE OR REPLACE VIEW "{self.view}" AS SELECT * FROM "{self.table}" '
                "QUALIFY row_number() OVER (PARTITION BY horizon "
                "ORDER BY origin_date DESC, created_at DESC) = 1")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise SinkError(f"duckdb sink {self.path}: write failed, nothing written "
                            f"({str(exc).splitlines()[0]})") from None
        finally:
            con.close()
        return len(batch)

    def _ensure_table(self, con: duckdb.DuckDBPyConnection) -> None:
        existing = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position", [self.table]).fetchall()
        if not existing:
            cols = ", ".join(f"{c} {DUCKDB_TYPES[t]} NOT NULL" if c in PREDICTION_KEY
                             else f"{c} {DUCKDB_TYPES[t]}" for c, t in PREDICTION_SCHEMA.items())
            con.execute(f'CREATE TABLE "{self.table}" ({cols}, '
                        f"PRIMARY KEY ({', '.join(PREDICTION_KEY)}))")
            return
        want = [(c, DUCKDB_TYPES[t]) for c, t in PREDICTION_SCHEMA.items()]
        if [(c, t.upper()) for c, t in existing] != want:
            raise SinkError(f"duckdb sink {self.path}: table {self.table!r} exists with another "
                            f"schema {existing}; expected {want}; point the sink at a new table")





class LegacyBigQuerySink:
    """Upserts forecasts into ``project.dataset.table`` keyed on PREDICTION_KEY."""

    def __init__(self, config: BigQuerySinkConfig):
        self.config = config
        self._client_: object = None

    # names
    @property
    def label(self) -> str:
        c = self.config
        return f"bigquery sink {c.project}.{c.dataset}.{c.table}"

    def _path(self, name: str) -> str:
        return ids.quote(self.config.project, self.config.dataset, name)

    def _ref(self, name: str) -> str:
        return f"{self.config.project}.{self.config.dataset}.{name}"

    # client plumbing
    def _client(self):
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
    def schema() -> list:
        from google.cloud import bigquery

        return [bigquery.SchemaField(name, kind,
                                     mode="REQUIRED" if name in PREDICTION_KEY else "NULLABLE")
                for name, kind in PREDICTION_SCHEMA.items()]

    def view_sql(self) -> str:
        cols = ", ".join(PREDICTION_SCHEMA)
        return (f"CREATE OR REPLACE VIEW {self._path(self.config.view)} AS\n"
                f"SELECT {cols}\nFROM {self._path(self.config.table)}\nWHERE TRUE\n"
                "QUALIFY ROW_NUMBER() OVER (\n"
                "  PARTITION BY horizon ORDER BY origin_date DESC, created_at DESC) = 1")

    def merge_sql(self, staging: str) -> str:
        cols = list(PREDICTION_SCHEMA)
        on = " AND ".join(f"T.{k} = S.{k}" for k in PREDICTION_KEY)
        updates = ", ".join(f"{c} = S.{c}" for c in cols if c not in PREDICTION_KEY)
        return (f"MERGE {self._path(self.config.table)} AS T\n"
                f"USING {self._path(staging)} AS S\nON {on}\n"
                f"WHEN MATCHED THEN UPDATE SET {updates}\n"
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) "
                f"VALUES ({', '.join('S.' + c for c in cols)})")

    def ensure(self) -> None:
        """Create the dataset, table and view when missing; check an existing table."""
        with self._errors():
            self._ensure_dataset()
            self._ensure_table()
            self._ensure_view()

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

    def _ensure_table(self) -> None:
        from google.api_core.exceptions import BadRequest, NotFound
        from google.cloud import bigquery

        client, c = self._client(), self.config
        try:
            table = client.get_table(self._ref(c.table), retry=self._retry,
                                     timeout=c.retry_deadline_s)
        except NotFound:
            table = bigquery.Table(self._ref(c.table), schema=self.schema())
            table.time_partitioning = bigquery.TimePartitioning(
                type_=bigquery.TimePartitioningType.DAY, field="origin_date")
            table.clustering_fields = ["horizon"]
            try:
                client.create_table(table, exists_ok=True, retry=self._retry,
                                    timeout=c.retry_deadline_s)
            except BadRequest as exc:  # a server without partitioning or clustering
                if not any(w in str(exc).lower() for w in ("partition", "cluster")):
                    raise
                client.create_table(bigquery.Table(self._ref(c.table), schema=self.schema()),
                                    exists_ok=True, retry=self._retry, timeout=c.retry_deadline_s)
            return
        self._check_schema(table)

    def _check_schema(self, table) -> None:
        have = {f.name: _api_type(f.field_type) for f in table.schema}
        problems = []
        for name, kind in PREDICTION_SCHEMA.items():
            if name not in have:
                problems.append(f"{name} missing")
            elif have[name] != kind:
                problems.append(f"{name} is {have[name]}, expected {kind}")
        required = [f.name for f in table.schema
                    if f.mode == "REQUIRED" and f.name not in PREDICTION_SCHEMA]
        problems += [f"extra REQUIRED column {name}" for name in required]
        if problems:
            raise SinkError(f"{self.label}: the existing table has an incompatible schema "
                            f"({'; '.join(problems)}); point the sink at a new table "
                            "(sink.table) or migrate this one (see docs/bigquery.md)")

    def _ensure_view(self) -> None:
        from google.api_core.exceptions import NotFound

        try:
            self._client().get_table(self._ref(self.config.view), retry=self._retry,
                                     timeout=self.config.retry_deadline_s)
        except NotFound:
            self._run(self.view_sql())

    # writing
    def write(self, forecasts: pd.DataFrame) -> int:
        """Upsert the batch: all of it or, on any error, none of it."""
        batch = check_batch(forecasts)
        if batch.empty:
            return 0
        keep = "; the forecasts stay in the run folder, write them again once fixed"
        with self._errors(keep):
            self._ensure_dataset()
            self._ensure_table()
            self._ensure_view()
            staging = f"{self.config.table}_staging_{uuid.uuid4().hex[:12]}"
            try:
                self._load(batch, staging)
                self._run(self.merge_sql(staging))
            finally:
                with contextlib.suppress(Exception):  # it expires within a day regardless
                    self._client().delete_table(self._ref(staging), not_found_ok=True,
                                                retry=retry_policy(5.0), timeout=5.0)
        return len(batch)

    def _load(self, batch: pd.DataFrame, staging: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        client, c = self._client(), self.config
        table = bigquery.Table(self._ref(staging), schema=self.schema())
        table.expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        client.create_table(table, retry=self._retry, timeout=c.retry_deadline_s)
        arrow = pa.Table.from_pandas(batch, schema=_arrow_schema(), preserve_index=False)
        buffer = io.BytesIO()
        pq.write_table(arrow, buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET,
                                        schema=self.schema(),
                                        write_disposition=bigquery.WriteDisposition.WRITE_APPEND)
        # No size: a resumable upload (emulators refuse the multipart form); few retries.
        job = client.load_table_from_file(buffer, self._ref(staging), job_config=config,
                                          num_retries=3, timeout=c.retry_deadline_s)
        job.result(retry=self._retry, timeout=c.job_timeout_s)

    # reading


def _arrow_schema():
    import pyarrow as pa

    types = {"DATE": pa.date32(), "STRING": pa.string(), "FLOAT64": pa.float64(),
             "TIMESTAMP": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(name, types[kind], nullable=name not in PREDICTION_KEY)
                      for name, kind in PREDICTION_SCHEMA.items()])
