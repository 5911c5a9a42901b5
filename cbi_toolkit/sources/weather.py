"""Daily station weather from NOAA's GHCN-Daily by-station files.

``{kind: ghcnd, stations: [USW00014940, ...], columns: {prcp_mm: wx_prcp}}`` fetches
each station (one cache file per station) and returns regional means across the
listed stations (a station missing a day is left out of that day's mean):

- ``prcp_mm`` (mm), ``tmin_c``, ``tmax_c`` (degrees C): GHCN values (tenths) / 10;
  a value with a non-blank quality flag (QFLAG) or ``-9999`` is missing;
- ``gdd``: growing degree days, ``(min(tmax, gdd_cap) + max(tmin, gdd_base)) / 2 -
  gdd_base``, floored at 0 (the corn/soy convention, base 10 C, cap 30 C);
- ``prcp_z``: each station's ``z_window``-day precipitation total as a z-score
  against the same calendar month of that station's *earlier* years only
  (causal; needs ``min_years`` years), then averaged over stations.

``format: dly`` reads the classic fixed-width ``{GHCND_DLY_URL}/{station}.dly``
(269-character lines); ``format: csv`` the per-station CSV
``{GHCND_CSV_URL}/{station}.csv`` (values in tenths, ``*_ATTRIBUTES`` =
``MFLAG,QFLAG,SFLAG[,time]``). Base URLs: ``$CBI_GHCND_DLY_URL``, ``$CBI_GHCND_CSV_URL``.
Station observations only: no reanalysis or forecast product is accepted here.
"""

from __future__ import annotations

import io
import os
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.seasonal import causal_monthly_z
from cbi_toolkit.sources import http
from cbi_toolkit.sources.live import LiveSource

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

GHCND_DLY_URL = "https://www.ncei.noaa.gov/pub/data/ghcn/daily/all"
GHCND_CSV_URL = "https://www.ncei.noaa.gov/data/global-historical-climatology-network-daily/access"
ELEMENTS = {"PRCP": "prcp_mm", "TMIN": "tmin_c", "TMAX": "tmax_c"}
LINE = 269


def dly_url() -> str:
    return os.environ.get("CBI_GHCND_DLY_URL", GHCND_DLY_URL).rstrip("/")


def csv_url() -> str:
    return os.environ.get("CBI_GHCND_CSV_URL", GHCND_CSV_URL).rstrip("/")


