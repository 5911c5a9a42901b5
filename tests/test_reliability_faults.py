"""Faults: a run killed (SIGKILL) or interrupted (SIGINT) part-way resumes with
`cbi-run --resume` to the same result as an uninterrupted run; a locked or
failing sink keeps the forecasts in the run folder for `cbi-run --sink-only`
and never leaves a partial or duplicated batch; non-finite training stops with
its cause; an unwritable or full run folder is refused before training.

The runs are real: the newest 900 ZL sessions of the snapshot and the real
DGS10 file, a tiny net, CPU, seed 0 (tests/reliability_support.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from cbi_toolkit.sinks.duckdb import DuckDBSink
from tests.reliability_support import (
    cli_args,
    comparable_forecasts,
    comparable_metrics,
    make_small_data,
    only_run,
    run_cli,
    subprocess_cli,
    wait_for,
    write_spec,
)

FRED_SECRET = "cbi-planted-fred-key-5b1e9d27c04a"
GCP_SECRET = "cbi-planted-gcp-private-key-8e3f6a1d"


@pytest.fixture(scope="module")
def small(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = make_small_data(data_dir, root / "data")
    creds = root / "service-account.json"
    creds.write_text(json.dumps({"type": "service_account", "private_key": GCP_SECRET}))
    env = {"FRED_API_KEY": FRED_SECRET, "GOOGLE_APPLICATION_CREDENTIALS": str(creds)}
    return data, write_spec(root / "small.yaml"), env


def hold_lock(db: Path) -> subprocess.Popen:
    """A second process that opens ``db`` read-write and keeps it (DuckDB's file lock)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "c.execute('CREATE TABLE IF NOT EXISTS other (x INTEGER)'); print('ready', flush=True); "
         "time.sleep(600)", str(db)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


@pytest.fixture(scope="module")
def reference(small, tmp_path_factory):
    """An uninterrupted run whose DuckDB sink is locked by another process."""
    data, spec, env = small
    root = tmp_path_factory.mktemp("reference")
    db = root / "locked.duckdb"
    holder = hold_lock(db)
    try:
        proc = subprocess_cli([*cli_args(spec, data, root, sink=db), "-q"], env=env)
        out, err = proc.communicate(timeout=300)
    finally:
        holder.kill()
        holder.wait()
    return root, only_run(root), proc.returncode, out, err, db


def secrets_in(paths: list[Path], texts: list[str] = ()) -> tuple[int, list[str]]:
    """(files scanned, where a planted secret was found)."""
    found, n = [], 0
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            n += 1
            blob = f.read_bytes()
            found += [f"{f}: {s}" for s in (FRED_SECRET, GCP_SECRET) if s.encode() in blob]
    for text in texts:
        found += [f"output: {s}" for s in (FRED_SECRET, GCP_SECRET) if s in text]
    return n, found


def assert_same_result(run_dir: Path, ref_dir: Path) -> None:
    pd.testing.assert_frame_equal(comparable_forecasts(run_dir), comparable_forecasts(ref_dir))
    pd.testing.assert_frame_equal(comparable_metrics(run_dir), comparable_metrics(ref_dir))
    assert (run_dir / "oos_predictions.csv").read_bytes() == \
        (ref_dir / "oos_predictions.csv").read_bytes()


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


# -- sink faults --------------------------------------------------------------------------

def test_locked_sink_keeps_forecasts_and_sink_only_writes_them_once(reference, capsys):
    root, run_dir, code, out, err, db = reference
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "lock" in lines[0] and f"cbi-run --sink-only {run_dir}" in lines[0]
    assert (run_dir / "forecasts.csv").is_file() and (run_dir / "model/manifest.json").is_file()
    assert status(run_dir)["state"] == "sink_failed"
    con = duckdb.connect(str(db), read_only=True)
    assert [t for (t,) in con.execute("SHOW TABLES").fetchall()] == ["other"]  # nothing written
    con.close()
    # the lock is gone: write later, from the run folder (the sink comes from the run's --sink)
    assert run_cli(["--sink-only", str(run_dir)]) == 0
    assert run_cli(["--sink-only", str(run_dir)]) == 0     # again: an upsert, no duplicate
    rows = DuckDBSink(db).read_all()
    forecasts = pd.read_csv(run_dir / "forecasts.csv")
    assert len(rows) == len(forecasts) == 1
    assert rows.iloc[0]["run_id"] == run_dir.name
    assert rows.iloc[0]["predicted_price"] == pytest.approx(forecasts["predicted_price"][0])
    assert status(run_dir)["state"] == "done"
    capsys.readouterr()


def test_sink_failing_half_way_leaves_the_table_unchanged(reference, tmp_path, capsys):
    """The insert succeeds, then the view cannot be made (its name is a table):
    the transaction rolls back; the earlier batch stays as it was."""
    _, ref_dir, *_ = reference
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    db = tmp_path / "s.duckdb"
    earlier = pd.read_csv(run_dir / "forecasts.csv")
    earlier["predicted_price"] += 1.0
    earlier["run_id"] = "earlier"
    DuckDBSink(db).write(earlier)
    con = duckdb.connect(str(db))
    con.execute("DROP VIEW latest_predictions")
    con.execute("CREATE TABLE latest_predictions (x INTEGER)")
    con.close()
    capsys.readouterr()
    assert run_cli(["--sink-only", str(run_dir), "--sink", f"duckdb://{db}"]) == 2
    err = capsys.readouterr().err
    assert "nothing written" in err and f"--sink-only {run_dir}" in err
    rows = DuckDBSink(db).read_all()
    assert list(rows["run_id"]) == ["earlier"]
    assert rows["predicted_price"].tolist() == earlier["predicted_price"].tolist()
    assert status(run_dir)["state"] == "sink_failed"


def test_sink_only_refuses_an_unfinished_run(reference, tmp_path, capsys):
    _, ref_dir, *_ = reference
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    (run_dir / "forecasts.csv").unlink()
    assert run_cli(["--sink-only", str(run_dir)]) == 2
    assert f"--resume {run_dir}" in capsys.readouterr().err


# -- interrupted training -------------------------------------------------------------------

def test_interrupted_and_killed_run_resumes_to_the_same_result(small, reference, tmp_path):
    """Ctrl-C (SIGINT) inside fold 1's fit, --resume, then SIGKILL of the resumed
    process inside fold 2's fit, --resume again: the result equals the
    uninterrupted run's, the sink holds one row per horizon, and no artifact,
    checkpoint or output holds a planted credential.

    skorch takes a KeyboardInterrupt as "stop training" and would carry on with
    a half-trained net, so the run turns SIGINT into its own exception."""
    data, spec, env = small
    _, ref_dir, *_ = reference
    proc = subprocess_cli([*cli_args(spec, data, tmp_path), "-q"], env=env)
    wait_for("runs/*/checkpoints/fit-0-net/epoch.pt", tmp_path, proc)
    proc.send_signal(signal.SIGINT)
    out1, err1 = proc.communicate(timeout=120)
    run_dir = only_run(tmp_path)
    assert proc.returncode == 130, err1
    assert f"cbi-run --resume {run_dir}" in err1 and "Traceback" not in err1
    assert status(run_dir)["state"] == "interrupted"
    assert not (run_dir / "forecasts.csv").exists() and not (tmp_path / "f.duckdb").exists()
    _, found = secrets_in([run_dir])
    assert not found, found

    proc = subprocess_cli(["--resume", str(run_dir), "--data-dir", str(data)], env=env)
    wait_for("runs/*/checkpoints/fit-1-net/epoch.pt", tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    out2, err2 = proc.communicate()
    assert "resuming the fit from its checkpoint after epoch 1" in err2
    assert status(run_dir)["state"] == "running"      # killed: it never got to say more
    assert (run_dir / "checkpoints/fold-0.json").is_file()
    assert not (run_dir / "forecasts.csv").exists()
    _, found = secrets_in([run_dir])
    assert not found, found

    proc = subprocess_cli(["--resume", str(run_dir), "--data-dir", str(data)], env=env)
    out3, err3 = proc.communicate(timeout=300)
    assert proc.returncode == 0, err3
    assert "fold 1/2: loaded from its checkpoint" in err3
    assert "resuming the fit from its checkpoint after epoch 1" in err3
    assert_same_result(run_dir, ref_dir)
    assert status(run_dir)["state"] == "done"
    assert len(DuckDBSink(tmp_path / "f.duckdb").read_all()) == 1
    assert not list((run_dir / "checkpoints").glob("fit-*"))  # per-fit checkpoints cleaned up
    scanned, found = secrets_in([run_dir, tmp_path / "f.duckdb"],
                                [out1, err1, out2, err2, out3, err3])
    assert scanned >= 15 and not found, found
    print(f"credential scan: {scanned} files and 6 outputs, no planted secret")
    # a finished run has nothing to resume
    assert run_cli(["--resume", str(run_dir), "--data-dir", str(data)]) == 0


# -- non-finite values, unwritable or full run folder --------------------------------------

def test_diverging_training_stops_with_its_cause(small, tmp_path, capsys):
    data, spec, _ = small
    code = run_cli([*cli_args(spec, data, tmp_path), "-q", "--set", "training.lr=1e30",
                    "--set", "training.warmup=0", "--set", "training.grad_clip=1e30"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "training loss became" in err and "in epoch 1" in err and "Traceback" not in err
    run_dir = only_run(tmp_path)
    assert status(run_dir)["state"] == "failed" and not (run_dir / "forecasts.csv").exists()
    assert not (tmp_path / "f.duckdb").exists()


def _full_tmpfs(path: Path) -> Path:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    return path


@pytest.mark.parametrize("where", ["under-a-file", "proc", "full-disk"])
def test_unwritable_run_folder_is_refused_before_training(small, tmp_path, capsys, where):
    data, spec, _ = small
    if where == "under-a-file":
        (tmp_path / "afile").write_text("not a folder")
        runs = tmp_path / "afile" / "runs"
    elif where == "proc":
        runs = Path("/proc/cbi-runs")
    else:
        runs = _full_tmpfs(tmp_path / "full") / "runs"
    try:
        args = cli_args(spec, data, tmp_path)
        args[args.index("--runs-dir") + 1] = str(runs)
        code = run_cli([*args, "-q"])
        out = capsys.readouterr()
        assert code == 2, out
        assert "run folder" in out.err and "--runs-dir" in out.err and "Traceback" not in out.err
        assert "final fit" not in out.out and not (tmp_path / "f.duckdb").exists()
        if where == "full-disk":
            assert "No space left" in out.err
            assert not any(runs.rglob("*.json")), "a half-made run folder was left"
    finally:
        if where == "full-disk":
            subprocess.run(["umount", str(tmp_path / "full")], check=False)


def test_bigquery_down_keeps_forecasts_for_sink_only(reference, tmp_path, capsys):
    """The same path for BigQuery: an endpoint that refuses connections (a closed
    local port) fails within its retry deadline and names --sink-only."""
    import socket

    _, ref_dir, *_ = reference
    run_dir = tmp_path / ref_dir.name
    shutil.copytree(ref_dir, run_dir)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"bigquery://cbi-test/down?api_endpoint=http://127.0.0.1:{port}&retry_deadline_s=2"
    capsys.readouterr()
    assert run_cli(["--sink-only", str(run_dir), "--sink", url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bigquery sink" in err[0] and f"--sink-only {run_dir}" in err[0]
    assert status(run_dir)["state"] == "sink_failed"
    assert (run_dir / "forecasts.csv").is_file()


@pytest.mark.parametrize("validation", [{"n_splits": 3, "refit_every": 2},
                                        {"n_splits": 3, "warm_start": True, "warm_epochs": 1}])
def test_resumed_backtest_with_refit_every_or_warm_start_is_unchanged(small, tmp_path,
                                                                       validation):
    """Folds that reuse (refit_every) or continue from (warm_start) an earlier fold's
    model: a backtest resumed after fold 0 gives the same predictions."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # speed on a busy 2-core machine; both backtests use it
    try:
        _compare_resumed_backtest(small, tmp_path, validation)
    finally:
        torch.set_num_threads(threads)


def _compare_resumed_backtest(small, tmp_path, validation):
    from cbi_toolkit.backtest import backtest, labelled_samples
    from cbi_toolkit.pipeline import build_baselines, build_pipeline
    from cbi_toolkit.run.prepare import prepare
    from cbi_toolkit.spec import load_spec

    data, spec_path, _ = small
    spec = load_spec(spec_path, overrides={"validation": validation,
                                           "training.max_epochs": 1})
    _, samples = prepare(spec, str(data))
    labelled = labelled_samples(samples)

    def models():
        return {"model": build_pipeline(spec, verbose=0), **build_baselines()}

    full, _, _ = backtest(spec, labelled, models(), checkpoint_dir=tmp_path / "a")
    for k in (1, 2):                                    # killed during fold 1 (reuses fold 0's)
        (tmp_path / "a" / f"fold-{k}.json").unlink()
    resumed, _, _ = backtest(spec, labelled, models(), checkpoint_dir=tmp_path / "a")
    assert len(full) == len(resumed)
    for a, b in zip(full, resumed, strict=True):
        assert (a.model, a.fold, a.horizon) == (b.model, b.fold, b.horizon)
        np.testing.assert_array_equal(a.mu, b.mu)
        np.testing.assert_array_equal(a.sigma, b.sigma)
