"""Loading and aligning real data, and every validation rule.

Broken inputs are made from real snapshot rows with one defect each
(a duplicated row, a swapped pair, a blanked cell...)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.data import CFTC_RELEASE_DAYS, DataReport, align, load_frame, resolve_data_dir
from cbi_toolkit.dataset import load_samples
from cbi_toolkit.errors import DataError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec, validate_spec

ZL = "zl/zl_tradingview_ZL1_daily.csv"


def zl_rows(data_dir) -> pd.DataFrame:
    return pd.read_csv(data_dir / ZL, dtype=str)


def small_spec(path, **extra):
    doc = {"name": "t", "target": "zl", "window": 20, "horizons": ["1w"],
           "features": ["returns"],
           "data": [{"kind": "file", "path": str(path), "columns": {"close": "zl"},
                     "role": "price"}]}
    doc.update(extra)
    return validate_spec(doc)


def load(spec, data_dir=None):
    return load_frame(spec, SourceContext(data_dir=data_dir))


def test_real_frame_is_aligned_on_target_days(data_dir, specs_dir):
    spec = load_spec(specs_dir / "zl_1m.yaml")
    report = DataReport()
    frame = load_frame(spec, SourceContext(data_dir=data_dir), report)
    zl = pd.read_csv(data_dir / ZL, parse_dates=["date"], index_col="date")
    assert frame.index.equals(pd.DatetimeIndex(zl.index, name="date"))
    assert np.array_equal(frame["zl"].to_numpy(), zl["close"].to_numpy())
    assert (frame.index[0], frame.index[-1]) == (pd.Timestamp("2004-08-20"),
                                                 pd.Timestamp("2023-12-29"))
    assert report.sources[ZL] == 4880
    assert not (frame["zl"] <= 0).any()


def test_csv_with_bom_and_parquet_read_like_csv(tmp_path, data_dir):
    rows = zl_rows(data_dir)
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (data_dir / ZL).read_bytes())
    pq = tmp_path / "zl.parquet"
    rows.assign(date=pd.to_datetime(rows["date"]), close=rows["close"].astype(float)).to_parquet(pq)
    ref = load(small_spec(data_dir / ZL))
    pd.testing.assert_frame_equal(load(small_spec(bom)), ref)
    pd.testing.assert_frame_equal(load(small_spec(pq)), ref)


@pytest.mark.parametrize("defect, message", [
    ("duplicate", "duplicate date 2004-08-24; keep one row per date"),
    ("unsorted", "dates out of order at"),
    ("nonpositive", "non-positive price"),
    ("blank", "target column 'zl' is blank on"),
    ("text", "non-numeric value 'n/a'"),
    ("nocolumn", "missing column 'close'"),
    ("header_only", "no rows"),
    ("empty", "the file is empty"),
    ("semicolons", "missing column"),
])
def test_data_rules_refuse_bad_input(tmp_path, data_dir, defect, message):
    rows = zl_rows(data_dir).head(400)
    path = tmp_path / "zl.csv"
    if defect == "duplicate":
        rows = pd.concat([rows.iloc[:3], rows.iloc[2:]])
    elif defect == "unsorted":
        rows.iloc[[5, 6]] = rows.iloc[[6, 5]].to_numpy()
    elif defect == "nonpositive":
        rows.loc[10, "close"] = "0"
    elif defect == "blank":
        rows.loc[10, "close"] = ""
    elif defect == "text":
        rows.loc[10, "close"] = "n/a"
    elif defect == "nocolumn":
        rows = rows.drop(columns="close")
    elif defect == "header_only":
        rows = rows.head(0)
    if defect == "empty":
        path.write_text("")
    elif defect == "semicolons":
        rows.to_csv(path, index=False, sep=";")
    else:
        rows.to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load(small_spec(path))
    assert message in str(err.value)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_timezone_mix_refused(tmp_path, data_dir):
    rows = zl_rows(data_dir).head(50)
    rows["date"] = [d + ("T00:00:00+00:00" if i % 2 else "T00:00:00-05:00")
                    for i, d in enumerate(rows["date"])]
    path = tmp_path / "tz.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match="mixes time zones"):
        load(small_spec(path))


def test_long_target_gap_refused(tmp_path, data_dir):
    rows = zl_rows(data_dir).head(400).drop(index=range(100, 120))
    path = tmp_path / "gap.csv"
    rows.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"gap of \d+ calendar days ending .*max_gap_days: 10"):
        load(small_spec(path))


def test_history_too_short(tmp_path, data_dir):
    path = tmp_path / "short.csv"
    zl_rows(data_dir).head(60).to_csv(path, index=False)
    with pytest.raises(DataError, match="only .* labelled origins"):
        load_samples(small_spec(path), SourceContext())


def test_driver_ending_before_target_refused(data_dir):
    spec = small_spec(data_dir / ZL, data=[
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price"},
        {"kind": "file", "path": "drivers/cl_quandl_CHRIS_CME_CL2_daily.csv",
         "columns": {"settle": "cl"}, "role": "price", "ffill_limit": 3}])
    with pytest.raises(DataError, match=r"'cl' ends 2019-11-05, before the target's last date "
                                        r"2023-12-29 \(ffill_limit: 3"):
        load(spec, data_dir)


def test_ffill_only_up_to_the_limit(data_dir):
    """DGS10 has blank holidays in the real file: carried at most `limit` sessions."""
    raw = pd.read_csv(data_dir / "drivers/fred_DGS10.csv", parse_dates=["date"],
                      index_col="date")["DGS10"]
    calendar = pd.read_csv(data_dir / ZL, parse_dates=["date"], index_col="date").index
    none = align(raw, calendar, 0)
    some = align(raw, calendar, 5)
    blank_days = calendar[calendar.isin(raw.index[raw.isna()])]
    assert len(blank_days) > 10
    assert none[blank_days].isna().all()
    prev = raw.dropna()
    for day in blank_days[:10]:
        assert some[day] == prev[:day].iloc[-1]
    # never a zero fill
    assert not (some.dropna() == 0).any() or (raw == 0).any()


def test_cftc_release_shift(data_dir):
    """Tuesday positions are usable from the session after Friday's release."""
    spec = small_spec(data_dir / ZL, features=["returns", "cot"], data=[
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price"},
        {"kind": "file", "path": "cot/cot_legacy_fut_noncomm_net_pct_oi_soy_complex_2003_2024.csv",
         "columns": {"zl_noncomm_net_pct_oi": "cot_zl"}, "role": "positioning",
         "release": "cftc_weekly", "ffill_limit": 10}])
    frame = load(spec, data_dir)
    raw = pd.read_csv(data_dir / spec.data[1].path, parse_dates=["date"], index_col="date")
    tuesday = pd.Timestamp("2010-03-02")
    value = raw.loc[tuesday, "zl_noncomm_net_pct_oi"]
    assert CFTC_RELEASE_DAYS == 4
    # not known on Tuesday .. Friday, known on the following Monday
    for day in pd.bdate_range(tuesday, "2010-03-05"):
        assert frame.loc[day, "cot_zl"] != value
    assert frame.loc["2010-03-08", "cot_zl"] == value


def test_report_counts_dropped_rows(data_dir, specs_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml")
    report = DataReport()
    frame, samples = load_samples(spec, SourceContext(data_dir=data_dir), report)
    assert sum(report.dropped.values()) == len(frame) - len(samples)
    assert samples.dates[-1] == pd.Timestamp("2023-12-29")
    assert (~samples.labelled).sum() == 21


def test_data_dir_resolution(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("CBI_DATA_DIR", str(data_dir))
    assert resolve_data_dir() == data_dir
    assert resolve_data_dir(tmp_path) == tmp_path
    with pytest.raises(DataError, match="does not exist"):
        resolve_data_dir(tmp_path / "nope")


def test_cli_data_stage_prints_summary(specs_dir, data_dir, capsys):
    assert main([str(specs_dir / "zl_1m_quick.yaml"), "--stage", "data",
                 "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "2004-08-20 .. 2023-12-29" in out
    assert "features built: 60" in out
    assert "rows dropped: feature warm-up" in out


def test_cli_bad_data_dir_exits_2(specs_dir, tmp_path, capsys):
    assert main([str(specs_dir / "zl_1m_quick.yaml"), "--stage", "data",
                 "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err
