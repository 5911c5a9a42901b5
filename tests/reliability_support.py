"""Helpers for the reliability and security tests: a small real-data directory
(the newest ZL rows of the snapshot and one real FRED driver) and a tiny spec,
so each end-to-end run stays within seconds on two CPU cores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from cbi_toolkit.cli import main

ZL = "zl/zl_tradingview_ZL1_daily.csv"
DGS10 = "drivers/fred_DGS10.csv"
ROWS = 700  # newest real ZL sessions: 2021-03 .. 2023-12

SMALL_SPEC = {
    "name": "small",
    "target": "zl",
    "data": [
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price"},
        {"kind": "fred", "file": {"path": DGS10}, "columns": {"DGS10": "dgs10"}, "role": "rate",
         "ffill_limit": 5},
    ],
    "features": [{"returns": {"lags": [1, 5, 21]}}, {"volatility": {"windows": [21]}},
                 {"drivers": {"lags": [1, 5]}}],
    "horizons": ["1w"],
    "window": 20,
    "model": {"hidden_dim": 8, "num_heads": 2, "num_layers": 1},
    # in this process: the fault tests stop it inside a given fold (test_parallel_fits.py
    # interrupts a run whose fits run in worker processes)
    "training": {"max_epochs": 2, "batch_size": 128, "device": "cpu", "patience": 5, "n_jobs": 1},
    "validation": {"n_splits": 2},
    "gate": {"max_mase": None, "worse_p": None, "coverage_80": None, "coverage_95": None},
}


def make_small_data(real: Path, out: Path) -> Path:
    """``out`` holds the newest ROWS real ZL rows and the real DGS10 file, unchanged."""
    (out / "zl").mkdir(parents=True)
    (out / "drivers").mkdir()
    rows = pd.read_csv(real / ZL, dtype=str)
    rows.tail(ROWS).to_csv(out / ZL, index=False)
    shutil.copy(real / DGS10, out / DGS10)
    return out


def write_spec(path: Path, **changes) -> Path:
    doc = yaml.safe_load(yaml.safe_dump(SMALL_SPEC))
    doc.update(changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_args(spec: Path, data: Path, root: Path, sink: Path | None = None) -> list[str]:
    return [str(spec), "--data-dir", str(data), "--runs-dir", str(root / "runs"),
            "--sink", f"duckdb://{sink or root / 'f.duckdb'}"]


def run_cli(args: list[str]) -> int:
    return main(args)


def subprocess_cli(args: list[str], env: dict | None = None, **kw) -> subprocess.Popen:
    # one intra-op thread: on a busy two-core machine torch's spinning threads make a
    # tiny net several times slower; every run compared with another uses the same setting
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "cbi_toolkit.cli", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(pattern: str, root: Path, proc: subprocess.Popen, timeout: float = 240) -> Path:
    """The first path under ``root`` matching ``pattern``; fails if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended before {pattern} appeared:\n{out}\n{err}")
        time.sleep(0.005)
    proc.kill()
    raise AssertionError(f"{pattern} did not appear in {timeout}s")


def only_run(root: Path) -> Path:
    runs = sorted((root / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def comparable_forecasts(run_dir: Path) -> pd.DataFrame:
    """forecasts.csv without the columns that name the run or its wall-clock time."""
    return pd.read_csv(run_dir / "forecasts.csv").drop(columns=["run_id", "created_at"])


def comparable_metrics(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=["fit_seconds"])


def real_batch(data_dir: Path, rows: int = 3) -> pd.DataFrame:
    """Forecast-shaped rows from the newest real ZL closes (the sink's schema, not a forecast)."""
    zl = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv").tail(rows)
    return pd.DataFrame({
        "series": "zl", "kind": "forecast",
        "origin_date": zl["date"], "horizon": "1w", "target_date": zl["date"],
        "predicted_price": zl["close"], "lower_80": zl["low"], "upper_80": zl["high"],
        "lower_95": zl["low"], "upper_95": zl["high"], "sigma": 0.02, "model_version": "v",
        "run_id": "r1", "created_at": pd.Timestamp("2024-01-02", tz="UTC")})
