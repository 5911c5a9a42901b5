"""CSV and Parquet files under the data directory (the formats in ../shared/data)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import field_validator

from cbi_toolkit.errors import DataError, SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources.base import SourceBase, SourceContext, tidy

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

TABLE_SUFFIXES = frozenset({".csv", ".parquet", ".pq"})


class FileSource(SourceBase):
    """``{kind: file, path: zl/zl_tradingview_ZL1_daily.csv, columns: {close: zl}}``.

    A relative ``path`` is read from the data directory.
    """

    kind: Literal["file"] = "file"
    path: str
    date_column: str = "date"

    @field_validator("path")
    @classmethod
    def _table_file(cls, path: str) -> str:
        # only tables are read: a path at a .env or a key file would echo its content in errors
        if Path(path).suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"{path!r} is not a data table; a file source reads "
                             f"{', '.join(sorted(TABLE_SUFFIXES))} files")
        return path

    @property
    def label(self) -> str:
        return self.path

    def resolve(self, ctx: SourceContext) -> Path:
        path = Path(self.path).expanduser()
        if not path.is_absolute():
            if ctx.data_dir is None:
                raise SourceError(f"{self.path}: relative path but no data directory; "
                                  "pass --data-dir or set CBI_DATA_DIR")
            path = ctx.data_dir / path
        if not path.is_file():
            raise SourceError(f"{self.path}: file not found at {path}; check the path and the "
                              "data directory (--data-dir / CBI_DATA_DIR)")
        return path

    def load(self, ctx: SourceContext) -> pd.DataFrame:
        path = self.resolve(ctx)
        return tidy(read_table(path, self.path), self.date_column, self.columns, self.path)


def read_table(path: Path, label: str) -> pd.DataFrame:
    """Read a CSV (UTF-8, BOM tolerated) or Parquet file into a raw frame."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            if isinstance(frame.index, pd.DatetimeIndex):
                frame = frame.reset_index()
            return frame
        frame = pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False,
                            na_values=[""])
        check_last_line(path, label, len(frame.columns))
        return frame
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty; expected a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{label}: cannot read ({str(exc).splitlines()[0]}); "
                        "expected a comma-separated CSV with a header or a Parquet file") from None


def check_last_line(path: Path, label: str, n_columns: int) -> None:
    """Refuse a CSV whose last line has fewer fields than the header: a download
    or copy cut off mid-line (``...,47.56,4``) would otherwise read as a price."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 4096))
        tail = fh.read().rstrip(b"\r\n")
    if b"\n" not in tail and size > 4096:
        return  # a last line over 4 KiB: not a price table; the parser judges it
    last = tail.rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    fields = next(csv.reader([last]), [])
    if 0 < len(fields) < n_columns:
        raise DataError(f"{label}: the last line has {len(fields)} of the header's {n_columns} "
                        "fields: the file looks cut off mid-line; download or copy it again")
