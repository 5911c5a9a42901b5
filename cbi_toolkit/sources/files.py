"""CSV and Parquet files under the data directory (the formats in ../shared/data)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from cbi_toolkit.errors import DataError, SourceError
from cbi_toolkit.sources.base import SourceBase, SourceContext, tidy


class FileSource(SourceBase):
    """``{kind: file, path: zl/zl_tradingview_ZL1_daily.csv, columns: {close: zl}}``.

    A relative ``path`` is read from the data directory.
    """

    kind: Literal["file"] = "file"
    path: str
    date_column: str = "date"

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
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False,
                           na_values=[""])
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty; expected a header and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{label}: cannot read ({str(exc).splitlines()[0]}); "
                        "expected a comma-separated CSV with a header or a Parquet file") from None
