"""``cbi-run SPEC --sink bigquery://PROJECT/DATASET?api_endpoint=...`` end to end on the
real snapshot (a tiny model) against the BigQuery emulator; with the server down the
run fails with a one-line error and its folder keeps the forecasts."""

from __future__ import annotations

import socket

import pandas as pd
import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.sinks.bigquery import BigQuerySink
from cbi_toolkit.sinks.config import BigQuerySinkConfig
from tests.conftest import BQ_PROJECT

TINY = ["window=10", "model.hidden_dim=4", "model.num_heads=1", "model.num_layers=1",
        "training.max_epochs=1", "training.batch_size=512", "validation.n_splits=2",
        "validation.test_start=2023-01-03", "validation.test_size=126",
        "gate.max_mase=null", "gate.worse_p=null", "gate.coverage_80=null", "gate.coverage_95=null"]


def cli(*args: str) -> int:
    argv = [*args, "-q"]
    for s in TINY:
        argv += ["--set", s]
    return main(argv)


@pytest.fixture(scope="module")
def bq_run(bq_emulator, specs_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("bq-runs")
    url = f"bigquery://{BQ_PROJECT}/cli_run?api_endpoint={bq_emulator}"
    assert cli(str(specs_dir / "zl_1m_quick.yaml"), "--runs-dir", str(runs), "--sink", url) == 0
    (run_dir,) = runs.iterdir()
    return run_dir


def test_cbi_run_writes_its_forecasts_to_bigquery(bq_run, bq_emulator):
    sink = BigQuerySink(BigQuerySinkConfig(project=BQ_PROJECT, dataset="cli_run",
                                           api_endpoint=bq_emulator))
    written = pd.read_csv(bq_run / "forecasts.csv")
    latest = sink.read_latest()
    assert latest["horizon"].tolist() == written["horizon"].tolist() == ["1m"]
    assert latest["predicted_price"].tolist() == pytest.approx(
        written["predicted_price"].tolist())
    assert latest["run_id"].tolist() == written["run_id"].tolist()


def test_server_down_fails_in_one_line_and_keeps_the_forecasts(bq_run, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = (f"bigquery://{BQ_PROJECT}/cli_run?api_endpoint=http://127.0.0.1:{port}"
           "&retry_deadline_s=2")
    capsys.readouterr()
    assert main(["--predict", str(bq_run), "--sink", url, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bigquery sink"), err
    assert "cannot reach" in err[0]
    kept = list((bq_run / "predictions").glob("origin-*.csv"))
    assert len(kept) == 1 and len(pd.read_csv(kept[0])) == 1
