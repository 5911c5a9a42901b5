"""cbi-fetch and the spec-level route: a spec with live sources builds the same
aligned frame from served payloads as from the same real rows read as files."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml
from werkzeug import Response

from cbi_toolkit import fetch
from cbi_toolkit.data import load_frame
from cbi_toolkit.sources import cftc
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec
from tests.test_sources_cftc import Archives, zipped
from tests.test_sources_yahoo import ChartServer

ZL = "zl/zl_tradingview_ZL1_daily.csv"
WX = "weather/ghcnd_USW00014940_mason_city_ia_daily_2004_2023.csv"


@pytest.fixture
def served(live, data_dir, monkeypatch):
    """Every provider on the local server, each serving real payloads."""
    monkeypatch.setattr(cftc, "current_year", lambda: 2021)
    monkeypatch.setattr(cftc, "_MEMO", {})
    chart = ChartServer(pd.read_csv(data_dir / ZL, dtype=str))
    live.server.expect_request(re.compile(r"^/yahoo/.*")).respond_with_handler(chart)
    live.server.expect_request(re.compile(r"^/ghcnd/USW00014940\.dly$")).respond_with_data(
        (data_dir / "weather/raw/USW00014940.dlv").read_bytes())
    live.server.expect_request("/fred").respond_with_data(
        (data_dir / "wire/fred/peterballaro_Emperical_Duration/fredgraph.csv").read_bytes())
    live.server.expect_request(re.compile(r"^/cftc/.*")).respond_with_handler(
        Archives({"fut_disagg_txt_2021.zip": zipped((data_dir / "wire/cftc/f_year.txt")
                                                    .read_bytes())}))
    return live


def write_spec(tmp_path, extra=()) -> str:
    doc = {"name": "t", "target": "zl", "horizons": ["1w"], "window": 20,
           "features": ["returns"],
           "data": [
               {"kind": "yahoo", "ticker": "ZL=F", "start": "2004-01-01", "chunk_years": 10,
                "file": {"path": ZL}, "columns": {"close": "zl"}, "role": "price"},
               {"kind": "ghcnd", "stations": ["USW00014940"], "file": {"path": WX},
                "columns": {"prcp_mm": "wx_prcp", "tmax_c": "wx_tmax"}, "lag_days": 1,
                "ffill_limit": 3},
               *extra]}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_frame_from_served_payloads_equals_frame_from_files(served, tmp_path, data_dir):
    spec = load_spec(write_spec(tmp_path))
    live_frame = load_frame(spec, SourceContext(cache_dir=served.cache))
    file_frame = load_frame(spec, SourceContext(data_dir=data_dir))
    pd.testing.assert_frame_equal(live_frame, file_frame)
    assert len(live_frame) == 4880 and live_frame["wx_tmax"].notna().sum() > 4800


def test_ensure_cached_skips_file_alternatives_when_a_data_dir_is_given(served, tmp_path,
                                                                        data_dir):
    spec = load_spec(write_spec(tmp_path))
    assert fetch.ensure_cached(spec, SourceContext(data_dir=data_dir, cache_dir=served.cache)) == []
    assert not served.cache.exists()
    lines = []
    results = fetch.ensure_cached(spec, SourceContext(cache_dir=served.cache), lines.append)
    assert [r.action for r in results] == ["fetched", "fetched"]
    assert any(ln.startswith("yahoo ZL=F [ZL=F]: fetched, 4880 rows 2004-08-20..2023-12-29")
               for ln in lines)
    again = fetch.ensure_cached(spec, SourceContext(cache_dir=served.cache))
    assert [r.action for r in again] == ["cached", "cached"]


def test_cbi_fetch_fetches_caches_and_refreshes(served, tmp_path, capsys):
    extra = [{"kind": "fred", "frequency": "m", "start": "1979-01-01",
              "columns": {"DFF": "dff"}, "ffill_limit": 30},
             {"kind": "cftc", "markets": {"zl": "007601"}, "start": "2021-01-01",
              "columns": {"zl_mm_net": "cot_mm"}}]
    spec = write_spec(tmp_path, extra)
    cache = tmp_path / "elsewhere"
    assert fetch.main([spec, "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    for words in ("yahoo ZL=F [ZL=F]: fetched", "ghcnd USW00014940 [USW00014940.dly]: fetched",
                  "fred DFF [DFF@m-avg]: fetched, 514 rows 1979-08-01..2022-05-01",
                  "cftc disaggregated 007601 [disaggregated_007601]: fetched, 11 rows",
                  f"4 series in {cache}"):
        assert words in out
    assert len(list(cache.rglob("*.parquet"))) == 4 and len(list(cache.rglob("*.json"))) == 4
    assert fetch.main([spec, "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.count(": cached,") == 4
    assert fetch.main([spec, "--cache-dir", str(cache), "--refresh"]) == 0
    assert capsys.readouterr().out.count(": refetched,") == 4


def test_cbi_fetch_error_is_one_line_exit_2(live, tmp_path, capsys):
    live.server.expect_request(re.compile(r"^/yahoo/.*")).respond_with_response(
        Response("no such ticker", status=404))
    assert fetch.main([write_spec(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cbi-fetch: yahoo ZL=F: not found at ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_repository_specs_declare_live_sources(specs_dir):
    spec = load_spec(specs_dir / "zl_all.yaml")
    kinds = {s.kind for s in fetch.live_sources(spec)}
    assert kinds == {"yahoo", "fred", "cftc", "ghcnd"}
    assert all(s.file is not None for s in fetch.live_sources(spec))
