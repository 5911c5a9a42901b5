"""Bad input end to end through `cbi-run`: every case exits 2 with a one-line
message naming what is wrong, no traceback, and writes nothing (no run folder,
no sink file). Inputs are the real snapshot rows with one defect each.

The loader-level versions of many of these live in tests/test_spec.py and
tests/test_data.py; here each goes through the CLI to show nothing is written."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbi_toolkit.errors import CbiError
from cbi_toolkit.spec import Spec, load_spec, validate_spec
from tests.reliability_support import (
    DGS10,
    SMALL_SPEC,
    ZL,
    cli_args,
    make_small_data,
    run_cli,
    write_spec,
)


@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory):
    return make_small_data(data_dir, tmp_path_factory.mktemp("small") / "data")


def assert_refused(capsys, tmp_path, code, *words):
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err + out.out
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (tmp_path / "runs").exists(), "a run folder was left behind"
    assert not (tmp_path / "f.duckdb").exists(), "the sink was touched"


# -- specs --------------------------------------------------------------------------------

SPEC_CASES = [
    # (id, yaml text or a change to the small spec, words in the message)
    ("malformed-yaml", "name: small\ndata: [unclosed\n", ["malformed YAML", "line"]),
    ("not-a-mapping", "- just\n- a list\n", ["a spec is a YAML mapping"]),
    ("wrong-type", {"window": "twenty"}, ["window", "valid integer"]),
    ("unknown-key", {"windw": 20}, ["unknown key 'windw'", "did you mean 'window'"]),
    ("unknown-nested-key", {"training": {"max_epoch": 2}}, ["did you mean 'max_epochs'"]),
    ("zero-window", {"window": 0}, ["window", "greater than 1"]),
    ("negative-hidden", {"model": {"hidden_dim": -8, "num_heads": 2}}, ["hidden_dim",
                                                                         "greater than 0"]),
    ("zero-batch", {"training": {"batch_size": 0}}, ["batch_size", "greater than 0"]),
    ("one-split", {"validation": {"n_splits": 1}}, ["n_splits", "greater than or equal to 2"]),
    ("empty-features", {"features": []}, ["features", "at least 1"]),
    ("unknown-feature", {"features": ["retruns"]}, ["did you mean 'returns'"]),
    ("feature-twice", {"features": ["returns", "returns"]}, ["listed twice"]),
    ("bad-feature-param", {"features": [{"returns": {"lags": [0]}}]}, ["returns"]),
    ("duplicate-horizons", {"horizons": ["1w", "1w"]}, ["duplicate horizons"]),
    ("unknown-horizon", {"horizons": ["2w"]}, ["unknown horizon '2w'"]),
    ("gap-below-horizon", {"validation": {"gap": 1}}, ["at least the longest horizon"]),
    ("target-not-in-data", {"target": "zs"}, ["target 'zs' is not a series"]),
    ("heads-not-dividing", {"model": {"hidden_dim": 9, "num_heads": 2}}, ["multiple of"]),
    ("unknown-sink-kind", {"sink": {"kind": "postgres"}}, ["unknown kind 'postgres'"]),
    ("sql-identifier-table", {"sink": {"kind": "duckdb", "path": "x.duckdb",
                                       "table": 'p"; DROP TABLE predictions; --'}},
     ["sink", "pattern"]),
    ("runs-dir-dotdot", {"runs_dir": "../elsewhere"}, ["runs_dir", "outside the working"]),
    ("runs-dir-absolute", {"runs_dir": "/tmp/cbi-elsewhere"}, ["runs_dir", "--runs-dir"]),
    ("runs-dir-home", {"runs_dir": "~/runs"}, ["runs_dir"]),
    ("sink-path-absolute", {"sink": {"kind": "duckdb", "path": "/tmp/cbi-x.duckdb"}},
     ["sink.path", "--sink duckdb:///PATH"]),
    ("sink-path-dotdot", {"sink": {"kind": "duckdb", "path": "runs/../../x.duckdb"}},
     ["sink.path"]),
    ("name-traversal", {"name": "../../etc/cron"}, ["name", "pattern"]),
    ("extends-missing", "extends: nowhere.yaml\n", ["extends", "not found"]),
]


@pytest.mark.parametrize("case, change, words", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_bad_spec_exits_2_and_writes_nothing(tmp_path, small_data, capsys, case, change, words):
    spec = tmp_path / "spec.yaml"
    if isinstance(change, str):
        spec.write_text(change)
    else:
        write_spec(spec, **change)
    assert_refused(capsys, tmp_path, run_cli(cli_args(spec, small_data, tmp_path)),
                   str(spec) if case not in ("wrong-type",) else "window", *words)


def test_extends_cycle_exits_2(tmp_path, small_data, capsys):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    assert_refused(capsys, tmp_path, run_cli(cli_args(tmp_path / "a.yaml", small_data, tmp_path)),
                   "cycle", "a.yaml -> b.yaml -> a.yaml")


def test_bad_override_exits_2(tmp_path, small_data, capsys):
    spec = write_spec(tmp_path / "spec.yaml")
    code = run_cli([*cli_args(spec, small_data, tmp_path), "--set", "window"])
    assert_refused(capsys, tmp_path, code, "--set", "KEY=VALUE")


IGNORED_OPTION_CASES = [
    # (id, arguments, words in the message); the run folder need not exist: the refusal comes first
    ("predict-set", ["--predict", "RUN", "--set", "gate.max_mase=2"], ["--set", "--predict",
                                                                        "rerun"]),
    ("predict-spec", ["SPEC", "--predict", "RUN"], ["SPEC", "drop SPEC"]),
    ("predict-since", ["--predict", "RUN", "--since", "2024-01-02"], ["--since", "--evaluate"]),
    ("evaluate-sink", ["--evaluate", "RUN", "--since", "2024-01-02", "--sink",
                       "duckdb:///tmp/x.duckdb"], ["--sink", "--evaluate"]),
    ("resume-runs-dir", ["--resume", "RUN", "--runs-dir", "elsewhere"], ["--runs-dir",
                                                                        "run folder"]),
    ("sink-only-data-dir", ["--sink-only", "RUN", "--data-dir", "DATA"], ["--data-dir"]),
    ("two-modes", ["--predict", "RUN", "--evaluate", "RUN"], ["--predict and --evaluate",
                                                             "choose one"]),
    ("spec-run-since", ["SPEC", "--since", "2024-01-02"], ["--since", "in a spec run"]),
]


@pytest.mark.parametrize("case, args, words", IGNORED_OPTION_CASES,
                         ids=[c[0] for c in IGNORED_OPTION_CASES])
def test_an_option_that_would_do_nothing_exits_2(tmp_path, small_data, capsys, case, args,
                                                 words):
    spec = write_spec(tmp_path / "spec.yaml")
    run_dir = tmp_path / "runs" / "small-1"
    names = {"RUN": str(run_dir), "SPEC": str(spec), "DATA": str(small_data)}
    assert_refused(capsys, tmp_path, run_cli([names.get(a, a) for a in args]), *words)


def test_bad_sink_url_exits_2_before_training(tmp_path, small_data, capsys):
    spec = write_spec(tmp_path / "spec.yaml")
    args = cli_args(spec, small_data, tmp_path)
    args[args.index("--sink") + 1] = "postgres://db/forecasts"
    assert_refused(capsys, tmp_path, run_cli(args), "--sink", "expected duckdb:///")


def test_window_shorter_than_feature_lookback_is_allowed(tmp_path, small_data):
    """Features are built on the whole aligned frame before windowing, so a
    20-day window of 63-day returns is well defined and causal (the shipped quick
    spec and the test suite rely on it). What a long lookback does limit is the
    history: see test_horizon_longer_than_history."""
    spec = validate_spec({**SMALL_SPEC, "window": 5,
                          "features": [{"returns": {"lags": [1, 63]}}, {"ma": {"windows": [200]}}]})
    assert spec.window == 5


# -- data ---------------------------------------------------------------------------------

def _zl(small_data) -> pd.DataFrame:
    return pd.read_csv(small_data / ZL, dtype=str)


DATA_CASES = [
    ("empty-file", "the file is empty"),
    ("header-only", "no rows"),
    ("semicolons", "missing column"),
    ("non-numeric", "non-numeric value 'n/a'"),
    ("infinite", "infinite value 'inf'"),
    ("duplicate-date", "duplicate date"),
    ("out-of-order", "dates out of order"),
    ("timezone-mix", "mixes time zones"),
    ("zero-price", "non-positive price"),
    ("negative-price", "non-positive price"),
    ("long-gap", "max_gap_days"),
    ("blank-target", "is blank on"),
    ("parquet-other-schema", "missing column 'close'"),
    ("parquet-not-parquet", "cannot read"),
    ("horizon-longer-than-history", "labelled origins"),
]


@pytest.mark.parametrize("defect, words", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_exits_2_and_writes_nothing(tmp_path, small_data, capsys, defect, words):
    rows = _zl(small_data)
    path = tmp_path / "zl.csv"
    changes = {}
    if defect == "empty-file":
        path.write_text("")
    elif defect == "header-only":
        rows.head(0).to_csv(path, index=False)
    elif defect == "semicolons":
        rows.to_csv(path, index=False, sep=";")
    elif defect.startswith("parquet"):
        path = tmp_path / "zl.parquet"
        if defect == "parquet-other-schema":  # a real export with other column names
            rows.rename(columns={"close": "settle", "date": "Date"}).assign(
                Date=lambda f: pd.to_datetime(f["Date"])).to_parquet(path)
            changes = {"date_column": "Date"}
        else:
            path.write_bytes((small_data / ZL).read_bytes())  # CSV bytes named .parquet
    else:
        if defect == "non-numeric":
            rows.loc[100, "close"] = "n/a"
        elif defect == "infinite":
            rows.loc[100, "close"] = "inf"
        elif defect == "duplicate-date":
            rows = pd.concat([rows.iloc[:50], rows.iloc[49:]])
        elif defect == "out-of-order":
            rows.iloc[[70, 71]] = rows.iloc[[71, 70]].to_numpy()
        elif defect == "timezone-mix":
            rows["date"] = [d + ("T00:00:00+00:00" if i % 2 else "T00:00:00-05:00")
                            for i, d in enumerate(rows["date"])]
        elif defect == "zero-price":
            rows.loc[100, "close"] = "0"
        elif defect == "negative-price":
            rows.loc[100, "close"] = "-" + rows.loc[100, "close"]
        elif defect == "long-gap":
            rows = rows.drop(index=range(100, 120))
        elif defect == "blank-target":
            rows.loc[100, "close"] = ""
        elif defect == "horizon-longer-than-history":
            rows = rows.tail(300)  # 12m needs 252 + 252 + window labelled origins
            changes = {"horizons": ["12m"]}
        rows.to_csv(path, index=False)
    horizons = changes.pop("horizons", ["1w"])
    data = [{**SMALL_SPEC["data"][0], "path": str(path), **changes}, SMALL_SPEC["data"][1]]
    spec = write_spec(tmp_path / "spec.yaml", data=data, horizons=horizons)
    assert_refused(capsys, tmp_path, run_cli(cli_args(spec, small_data, tmp_path)), words)


def test_driver_ending_before_target_exits_2(tmp_path, small_data, data_dir, capsys):
    """Real CL settlements end in 2019; the small ZL history runs to 2023-12."""
    data = [*SMALL_SPEC["data"], {"kind": "file", "path": str(
        data_dir / "drivers/cl_quandl_CHRIS_CME_CL2_daily.csv"), "columns": {"settle": "cl"},
        "role": "price", "ffill_limit": 3}]
    spec = write_spec(tmp_path / "spec.yaml", data=data)
    assert_refused(capsys, tmp_path, run_cli(cli_args(spec, small_data, tmp_path)), "'cl'")


def test_missing_driver_file_exits_2(tmp_path, small_data, capsys):
    gone = DGS10.replace(".csv", "_gone.csv")
    data = [SMALL_SPEC["data"][0], {**SMALL_SPEC["data"][1], "file": {"path": gone}}]
    spec = write_spec(tmp_path / "spec.yaml", data=data)
    assert_refused(capsys, tmp_path, run_cli(cli_args(spec, small_data, tmp_path)),
                   "file not found")


# -- property: arbitrary spec documents ----------------------------------------------------

KEYS = sorted({*Spec.model_fields, "extends", "kind", "path", "columns", "role", "file",
               "hidden_dim", "num_heads", "num_layers", "max_epochs", "batch_size", "lr",
               "n_splits", "gap", "lags", "windows", "window", "table", "view", "project",
               "dataset", "ticker", "markets", "stations", "ffill_limit", "intervals",
               "max_mase", "coverage_80", "returns", "ma", "rsi", "nll", "loss", "device"})
scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["1w", "1m", "12m", "zl", "close", "price", "duckdb", "bigquery",
                              "file", "fred", "yahoo", "returns", "../x", "/abs", "cpu"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner,
                                        max_size=4), max_leaves=12)
documents = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), values, max_size=8)


def _mutated(base: dict, path: list[str], value):
    doc = yaml.safe_load(yaml.safe_dump(base))
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(
    documents,
    st.builds(_mutated, st.just(SMALL_SPEC),
              st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), values)))
def test_validate_spec_returns_a_spec_or_raises_cbierror(doc):
    try:
        assert isinstance(validate_spec(doc), Spec)
    except CbiError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(max_size=200),
                 documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)),
                 st.binary(max_size=100).map(lambda b: b.decode("latin-1"))))
def test_load_spec_returns_a_spec_or_raises_cbierror(tmp_path_factory, text):
    path = tmp_path_factory.getbasetemp() / "prop_spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        assert isinstance(load_spec(path), Spec)
    except CbiError as exc:
        assert "\n" not in str(exc)
