"""Yahoo chart connector against a local server.

Yahoo publishes no downloadable raw payload, so the server renders real rows of
the snapshot's ZL series (TradingView CBOT:ZL1!) into Yahoo's chart JSON layout,
answering each ``period1``/``period2`` window with the rows inside it."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from werkzeug import Request, Response

from cbi_toolkit.errors import SourceError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.cache import Cache
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.sources.yahoo import YahooSource

ZL = "zl/zl_tradingview_ZL1_daily.csv"
COLUMNS = {"open": "o", "high": "h", "low": "l", "close": "zl", "volume": "v"}
TZ = "America/Chicago"


class ChartServer:
    """Renders real rows as Yahoo chart JSON; ``faults`` are answered first, in order."""

    def __init__(self, rows: pd.DataFrame):
        self.rows = rows
        stamps = pd.to_datetime(rows["date"]).dt.tz_localize(TZ)
        self.epoch = (stamps - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(seconds=1)
        self.faults: list[Response] = []
        self.windows: list[tuple[int, int]] = []

    def __call__(self, request: Request) -> Response:
        if self.faults:
            return self.faults.pop(0)
        p1, p2 = int(request.args["period1"]), int(request.args["period2"])
        self.windows.append((p1, p2))
        return Response(json.dumps(self.render(p1, p2)), content_type="application/json")

    def render(self, p1: int, p2: int) -> dict:
        sel = self.rows[((self.epoch >= p1) & (self.epoch < p2)).to_numpy()]
        meta = {"currency": "USD", "symbol": "ZL=F", "exchangeName": "CBT",
                "instrumentType": "FUTURE", "gmtoffset": -21600, "timezone": "CST",
                "exchangeTimezoneName": TZ, "dataGranularity": "1d", "range": ""}
        result: dict = {"meta": meta}
        if len(sel):
            result["timestamp"] = [int(x) for x in self.epoch[sel.index]]
            quote = {f: [float(x) for x in sel[f]] for f in ("open", "high", "low", "close")}
            quote["volume"] = [int(float(x)) for x in sel["volume"]]
            result["indicators"] = {"quote": [quote],
                                    "adjclose": [{"adjclose": quote["close"]}]}
        else:
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return {"chart": {"result": [result], "error": None}}


@pytest.fixture
def rows(data_dir):
    return pd.read_csv(data_dir / ZL, dtype=str)


@pytest.fixture
def chart(live, rows):
    server = ChartServer(rows)
    live.server.expect_request(re.compile(r"^/yahoo/v8/finance/chart/ZL=F$")) \
        .respond_with_handler(server)
    return server


def source(**kw) -> YahooSource:
    return YahooSource(**{"ticker": "ZL=F", "columns": COLUMNS, "role": "price",
                          "start": "2004-01-01", "chunk_years": 5, **kw})


def file_frame(data_dir) -> pd.DataFrame:
    return FileSource(path=str(data_dir / ZL), columns=COLUMNS).load(SourceContext())


def test_served_chunks_equal_the_same_rows_read_as_a_file(live, chart, data_dir):
    frame = source().load(live.ctx)
    pd.testing.assert_frame_equal(frame, file_frame(data_dir))
    # 2004 .. today in 5-year windows, contiguous and non-overlapping
    assert len(chart.windows) >= 5
    assert all(a[1] == b[0] for a, b in zip(chart.windows, chart.windows[1:], strict=False))
    # cached with provenance; a second load makes no request
    parquet, meta = Cache(live.cache).paths("yahoo", "ZL=F")
    info = json.loads(meta.read_text())
    assert info["ticker"] == "ZL=F" and info["rows"] == 4880
    assert (info["first_date"], info["last_date"]) == ("2004-08-20", "2023-12-29")
    assert len(info["sha256"]) == 64 and info["fetched_at"]
    n = len(chart.windows)
    pd.testing.assert_frame_equal(source().load(live.ctx), frame)
    assert len(chart.windows) == n


def test_429_and_500_are_retried(live, chart, data_dir):
    chart.faults = [Response("slow down", status=429, headers={"Retry-After": "0"}),
                    Response("oops", status=500)]
    pd.testing.assert_frame_equal(source().load(live.ctx), file_frame(data_dir))
    assert not chart.faults


def test_persistent_429_is_one_line_naming_the_series(live, chart):
    chart.faults = [Response("slow down", status=429)] * 3
    with pytest.raises(SourceError, match=r"^yahoo ZL=F: .*rate-limited.*after 3 attempts"):
        source().load(live.ctx)


@pytest.mark.parametrize("body, ctype, words", [
    ('{"chart": {"result": [{"timest', "application/json", "not valid JSON"),
    ("<!DOCTYPE html><html><body>Will be right back</body></html>", "text/html", "HTML page"),
    ('{"chart": {"result": null, "error": {"code": "Not Found", "description": '
     '"No data found, symbol may be delisted"}}}', "application/json", "symbol may be delisted"),
    ('{"finance": {"result": null}}', "application/json", "no 'chart' object"),
])
def test_malformed_payloads_are_refused(live, chart, body, ctype, words):
    chart.faults = [Response(body, content_type=ctype)]
    with pytest.raises(SourceError, match=words):
        source().load(live.ctx)
    assert not Cache(live.cache).paths("yahoo", "ZL=F")[0].exists()


def test_empty_history_is_an_error(live, chart):
    with pytest.raises(SourceError, match="no bars"):
        source(start="2024-06-01").load(live.ctx)


def test_partial_download_keeps_the_good_cache(live, chart, data_dir, monkeypatch,
                                               truncating_server):
    good = source().load(live.ctx)
    parquet, meta = Cache(live.cache).paths("yahoo", "ZL=F")
    before = (parquet.read_bytes(), meta.read_text())
    body = json.dumps(chart.render(0, 2**31)).encode()
    monkeypatch.setenv("CBI_YAHOO_BASE_URL", truncating_server(body, len(body) // 2))
    with pytest.raises(SourceError, match="partial body"):
        source().load(SourceContext(cache_dir=live.cache, refresh=True))
    assert (parquet.read_bytes(), meta.read_text()) == before
    pd.testing.assert_frame_equal(source().load(live.ctx), good)


def test_corrupted_cache_is_refetched(live, chart, data_dir):
    source().load(live.ctx)
    parquet, _ = Cache(live.cache).paths("yahoo", "ZL=F")
    blob = bytearray(parquet.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    parquet.write_bytes(bytes(blob))
    n = len(chart.windows)
    pd.testing.assert_frame_equal(source().load(live.ctx), file_frame(data_dir))
    assert len(chart.windows) > n


def test_stale_cache_appends_only_new_dates(live, rows, data_dir):
    early = ChartServer(rows[rows["date"] <= "2015-12-31"].reset_index(drop=True))
    handler = {"server": early}
    live.server.expect_request(re.compile(r"^/yahoo/.*")) \
        .respond_with_handler(lambda req: handler["server"](req))
    src = source(stale_after_hours=1e-9)
    first = src.load(live.ctx)
    assert first.index[-1] == pd.Timestamp("2015-12-31")
    full = ChartServer(rows)
    handler["server"] = full
    frame, result = src.obtain("ZL=F", live.ctx, "stale")
    assert result.action == "appended" and result.new_rows == int((rows["date"] > "2015-12-31").sum())
    # asked only from ten days before the last cached date
    assert pd.Timestamp(full.windows[0][0], unit="s") == pd.Timestamp("2015-12-21")
    pd.testing.assert_frame_equal(src.load(live.ctx), file_frame(data_dir))
