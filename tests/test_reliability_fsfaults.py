"""File-system faults (issue 13, class 4), injected for real: a small tmpfs that
fills up while a run trains, a read-only remount mid-run, a sink on a full disk, a
sink folder that is a regular file or read-only. Each ends in one line, the right
status, no temporary file left and the forecasts kept for ``--sink-only``; a sink
that cannot be written is refused before training.

Mounting needs root; where the machine refuses it (detected when mounting) the
mount-based cases skip, the others run."""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from cbi_toolkit.errors import SinkError, StorageError
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.storage import atomic_write_bytes
from tests.reliability_support import (
    cli_args,
    make_small_data,
    only_run,
    real_batch,
    run_cli,
    subprocess_cli,
    wait_for,
    write_spec,
)


@pytest.fixture(scope="module")
def small(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsfaults")
    # more epochs than the other fault tests: the fault lands while training writes
    spec = write_spec(root / "small.yaml", training={
        "max_epochs": 6, "batch_size": 128, "device": "cpu", "patience": 10})
    return make_small_data(data_dir, root / "data"), spec


def _mount(args: list[str]) -> None:
    done = subprocess.run(["mount", *args], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount here ({done.stderr.decode().strip()[:120]})")


@contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True)
    _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def bind(path: Path):
    """``path`` bind-mounted onto itself, so it can be remounted read-only."""
    path.mkdir(parents=True, exist_ok=True)
    _mount(["--bind", str(path), str(path)])
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def read_only(path: Path, on: bool = True) -> None:
    subprocess.run(["mount", "-o", f"remount,bind,{'ro' if on else 'rw'}", str(path)],
                   check=True)


def fill(folder: Path) -> Path:
    """Write a filler file until the file system is full to the byte; return it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        chunk = 1 << 16
        while chunk:
            try:
                fh.write(b"\0" * chunk)
            except OSError:
                chunk //= 2
    return filler


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def assert_one_line(err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[-1], (word, lines[-1])


# -- library level --------------------------------------------------------------------------

def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    with tmpfs(tmp_path / "small", "256k") as disk:
        target = disk / "fold-0.json"
        atomic_write_bytes(target, b"old")
        filler = fill(disk)
        with pytest.raises(StorageError, match="No space left on device"):
            atomic_write_bytes(target, b"x" * (1 << 20))
        assert target.read_bytes() == b"old" and not temp_files(disk)
        filler.unlink()


def test_duckdb_sink_on_a_full_disk_fails_cleanly_and_keeps_the_earlier_batch(tmp_path,
                                                                               data_dir):
    earlier = real_batch(data_dir, 3)
    later = real_batch(data_dir, 4000).assign(run_id="r2")
    with tmpfs(tmp_path / "sinkdisk", "4m") as disk:
        sink = DuckDBSink(disk / "f.duckdb")
        sink.write(earlier)
        filler = fill(disk)
        with pytest.raises(SinkError, match="nothing written"):
            sink.write(later)  # 4,000 rows: the file must grow
        filler.unlink()
        rows = sink.read_all()
        assert list(rows["run_id"]) == ["r1"] * 3


# -- end to end -----------------------------------------------------------------------------

def test_runs_folder_filling_up_mid_run(small, tmp_path):
    """The disk fills while fold 0 trains: one line naming the file and --resume,
    status `failed`, no `.tmp` left; with space again, --resume finishes."""
    data, spec = small
    with tmpfs(tmp_path / "disk", "6m") as disk:
        args = cli_args(spec, data, tmp_path)
        args[args.index("--runs-dir") + 1] = str(disk / "runs")
        proc = subprocess_cli([*args, "-q"])
        wait_for("runs/*/checkpoints/fit-0-net/epoch.pt", disk, proc)
        filler = fill(disk)
        out, err = proc.communicate(timeout=300)
        run_dir = only_run(disk)
        assert proc.returncode == 2, err
        assert_one_line(err, "No space left on device", f"--resume {run_dir}")
        assert status(run_dir)["state"] == "failed"
        assert not temp_files(disk), temp_files(disk)
        assert not (tmp_path / "f.duckdb").exists()
        filler.unlink()
        proc = subprocess_cli(["--resume", str(run_dir), "--data-dir", str(data), "-q"])
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert status(run_dir)["state"] == "done"
        assert len(DuckDBSink(tmp_path / "f.duckdb").read_all()) == 1


def test_read_only_remount_mid_run(small, tmp_path):
    data, spec = small
    with bind(tmp_path / "rw") as folder:
        args = cli_args(spec, data, tmp_path)
        args[args.index("--runs-dir") + 1] = str(folder / "runs")
        proc = subprocess_cli([*args, "-q"])
        wait_for("runs/*/checkpoints/fit-0-net/epoch.pt", folder, proc)
        read_only(folder)
        try:
            out, err = proc.communicate(timeout=300)
        finally:
            read_only(folder, on=False)
        run_dir = only_run(folder)
        assert proc.returncode == 2, err
        assert_one_line(err, "Read-only file system", "status.json could not be updated")
        assert status(run_dir)["state"] == "running"  # nothing could be written, not even this
        proc = subprocess_cli(["--resume", str(run_dir), "--data-dir", str(data), "-q"])
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert status(run_dir)["state"] == "done" and not temp_files(folder)


def test_sink_on_a_disk_that_fills_during_training(small, tmp_path):
    """The sink's disk had room before training and is full when the forecasts come:
    status `sink_failed`, forecasts kept, and --sink-only writes them once freed."""
    data, spec = small
    with tmpfs(tmp_path / "sinkdisk", "3m") as disk:
        db = disk / "f.duckdb"
        proc = subprocess_cli([*cli_args(spec, data, tmp_path, sink=db), "-q"])
        wait_for("runs/*/checkpoints/fit-0-net/epoch.pt", tmp_path, proc)
        filler = fill(disk)
        out, err = proc.communicate(timeout=300)
        run_dir = only_run(tmp_path)
        assert proc.returncode == 2, err
        assert_one_line(err, "duckdb sink", f"--sink-only {run_dir}")
        assert status(run_dir)["state"] == "sink_failed"
        assert (run_dir / "forecasts.csv").is_file()
        filler.unlink()
        assert run_cli(["--sink-only", str(run_dir)]) == 0
        assert run_cli(["--sink-only", str(run_dir)]) == 0
        assert len(DuckDBSink(db).read_all()) == 1
        assert not [p for p in disk.iterdir() if p.name.startswith(".cbi-sink-probe")]


@pytest.mark.parametrize("where", ["parent-is-a-file", "path-is-a-folder", "read-only-fs"])
def test_unwritable_sink_is_refused_before_training(small, tmp_path, capsys, where):
    data, spec = small
    if where == "parent-is-a-file":
        (tmp_path / "afile").write_text("not a folder")
        db, ctx = tmp_path / "afile" / "f.duckdb", None
    elif where == "path-is-a-folder":
        (tmp_path / "f.duckdb").mkdir()
        db, ctx = tmp_path / "f.duckdb", None
    else:
        ctx = bind(tmp_path / "ro")
        db = tmp_path / "ro" / "f.duckdb"
    if ctx is not None:
        ctx.__enter__()
        read_only(tmp_path / "ro")
    try:
        code = run_cli([*cli_args(spec, data, tmp_path, sink=db), "-q"])
    finally:
        if ctx is not None:
            read_only(tmp_path / "ro", on=False)
            ctx.__exit__(None, None, None)
    out = capsys.readouterr()
    assert code == 2, out
    assert_one_line(out.err, "duckdb sink", str(db))
    assert not (tmp_path / "runs").exists(), "training started before the sink was checked"
