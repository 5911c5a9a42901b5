"""Futures (and index) prices from Yahoo Finance's chart API.

``{kind: yahoo, ticker: ZL=F, columns: {close: zl}}`` downloads daily bars from
``{YAHOO_BASE_URL}/v8/finance/chart/{ticker}`` (the endpoint yfinance uses) in
chunks of ``chunk_years`` years (``period1``/``period2`` as Unix seconds). The
provider columns are ``open, high, low, close, volume`` and ``adjclose``; a bar's
date is its timestamp in the exchange's time zone (``meta.exchangeTimezoneName``).
Rows whose prices are all null (Yahoo's placeholder bars) are dropped.

The base URL is ``$CBI_YAHOO_BASE_URL`` when set (tests point it at a local server).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources import http
from cbi_toolkit.sources.live import LiveSource

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

YAHOO_BASE_URL = "https://query2.finance.yahoo.com"
FIELDS = ("open", "high", "low", "close", "volume")


def base_url() -> str:
    return os.environ.get("CBI_YAHOO_BASE_URL", YAHOO_BASE_URL).rstrip("/")


class YahooSource(LiveSource):
    """Daily bars of one Yahoo ticker (continuous front-month futures such as ZL=F)."""

    kind: Literal["yahoo"] = "yahoo"
    ticker: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9=^.\-]+$")
    chunk_years: int = Field(10, ge=1, le=50, description="years per chart request")

    cache_folder: ClassVar[str] = "yahoo"

    @property
    def live_label(self) -> str:
        return f"yahoo {self.ticker}"

    def cache_keys(self) -> list[str]:
        return [self.ticker]

    def fetch(self, key: str, since: pd.Timestamp | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        start = pd.Timestamp(since if since is not None else self.start)
        end = pd.Timestamp(datetime.now(UTC).date()) + pd.Timedelta(days=1)
        url = f"{base_url()}/v8/finance/chart/{key}"
        parts = []
        lo = start
        while lo < end:
            hi = min(lo + pd.DateOffset(years=self.chunk_years), end)
            params = {"period1": str(int(lo.timestamp())), "period2": str(int(hi.timestamp())),
                      "interval": "1d", "events": "div,split", "includeAdjustedClose": "true"}
            body = http.get(url, self.live_label, params=params, expect="json")
            chunk = parse_chart(body, self.live_label)
            if chunk is not None:
                parts.append(chunk)
            lo = hi
        if not parts:
            raise SourceError(f"{self.live_label}: Yahoo returned no bars from {start:%Y-%m-%d}; "
                              "check the ticker")
        frame = pd.concat(parts)
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        return frame, {"url": url, "ticker": key, "chunks": len(parts)}


def parse_chart(body: bytes, label: str) -> pd.DataFrame | None:
    """One chart JSON response -> daily frame (None when the window has no bars)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise SourceError(f"{label}: Yahoo chart response is not valid JSON (truncated or "
                          "changed format)") from None
    chart = doc.get("chart") if isinstance(doc, dict) else None
    if not isinstance(chart, dict):
        raise SourceError(f"{label}: Yahoo response has no 'chart' object; the format changed")
    if chart.get("error"):
        err = chart["error"]
        desc = err.get("description", err) if isinstance(err, dict) else err
        raise SourceError(f"{label}: Yahoo error: {desc}")
    results = chart.get("result") or []
    if not results:
        raise SourceError(f"{label}: Yahoo chart has no result; check the ticker")
    res = results[0]
    stamps = res.get("timestamp")
    if not stamps:
        return None
    try:
        quote = res["indicators"]["quote"][0]
        tz = res.get("meta", {}).get("exchangeTimezoneName") or "UTC"
        cols = {f: np.array([np.nan if v is None else v for v in quote[f]], dtype=float)
                for f in FIELDS}
        adj = res["indicators"].get("adjclose")
        cols["adjclose"] = (np.array([np.nan if v is None else v for v in adj[0]["adjclose"]],
                                     dtype=float) if adj else cols["close"].copy())
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SourceError(f"{label}: Yahoo chart is missing {exc!s} in indicators; "
                          "the format changed") from None
    if any(len(v) != len(stamps) for v in cols.values()):
        raise SourceError(f"{label}: Yahoo chart arrays differ in length from its timestamps")
    dates = (pd.to_datetime(pd.Series(stamps, dtype="int64"), unit="s", utc=True)
             .dt.tz_convert(tz).dt.tz_localize(None).dt.normalize())
    frame = pd.DataFrame(cols, index=pd.DatetimeIndex(dates, name="date"))
    frame = frame.dropna(how="all", subset=["open", "high", "low", "close"])
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame if len(frame) else None
