"""Smaller items of issue 13 (class 7): date messages that say what is wrong, cbi-grid's
n_jobs 0, the DuckDB lock retried briefly, Ctrl-C in cbi-grid handled as in cbi-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from cbi_toolkit.data import load_frame
from cbi_toolkit.errors import DataError, SinkError
from cbi_toolkit.search.cli import main as grid_main
from cbi_toolkit.sinks import duckdb as duckdb_sink
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import validate_spec
from tests.reliability_support import make_small_data, real_batch, write_spec

ZL = "zl/zl_tradingview_ZL1_daily.csv"


def zl_spec(path):
    return validate_spec({"name": "t", "target": "zl", "window": 20, "horizons": ["1w"],
                          "features": ["returns"], "data": [
                              {"kind": "file", "path": str(path), "columns": {"close": "zl"},
                               "role": "price"}]})


def refusal(path) -> str:
    with pytest.raises(DataError) as err:
        load_frame(zl_spec(path), SourceContext())
    return str(err.value)


def test_day_first_dates_say_they_are_ambiguous(tmp_path, data_dir):
    rows = pd.read_csv(data_dir / ZL, dtype=str)
    rows["date"] = pd.to_datetime(rows["date"]).dt.strftime("%d/%m/%Y")
    rows.to_csv(tmp_path / "zl.csv", index=False)
    message = refusal(tmp_path / "zl.csv")
    assert "DD/MM/YYYY" in message and "YYYY-MM-DD" in message and "sort" not in message


def test_a_mistyped_date_says_so_instead_of_sort(tmp_path, data_dir):
    rows = pd.read_csv(data_dir / ZL, dtype=str)
    day = rows.loc[2000, "date"]
    rows.loc[2000, "date"] = day[:-3] + "-" + day[-1]  # 2012-08-07 -> 2012-08-7
    rows.to_csv(tmp_path / "zl.csv", index=False)
    message = refusal(tmp_path / "zl.csv")
    assert "does not have the shape of the other dates" in message and "row 2002" in message


def test_a_last_line_cut_inside_the_date_says_cut_off(tmp_path, data_dir):
    raw = (data_dir / ZL).read_bytes().rstrip(b"\n")
    (tmp_path / "zl.csv").write_bytes(raw.rsplit(b"\n", 1)[0] + b"\n2023-12-2\n")
    message = refusal(tmp_path / "zl.csv")
    assert "cut off" in message and "sort" not in message


@pytest.mark.parametrize("where", ["grid-file", "flag"])
def test_cbi_grid_n_jobs_zero_is_a_one_line_error(where, tmp_path, specs_dir, capsys):
    grid = tmp_path / "g.yaml"
    doc = {"base": str(specs_dir / "zl_1m_quick.yaml"), "grid": {"window": [20]}}
    if where == "grid-file":
        doc["n_jobs"] = 0
    grid.write_text(yaml.safe_dump(doc))
    argv = [str(grid), "--output", str(tmp_path / "out")] + (["--n-jobs", "0"] if
                                                              where == "flag" else [])
    code = grid_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "n_jobs" in err.replace("-", "_"), err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def _holder(db, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(float(sys.argv[2])); c.close()",
         str(db), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_briefly_held_duckdb_lock_is_waited_for(tmp_path, data_dir, monkeypatch):
    db = tmp_path / "f.duckdb"
    monkeypatch.setattr(duckdb_sink, "LOCK_RETRY_S", 60.0)
    holder = _holder(db, 1.0)  # another writer, done in a second
    try:
        assert DuckDBSink(db).write(real_batch(data_dir)) == 3
    finally:
        holder.kill()
        holder.wait()
    assert len(DuckDBSink(db).read_all()) == 3


def test_a_lock_held_past_the_retry_fails_in_one_line(tmp_path, data_dir, monkeypatch):
    db = tmp_path / "f.duckdb"
    monkeypatch.setattr(duckdb_sink, "LOCK_RETRY_S", 0.5)
    holder = _holder(db, 600)
    try:
        with pytest.raises(SinkError, match="another process holds it open"):
            DuckDBSink(db).write(real_batch(data_dir))
    finally:
        holder.kill()
        holder.wait()


def test_ctrl_c_in_cbi_grid_stops_without_storing_a_half_trained_variant(tmp_path, data_dir):
    """skorch takes a KeyboardInterrupt as "stop training" and returns a half-trained
    net; cbi-grid, like cbi-run, turns SIGINT into its own exception, so the variant
    being trained is neither scored nor stored, and the command exits 130."""
    data = make_small_data(data_dir, tmp_path / "data")
    write_spec(tmp_path / "small.yaml", training={"max_epochs": 400, "patience": 400,
                                                  "batch_size": 128, "device": "cpu"})
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"base": "small.yaml", "grid": {"model.hidden_dim": [8, 16]},
                                    "n_jobs": 1}))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "cbi_toolkit.search.cli", str(grid),
                             "--data-dir", str(data), "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    first = proc.stdout.readline()  # printed once the data is loaded, before any fit
    assert first.startswith("search "), (first, proc.stderr.read() if proc.poll() else "")
    time.sleep(3.0)  # inside the first variant's 400-epoch fit
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "re-run the same command" in stderr
    assert "Traceback" not in stderr
    store = out / "results.jsonl"
    assert not store.exists() or store.read_text().strip() == "", store.read_text()
