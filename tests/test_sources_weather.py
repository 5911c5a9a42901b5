"""GHCN-Daily connector against a local server serving the real Mason City, Iowa
station file (../shared/data/weather/raw/USW00014940.dlv, 1948-2025) byte for byte."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from werkzeug import Request, Response

from cbi_toolkit.errors import SourceError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.cache import Cache
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.sources.weather import WeatherSource, parse_dly, parse_ghcnd_csv

STATION = "USW00014940"
RAW = "weather/raw/USW00014940.dlv"
SNAPSHOT = "weather/ghcnd_USW00014940_mason_city_ia_daily_2004_2023.csv"
COLUMNS = {"prcp_mm": "wx_prcp", "tmin_c": "wx_tmin", "tmax_c": "wx_tmax"}


class Station:
    def __init__(self, body: bytes):
        self.body, self.faults, self.asked = body, [], []

    def __call__(self, request: Request) -> Response:
        self.asked.append(request.path)
        if self.faults:
            return self.faults.pop(0)
        return Response(self.body, content_type="text/plain")


@pytest.fixture
def raw(data_dir) -> bytes:
    return (data_dir / RAW).read_bytes()


@pytest.fixture
def station(live, raw):
    server = Station(raw)
    live.server.expect_request(re.compile(r"^/ghcnd/.*")).respond_with_handler(server)
    return server


def source(**kw) -> WeatherSource:
    return WeatherSource(**{"stations": [STATION], "columns": COLUMNS, **kw})


def snapshot(data_dir) -> pd.DataFrame:
    return FileSource(path=str(data_dir / SNAPSHOT), columns=COLUMNS).load(SourceContext())


def test_served_dly_equals_the_snapshot_csv(live, station, data_dir):
    frame = source().load(live.ctx)
    assert station.asked == [f"/ghcnd/{STATION}.dly"]
    assert (frame.index[0], frame.index[-1]) == (pd.Timestamp("1948-01-01"),
                                                 pd.Timestamp("2025-10-31"))
    pd.testing.assert_frame_equal(frame.loc["2004":"2023"], snapshot(data_dir))
    # quality-flagged values are blanked, as in the snapshot
    assert np.isnan(frame.loc["2005-11-28", "wx_tmin"])
    meta = Cache(live.cache).paths("ghcnd", f"{STATION}.dly")[1].read_text()
    assert '"station": "USW00014940"' in meta


def test_growing_degree_days_and_precipitation_z(live, station):
    frame = source(columns={"tmin_c": "tmin", "tmax_c": "tmax", "gdd": "gdd",
                            "prcp_z": "pz"}).load(live.ctx)
    expect = ((frame["tmax"].clip(upper=30) + frame["tmin"].clip(10, None)
               .clip(upper=frame["tmax"].clip(upper=30))) / 2 - 10).clip(lower=0)
    pd.testing.assert_series_equal(frame["gdd"], expect, check_names=False)
    assert (frame["gdd"].dropna() >= 0).all()
    # 2012-07-17: tmax 36.7 is capped at 30, tmin 18.9 -> (30 + 18.9) / 2 - 10
    assert frame.loc["2012-07-17", ["tmax", "tmin"]].tolist() == [36.7, 18.9]
    assert frame.loc["2012-07-17", "gdd"] == pytest.approx(14.45)
    # z-scores are against earlier years only: none before min_years of history
    assert frame.loc[:"1950-12", "pz"].isna().all()
    # July 2012 (the Midwest drought) is dry against the station's own history
    assert frame.loc["2012-07-15":"2012-07-31", "pz"].mean() < -0.5


def test_regional_mean_over_stations(live, raw):
    """Two stations of the region; one reports nothing but the rows it shares."""
    other = "USW00014940".replace("14940", "99999")
    days = [ln for ln in raw.decode().splitlines() if ln[11:15] == "2012"]
    live.server.expect_request(f"/ghcnd/{STATION}.dly").respond_with_data(raw)
    live.server.expect_request(f"/ghcnd/{other}.dly").respond_with_data(
        "\n".join(other + ln[11:] for ln in days) + "\n")
    both = source(stations=[STATION, other]).load(live.ctx)
    one = source().load(SourceContext(cache_dir=live.cache))
    pd.testing.assert_frame_equal(both, one)       # the same observations: the same mean


def test_csv_format_parses_like_dly(raw):
    """The per-station CSV layout, rendered from the real .dly rows of 2021."""
    daily = parse_dly(raw, STATION, "t")
    lines = ['"STATION","DATE","PRCP","PRCP_ATTRIBUTES","TMAX","TMAX_ATTRIBUTES",'
             '"TMIN","TMIN_ATTRIBUTES"']
    sel = daily.loc["2021"]
    for day, row in sel.iterrows():
        cells = []
        for col in ("prcp_mm", "tmax_c", "tmin_c"):
            v = row[col]
            cells += ["" if np.isnan(v) else str(int(round(v * 10))), ",,W"]
        lines.append(f'"{STATION}","{day:%Y-%m-%d}",' + ",".join(f'"{c}"' for c in cells))
    parsed = parse_ghcnd_csv("\n".join(lines).encode(), STATION, "t")
    pd.testing.assert_frame_equal(parsed[sel.columns], sel, check_freq=False,
                                  check_index_type=False)


def test_500_is_retried(live, station, data_dir):
    station.faults = [Response("busy", status=500), Response("busy", status=504)]
    frame = source().load(live.ctx)
    assert len(station.asked) == 3
    pd.testing.assert_frame_equal(frame.loc["2004":"2023"], snapshot(data_dir))


@pytest.mark.parametrize("payload, words", [
    (b"<!DOCTYPE html><html><body>404</body></html>", "HTML page"),
    (b"  \n", "empty body"),
    (b"STATION,DATE,PRCP\nUSW00014940,2021-01-01,0\n", "expected 269"),
])
def test_malformed_payloads(live, station, payload, words):
    station.body = payload
    with pytest.raises(SourceError, match=words):
        source().load(live.ctx)


def test_truncated_file_keeps_the_good_cache(live, station, raw):
    good = source().load(live.ctx)
    files = {p: p.read_bytes() for p in live.cache.rglob("*") if p.is_file()}
    station.body = raw[: len(raw) // 2 + 100]            # cut in the middle of a line
    with pytest.raises(SourceError, match=r"ghcnd USW00014940: .dly line \d+ has \d+ characters"):
        source().load(SourceContext(cache_dir=live.cache, refresh=True))
    assert {p: p.read_bytes() for p in files} == files
    pd.testing.assert_frame_equal(source().load(live.ctx), good)


def test_corrupted_cache_is_refetched(live, station):
    good = source().load(live.ctx)
    parquet, _ = Cache(live.cache).paths("ghcnd", f"{STATION}.dly")
    parquet.write_bytes(b"PAR1" + parquet.read_bytes()[4:-10])
    pd.testing.assert_frame_equal(source().load(live.ctx), good)
    assert len(station.asked) == 2
