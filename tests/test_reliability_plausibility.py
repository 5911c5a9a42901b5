"""Plausibility rules at the data stage (issue 13, class 1).

The defaults must accept the real snapshot unchanged (ZL's -10% day, ZS's
TradingView roll jumps, WTI below zero); the refusals are shown on real rows
altered in a temporary copy: a unit error, a cut last line, a 1e9 close, GHCN's
-9999, a driver spike."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbi_toolkit.cli import main
from cbi_toolkit.data import load_frame
from cbi_toolkit.errors import DataError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.plausibility import Checks, check_series
from cbi_toolkit.spec import load_spec, resolve_spec_file, validate_spec

ZL = "zl/zl_tradingview_ZL1_daily.csv"
ZS = "drivers/zs_tradingview_ZS1_daily.csv"
DGS10 = "drivers/fred_DGS10.csv"
WEATHER = "weather/ghcnd_USW00014940_mason_city_ia_daily_2004_2023.csv"
OFF = {"max_move": False, "max_jump": False, "range": False, "sentinels": []}
SHIPPED = ["zl_base", "zl_1w", "zl_1m", "zl_1m_quick", "zl_3m", "zl_6m", "zl_12m", "zl_all",
           "zl_all_quick", "soy_complex_1m", "soy_complex_1m_quick"]


def ctx(data_dir):
    return SourceContext(data_dir=data_dir)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_loads_the_same_frame_with_the_rules_on(name, specs_dir, data_dir):
    """The defaults refuse nothing in the real snapshot: the checked frame equals the
    frame loaded with every rule off."""
    spec = load_spec(specs_dir / f"{name}.yaml")
    checked = load_frame(spec, ctx(data_dir))
    doc, _ = resolve_spec_file(specs_dir / f"{name}.yaml")
    doc.setdefault("name", name)
    for src in doc["data"]:
        src["checks"] = OFF
    unchecked = load_frame(validate_spec(doc), ctx(data_dir))
    pd.testing.assert_frame_equal(checked, unchecked)
    assert len(checked) == 4880 and checked.index[-1] == pd.Timestamp("2023-12-29")
    assert "wti" in checked and checked.loc["2020-04-20", "wti"] == -36.98


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_spec_passes_the_data_stage(name, specs_dir, data_dir, capsys):
    code = main([str(specs_dir / f"{name}.yaml"), "--stage", "data", "--data-dir",
                 str(data_dir)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "aligned frame: 4880 trading days, 2004-08-20 .. 2023-12-29" in out.out


def test_real_extremes_are_inside_the_defaults(data_dir):
    """The moves PROVENANCE.md names are real and pass: ZL -10% (2023-06-21), ZS's
    roll jumps on 17 June (2009, 2013, 2014, 2021), WTI's -36.98."""
    zl = pd.read_csv(data_dir / ZL, parse_dates=["date"], index_col="date")["close"]
    zs = pd.read_csv(data_dir / ZS, parse_dates=["date"], index_col="date")["close"]
    assert zl.pct_change()["2023-06-21"] == pytest.approx(-0.10, abs=0.005)
    for year in (2009, 2013, 2014, 2021):
        assert zs.pct_change()[f"{year}-06-17"] < -0.11
    check_series(zl, Checks(), "price", ZL, "data[0]")
    check_series(zs, Checks(), "price", ZS, "data[1]")
    wti = pd.read_csv(data_dir / "drivers/fred_DCOILWTICO.csv", parse_dates=["date"],
                      index_col="date")["DCOILWTICO"]
    check_series(wti, Checks(), "level", "wti", "data[3]")


# -- refusals on altered copies of real files -------------------------------------------

def altered(data_dir, tmp_path, rel, change) -> dict:
    """A spec over a copy of the real ZL file (and ``rel`` changed by ``change``)."""
    for name in {ZL, rel}:
        out = tmp_path / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((data_dir / name).read_bytes())
    path = tmp_path / rel
    rows = pd.read_csv(path, dtype=str)
    changed = change(rows)
    if isinstance(changed, bytes):
        path.write_bytes(changed)
    else:
        changed.to_csv(path, index=False)
    return {"name": "t", "target": "zl", "window": 20, "horizons": ["1w"],
            "features": ["returns"],
            "data": [{"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price"}]}


def times(rows, col, idx, factor):
    cells = rows.loc[idx, col].dropna()
    rows.loc[cells.index, col] = (cells.astype(float) * factor).map(repr)
    return rows


