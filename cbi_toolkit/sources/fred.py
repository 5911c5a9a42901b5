"""FRED series by id.

``{kind: fred, columns: {DGS10: dgs10}}`` fetches each id in ``columns`` (one cache
file per id) from FRED's public graph CSV,
``{FRED_CSV_URL}?id=DGS10&cosd=YYYY-MM-DD`` (no key needed; header ``DATE`` or
``observation_date``; ``.`` marks a missing observation). When ``FRED_API_KEY`` is
set, the JSON API ``{FRED_API_URL}/fred/series/observations`` is used instead,
paged by ``limit``/``offset``. The key is sent only as a query parameter and is
masked in every message, log and provenance file.

``frequency`` (``d w m q a``) and ``aggregation`` (``avg sum eop``) ask FRED for its
own frequency conversion; leave them out for the native frequency.
Base URLs: ``$CBI_FRED_CSV_URL`` and ``$CBI_FRED_API_URL``.
"""

from __future__ import annotations

import io
import json
import os
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources import http
from cbi_toolkit.sources.live import LiveSource

if TYPE_CHECKING:
    import pandas as pd
else:
    pd = lazy_import("pandas")

FRED_CSV_URL = "https://fred.stlouisfed.org/graph/fredgraph.csv"
FRED_API_URL = "https://api.stlouisfed.org"
#: observations per JSON API page (FRED's maximum is 100000)
PAGE_LIMIT = 100000
_FQ = {"d": "Daily", "w": "Weekly, Ending Friday", "m": "Monthly", "q": "Quarterly", "a": "Annual"}


def csv_url() -> str:
    return os.environ.get("CBI_FRED_CSV_URL", FRED_CSV_URL)


def api_url() -> str:
    return os.environ.get("CBI_FRED_API_URL", FRED_API_URL).rstrip("/")


class FredSource(LiveSource):
    """One or more FRED series; each key of ``columns`` is a FRED series id."""

    kind: Literal["fred"] = "fred"
    frequency: Literal["d", "w", "m", "q", "a"] | None = None
    aggregation: Literal["avg", "sum", "eop"] = "avg"

    cache_folder: ClassVar[str] = "fred"

    @property
    def live_label(self) -> str:
        return "fred " + ",".join(self.columns)

    def cache_keys(self) -> list[str]:
        suffix = f"@{self.frequency}-{self.aggregation}" if self.frequency else ""
        return [f"{sid}{suffix}" for sid in self.columns]

    def combine(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(list(frames.values()), axis=1, join="outer").sort_index()

    def fetch(self, key: str, since: pd.Timestamp | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        sid = key.split("@")[0]
        start = pd.Timestamp(since if since is not None else self.start)
        label = f"fred {sid}"
        if os.environ.get("FRED_API_KEY"):
            return self._fetch_api(sid, start, label)
        params = {"id": sid, "cosd": f"{start:%Y-%m-%d}"}
        if self.frequency:
            params |= {"fq": _FQ[self.frequency], "fam": self.aggregation}
        body = http.get(csv_url(), label, params=params)
        return parse_fredgraph(body, sid, label), {"url": csv_url(), "series_id": sid,
                                                   "params": params}

    def _fetch_api(self, sid: str, start: pd.Timestamp, label: str):
        url = f"{api_url()}/fred/series/observations"
        base = {"series_id": sid, "api_key": os.environ["FRED_API_KEY"], "file_type": "json",
                "observation_start": f"{start:%Y-%m-%d}", "limit": str(PAGE_LIMIT)}
        if self.frequency:
            base |= {"frequency": self.frequency, "aggregation_method": self.aggregation}
        rows: list[dict] = []
        offset, pages = 0, 0
        while True:
            body = http.get(url, label, params={**base, "offset": str(offset)}, expect="json")
            try:
                doc = json.loads(body)
                obs = doc["observations"]
                count = int(doc.get("count", len(obs)))
            except (ValueError, KeyError, TypeError):
                raise SourceError(f"{label}: FRED API answer is not the observations JSON "
                                  "(truncated or changed format)") from None
            rows.extend(obs)
            pages += 1
            offset += len(obs)
            if not obs or offset >= count:
                break
        if not rows:
            raise SourceError(f"{label}: FRED returned no observations from {start:%Y-%m-%d}")
        try:
            raw = pd.DataFrame({"date": [r["date"] for r in rows],
                                sid: [r["value"] for r in rows]})
        except (KeyError, TypeError):
            raise SourceError(f"{label}: FRED observations lack date/value fields") from None
        meta = {"url": url, "series_id": sid, "api": True, "pages": pages}
        return _numeric(raw, "date", sid, label), meta


def parse_fredgraph(body: bytes, sid: str, label: str) -> pd.DataFrame:
    """A fredgraph.csv download -> frame with one float column ``sid``."""
    try:
        raw = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False,
                          encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{label}: FRED CSV cannot be parsed "
                          f"({str(exc).splitlines()[0]})") from None
    if raw.empty or len(raw.columns) < 2:
        raise SourceError(f"{label}: FRED CSV has no rows")
    date_col = raw.columns[0]
    if date_col.lower() not in ("date", "observation_date"):
        raise SourceError(f"{label}: FRED CSV starts with column {date_col!r}, expected DATE "
                          "or observation_date; the format changed")
    match = [c for c in raw.columns if c.upper() == sid.upper()]
    if not match:
        raise SourceError(f"{label}: FRED CSV has no column {sid!r} (columns: "
                          f"{', '.join(raw.columns)})")
    out = raw[[date_col, match[0]]].rename(columns={match[0]: sid})
    return _numeric(out, date_col, sid, label)


def _numeric(raw: pd.DataFrame, date_col: str, sid: str, label: str) -> pd.DataFrame:
    dates = pd.to_datetime(raw[date_col], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        bad = raw[date_col][dates.isna()].iloc[0]
        raise SourceError(f"{label}: FRED date {bad!r} is not YYYY-MM-DD (truncated or "
                          "changed format)")
    cells = raw[sid].astype(str).str.strip()
    values = pd.to_numeric(cells.where(~cells.isin(["", "."])), errors="coerce")
    bad = values.isna() & ~cells.isin(["", "."])
    if bad.any():
        raise SourceError(f"{label}: FRED value {cells[bad].iloc[0]!r} on "
                          f"{dates[bad].iloc[0]:%Y-%m-%d} is not a number")
    frame = pd.DataFrame({sid: values.to_numpy(dtype=float)},
                         index=pd.DatetimeIndex(dates, name="date"))
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame
