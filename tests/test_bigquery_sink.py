"""The BigQuery sink against a real BigQuery REST server (bqemulator, see conftest.py).

Forecast rows are random-walk forecasts built from real ZL closes: the origin's close
is the predicted price, sigma is the trailing 21-day volatility of log returns scaled
by the horizon, and the bounds follow as close * exp(+-z * sigma).
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pandas as pd
import pytest
from google.api_core.exceptions import NotFound
from google.cloud import bigquery
from pydantic import ValidationError

from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks import make_sink
from cbi_toolkit.sinks.base import PREDICTION_SCHEMA
from cbi_toolkit.sinks.bigquery import BigQuerySink
from cbi_toolkit.sinks.config import BigQuerySinkConfig, DuckDBSinkConfig
from cbi_toolkit.sinks.resolve import sink_from_url
from tests.conftest import BQ_PROJECT

HORIZONS = {"1w": 5, "1m": 21}
WAREHOUSE = {"predictions", "latest_predictions", "actuals", "runs", "scorecard"}


@pytest.fixture(scope="module")
def closes(data_dir) -> pd.Series:
    frame = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"])
    return frame.set_index("date")["close"].astype(float)


def forecasts(closes: pd.Series, origins: int = 3, version: str = "rw-1",
              run_id: str = "run-a", created: str = "2026-01-02T00:00:00Z",
              end: int = -30) -> pd.DataFrame:
    """Random-walk forecasts from the ``origins`` trading days ending ``end`` days from the end."""
    vol = np.log(closes).diff().rolling(21).std()
    rows = []
    for pos in range(len(closes) + end - origins, len(closes) + end):
        origin, price = closes.index[pos], closes.iloc[pos]
        for horizon, steps in HORIZONS.items():
            sigma = float(vol.iloc[pos] * np.sqrt(steps))
            rows.append({
                "origin_date": origin, "horizon": horizon,
                "target_date": closes.index[pos + steps], "predicted_price": price,
                "lower_80": price * np.exp(-1.2816 * sigma),
                "upper_80": price * np.exp(1.2816 * sigma),
                "lower_95": price * np.exp(-1.96 * sigma),
                "upper_95": price * np.exp(1.96 * sigma),
                "sigma": sigma, "model_version": version, "run_id": run_id,
                "created_at": pd.Timestamp(created), "series": "zl", "kind": "forecast"})
    return pd.DataFrame(rows)


@pytest.fixture
def sink(bq_emulator) -> BigQuerySink:
    """A sink on a fresh dataset of the session's emulator."""
    return BigQuerySink(BigQuerySinkConfig(
        project=BQ_PROJECT, dataset=f"fc_{uuid.uuid4().hex[:8]}", api_endpoint=bq_emulator,
        retry_deadline_s=10))


def tables(sink: BigQuerySink) -> set[str]:
    c = sink.config
    return {t.table_id for t in sink._client().list_tables(f"{c.project}.{c.dataset}")}


def test_first_write_creates_dataset_table_and_view(sink, closes):
    client = sink._client()
    with pytest.raises(NotFound):
        client.get_dataset(f"{BQ_PROJECT}.{sink.config.dataset}")
    batch = forecasts(closes)
    assert sink.write(batch) == len(batch) == 6
    assert tables(sink) == WAREHOUSE  # staging table dropped
    table = client.get_table(f"{BQ_PROJECT}.{sink.config.dataset}.predictions")
    assert [f.name for f in table.schema] == list(PREDICTION_SCHEMA)
    assert {f.name for f in table.schema if f.mode == "REQUIRED"} == {
        "series", "kind", "origin_date", "horizon", "model_version"}
    assert table.time_partitioning.field == "origin_date"
    assert table.clustering_fields == ["series", "horizon"]
    stored = sink.read_all()
    assert len(stored) == 6
    assert stored["predicted_price"].tolist() == pytest.approx(
        batch.sort_values(["origin_date", "horizon"])["predicted_price"].tolist())
    assert set(pd.to_datetime(stored["origin_date"])) == set(batch["origin_date"])


def test_second_identical_write_changes_nothing(sink, closes):
    batch = forecasts(closes)
    sink.write(batch)
    first = sink.read_all()
    sink.write(batch)
    again = sink.read_all()
    assert len(again) == len(first) == 6
    pd.testing.assert_frame_equal(again, first)
    assert tables(sink) == WAREHOUSE


def test_changed_forecast_updates_in_place(sink, closes):
    batch = forecasts(closes)
    sink.write(batch)
    changed = batch.copy()
    # the same keys re-forecast by a later run: the next day's real close as the prediction
    later = closes.shift(-1).reindex(changed["origin_date"]).to_numpy()
    changed["predicted_price"], changed["run_id"] = later, "run-b"
    sink.write(changed)
    stored = sink.read_all()
    assert len(stored) == 6
    assert set(stored["run_id"]) == {"run-b"}
    assert sorted(stored["predicted_price"]) == pytest.approx(sorted(later))
    # another model version is another key: added beside, not over
    sink.write(forecasts(closes, version="rw-2"))
    assert len(sink.read_all()) == 12
    assert len(sink.read_all(model_version="rw-2")) == 6


