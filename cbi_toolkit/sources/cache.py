"""The local Parquet cache of live series, with provenance beside each file.

Layout: ``<cache_dir>/<source>/<key>.parquet`` plus ``<key>.json`` holding source,
URL or ticker, fetched_at (UTC), rows, first/last date, columns and the sha256 of
the Parquet bytes. The Parquet bytes are read back and checked before an atomic
write (`cbi_toolkit.storage`), so an interrupted or bad download never replaces a good
file. A file whose checksum does not match its provenance, or that Parquet cannot
read, counts as missing (and is refetched), never silently used.

The cache directory is ``SourceContext.cache_dir``, else ``$CBI_CACHE_DIR``, else
``~/.cache/cbi_toolkit``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources.http import redact
from cbi_toolkit.storage import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

log = logging.getLogger(__name__)


def cache_root(configured: Path | str | None = None) -> Path:
    """The cache directory: ``configured``, else ``$CBI_CACHE_DIR``, else ``~/.cache/cbi_toolkit``."""
    value = configured or os.environ.get("CBI_CACHE_DIR") or Path.home() / ".cache" / "cbi_toolkit"
    return Path(value).expanduser()


def safe_name(key: str) -> str:
    """A file name for a ticker or id (``ZL=F`` -> ``ZL=F``, ``DX-Y.NYB`` kept, ``/`` replaced)."""
    return re.sub(r"[^A-Za-z0-9=._-]", "_", key)


@dataclass
class Entry:
    """One cached series: its frame (DatetimeIndex ``date``, float columns) and provenance."""

    frame: pd.DataFrame
    meta: dict[str, Any]

    @property
    def fetched_at(self) -> datetime:
        return datetime.fromisoformat(self.meta["fetched_at"])

    def age_hours(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(UTC)) - self.fetched_at).total_seconds() / 3600


class Cache:
    """Read and write cached series under ``root``."""

    def __init__(self, root: Path | str | None = None):
        self.root = cache_root(root)

    def paths(self, source: str, key: str) -> tuple[Path, Path]:
        base = self.root / source / safe_name(key)
        return base.with_suffix(".parquet"), base.with_suffix(".json")

    def read(self, source: str, key: str) -> Entry | None:
        """The cached entry, or None when missing, unreadable or failing its checksum."""
        data, meta_path = self.paths(source, key)
        if not data.is_file() or not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            blob = data.read_bytes()
        except (OSError, ValueError) as exc:
            log.warning("cache %s: unreadable provenance (%s); refetching", data, exc)
            return None
        if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
            log.warning("cache %s: checksum mismatch; refetching", data)
            return None
        try:
            frame = pd.read_parquet(data)
        except Exception as exc:  # noqa: BLE001 - any parquet failure means: refetch
            log.warning("cache %s: unreadable parquet (%s); refetching", data, exc)
            return None
        if not isinstance(frame.index, pd.DatetimeIndex) or frame.empty:
            log.warning("cache %s: not a dated series; refetching", data)
            return None
        frame.index = frame.index.as_unit("ns")  # parquet may keep [us]; frames elsewhere are [ns]
        return Entry(frame, meta)

    def write(self, source: str, key: str, frame: pd.DataFrame, meta: dict[str, Any]) -> Entry:
        """Validate ``frame``, write it and its provenance atomically, return the entry."""
        check_series(frame, f"{source} {key}")
        data, meta_path = self.paths(source, key)
        data.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        blob = buffer.getvalue()
        back = pd.read_parquet(io.BytesIO(blob))
        if len(back) != len(frame) or list(back.columns) != list(frame.columns):
            raise SourceError(f"{source} {key}: cache write did not read back; disk full?")
        meta = {
            **{k: (redact(v) if isinstance(v, str) else v) for k, v in meta.items()},
            "fetched_at": meta.get("fetched_at") or datetime.now(UTC).isoformat(),
            "rows": len(frame),
            "first_date": f"{frame.index[0]:%Y-%m-%d}",
            "last_date": f"{frame.index[-1]:%Y-%m-%d}",
            "columns": list(frame.columns),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_bytes(data, blob)
        atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
        return Entry(frame, meta)


def check_series(frame: pd.DataFrame, label: str) -> None:
    """A fetched frame must be non-empty, dated, sorted, unique and numeric."""
    if frame.empty:
        raise SourceError(f"{label}: the source returned no rows")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise SourceError(f"{label}: fetched frame has no date index")
    if frame.index.has_duplicates or not frame.index.is_monotonic_increasing:
        raise SourceError(f"{label}: fetched dates are duplicated or out of order")
    for col in frame.columns:
        if not pd.api.types.is_float_dtype(frame[col]):
            raise SourceError(f"{label}: fetched column {col!r} is not numeric")
    if frame.isna().all().all():
        raise SourceError(f"{label}: every fetched value is missing")
