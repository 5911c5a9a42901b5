"""The embedded default sink: a DuckDB file with a ``predictions`` table and a
``latest_predictions`` view, written in one transaction per batch."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd

from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.base import PREDICTION_KEY, PREDICTION_SCHEMA, check_batch

#: a lock held by another writer is retried this long before the write fails
LOCK_RETRY_S = float(os.environ.get("CBI_DUCKDB_LOCK_RETRY_S", "3"))
PROBE_BYTES = 1 << 20

DUCKDB_TYPES = {"DATE": "DATE", "STRING": "VARCHAR", "FLOAT64": "DOUBLE",
                "TIMESTAMP": "TIMESTAMP WITH TIME ZONE"}


class DuckDBSink:
    """Upserts forecasts into ``table`` keyed on (origin_date, horizon, model_version)."""

    def __init__(self, path: str | Path, table: str = "predictions",
                 view: str = "latest_predictions"):
        self.path, self.table, self.view = Path(path), table, view

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

    def write(self, forecasts: pd.DataFrame) -> int:
        batch = check_batch(forecasts)
        created = not self.path.exists()
        try:
            return self._write(batch)
        except SinkError:
            if created:  # a database file this write began (e.g. on a full disk) is not kept
                for leftover in (self.path, self.path.with_name(self.path.name + ".wal")):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
            raise

    def _write(self, batch: pd.DataFrame) -> int:
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
            with contextlib.suppress(duckdb.Error):  # on a full disk the rollback fails too
                con.execute("ROLLBACK")
            raise SinkError(f"duckdb sink {self.path}: write failed, nothing written "
                            f"({str(exc).splitlines()[0]})") from None
        finally:
            with contextlib.suppress(duckdb.Error):
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

    def read_latest(self) -> pd.DataFrame:
        return self._read(f'SELECT * FROM "{self.view}" ORDER BY horizon')

    def read_all(self) -> pd.DataFrame:
        return self._read(f'SELECT * FROM "{self.table}" ORDER BY origin_date, horizon')

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