class WeatherSource(LiveSource):
    """Regional daily weather from a list of GHCN-Daily stations."""

    kind: Literal["ghcnd"] = "ghcnd"
    stations: list[str] = Field(..., min_length=1)
    format: Literal["dly", "csv"] = "dly"
    start: date = Field(date(1900, 1, 1), description="first date kept (history feeds prcp_z)")
    gdd_base: float = 10.0
    gdd_cap: float = 30.0
    z_window: int = Field(30, ge=1, le=366)
    min_years: int = Field(3, ge=1)
    role: Literal["weather"] = "weather"

    cache_folder: ClassVar[str] = "ghcnd"

    @property
    def live_label(self) -> str:
        return "ghcnd " + ",".join(self.stations)

    def cache_keys(self) -> list[str]:
        return [f"{s}.{self.format}" for s in self.stations]

    def fetch(self, key: str, since: pd.Timestamp | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        # by-station files have no date filter: always the whole file
        station = key.rsplit(".", 1)[0]
        label = f"ghcnd {station}"
        if self.format == "dly":
            url = f"{dly_url()}/{station}.dly"
            frame = parse_dly(http.get(url, label), station, label)
        else:
            url = f"{csv_url()}/{station}.csv"
            frame = parse_ghcnd_csv(http.get(url, label), station, label)
        return frame, {"url": url, "station": station, "format": self.format}

    def combine(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        days = pd.date_range(min(f.index[0] for f in frames.values()),
                             max(f.index[-1] for f in frames.values()), freq="D", name="date")
        per = {k: f.reindex(days) for k, f in frames.items()}
        out = {}
        for col in ELEMENTS.values():
            out[col] = pd.concat([f[col] for f in per.values()], axis=1).mean(axis=1)
        gdd = [self._gdd(f) for f in per.values()]
        out["gdd"] = pd.concat(gdd, axis=1).mean(axis=1)
        z = [self._prcp_z(f["prcp_mm"]) for f in per.values()]
        out["prcp_z"] = pd.concat(z, axis=1).mean(axis=1)
        frame = pd.DataFrame(out, index=days)
        return frame[frame.index >= pd.Timestamp(self.start)]

    def _gdd(self, f: pd.DataFrame) -> pd.Series:
        tmax = f["tmax_c"].clip(upper=self.gdd_cap)
        tmin = f["tmin_c"].clip(lower=self.gdd_base)
        return ((tmax + tmin.clip(upper=tmax)) / 2 - self.gdd_base).clip(lower=0)

    def _prcp_z(self, prcp: pd.Series) -> pd.Series:
        total = prcp.rolling(self.z_window, min_periods=max(1, self.z_window * 2 // 3)).sum()
        return causal_monthly_z(total, self.min_years)


def parse_dly(body: bytes, station: str, label: str) -> pd.DataFrame:
    """A GHCN-Daily ``.dly`` file -> daily ``prcp_mm, tmin_c, tmax_c`` (calendar days)."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SourceError(f"{label}: .dly file is not ASCII text; not a GHCN-Daily file") from None
    lines = text.splitlines()
    if not lines:
        raise SourceError(f"{label}: .dly file is empty")
    records: dict[str, list] = {e: [] for e in ELEMENTS}
    for n, line in enumerate(lines, 1):
        if len(line) != LINE:
            raise SourceError(f"{label}: .dly line {n} has {len(line)} characters, expected "
                              f"{LINE} (truncated download or not a GHCN-Daily file)")
        if line[:11] != station:
            raise SourceError(f"{label}: .dly line {n} is for station {line[:11]!r}")
        element = line[17:21]
        if element not in records:
            continue
        try:
            year, month = int(line[11:15]), int(line[15:17])
            values = [int(line[21 + 8 * d: 26 + 8 * d]) for d in range(31)]
        except ValueError:
            raise SourceError(f"{label}: .dly line {n} has a non-numeric field") from None
        qflags = [line[27 + 8 * d] for d in range(31)]
        records[element].append((year, month, values, qflags))
    cols = {}
    for element, recs in records.items():
        if not recs:
            raise SourceError(f"{label}: .dly file has no {element} lines")
        dates, vals = [], []
        for year, month, values, qflags in recs:
            ndays = pd.Timestamp(year=year, month=month, day=1).days_in_month
            for d in range(ndays):
                dates.append(date(year, month, d + 1))
                bad = values[d] == -9999 or qflags[d] != " "
                vals.append(np.nan if bad else values[d] / 10)
        series = pd.Series(vals, index=pd.DatetimeIndex(dates, name="date"), dtype=float)
        cols[ELEMENTS[element]] = series[~series.index.duplicated(keep="last")]
    return pd.DataFrame(cols).sort_index().rename_axis("date")


def parse_ghcnd_csv(body: bytes, station: str, label: str) -> pd.DataFrame:
    """A GHCN-Daily per-station access CSV -> daily ``prcp_mm, tmin_c, tmax_c``."""
    try:
        raw = pd.read_csv(io.BytesIO(body), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"{label}: GHCN-Daily CSV cannot be parsed "
                          f"({str(exc).splitlines()[0]})") from None
    if raw.empty or "DATE" not in raw.columns:
        raise SourceError(f"{label}: GHCN-Daily CSV has no rows or no DATE column")
    dates = pd.to_datetime(raw["DATE"], format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        raise SourceError(f"{label}: GHCN-Daily CSV date {raw['DATE'][dates.isna()].iloc[0]!r} "
                          "is not YYYY-MM-DD (truncated download?)")
    cols = {}
    for element, name in ELEMENTS.items():
        if element not in raw.columns:
            cols[name] = np.full(len(raw), np.nan)
            continue
        cells = raw[element].str.strip()
        values = pd.to_numeric(cells.where(cells != ""), errors="coerce")
        if (values.isna() & (cells != "")).any():
            raise SourceError(f"{label}: {element} holds a non-numeric value")
        attrs = raw.get(f"{element}_ATTRIBUTES", pd.Series([""] * len(raw)))
        qflag = attrs.str.split(",").str[1].fillna("").str.strip()
        values = values.where((qflag == "") & (values != -9999))
        cols[name] = values.to_numpy(dtype=float) / 10
    frame = pd.DataFrame(cols, index=pd.DatetimeIndex(dates, name="date"))
    return frame[~frame.index.duplicated(keep="last")].sort_index()