def before(rows, day, n):
    """The positions of the ``n`` rows before ``day``."""
    pos = int((rows["date"] < day).sum())
    return rows.index[pos - n:pos]


def set_cell(rows, col, idx, value):
    rows.loc[idx, col] = value
    return rows


def cut_last_line(data_dir):
    raw = (data_dir / ZL).read_bytes().rstrip(b"\n")
    head, last = raw.rsplit(b"\n", 1)
    fields = last.split(b",")  # date,open,high,low,close,volume -> cut inside the close
    return head + b"\n" + b",".join(fields[:4]) + b"," + fields[4][:1] + b"\n"


DRIVERS = {
    "zs": {"kind": "file", "path": ZS, "columns": {"close": "zs"}, "role": "price",
           "ffill_limit": 3},
    "dgs10": {"kind": "file", "path": DGS10, "columns": {"DGS10": "dgs10"}, "role": "rate",
              "ffill_limit": 5},
    "wx": {"kind": "file", "path": WEATHER, "columns": {"tmax_c": "wx_tmax"}, "role": "weather",
           "ffill_limit": 3},
}

CASES = [
    # id, file, change(rows, data_dir), driver, words in the message
    ("unit-error-x100-last-20", ZL, lambda r, d: times(r, "close", r.index[-20:], 100), None,
     [ZL, "2023-11-30", "max_move", "unit error"]),
    ("close-1e9-last-day", ZL, lambda r, d: set_cell(r, "close", r.index[-1], "1e9"), None,
     [ZL, "2023-12-29", "1e+09"]),
    ("close-1e9-mid-history", ZL, lambda r, d: set_cell(r, "close", 2000, "1e9"), None,
     [ZL, "1e+09", "max_move"]),
    ("cut-last-line", ZL, lambda r, d: cut_last_line(d), None,
     [ZL, "last line", "cut off"]),
    ("driver-spike-x10", ZS, lambda r, d: times(r, "close", [3000], 10), "zs",
     [ZS, "max_move"]),
    ("rate-unit-error-x100", DGS10, lambda r, d: times(r, "DGS10", before(r, "2023-06-01", 20), 100),
     "dgs10", [DGS10, "dgs10"]),
    ("ghcn-sentinel-9999", WEATHER, lambda r, d: set_cell(r, "tmax_c", 5000, "-9999"), "wx",
     [WEATHER, "-9999", "missing-value code", "blank"]),
    ("ghcn-tenths-sentinel", WEATHER, lambda r, d: set_cell(r, "tmax_c", 6000, "-999.9"), "wx",
     [WEATHER, "-999.9", "missing-value code"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_implausible_value_refused_naming_file_date_value_and_fix(case, tmp_path, data_dir):
    _, rel, change, driver, words = case
    doc = altered(data_dir, tmp_path, rel, lambda rows: change(rows, data_dir))
    if driver:
        doc["data"].append(DRIVERS[driver])
    with pytest.raises(DataError) as err:
        load_frame(validate_spec(doc), ctx(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_cli_refuses_a_unit_error_before_any_run_folder(tmp_path, data_dir, capsys):
    doc = altered(data_dir, tmp_path / "data", ZL,
                  lambda r: times(r, "close", r.index[-20:], 100))
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(doc))
    code = main([str(spec), "--data-dir", str(tmp_path / "data"), "--runs-dir",
                 str(tmp_path / "runs"), "--sink", f"duckdb://{tmp_path / 'f.duckdb'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "max_move" in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "f.duckdb").exists()


def test_a_rule_can_be_raised_for_a_real_move(tmp_path, data_dir):
    """The fix the message names works: a raised max_move accepts the altered file."""
    doc = altered(data_dir, tmp_path, ZL, lambda r: times(r, "close", [2000], 1.6))
    with pytest.raises(DataError, match="max_move"):
        load_frame(validate_spec(doc), ctx(tmp_path))
    doc["data"][0]["checks"] = {"max_move": 0.6}
    assert len(load_frame(validate_spec(doc), ctx(tmp_path))) == 4880


@pytest.mark.parametrize("bad", [{"max_move": 0}, {"max_jump": -1}, {"range": [5, 1]},
                                 {"max_move": True}, {"unknown": 1}])
def test_bad_checks_are_spec_errors(bad):
    from cbi_toolkit.errors import SpecError

    doc = {"name": "t", "target": "zl", "data": [
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price",
         "checks": bad}]}
    with pytest.raises(SpecError, match=r"data\.0\.checks"):
        validate_spec(doc)


@pytest.mark.parametrize("checks", [{}, {"max_move": 0.6}, {"max_move": False, "range": False},
                                    {"sentinels": []}, {"max_jump": 3, "range": [1, 100]}])
def test_rules_survive_the_run_folders_spec_yaml(checks, tmp_path):
    """A run's spec.yaml (resumes, --sink-only) keeps each rule as stated: a rule
    turned off stays off, a default stays the default."""
    from cbi_toolkit.spec import load_spec

    doc = {"name": "t", "target": "zl", "data": [
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price",
         "checks": checks}]}
    spec = validate_spec(doc)
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    again = load_spec(tmp_path / "spec.yaml")
    assert again.data[0].checks.resolved("price") == spec.data[0].checks.resolved("price")


# -- properties over the real series (hypothesis) ---------------------------------------

@pytest.fixture(scope="module")
def real(data_dir):
    zl = pd.read_csv(data_dir / ZL, parse_dates=["date"], index_col="date")["close"]
    dgs10 = pd.read_csv(data_dir / DGS10, parse_dates=["date"],
                        index_col="date")["DGS10"].dropna()["2004":]
    tmax = pd.read_csv(data_dir / WEATHER, parse_dates=["date"], index_col="date")["tmax_c"]
    return {"zl": zl.astype(float), "dgs10": dgs10.astype(float), "tmax": tmax}


PROPS = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(k=st.floats(1e-3, 1e3))
def test_a_change_of_units_of_the_whole_series_passes(real, k):
    """The rules are scale-free: cents or dollars, the same real series passes."""
    check_series(real["zl"] * k, Checks(), "price", ZL, "data[0]")
    check_series(real["dgs10"] * k, Checks(range=False), "rate", DGS10, "data[1]")


@PROPS
@given(frac=st.floats(0.05, 1.0, exclude_max=True), log_k=st.floats(0.6, 12),
       sign=st.sampled_from([-1, 1]))
def test_a_unit_error_from_any_date_on_is_refused_at_that_date(real, frac, log_k, sign):
    """Scaling the closes from any date on by a factor beyond max_move (0.4 plus the
    largest real move, 0.105) is refused, and the message names that date."""
    zl = real["zl"].copy()
    start = int(frac * (len(zl) - 1)) or 1
    zl.iloc[start:] *= math.exp(sign * log_k)
    with pytest.raises(DataError) as err:
        check_series(zl, Checks(), "price", ZL, "data[0]")
    assert f"on {zl.index[start]:%Y-%m-%d} (log move" in str(err.value)


@PROPS
@given(frac=st.floats(0.01, 0.99), factor=st.sampled_from([100.0, 1000.0, 1e9]))
def test_one_rate_in_the_wrong_unit_is_refused_at_its_date(real, frac, factor):
    rates = real["dgs10"].copy()
    i = int(frac * (len(rates) - 1))
    rates.iloc[i] *= factor
    with pytest.raises(DataError) as err:
        check_series(rates, Checks(), "rate", DGS10, "data[1]")
    assert f"{rates.index[i]:%Y-%m-%d}" in str(err.value)


@PROPS
@given(frac=st.floats(0, 1), code=st.sampled_from([-9999.0, -999.9, 9999.0, -99999.0]))
def test_a_sentinel_anywhere_in_the_weather_is_refused(real, frac, code):
    tmax = real["tmax"].copy()
    i = int(frac * (len(tmax) - 1))
    tmax.iloc[i] = code
    with pytest.raises(DataError) as err:
        check_series(tmax, Checks(), "weather", WEATHER, "data[2]")
    assert "missing-value code" in str(err.value)
    assert f"{tmax.index[i]:%Y-%m-%d}" in str(err.value)


@PROPS
@given(codes=st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=5))
def test_sentinels_set_in_the_spec_are_the_ones_used(real, codes):
    """Stating ``sentinels`` replaces the defaults: the real series passes unless
    one of the stated codes is a real value."""
    tmax = real["tmax"]
    hit = bool(np.isin(tmax.dropna().to_numpy(), codes).any())
    try:
        check_series(tmax, Checks(sentinels=codes), "weather", WEATHER, "data[2]")
        assert not hit
    except DataError as exc:
        assert hit and "missing-value code" in str(exc)
