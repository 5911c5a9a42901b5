"""The BigQuery source against a real BigQuery REST server (bqemulator, see conftest.py):
the real ZL daily file is loaded into a table and read back through the source, which
must give the very frame the file source gives."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.cloud import bigquery
from pydantic import ValidationError

from cbi_toolkit.bq_client import make_client
from cbi_toolkit.errors import SourceError
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.bigquery import BigQuerySource
from cbi_toolkit.sources.files import FileSource
from cbi_toolkit.spec import validate_spec
from tests.conftest import BQ_PROJECT

ZL_FILE = "zl/zl_tradingview_ZL1_daily.csv"
COLUMNS = {"close": "zl", "volume": "zl_volume"}


@pytest.fixture(scope="module")
def zl_table(bq_emulator, data_dir) -> str:
    """``market.zl_daily``: every row of the real ZL daily file, loaded with a Parquet job."""
    raw = pd.read_csv(data_dir / ZL_FILE)
    schema = [bigquery.SchemaField("date", "DATE", mode="REQUIRED")] + [
        bigquery.SchemaField(c, "FLOAT64") for c in raw.columns if c != "date"]
    raw["date"] = pd.to_datetime(raw["date"]).dt.date
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(raw.astype({c: float for c in raw.columns[1:]}),
                                        preserve_index=False), buffer)
    buffer.seek(0)
    client = make_client(BQ_PROJECT, None, bq_emulator, SourceError, "test")
    client.create_dataset(f"{BQ_PROJECT}.market", exists_ok=True)
    job = client.load_table_from_file(buffer, f"{BQ_PROJECT}.market.zl_daily", job_config=(
        bigquery.LoadJobConfig(source_format="PARQUET", schema=schema)))
    job.result(timeout=60)
    assert client.get_table(f"{BQ_PROJECT}.market.zl_daily").num_rows == len(raw)
    return "market.zl_daily"


@pytest.fixture(scope="module")
def from_file(data_dir) -> pd.DataFrame:
    return FileSource(path=ZL_FILE, columns=COLUMNS).load(SourceContext(data_dir=data_dir))


def test_table_reads_back_the_file_sources_frame(bq_emulator, zl_table, from_file):
    source = BigQuerySource(project=BQ_PROJECT, table=zl_table, columns=COLUMNS,
                            api_endpoint=bq_emulator)
    got = source.load(SourceContext())
    assert len(got) > 4000
    pd.testing.assert_frame_equal(got, from_file)


def test_dates_filter_through_query_parameters(bq_emulator, zl_table, from_file):
    source = BigQuerySource(project=BQ_PROJECT, table=f"{BQ_PROJECT}.{zl_table}",
                            columns=COLUMNS, start=dt.date(2010, 1, 1),
                            end=dt.date(2012, 6, 30), api_endpoint=bq_emulator)
    sql, params = source.sql()
    assert "2010" not in sql and {p.name for p in params} == {"start", "end"}
    pd.testing.assert_frame_equal(source.load(SourceContext()),
                                  from_file.loc["2010-01-01":"2012-06-30"])


def test_query_with_a_start_parameter(bq_emulator, zl_table, from_file):
    source = BigQuerySource(
        project=BQ_PROJECT, api_endpoint=bq_emulator, columns={"close": "zl"},
        start=dt.date(2020, 1, 1),
        query=f"SELECT date, close FROM `{BQ_PROJECT}.{zl_table}` WHERE date >= @start "
              "ORDER BY date")
    pd.testing.assert_frame_equal(source.load(SourceContext()),
                                  from_file.loc["2020-01-01":, ["zl"]])


def test_missing_table_is_a_one_line_source_error(bq_emulator):
    source = BigQuerySource(project=BQ_PROJECT, table="market.no_such_table",
                            columns={"close": "zl"}, api_endpoint=bq_emulator,
                            retry_deadline_s=5)
    with pytest.raises(SourceError) as err:
        source.load(SourceContext())
    assert "\n" not in str(err.value) and "bigquery cbi-test:market.no_such_table" in str(err.value)


@pytest.mark.parametrize("fields", [
    {"table": "market.zl`; DROP TABLE x; --"},
    {"table": "market.zl_daily", "project": "bad project"},
    {"table": "a.b.c.d"},
    {"table": "market.zl_daily", "date_column": "date` FROM x --"},
    {"table": "market.zl_daily", "columns": {"close) FROM x; --": "zl"}},
    {"table": "market.zl_daily", "location": "US; DROP"},
    {"table": "market.zl_daily", "query": "SELECT 1"},  # both
    {},  # neither
])
def test_bad_identifiers_and_shapes_are_refused(fields):
    spec = {"project": BQ_PROJECT, "columns": {"close": "zl"}, **fields}
    with pytest.raises(ValidationError):
        BigQuerySource(**spec)


def test_spec_accepts_bigquery_source_and_sink():
    spec = validate_spec({
        "name": "zl-bq", "target": "zl",
        "data": [{"kind": "bigquery", "project": "my-proj", "table": "training.zl_daily",
                  "columns": {"close": "zl"}, "role": "price"}],
        "sink": {"kind": "bigquery", "project": "my-proj", "dataset": "forecasts",
                 "location": "EU"},
    })
    assert isinstance(spec.data[0], BigQuerySource)
    assert (spec.sink.kind, spec.sink.dataset, spec.sink.location) == ("bigquery", "forecasts",
                                                                       "EU")
