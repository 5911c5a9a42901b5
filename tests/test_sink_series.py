"""The series key, actuals, runs and the scorecard view in both sinks, and the migration
of a predictions table written before the series key: the "existing table" is written
by the sinks as they were (tests/legacy_sinks.py, commit 8a932a7) from real ZL closes,
or (for the track record) by real quick runs."""

from __future__ import annotations

import uuid

import duckdb
import numpy as np
import pandas as pd
import pytest

from cbi_toolkit import track_record
from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.base import PREDICTION_KEY
from cbi_toolkit.sinks.bigquery import BigQuerySink
from cbi_toolkit.sinks.config import BigQuerySinkConfig
from cbi_toolkit.sinks.duckdb import DuckDBSink
from tests.conftest import BQ_PROJECT
from tests.legacy_sinks import LegacyBigQuerySink, LegacyDuckDBSink
from tests.test_bigquery_sink import forecasts as legacy_forecasts

OLD_KEY = ["origin_date", "horizon", "model_version"]


@pytest.fixture(scope="module")
def closes(data_dir) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return frame.set_index("date")["close"].astype(float)


def legacy_rows(closes) -> pd.DataFrame:
    """What today's runs wrote: two model versions, three origins, two horizons."""
    return pd.concat([legacy_forecasts(closes, version="rw-1"),
                      legacy_forecasts(closes, version="rw-2", run_id="run-b", end=-40)],
                     ignore_index=True)


def new_rows(closes) -> pd.DataFrame:
    """The new code's batch: rw-1 again for the same origins (changed run id) and one
    newer origin, keyed by series and kind."""
    batch = legacy_forecasts(closes, origins=4, version="rw-1", run_id="run-c", end=-29)
    return batch.assign(series="zl", kind="forecast")


