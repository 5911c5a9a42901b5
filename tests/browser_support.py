"""Fixtures for the dashboard tests: a DuckDB warehouse filled by real quick runs, the
dashboard served on a local port, and a real headless Chromium (Debian's ``chromium``
and ``chromium-driver`` packages) driven through Selenium."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,2400"]
#: A tiny model and two folds: a real run of the quick spec on the snapshot in about a
#: minute. No gate, so the run always writes its rows (the gate has its own tests).
QUICK = ["window=20", "model.hidden_dim=8", "model.num_heads=2", "model.num_layers=1",
         "training.max_epochs=1", "training.batch_size=128", "validation.n_splits=2",
         "validation.test_start=2023-01-03", "validation.test_size=126",
         "gate.max_mase=null", "gate.worse_p=null", "gate.coverage_80=null", "gate.coverage_95=null"]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s; reaps it either way."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def chromium() -> tuple[Path, Path]:
    """(chromium, chromedriver); installed with apt-get when missing and running as root."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()) and os.geteuid() == 0 \
            and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"],
                       check=False, env=env)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("headless Chromium is missing: run `sudo apt-get install -y chromium "
                    "chromium-driver`", pytrace=False)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture
def browser(chromium, tmp_path):
    """A fresh headless Chromium (own profile) that records console and network events."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium[0])
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(chromium[1])), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def quick_run(sink: Path, runs: Path) -> int:
    from cbi_toolkit.cli import main

    args = [str(ROOT / "specs" / "zl_1m_quick.yaml"), "--runs-dir", str(runs), "-q",
            "--sink", f"duckdb://{sink}"]
    for value in QUICK:
        args += ["--set", value]
    return main(args)


def row_counts(sink: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect(str(sink), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("predictions", "actuals", "runs")}
    finally:
        con.close()


@pytest.fixture(scope="session")
def quick_sink(tmp_path_factory) -> dict:
    """A DuckDB warehouse after two identical quick runs of specs/zl_1m_quick.yaml, with the
    row counts after each and the run folders."""
    tmp = tmp_path_factory.mktemp("quick_sink")
    sink, runs = tmp / "forecasts.duckdb", tmp / "runs"
    assert quick_run(sink, runs) == 0
    first = row_counts(sink)
    assert quick_run(sink, runs) == 0
    return {"sink": sink, "runs": sorted(runs.iterdir()), "first": first,
            "second": row_counts(sink)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboard(sink_url: str, log: Path) -> Iterator[str]:
    """``cbi-dashboard --sink sink_url`` on a free local port; yields its URL."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cbi_toolkit.dashboard.cli", "--sink", sink_url,
             "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"cbi-dashboard did not start:\n{log.read_text()[-2000:]}",
                                    pytrace=False)
                    time.sleep(0.3)
            yield url
        finally:
            stop_process(proc)
