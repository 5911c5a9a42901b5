"""FRED connector against a local server serving two real ``fredgraph.csv``
downloads (../shared/data/wire/fred) byte for byte."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from werkzeug import Request, Response

from cbi_toolkit.errors import SourceError
from cbi_toolkit.sources import fred
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.cache import Cache
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.sources.fred import FredSource

RATES = "wire/fred/peterballaro_Emperical_Duration/fredgraph.csv"   # DFF, DGS10, ... monthly
VIX = "wire/fred/adriandecola_gold_futures/fredgraph.csv"           # VIXCLS, ... monthly


class Graph:
    """Serves a payload as is; ``faults`` first. Records the query of each request."""

    def __init__(self, body: bytes):
        self.body, self.faults, self.queries = body, [], []

    def __call__(self, request: Request) -> Response:
        self.queries.append(dict(request.args))
        if self.faults:
            return self.faults.pop(0)
        return Response(self.body, content_type="text/csv")


def serve(live, data_dir, path=RATES) -> Graph:
    graph = Graph((data_dir / path).read_bytes())
    live.server.expect_request("/fred").respond_with_handler(graph)
    return graph


def monthly(**kw) -> FredSource:
    return FredSource(**{"columns": {"DFF": "dff", "DGS10": "dgs10"}, "role": "rate",
                         "frequency": "m", "start": "1979-01-01", **kw})


def as_file(data_dir, path=RATES, columns=None) -> pd.DataFrame:
    return FileSource(path=str(data_dir / path), date_column="DATE",
                      columns=columns or {"DFF": "dff", "DGS10": "dgs10"}).load(SourceContext())


def test_served_csv_equals_the_same_file(live, data_dir):
    graph = serve(live, data_dir)
    frame = monthly().load(live.ctx)
    pd.testing.assert_frame_equal(frame, as_file(data_dir))
    assert frame.loc["2008-12-01", "dff"] == pytest.approx(0.155, abs=5e-4)
    assert frame.loc["2008-12-01", "dgs10"] == pytest.approx(2.416, abs=5e-4)
    # one request (and one cache file) per id, asking FRED for monthly averages
    assert [q["id"] for q in graph.queries] == ["DFF", "DGS10"]
    assert all(q["fq"] == "Monthly" and q["fam"] == "avg" and q["cosd"] == "1979-01-01"
               for q in graph.queries)
    for sid in ("DFF", "DGS10"):
        meta = json.loads(Cache(live.cache).paths("fred", f"{sid}@m-avg")[1].read_text())
        assert meta["series_id"] == sid and meta["source"] == "fred"


def test_second_payload_vix(live, data_dir):
    serve(live, data_dir, VIX)
    src = FredSource(columns={"VIXCLS": "vix"}, frequency="m", start="1990-01-01")
    frame = src.load(live.ctx)
    pd.testing.assert_frame_equal(frame, as_file(data_dir, VIX, {"VIXCLS": "vix"}))
    assert frame.loc["2008-11-01", "vix"] == pytest.approx(62.64, abs=5e-3)


def test_api_key_pages_and_is_never_written(live, data_dir, monkeypatch, caplog):
    """With FRED_API_KEY the JSON API is paged by limit/offset. The payload is the
    same real rows rendered into the API's observations JSON."""
    rows = pd.read_csv(data_dir / RATES, dtype=str)
    secret = "abcdef0123456789abcdef0123456789"
    monkeypatch.setenv("FRED_API_KEY", secret)
    monkeypatch.setattr(fred, "PAGE_LIMIT", 100)
    seen = []

    def api(request: Request) -> Response:
        args = request.args
        assert args["api_key"] == secret and args["file_type"] == "json"
        off, lim = int(args["offset"]), int(args["limit"])
        seen.append(off)
        obs = [{"realtime_start": "2022-05-21", "realtime_end": "2022-05-21",
                "date": d, "value": v}
               for d, v in zip(rows["DATE"][off:off + lim], rows[args["series_id"]][off:off + lim],
                               strict=True)]
        return Response(json.dumps({"count": len(rows), "offset": off, "limit": lim,
                                    "observations": obs}), content_type="application/json")

    live.server.expect_request("/fred-api/fred/series/observations").respond_with_handler(api)
    caplog.set_level(logging.DEBUG)
    frame = monthly().load(live.ctx)
    pd.testing.assert_frame_equal(frame, as_file(data_dir))
    assert seen == [0, 100, 200, 300, 400, 500] * 2          # 514 rows, two ids
    for path in live.cache.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes()
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug")]
    assert any("api_key=***" in m for m in ours)          # urllib3 logs the URL at DEBUG
    assert not any(secret in m for m in ours)
    # an error message masks the key too
    live.server.clear()
    live.server.expect_request("/fred-api/fred/series/observations").respond_with_data(
        "nope", status=400)
    with pytest.raises(SourceError) as err:
        monthly().load(SourceContext(cache_dir=live.cache, refresh=True))
    assert secret not in str(err.value) and "HTTP 400" in str(err.value)


def test_500_and_429_are_retried(live, data_dir):
    graph = serve(live, data_dir)
    graph.faults = [Response("busy", status=503), Response("slow", status=429)]
    pd.testing.assert_frame_equal(monthly().load(live.ctx), as_file(data_dir))
    assert len(graph.queries) == 4


@pytest.mark.parametrize("body, words", [
    (b"<!DOCTYPE html>\n<html><head><title>FRED</title></head><body>Error</body></html>",
     "HTML page"),
    (b"", "empty body"),
    (b"observation_date,DGS5\n2020-01-01,1.5\n", "no column 'DFF'"),
    (b"when,DFF\n2020-01-01,1.5\n", "format changed"),
    (b"DATE,DFF\n2020-01-01,n/a\n", "not a number"),
])
def test_malformed_or_empty_payloads(live, body, words):
    live.server.expect_request("/fred").respond_with_data(body, content_type="text/csv")
    with pytest.raises(SourceError, match=words):
        FredSource(columns={"DFF": "dff"}).load(live.ctx)


def test_truncated_payload_keeps_the_good_cache(live, data_dir):
    serve(live, data_dir)
    good = monthly().load(live.ctx)
    files = {p: p.read_bytes() for p in live.cache.rglob("*") if p.is_file()}
    body = (data_dir / RATES).read_bytes()
    cut = body[: body.index(b"\n2001-") + 6]         # the server died mid-line
    live.server.clear()
    live.server.expect_request("/fred").respond_with_data(cut, content_type="text/csv")
    with pytest.raises(SourceError, match="not YYYY-MM-DD"):
        monthly().load(SourceContext(cache_dir=live.cache, refresh=True))
    assert {p: p.read_bytes() for p in files} == files
    pd.testing.assert_frame_equal(monthly().load(live.ctx), good)


def test_unreadable_parquet_is_refetched(live, data_dir):
    graph = serve(live, data_dir)
    monthly().load(live.ctx)
    parquet, meta = Cache(live.cache).paths("fred", "DFF@m-avg")
    parquet.write_bytes(b"not a parquet file")
    info = json.loads(meta.read_text())
    import hashlib
    info["sha256"] = hashlib.sha256(b"not a parquet file").hexdigest()   # checksum agrees
    meta.write_text(json.dumps(info))
    pd.testing.assert_frame_equal(monthly().load(live.ctx), as_file(data_dir))
    assert [q["id"] for q in graph.queries] == ["DFF", "DGS10", "DFF"]