def _norm(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for col in ("origin_date", "target_date"):
        out[col] = pd.to_datetime(out[col]).dt.date
    out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
    return out.sort_values(OLD_KEY).reset_index(drop=True)


def check_migrated(stored: pd.DataFrame, old: pd.DataFrame, batch: pd.DataFrame) -> None:
    stored, old, batch = _norm(stored), _norm(old), _norm(batch)
    assert not stored.duplicated(list(PREDICTION_KEY)).any()
    assert set(stored["series"]) == {"zl"} and set(stored["kind"]) == {"forecast"}
    keys = pd.concat([old[OLD_KEY], batch[OLD_KEY]]).drop_duplicates()
    assert len(stored) == len(keys)  # every old row is there once, plus the batch's new keys
    rewritten = old.merge(batch[OLD_KEY], on=OLD_KEY)
    assert len(rewritten) == 6  # the batch replaced these old rows...
    kept = old.merge(batch[OLD_KEY], on=OLD_KEY, how="left", indicator=True)
    kept = kept[kept["_merge"] == "left_only"].drop(columns="_merge")
    same = stored.merge(kept, on=OLD_KEY, suffixes=("", "_old"))
    assert len(same) == len(kept) == len(old) - 6  # ...and kept the others as they were
    for col in ("predicted_price", "lower_95", "upper_95", "run_id", "target_date"):
        assert (same[col] == same[f"{col}_old"]).all(), col
    assert set(stored.merge(batch[OLD_KEY], on=OLD_KEY)["run_id"]) == {"run-c"}


# -- DuckDB -------------------------------------------------------------------------------


def test_duckdb_table_from_before_the_series_key_migrates(tmp_path, closes):
    db = tmp_path / "f.duckdb"
    old = legacy_rows(closes)
    assert LegacyDuckDBSink(db).write(old) == 12
    batch = new_rows(closes)

    # a write that fails after the migration (the scorecard's name is taken) undoes it too
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE scorecard (x INTEGER)")
    con.close()
    with pytest.raises(SinkError, match="nothing written"):
        DuckDBSink(db).write(batch)
    con = duckdb.connect(str(db))
    assert [c[0] for c in con.execute("DESCRIBE predictions").fetchall()][:2] == \
        ["origin_date", "horizon"]
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 12
    con.execute("DROP TABLE scorecard")
    con.close()

    sink = DuckDBSink(db)
    assert sink.write(batch) == 8
    check_migrated(sink.read_all(), old, batch)
    n = len(sink.read_all())
    assert sink.write(batch) == 8 and len(sink.read_all()) == n  # an upsert on the new key
    latest = sink.read_latest()
    assert list(latest["series"]) == ["zl", "zl"] and set(latest["kind"]) == {"forecast"}
    assert (pd.to_datetime(latest["origin_date"]) == batch["origin_date"].max()).all()


def test_duckdb_keeps_series_apart(tmp_path, closes, data_dir):
    """Two series at the same origins and version are two sets of rows, each with its own
    latest forecast and its own actuals."""
    zs = pd.read_csv(data_dir / "drivers" / "zs_tradingview_ZS1_daily.csv",
                     parse_dates=["date"]).set_index("date")["close"].astype(float)
    sink = DuckDBSink(tmp_path / "f.duckdb")
    sink.write(new_rows(closes))
    sink.write(new_rows(zs.loc[:closes.index[-1]]).assign(series="zs"))
    rows = sink.read_all()
    assert rows.groupby("series").size().to_dict() == {"zl": 8, "zs": 8}
    assert sorted(sink.read_latest()["series"]) == ["zl", "zl", "zs", "zs"]


# -- the scorecard, the same in both sinks ----------------------------------------------


def drift_rows(closes: pd.Series, n: int = 40) -> pd.DataFrame:
    """Forecasts by the trailing 63-day drift from n origins whose targets are in the data."""
    logp = np.log(closes)
    drift = logp.diff().rolling(63).mean()
    batch = legacy_forecasts(closes, origins=n, version="drift-1", end=-30)
    steps = batch["horizon"].map({"1w": 5, "1m": 21})
    mu = drift.reindex(batch["origin_date"]).to_numpy() * steps.to_numpy()
    origin_close = closes.reindex(batch["origin_date"]).to_numpy()
    batch["predicted_price"] = origin_close * np.exp(mu)
    return batch.assign(series="zl", kind="forecast")


def expected_scorecard(batch: pd.DataFrame, closes: pd.Series) -> pd.DataFrame:
    actual = closes.reindex(batch["target_date"]).to_numpy()
    origin = closes.reindex(batch["origin_date"]).to_numpy()
    pred = batch["predicted_price"].to_numpy()
    return pd.DataFrame({
        "error": pred - actual, "abs_pct_error": 100 * np.abs(pred - actual) / actual,
        "rw_error": origin - actual, "in_80": (actual >= batch["lower_80"])
        & (actual <= batch["upper_80"]), "direction_hit": np.sign(pred - origin)
        == np.sign(actual - origin)})


def _scorecard_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.assign(origin_date=pd.to_datetime(frame["origin_date"]))
    return frame.sort_values(["origin_date", "horizon"]).reset_index(drop=True)


def test_duckdb_scorecard(tmp_path, closes):
    batch = drift_rows(closes)
    sink = DuckDBSink(tmp_path / "f.duckdb")
    sink.write(batch)
    assert sink.read("scorecard").empty  # no actuals yet: nothing can be scored
    sink.write_actuals(track_record.actual_rows(closes, "zl"))
    sink.write_actuals(track_record.actual_rows(closes.tail(300), "zl"))  # an upsert
    assert len(sink.read("actuals")) == len(closes)
    got = _scorecard_sorted(sink.read("scorecard"))
    want = expected_scorecard(batch.sort_values(["origin_date", "horizon"]), closes)
    assert len(got) == len(batch) == 80
    for col in want:
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())


def _bq(bq_emulator) -> BigQuerySinkConfig:
    return BigQuerySinkConfig(project=BQ_PROJECT, dataset=f"sc_{uuid.uuid4().hex[:8]}",
                              api_endpoint=bq_emulator, retry_deadline_s=10)


def test_bigquery_actuals_and_scorecard(bq_emulator, closes, tmp_path):
    batch = drift_rows(closes)
    sink = BigQuerySink(_bq(bq_emulator))
    sink.write(batch)
    c = sink.config
    names = {t.table_id for t in sink._client().list_tables(f"{c.project}.{c.dataset}")}
    assert {"predictions", "actuals", "runs", "latest_predictions", "scorecard"} <= names
    assert sink.read("scorecard").empty
    sink.write_actuals(track_record.actual_rows(closes, "zl"))
    sink.write_actuals(track_record.actual_rows(closes.tail(300), "zl"))
    assert len(sink.read("actuals")) == len(closes)
    got = _scorecard_sorted(sink.read("scorecard"))
    want = expected_scorecard(batch.sort_values(["origin_date", "horizon"]), closes)
    assert len(got) == 80
    for col in want:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float),
                                   rtol=1e-12)
    # and DuckDB's view says the same for the same rows
    duck = DuckDBSink(tmp_path / "f.duckdb")
    duck.write(batch)
    duck.write_actuals(track_record.actual_rows(closes, "zl"))
    ref = _scorecard_sorted(duck.read("scorecard"))
    for col in ("error", "abs_pct_error", "rw_error", "rw_abs_pct_error", "in_95",
                "actual_up"):
        np.testing.assert_allclose(got[col].to_numpy(float), ref[col].to_numpy(float),
                                   rtol=1e-12)


