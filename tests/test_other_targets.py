"""Any commodity as the target: the shipped ZS and ZM specs (ZL becomes a driver), and the
spec's ``end``, which stops the frame where a driver's data ends."""

from __future__ import annotations

import pandas as pd
import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.errors import DataError
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.spec import load_spec

TINY = {"window": 20, "model.hidden_dim": 8, "model.num_heads": 2, "model.num_layers": 1,
        "training.max_epochs": 1, "training.batch_size": 256, "validation.n_splits": 2,
        "validation.test_start": "2023-01-03", "validation.test_size": 126}


@pytest.mark.parametrize("target, driver", [("zs", "zl"), ("zm", "zl")])
def test_shipped_specs_forecast_another_commodity(specs_dir, data_dir, target, driver):
    spec = load_spec(specs_dir / f"{target}_1m_quick.yaml")
    report, samples = prepare(spec, str(data_dir))
    assert spec.target == target
    assert any(name.startswith(f"{driver}_chg_") for name in samples.feature_names)
    assert report.end == pd.Timestamp("2023-12-29")  # stopped at `end`: ZL and weather end there
    raw = pd.read_csv(data_dir / "drivers" / f"{target}_tradingview_{target.upper()}1_daily.csv",
                      parse_dates=["date"], index_col="date")["close"]
    # the origin prices are the target's own closes
    assert (samples.price == raw.reindex(samples.dates).to_numpy()).all()


def test_end_stops_the_frame_and_is_checked(specs_dir, data_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"end": "2019-06-28"})
    report, samples = prepare(spec, str(data_dir))
    assert report.end == pd.Timestamp("2019-06-28") and samples.dates[-1] == report.end
    early = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"end": "1990-01-02"})
    with pytest.raises(DataError, match="no target date on or before end 1990-01-02"):
        prepare(early, str(data_dir))


def test_a_zs_run_writes_its_own_series(tmp_path, specs_dir, data_dir):
    args = [str(specs_dir / "zs_1m_quick.yaml"), "--data-dir", str(data_dir), "-q",
            "--runs-dir", str(tmp_path / "runs"), "--sink", f"duckdb://{tmp_path / 'f.duckdb'}",
            "--set", "gate.worse_p=null", "--set", "gate.coverage_80=null",
            "--set", "gate.coverage_95=null"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    sink = DuckDBSink(tmp_path / "f.duckdb")
    (row,) = sink.read_all().itertuples()
    assert row.series == "zs" and pd.Timestamp(row.origin_date) == pd.Timestamp("2023-12-29")
    # every real ZS close, also those after `end`: they score the forecast once its date arrives
    closes = sink.read("actuals")
    assert set(closes["series"]) == {"zs"} and len(closes) == 4999
    runs = sink.read("runs")
    assert set(runs["series"]) == {"zs"} and runs["mase"].notna().all()
