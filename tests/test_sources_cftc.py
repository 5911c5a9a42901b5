"""CFTC COT connector against a local server serving the real disaggregated
futures-only year file (../shared/data/wire/cftc/f_year.txt, 2021-01-05 .. 03-16)
byte for byte, inside the zip the CFTC ships it in or as plain text."""

from __future__ import annotations

import csv
import io
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
from werkzeug import Request, Response

from cbi_toolkit.data import CFTC_RELEASE_DAYS, released
from cbi_toolkit.errors import SourceError
from cbi_toolkit.sources import cftc
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.cache import Cache
from cbi_toolkit.sources.cftc import CftcSource

WIRE = "wire/cftc/f_year.txt"
COLUMNS = {"zl_mm_net": "mm", "zl_comm_net": "comm", "zl_mm_net_pct_oi": "mm_pct",
           "zl_open_interest": "oi"}


def zipped(text: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("f_year.txt", text)
    return buf.getvalue()


class Archives:
    """Serves ``{file name: body}``; unknown names are 404, ``faults`` come first."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.faults, self.asked = files, [], []

    def __call__(self, request: Request) -> Response:
        name = request.path.rsplit("/", 1)[1]
        self.asked.append(name)
        if self.faults:
            return self.faults.pop(0)
        if name not in self.files:
            return Response("Not Found", status=404)
        return Response(self.files[name], content_type="application/zip")


@pytest.fixture
def raw(data_dir) -> bytes:
    return (data_dir / WIRE).read_bytes()


@pytest.fixture
def year_2021(live, raw, monkeypatch):
    monkeypatch.setattr(cftc, "current_year", lambda: 2021)
    monkeypatch.setattr(cftc, "_MEMO", {})
    server = Archives({"fut_disagg_txt_2021.zip": zipped(raw)})
    live.server.expect_request(re.compile(r"^/cftc/.*")).respond_with_handler(server)
    return server


def source(**kw) -> CftcSource:
    return CftcSource(**{"markets": {"zl": "007601"}, "columns": COLUMNS, "role": "positioning",
                         "start": "2021-01-01", **kw})


def expected(raw: bytes) -> pd.DataFrame:
    """The soybean-oil rows of the same file, computed independently with csv."""
    rows = [r for r in csv.DictReader(io.StringIO(raw.decode("latin-1")))
            if r["CFTC_Contract_Market_Code"].strip() == "007601"]
    f = {k: np.array([float(r[k]) for r in rows]) for k in rows[0] if k.endswith("_All")
         and r_is_num(rows[0][k])}
    out = pd.DataFrame({
        "mm": f["M_Money_Positions_Long_All"] - f["M_Money_Positions_Short_All"],
        "comm": (f["Prod_Merc_Positions_Long_All"] + f["Swap_Positions_Long_All"]
                 - f["Prod_Merc_Positions_Short_All"] - f["Swap__Positions_Short_All"]),
        "mm_pct": f["Pct_of_OI_M_Money_Long_All"] - f["Pct_of_OI_M_Money_Short_All"],
        "oi": f["Open_Interest_All"],
    }, index=pd.DatetimeIndex([r["Report_Date_as_YYYY-MM-DD"] for r in rows], name="date"))
    return out.sort_index()


def r_is_num(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def test_served_zip_gives_the_soybean_oil_rows(live, year_2021, raw):
    frame = source().load(live.ctx)
    pd.testing.assert_frame_equal(frame, expected(raw))
    assert len(frame) == 11 and (frame.index.day_of_week == 1).all()        # Tuesdays, as of
    assert frame["oi"].between(465_778, 505_477).all()
    assert frame["mm"].iloc[0] == 117_378 - 8_220
    # the connector does not shift: the alignment moves as-of dates to publication, once
    assert source().release == "cftc_weekly"
    moved = released(frame, source())
    assert (moved.index - frame.index == pd.Timedelta(days=CFTC_RELEASE_DAYS)).all()
    meta = Cache(live.cache).paths("cftc", "disaggregated_007601")[1].read_text()
    assert "fut_disagg_txt_2021.zip" in meta


def test_years_are_fetched_as_separate_archives(live, raw, monkeypatch):
    """Two archives (the real file's rows split at 2021-02-01 into a prior-year
    and a current-year archive; one zipped, one plain text) combine into the same frame."""
    monkeypatch.setattr(cftc, "current_year", lambda: 2021)
    monkeypatch.setattr(cftc, "_MEMO", {})
    lines = raw.split(b"\r\n")
    header, body = lines[0], [ln for ln in lines[1:] if ln]
    early = [ln for ln in body if b",2021-01-" in ln]
    late = [ln for ln in body if b",2021-01-" not in ln]
    server = Archives({"fut_disagg_txt_2020.zip": zipped(b"\r\n".join([header, *early, b""])),
                       "fut_disagg_txt_2021.zip": b"\r\n".join([header, *late, b""])})
    live.server.expect_request(re.compile(r"^/cftc/.*")).respond_with_handler(server)
    frame = source(start="2020-01-01").load(live.ctx)
    assert server.asked == ["fut_disagg_txt_2020.zip", "fut_disagg_txt_2021.zip"]
    pd.testing.assert_frame_equal(frame, expected(raw))


def test_archive_names_per_report():
    monkey = CftcSource(markets={"zl": "007601"}, columns={"zl_mm_net": "x"}, start="2015-06-01")
    old = cftc.current_year
    try:
        cftc.current_year = lambda: 2018
        assert monkey.archives(None) == ["fut_disagg_txt_hist_2006_2016.zip",
                                         "fut_disagg_txt_2017.zip", "fut_disagg_txt_2018.zip"]
        legacy = monkey.model_copy(update={"report": "legacy"})
        assert legacy.archives(None) == [f"deacot{y}.zip" for y in range(2015, 2019)]
    finally:
        cftc.current_year = old


def test_two_markets_share_one_download(live, year_2021):
    src = source(markets={"zl": "007601", "zs": "005602"},
                 columns={"zl_mm_net": "zl_mm", "zs_mm_net": "zs_mm"})
    frame = src.load(live.ctx)
    assert year_2021.asked == ["fut_disagg_txt_2021.zip"]
    assert frame.notna().all().all() and len(frame) == 11
    assert (frame["zs_mm"] != frame["zl_mm"]).all()


def test_503_is_retried(live, year_2021, raw):
    year_2021.faults = [Response("busy", status=503), Response("busy", status=502)]
    pd.testing.assert_frame_equal(source().load(live.ctx), expected(raw))


def test_unknown_market_is_a_clear_error(live, year_2021):
    with pytest.raises(SourceError, match="no rows for market 999999"):
        source(markets={"zl": "999999"}).load(live.ctx)


@pytest.mark.parametrize("payload, words", [
    (b"<html><body>Site maintenance</body></html>", "neither a zip archive nor a COT text"),
    (b"", "empty body"),
])
def test_malformed_payloads(live, year_2021, payload, words):
    year_2021.files["fut_disagg_txt_2021.zip"] = payload
    with pytest.raises(SourceError, match=words):
        source().load(live.ctx)


def test_schema_change_is_named(live, year_2021, raw):
    renamed = raw.replace(b'"M_Money_Positions_Long_All"', b'"MM_Long"', 1)
    year_2021.files["fut_disagg_txt_2021.zip"] = zipped(renamed)
    with pytest.raises(SourceError, match="m_money_positions_long_all.*layout changed"):
        source().load(live.ctx)


def test_truncated_zip_keeps_the_good_cache(live, year_2021, raw, monkeypatch):
    good = source().load(live.ctx)
    files = {p: p.read_bytes() for p in live.cache.rglob("*") if p.is_file()}
    body = zipped(raw)
    year_2021.files["fut_disagg_txt_2021.zip"] = body[: len(body) * 2 // 3]
    monkeypatch.setattr(cftc, "_MEMO", {})
    with pytest.raises(SourceError, match="corrupt or truncated zip"):
        source().load(SourceContext(cache_dir=live.cache, refresh=True))
    assert {p: p.read_bytes() for p in files} == files
    pd.testing.assert_frame_equal(source().load(live.ctx), good)


def test_corrupted_cache_is_refetched(live, year_2021, raw, monkeypatch):
    source().load(live.ctx)
    parquet, _ = Cache(live.cache).paths("cftc", "disaggregated_007601")
    parquet.write_bytes(parquet.read_bytes()[:-20])
    monkeypatch.setattr(cftc, "_MEMO", {})
    pd.testing.assert_frame_equal(source().load(live.ctx), expected(raw))
    assert year_2021.asked == ["fut_disagg_txt_2021.zip"] * 2


def test_unquoted_code_is_refused_with_a_hint():
    from cbi_toolkit.errors import SpecError
    from cbi_toolkit.spec import validate_spec

    with pytest.raises(SpecError, match="must be quoted"):
        validate_spec({"name": "t", "target": "x", "data": [
            {"kind": "cftc", "markets": {"zl": 7601}, "columns": {"zl_mm_net": "x"}}]})
