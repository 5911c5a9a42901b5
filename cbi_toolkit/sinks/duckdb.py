"""The embedded default sink: a DuckDB file with the ``predictions``, ``actuals`` and
``runs`` tables and the ``latest_predictions`` and ``scorecard`` views; each batch is
written in one transaction (a table written before the series key existed is migrated
in that same transaction)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.base import (
    KINDS,
    LEGACY_COLUMNS,
    PREDICTION_KEY,
    PREDICTION_SCHEMA,
    Table,
    UpsertWrites,
    actuals_table,
    runs_table,
)
from cbi_toolkit.sinks.scorecard import latest_select, scorecard_select

#: a lock held by another writer is retried this long before the write fails
LOCK_RETRY_S = float(os.environ.get("CBI_DUCKDB_LOCK_RETRY_S", "3"))
PROBE_BYTES = 1 << 20

DUCKDB_TYPES = {"DATE": "DATE", "STRING": "VARCHAR", "FLOAT64": "DOUBLE",
                "TIMESTAMP": "TIMESTAMP WITH TIME ZONE", "INT64": "BIGINT", "BOOL": "BOOLEAN"}
SCORECARD = "scorecard"


def _q(name: str) -> str:
    return f'"{name}"'


class DuckDBSink(UpsertWrites):
    """Upserts forecasts into ``table`` keyed on PREDICTION_KEY (and actuals and runs
    into their tables)."""

    def __init__(self, path: str | Path, table: str = "predictions",
                 view: str = "latest_predictions"):
        self.path, self.table, self.view = Path(path), table, view

    @property
    def predictions(self) -> Table:
        return Table(self.table, PREDICTION_SCHEMA, PREDICTION_KEY)

    def check_writable(self) -> None:
        """Before training: the file (or the folder it will be made in) can be written.
        Probes with a temporary 1 MiB file, removed again; opens nothing, so a lock
        held by another process is not waited for here."""
        path = self.path
        if path.exists() and not path.is_file():
            raise SinkError(f"duckdb sink {path}: exists and is not a file; name a file")
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise SinkError(f"duckdb sink {path}: {folder} is not a folder; choose another "
                            "sink path")
        if path.exists() and not os.access(path, os.W_OK):
            raise SinkError(f"duckdb sink {path}: the file is read-only; make it writable or "
                            "choose another sink path")
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".cbi-sink-probe-") as fh:
                fh.write(b"\0" * PROBE_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise SinkError(f"duckdb sink {path}: cannot write in {folder} "
                            f"({exc.strerror or exc}); free space, fix its permissions or "
                            "choose another sink path") from None

    def _connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        try:
            if not read_only:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"duckdb sink {self.path}: cannot make its folder "
                            f"({exc.strerror or exc}); choose another sink path") from None
        deadline = time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as exc:
                first = str(exc).splitlines()[0]
                locked = "lock" in first.lower()
                if locked and time.monotonic() < deadline:
                    time.sleep(0.2)  # another writer's transaction is usually short
                    continue
                hint = ("another process holds it open; close it or wait, then write again"
                        if locked else "check the path and its permissions")
                raise SinkError(f"duckdb sink {self.path}: cannot open ({first}); {hint}") \
                    from None

    # writing
    def _upsert(self, table: Table, batch: pd.DataFrame) -> int:
        created = not self.path.exists()
        try:
            return self._upsert_once(table, batch)
        except SinkError:
            if created:  # a database file this write began (e.g. on a full disk) is not kept
                for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
            raise

    def _upsert_once(self, table: Table, batch: pd.DataFrame) -> int:
        con = self._connect()
        try:
            con.execute("BEGIN TRANSACTION")
            self._ensure(con)
            con.register("batch", batch)
            cols = ", ".join(table.schema)
            updates = ", ".join(f"{c} = excluded.{c}" for c in table.schema if c not in table.key)
            conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            con.execute(f"INSERT INTO {_q(table.name)} ({cols}) SELECT {cols} FROM batch "
                        f"ON CONFLICT ({', '.join(table.key)}) {conflict}")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):  # on a full disk the rollback fails too
                con.execute("ROLLBACK")
            raise SinkError(f"duckdb sink {self.path}: write failed, nothing written "
                            f"({str(exc).splitlines()[0]})") from None
        finally:
            with contextlib.suppress(duckdb.Error):
                con.close()
        return len(batch)

    # schema
    def _ensure(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create or migrate the tables, then (re)create the views; inside the caller's
        transaction."""
        for table in (self.predictions, actuals_table(), runs_table()):
            self._ensure_table(con, table)
        con.execute(f"CREATE OR REPLACE VIEW {_q(self.view)} AS "
                    + latest_select(_q(self.table), PREDICTION_SCHEMA))
        con.execute(f"CREATE OR REPLACE VIEW {_q(SCORECARD)} AS "
                    + scorecard_select(_q(self.table), _q(actuals_table().name)))

    @staticmethod
    def _create(con: duckdb.DuckDBPyConnection, table: Table, name: str | None = None) -> None:
        cols = ", ".join(f"{c} {DUCKDB_TYPES[t]} NOT NULL" if c in table.key
                         else f"{c} {DUCKDB_TYPES[t]}" for c, t in table.schema.items())
        con.execute(f"CREATE TABLE {_q(name or table.name)} ({cols}, "
                    f"PRIMARY KEY ({', '.join(table.key)}))")

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, table: Table) -> None:
        existing = [(c, t.upper()) for c, t in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = ? ORDER BY ordinal_position", [table.name]).fetchall()]
        if not existing:
            self._create(con, table)
            return
        want = [(c, DUCKDB_TYPES[t]) for c, t in table.schema.items()]
        if existing == want:
            return
        legacy = [(c, t) for c, t in want if c not in LEGACY_COLUMNS]
        if table.name == self.table and existing == legacy:
            self._migrate_legacy(con)
            return
        raise SinkError(f"duckdb sink {self.path}: table {table.name!r} exists with another "
                        f"schema {existing}; expected {want}; point the sink at a new table")

    def _migrate_legacy(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rebuild a predictions table from before the series key with the new key,
        labelling its rows LEGACY_COLUMNS; every row is kept (checked)."""
        old = f"{self.table}__before_series"
        (before,) = con.execute(f"SELECT count(*) FROM {_q(self.table)}").fetchone()
        for view in (self.view, SCORECARD):
            con.execute(f"DROP VIEW IF EXISTS {_q(view)}")
        con.execute(f"ALTER TABLE {_q(self.table)} RENAME TO {_q(old)}")
        self._create(con, self.predictions)
        cols = ", ".join(PREDICTION_SCHEMA)
        values = ", ".join(f"'{LEGACY_COLUMNS[c]}'" if c in LEGACY_COLUMNS else c
                           for c in PREDICTION_SCHEMA)
        con.execute(f"INSERT INTO {_q(self.table)} ({cols}) SELECT {values} FROM {_q(old)}")
        (after,) = con.execute(f"SELECT count(*) FROM {_q(self.table)}").fetchone()
        if after != before:
            raise duckdb.Error(f"migration copied {after} of {before} rows")
        con.execute(f"DROP TABLE {_q(old)}")

    # reading
    def read_latest(self) -> pd.DataFrame:
        return self._read(f"SELECT * FROM {_q(self.view)} ORDER BY series, horizon")

    def read_all(self, kind: str | None = "forecast") -> pd.DataFrame:
        """The prediction rows of ``kind`` (live forecasts by default; None: every row,
        backtests included)."""
        where = f"WHERE kind = '{kind}' " if kind in KINDS else ""
        return self._read(f"SELECT * FROM {_q(self.table)} {where}"
                          "ORDER BY series, kind, origin_date, horizon")

    def read(self, name: str) -> pd.DataFrame:
        """A table or view by role (``sinks.base.READABLE``); empty when it is not there."""
        actual = {"predictions": self.table, "latest_predictions": self.view}.get(name, name)
        if not self.path.exists():
            return pd.DataFrame()
        con = self._connect(read_only=True)
        try:
            found = con.execute("SELECT count(*) FROM information_schema.tables "
                                "WHERE table_name = ?", [actual]).fetchone()[0]
            return con.execute(f"SELECT * FROM {_q(actual)}").df() if found else pd.DataFrame()
        except duckdb.Error as exc:
            raise SinkError(f"duckdb sink {self.path}: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()

    def _read(self, sql: str) -> pd.DataFrame:
        if not self.path.exists():
            raise SinkError(f"duckdb sink {self.path}: no such file; run a spec first")
        con = self._connect(read_only=True)
        try:
            return con.execute(sql).df()
        except duckdb.Error as exc:
            raise SinkError(f"duckdb sink {self.path}: {str(exc).splitlines()[0]}") from None
        finally:
            con.close()