def test_bigquery_table_from_before_the_series_key_migrates(bq_emulator, closes):
    config = _bq(bq_emulator)
    old = legacy_rows(closes)
    assert LegacyBigQuerySink(config).write(old) == 12
    batch = new_rows(closes)
    sink = BigQuerySink(config)
    assert sink.write(batch) == 8
    check_migrated(sink.read_all(), old, batch)
    n = len(sink.read_all())
    assert sink.write(batch) == 8 and len(sink.read_all()) == n
    latest = sink.read_latest()
    assert list(latest["series"]) == ["zl", "zl"]
    assert (pd.to_datetime(latest["origin_date"]) == batch["origin_date"].max()).all()


def test_bigquery_holds_the_runs_track_record(bq_emulator, quick_sink):
    """The rows a real run saved for the sink give the same scorecard in BigQuery as in
    the run's DuckDB warehouse."""
    run_dir = quick_sink["runs"][-1]
    tables = track_record.load(run_dir)
    assert set(tables) == {"backtest", "actuals", "runs"}
    sink = BigQuerySink(_bq(bq_emulator))
    sink.write(pd.read_csv(run_dir / "forecasts.csv"))
    written = track_record.write(sink, tables)
    assert written == {name: len(frame) for name, frame in tables.items()}
    got = _scorecard_sorted(sink.read("scorecard"))
    duck = DuckDBSink(quick_sink["sink"]).read("scorecard")
    ref = _scorecard_sorted(duck[duck["run_id"] == run_dir.name])
    assert len(got) == len(ref) == len(tables["backtest"])
    for col in ("actual", "error", "abs_pct_error", "rw_error", "in_80", "in_95",
                "direction_hit"):
        np.testing.assert_allclose(got[col].to_numpy(float), ref[col].to_numpy(float),
                                   rtol=1e-12, err_msg=col)
    runs = sink.read("runs")
    assert list(runs["run_id"]) == [run_dir.name] and bool(runs["gate_passed"].iloc[0])


def test_dashboard_reads_bigquery(bq_emulator, quick_sink, monkeypatch):
    """The app on a bigquery:// URL shows what it shows for the run's DuckDB warehouse."""
    from streamlit.testing.v1 import AppTest

    from cbi_toolkit.dashboard.cli import APP

    run_dir = quick_sink["runs"][-1]
    config = _bq(bq_emulator)
    sink = BigQuerySink(config)
    sink.write(pd.read_csv(run_dir / "forecasts.csv"))
    track_record.write(sink, track_record.load(run_dir))
    tables = {}
    for url in (f"bigquery://{config.project}/{config.dataset}?api_endpoint={bq_emulator}",
                f"duckdb://{quick_sink['sink']}"):
        monkeypatch.setenv("CBI_DASHBOARD_SINK", url)
        at = AppTest.from_file(str(APP), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        tables[url[:6]] = [t.value for t in at.table]
    forecast_bq, score_bq, _ = tables["bigque"]
    forecast_duck, score_duck, _ = tables["duckdb"]
    pd.testing.assert_frame_equal(forecast_bq, forecast_duck)
    pd.testing.assert_frame_equal(score_bq, score_duck)


def test_bigquery_half_done_migration_finishes(bq_emulator, closes):
    """A migration that stopped after adding one column (a crash between the steps)
    completes on the next write, still without losing or duplicating a row."""
    config = _bq(bq_emulator)
    old = legacy_rows(closes)
    LegacyBigQuerySink(config).write(old)
    sink = BigQuerySink(config)
    sink._run(f"ALTER TABLE {sink._path('predictions')} ADD COLUMN series STRING")
    from google.cloud import bigquery

    table = sink._client().get_table(sink._ref("predictions"))
    if "series" not in {f.name for f in table.schema}:  # the emulator keeps metadata apart
        table.schema = [*table.schema, bigquery.SchemaField("series", "STRING")]
        sink._client().update_table(table, ["schema"])
    batch = new_rows(closes)
    assert sink.write(batch) == 8
    check_migrated(sink.read_all(), old, batch)
