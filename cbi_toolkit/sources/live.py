"""What the live sources (Yahoo, FRED, CFTC, GHCN weather) share: a file
alternative under the data directory, and the fetch-into-cache cycle.

A live source in a spec::

    - kind: yahoo
      ticker: ZL=F
      columns: {close: zl}
      role: price
      file: {path: zl/zl_tradingview_ZL1_daily.csv}   # optional, used with a data dir

With a data directory (``--data-dir``, ``CBI_DATA_DIR``, ``../shared/data``) and a
``file:``, the file is read exactly as a ``kind: file`` source would read it (its
``columns`` default to the source's). Otherwise the series comes from the local
cache, fetched on first use; ``cbi-fetch`` (or :func:`ensure_cached`)
refreshes stale entries incrementally and ``--refresh`` refetches everything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources.base import SourceBase, SourceContext, tidy
from cbi_toolkit.sources.cache import Cache, check_series
from cbi_toolkit.sources.files import FileSource

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

log = logging.getLogger(__name__)

Policy = Literal["load", "stale", "full"]


class FileAlternative(BaseModel):
    """The same series as a file under the data directory (CSV or Parquet)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    columns: dict[str, str] | None = Field(
        None, description="file column -> series name; default: the source's columns")
    date_column: str = "date"

    _table_file = field_validator("path")(FileSource._table_file.__func__)


@dataclass
class FetchResult:
    """What obtaining one cached series did, for progress output."""

    label: str
    key: str
    action: str  # cached | fetched | appended | refetched
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp
    new_rows: int = 0

    def line(self) -> str:
        extra = f", +{self.new_rows} new" if self.action == "appended" else ""
        return (f"{self.label} [{self.key}]: {self.action}, {self.rows} rows "
                f"{self.first:%Y-%m-%d}..{self.last:%Y-%m-%d}{extra}")


class LiveSource(SourceBase):
    """Base of the sources fetched over HTTP into the cache."""

    file: FileAlternative | None = None
    start: date = Field(date(2000, 1, 1), description="first date fetched")
    stale_after_hours: float = Field(20.0, gt=0,
                                     description="cbi-fetch refreshes a cache entry older than this")

    #: folder under the cache directory
    cache_folder: ClassVar[str] = "live"
    #: days refetched before the last cached date on an incremental refresh (revisions)
    overlap_days: ClassVar[int] = 10

    @model_validator(mode="after")
    def _file_names_match(self) -> LiveSource:
        if self.file is not None and self.file.columns is not None:
            if sorted(self.file.columns.values()) != sorted(self.columns.values()):
                raise ValueError(f"file.columns must name the same series as columns "
                                 f"({sorted(self.columns.values())})")
        return self

    # -- what each connector provides -------------------------------------
    @property
    def live_label(self) -> str:
        """How fetch and cache messages name the live series (``yahoo ZL=F``)."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        """The file path when there is a ``file:`` alternative (so reports on the
        offline route read as before), else the live name."""
        return self.file.path if self.file is not None else self.live_label

    def cache_keys(self) -> list[str]:
        """One key per cached series (a ticker, a FRED id, a station)."""
        raise NotImplementedError

    def fetch(self, key: str, since: pd.Timestamp | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Download ``key`` from ``since`` (None: from ``start``): a frame with a
        DatetimeIndex named ``date`` and float provider columns, plus provenance."""
        raise NotImplementedError

    def combine(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """The source's provider frame from its cached series (default: the only one)."""
        (frame,) = frames.values()
        return frame

    # -- shared -------------------------------------------------------------
    def file_source(self) -> FileSource:
        assert self.file is not None
        return FileSource(path=self.file.path, columns=self.file.columns or self.columns,
                          date_column=self.file.date_column, role=self.role,
                          ffill_limit=self.ffill_limit, release=self.release,
                          lag_days=self.lag_days)

    def uses_file(self, ctx: SourceContext) -> bool:
        return ctx.data_dir is not None and self.file is not None

    def load(self, ctx: SourceContext) -> pd.DataFrame:
        if self.uses_file(ctx):
            return self.file_source().load(ctx)
        policy: Policy = "full" if ctx.refresh else "load"
        frames = {key: self.obtain(key, ctx, policy)[0] for key in self.cache_keys()}
        frame = self.combine(frames)
        out = tidy(frame.reset_index(), "date", self.columns, self.live_label)
        return out

    def obtain(self, key: str, ctx: SourceContext,
               policy: Policy = "load") -> tuple[pd.DataFrame, FetchResult]:
        """The cached frame of ``key``; fetched when missing or corrupt, when
        ``policy`` is ``full``, or incrementally when ``stale`` and older than
        ``stale_after_hours``."""
        cache = Cache(ctx.cache_dir)
        entry = None if policy == "full" else cache.read(self.cache_folder, key)
        if entry is not None and (policy == "load" or
                                  entry.age_hours() < self.stale_after_hours):
            return entry.frame, self._result(key, "cached", entry.frame)
        if entry is None:
            frame, meta = self.fetch(key, None)
            frame = self._clip(frame, key)
            action = "refetched" if policy == "full" else "fetched"
            new_rows = len(frame)
        else:
            old = entry.frame
            since = max(old.index[-1] - pd.Timedelta(days=self.overlap_days),
                        pd.Timestamp(self.start))
            new, meta = self.fetch(key, since)
            new = self._clip(new, key)
            if list(new.columns) != list(old.columns):
                raise SourceError(f"{self.live_label}: {key} columns changed from {list(old.columns)} "
                                  f"to {list(new.columns)}; run cbi-fetch --refresh")
            frame = pd.concat([old[old.index < new.index[0]], new])
            new_rows = int((new.index > old.index[-1]).sum())
            action = "appended"
            meta = {**meta, "incremental_from": f"{since:%Y-%m-%d}"}
        meta = {"source": self.cache_folder, "key": key, **meta,
                "fetched_at": datetime.now(UTC).isoformat()}
        cache.write(self.cache_folder, key, frame, meta)
        return frame, self._result(key, action, frame, new_rows)

    def _clip(self, frame: pd.DataFrame, key: str) -> pd.DataFrame:
        frame = frame[frame.index >= pd.Timestamp(self.start)]
        frame = frame.astype(float)
        frame.index = pd.DatetimeIndex(frame.index, name="date").as_unit("ns")
        check_series(frame, f"{self.live_label} [{key}]")
        return frame

    def _result(self, key: str, action: str, frame: pd.DataFrame, new: int = 0) -> FetchResult:
        return FetchResult(self.live_label, key, action, len(frame), frame.index[0], frame.index[-1], new)


def live_sources(spec) -> list[LiveSource]:
    return [s for s in spec.data if isinstance(s, LiveSource)]


def ensure_cached(spec, ctx: SourceContext, progress: Callable[[str], None] | None = None,
                  use_files: bool = True) -> list[FetchResult]:
    """Make the cache hold every live series of ``spec`` that a run will read.

    With ``use_files`` (the default, what ``cbi-run`` wants) a source read from its
    ``file:`` alternative under ``ctx.data_dir`` is skipped. ``ctx.refresh``
    refetches all; otherwise missing/corrupt entries are fetched and stale ones
    appended to. ``progress`` receives one line per series. Raises `SourceError`.
    """
    results = []
    for source in live_sources(spec):
        if use_files and source.uses_file(ctx):
            continue
        for key in source.cache_keys():
            if progress:
                progress(f"{source.live_label} [{key}] ...")
            _, result = source.obtain(key, ctx, "full" if ctx.refresh else "stale")
            results.append(result)
            if progress:
                progress(result.line())
    return results
