"""The forecasting run end to end on the real snapshot (tiny model), the DuckDB
sink, the deploy gate, saved artifacts, --predict and --evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.artifacts import load_pipeline
from cbi_toolkit.cli import main
from cbi_toolkit.errors import ArtifactError, SinkError
from cbi_toolkit.models.baselines import VolatilityRandomWalk
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.spec import DEFAULT_BASELINES, load_spec

TINY = ["window=20", "model.hidden_dim=8", "model.num_heads=2", "model.num_layers=1",
        "training.max_epochs=2", "training.batch_size=128", "validation.n_splits=2",
        "validation.test_start=2023-01-03", "validation.test_size=126",
        "gate.max_mase=null", "gate.worse_p=null", "gate.coverage_80=null", "gate.coverage_95=null"]


def run(spec_path, tmp_path, *extra, sets=TINY):
    args = [str(spec_path), "--runs-dir", str(tmp_path / "runs"), "-q",
            "--sink", f"duckdb://{tmp_path / 'f.duckdb'}"]
    for s in sets:
        args += ["--set", s]
    return main([*args, *extra])


def run_dirs(tmp_path) -> list[Path]:
    return sorted((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, specs_dir):
    tmp = tmp_path_factory.mktemp("run")
    assert run(specs_dir / "zl_1m_quick.yaml", tmp) == 0
    return tmp, run_dirs(tmp)[0]


def test_run_writes_artifacts(first_run):
    _, run_dir = first_run
    for name in ("spec.yaml", "metrics.json", "metrics.csv", "metrics_folds.csv", "report.md",
                 "forecasts.csv", "oos_predictions.csv", "forecast_vs_actual.png",
                 "coverage.png", "model/manifest.json", "model/net/weights.safetensors"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    models = {r["model"] for r in metrics["summary"]}
    assert models == {"model", "net", *DEFAULT_BASELINES}
    rw = next(r for r in metrics["summary"] if r["model"] == "random_walk")
    assert rw["mase"] == pytest.approx(1.0)
    shipped = next(r for r in metrics["summary"] if r["model"] == "model")
    assert 0 < shipped["conformal_coverage_80_se"] < 0.5  # its HAC standard error
    assert 0 <= shipped["conformal_coverage_80_p"] <= 1
    report = (run_dir / "report.md").read_text()
    assert "random_walk" in report and "MASE" in report and "coverage.png" in report
    assert (run_dir / "coverage.png").read_bytes()[:4] == b"\x89PNG"


def test_sink_holds_one_row_per_horizon_and_view(first_run):
    tmp, run_dir = first_run
    sink = DuckDBSink(tmp / "f.duckdb")
    rows = sink.read_all()
    assert len(rows) == 1 and rows.iloc[0]["horizon"] == "1m"
    assert str(rows.iloc[0]["origin_date"])[:10] == "2023-12-29"
    forecast = pd.read_csv(run_dir / "forecasts.csv")
    assert rows.iloc[0]["predicted_price"] == pytest.approx(forecast["predicted_price"][0])
    r = rows.iloc[0]
    assert r["lower_95"] < r["lower_80"] < r["predicted_price"] < r["upper_80"] < r["upper_95"]
    assert len(sink.read_latest()) == 1


def test_rerun_upserts_without_duplicates(first_run, specs_dir):
    tmp, _ = first_run
    assert run(specs_dir / "zl_1m_quick.yaml", tmp) == 0
    rows = DuckDBSink(tmp / "f.duckdb").read_all()
    assert len(rows) == 1
    assert rows.iloc[0]["run_id"] == run_dirs(tmp)[-1].name


def test_saved_model_round_trip_identical(first_run, data_dir):
    _, run_dir = first_run
    pipe, meta = load_pipeline(run_dir / "model")
    spec = load_spec(run_dir / "spec.yaml")
    _, samples = prepare(spec, str(data_dir))
    mu, sigma = predict_dist(pipe, samples.X[[len(samples) - 1]])
    saved = pd.read_csv(run_dir / "forecasts.csv")
    # the shipped forecast: the net's mean times the combination weight chosen on the folds,
    # sigma from the chosen source times the calibrated variance scale
    comb, cal = meta["combination"]["1m"], meta["calibration"]["1m"]
    price = samples.price[-1] * np.exp(comb["weight"] * mu[0, 0])
    assert price == pytest.approx(saved["predicted_price"][0], rel=1e-6)
    if comb["sigma"] == "net":
        source = sigma[0, 0]
    else:
        known = np.flatnonzero(samples.labelled)
        vol = VolatilityRandomWalk(meta["vol_window"], (21,)).fit(samples.X[known], samples.y[known])
        source = vol.predict_dist(samples.X[[len(samples) - 1]])[1][0, 0]
    assert cal["variance_scale"] * source == pytest.approx(saved["sigma"][0], rel=1e-6)
    assert meta["feature_names"] == samples.feature_names


def test_predict_from_saved_run(first_run, data_dir, capsys):
    tmp, run_dir = first_run
    assert main(["--predict", str(run_dir), "--data-dir", str(data_dir),
                 "--sink", f"duckdb://{tmp / 'f.duckdb'}"]) == 0
    out = pd.read_csv(run_dir / "predictions" / "origin-2023-12-29.csv")
    saved = pd.read_csv(run_dir / "forecasts.csv")
    assert out["predicted_price"][0] == pytest.approx(saved["predicted_price"][0], rel=1e-6)
    assert len(DuckDBSink(tmp / "f.duckdb").read_all()) == 1


def test_tampered_model_is_refused(first_run, tmp_path):
    _, run_dir = first_run
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(run_dir / "model", copy)
    scaler = json.loads((copy / "scaler.json").read_text())
    scaler["mean"][0] += 1.0
    (copy / "scaler.json").write_text(json.dumps(scaler))
    with pytest.raises(ArtifactError, match="checksum differs"):
        load_pipeline(copy)


def linked_copy(data_dir: Path, dest: Path, cut: dict[str, str]) -> Path:
    """The snapshot as symlinks, with the files in ``cut`` (path -> first date dropped)
    rewritten without their rows from that date on: real rows, fewer of them."""
    for sub in data_dir.iterdir():
        if sub.is_dir():
            (dest / sub.name).mkdir(parents=True)
            for f in sub.glob("*.csv"):
                (dest / sub.name / f.name).symlink_to(f)
    for rel, first_dropped in cut.items():
        (dest / rel).unlink()
        rows = pd.read_csv(data_dir / rel, dtype=str)
        rows[rows["date"] < first_dropped].to_csv(dest / rel, index=False)
    return dest


def test_evaluate_on_data_that_arrived_later(tmp_path, specs_dir, data_dir, capsys):
    """Train on data up to 2021, then score on newer data from 2022 on, where the weather
    file ends in September 2022: its features are held at their training mean after
    that (named in the output), and each horizon is scored where its target is known."""
    old = linked_copy(data_dir, tmp_path / "old", {"zl/zl_tradingview_ZL1_daily.csv": "2022-01-01"})
    weather = "weather/ghcnd_USW00014940_mason_city_ia_daily_2004_2023.csv"
    new = linked_copy(data_dir, tmp_path / "new", {weather: "2022-10-01"})
    sets = [s for s in TINY if not s.startswith("validation.test_start")]
    assert run(specs_dir / "zl_1m_quick.yaml", tmp_path, "--data-dir", str(old),
               sets=[*sets, "validation.test_start=2021-01-04"]) == 0
    run_dir = run_dirs(tmp_path)[0]
    meta = json.loads((run_dir / "model" / "meta.json").read_text())
    assert meta["train_end"] < "2022-01-01"
    capsys.readouterr()
    assert main(["--evaluate", str(run_dir), "--data-dir", str(new),
                 "--since", "2022-01-03"]) == 0
    out = capsys.readouterr().out
    assert "random_walk" in out and "scored" in out
    assert "wx_prcp (2022-09-30)" in out and "wx_prcp_anom" in out
    table = pd.read_csv(run_dir / "evaluations" / "since-2022-01-03.csv")
    assert {"model", "net", *DEFAULT_BASELINES} <= set(table["model"])
    # origins from 2022-01-03 whose 21-day targets are known by 2023-12-29: past the weather's end
    assert table["end"].min() >= "2023-11-01" and table["n"].max() <= 480
    assert table.set_index("model").loc["random_walk", "mase"] == pytest.approx(1.0)


def test_gate_failure_writes_no_forecast_but_its_evidence(tmp_path, specs_dir, capsys):
    sets = [s for s in TINY if not s.startswith("gate.max_mase")] + ["gate.max_mase=0.01"]
    assert run(specs_dir / "zl_1m_quick.yaml", tmp_path, sets=sets) == 3
    out = capsys.readouterr().out
    assert "deploy gate FAILED" in out and "MASE" in out and "track record only" in out
    sink = DuckDBSink(tmp_path / "f.duckdb")
    assert sink.read_all().empty  # no live forecast reached the warehouse
    runs = sink.read("runs")
    assert len(runs) == 1 and not runs["gate_passed"].iloc[0]
    assert "max_mase" in runs["gate_failures"].iloc[0]
    assert (sink.read_all(kind="backtest")["kind"] == "backtest").all()
    assert (run_dirs(tmp_path)[0] / "forecasts.csv").is_file()


def test_duckdb_sink_is_transactional(tmp_path, data_dir):
    zl = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv").tail(3)
    batch = pd.DataFrame({
        "origin_date": zl["date"], "horizon": "1w", "target_date": zl["date"],
        "predicted_price": zl["close"], "lower_80": zl["low"], "upper_80": zl["high"],
        "lower_95": zl["low"], "upper_95": zl["high"], "sigma": 0.02, "model_version": "v",
        "run_id": "r1", "created_at": pd.Timestamp("2024-01-02", tz="UTC"),
        "series": "zl", "kind": "forecast"})
    sink = DuckDBSink(tmp_path / "s.duckdb")
    assert sink.write(batch) == 3
    # a null key is refused before anything is written
    with pytest.raises(SinkError, match="null"):
        sink.write(batch.assign(horizon=[None, "1w", "1w"]))
    # a failure after the insert (the view's name is taken by a table) rolls back all of it
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("CREATE TABLE clash (x INTEGER)")
    con.close()
    changed = batch.assign(run_id="r2", predicted_price=batch["predicted_price"] + 1)
    with pytest.raises(SinkError, match="nothing written"):
        DuckDBSink(tmp_path / "s.duckdb", view="clash").write(changed)
    rows = sink.read_all()
    assert list(rows["run_id"]) == ["r1"] * 3
    assert list(rows["predicted_price"]) == list(zl["close"])
    # schema mismatch refused
    con = duckdb.connect(str(tmp_path / "other.duckdb"))
    con.execute("CREATE TABLE predictions (origin_date DATE, horizon VARCHAR)")
    con.close()
    with pytest.raises(SinkError, match="exists with another schema"):
        DuckDBSink(tmp_path / "other.duckdb").write(batch)