def test_view_holds_the_newest_forecast_per_horizon(sink, closes):
    sink.write(forecasts(closes, origins=3, end=-40, created="2026-01-01T00:00:00Z"))
    newest = forecasts(closes, origins=2, end=-30, created="2026-01-02T00:00:00Z")
    sink.write(newest)
    latest = sink.read_latest()
    assert sorted(latest["horizon"]) == sorted(HORIZONS)
    assert set(pd.to_datetime(latest["origin_date"])) == {newest["origin_date"].max()}
    assert len(sink.read_all()) == 10


def test_existing_table_with_another_schema_is_refused(sink, closes):
    client = sink._client()
    c = sink.config
    client.create_dataset(f"{c.project}.{c.dataset}")
    schema = [bigquery.SchemaField(n, "STRING" if n == "predicted_price" else t)
              for n, t in PREDICTION_SCHEMA.items()]
    client.create_table(bigquery.Table(f"{c.project}.{c.dataset}.predictions", schema=schema))
    with pytest.raises(SinkError, match="incompatible schema .*predicted_price is STRING"):
        sink.write(forecasts(closes))
    assert tables(sink) == {"predictions"}  # nothing staged, no view over a wrong table
    assert client.get_table(f"{c.project}.{c.dataset}.predictions").num_rows in (0, None)


def test_dataset_in_another_location_is_refused(sink, closes):
    client = sink._client()
    dataset = bigquery.Dataset(f"{sink.config.project}.{sink.config.dataset}")
    dataset.location = "EU"
    client.create_dataset(dataset)
    with pytest.raises(SinkError, match="location EU.*set the sink's location"):
        sink.write(forecasts(closes))


def test_make_sink_and_spec_url(bq_emulator, closes):
    url = f"bigquery://{BQ_PROJECT}/fc_{uuid.uuid4().hex[:8]}?api_endpoint={bq_emulator}"
    config = sink_from_url(url, DuckDBSinkConfig())
    sink = make_sink(config)
    assert isinstance(sink, BigQuerySink)
    assert sink.write(forecasts(closes, origins=1)) == 2
    assert len(sink.read_latest()) == 2


INJECTIONS = ["x`; DROP TABLE p; --", "a.b", "a` OR 1=1 --", "tab le", "", "a\nb",
              "x\\`y", "ds/../other"]


@pytest.mark.parametrize("field", ["project", "dataset", "table", "view", "location"])
@pytest.mark.parametrize("value", INJECTIONS)
def test_identifier_injection_is_refused(field, value):
    fields = {"project": BQ_PROJECT, "dataset": "forecasts", field: value}
    with pytest.raises(ValidationError, match="not a valid BigQuery"):
        BigQuerySinkConfig(**fields)


@pytest.mark.parametrize("url", [
    "bigquery://cbi-test/x`;DROP TABLE t;--",
    "bigquery://cbi-test/forecasts?table=t`%20OR%201=1",
    "bigquery://cbi-test/forecasts?view=v;DELETE",
    "bigquery://BAD_PROJECT/forecasts",
])
def test_sink_url_injection_is_refused(url):
    with pytest.raises(SinkError, match="not a valid BigQuery"):
        sink_from_url(url)


def test_sink_url_parsing():
    base = BigQuerySinkConfig(project="prod-proj", dataset="d", table="fc", location="EU")
    got = sink_from_url("bigquery://my-proj/forecasts", base)
    assert (got.project, got.dataset, got.table, got.location) == (
        "my-proj", "forecasts", "fc", "EU")
    got = sink_from_url("bigquery://my-proj/forecasts/preds?view=latest&location=US")
    assert (got.table, got.view, got.location) == ("preds", "latest", "US")
    assert sink_from_url("duckdb:///tmp/x.duckdb").path == "/tmp/x.duckdb"
    for bad in ("bigquery://my-proj", "bigquery://my-proj/a/b/c", "s3://x/y",
                "bigquery://my-proj/d?colour=red"):
        with pytest.raises(SinkError, match="--sink"):
            sink_from_url(bad)


def test_server_down_gives_a_clear_error_within_the_deadline(closes):
    with __import__("socket").socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = BigQuerySink(BigQuerySinkConfig(project=BQ_PROJECT, dataset="forecasts",
                                           api_endpoint=f"http://127.0.0.1:{port}",
                                           retry_deadline_s=2))
    started = time.monotonic()
    with pytest.raises(SinkError) as err:
        sink.write(forecasts(closes, origins=1))
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "\n" not in message
    assert "cannot reach" in message and f"127.0.0.1:{port}" in message
    assert "forecasts stay in the run folder" in message
    assert elapsed < 30, elapsed  # the deadline is 2 s; the client's default is 10 minutes


def test_no_credentials_without_an_endpoint_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    sink = BigQuerySink(BigQuerySinkConfig(project=BQ_PROJECT, dataset="forecasts"))
    with pytest.raises(SinkError, match="credentials"):
        sink.read_latest()
