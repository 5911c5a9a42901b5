"""Shared fixtures. Market data always comes from the real snapshot in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cbi_toolkit.data import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = resolve_data_dir(start=ROOT)
    assert path is not None and (path / "zl").is_dir(), (
        "the real data snapshot is missing: set CBI_DATA_DIR or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def specs_dir() -> Path:
    return SPECS


@pytest.fixture(scope="session")
def tiny_spec():
    """`zl_1m_quick` with 20-session windows, for tiny nets."""
    from cbi_toolkit.spec import load_spec

    return load_spec(SPECS / "zl_1m_quick.yaml", overrides={"window": 20})


@pytest.fixture(scope="session")
def tiny_samples(tiny_spec, data_dir):
    """The last 300 labelled real ZL windows of `tiny_spec`."""
    import numpy as np

    from cbi_toolkit.dataset import load_samples
    from cbi_toolkit.sources.base import SourceContext

    _, samples = load_samples(tiny_spec, SourceContext(data_dir=data_dir))
    return samples.subset(np.flatnonzero(samples.labelled)[-300:])


# -- live sources: a local HTTP server stands in for the providers ---------------

@pytest.fixture
def live(httpserver, tmp_path, monkeypatch):
    """Point every live source at the local ``httpserver`` (paths /yahoo, /fred,
    /fred-api, /cftc, /ghcnd, /ghcnd-csv), use a fresh cache, retry without waiting."""
    from types import SimpleNamespace

    from cbi_toolkit.sources.base import SourceContext

    for env, path in [("CBI_YAHOO_BASE_URL", "/yahoo"), ("CBI_FRED_CSV_URL", "/fred"),
                      ("CBI_FRED_API_URL", "/fred-api"), ("CBI_CFTC_BASE_URL", "/cftc"),
                      ("CBI_GHCND_DLY_URL", "/ghcnd"), ("CBI_GHCND_CSV_URL", "/ghcnd-csv")]:
        monkeypatch.setenv(env, httpserver.url_for(path))
    monkeypatch.setenv("CBI_HTTP_BACKOFF", "0")
    monkeypatch.setenv("CBI_HTTP_RETRIES", "3")
    monkeypatch.setenv("CBI_HTTP_TIMEOUT", "10")
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("CBI_CACHE_DIR", str(cache))
    return SimpleNamespace(server=httpserver, cache=cache, ctx=SourceContext(cache_dir=cache))


@pytest.fixture
def truncating_server():
    """A server that announces ``Content-Length`` of the whole payload, sends only
    the first ``cut`` bytes and closes: a real partial download. Returns ``serve(payload, cut) -> url``."""
    import http.server
    import threading

    servers = []

    def serve(payload: bytes, cut: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload[:cut])
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield serve
    for srv in servers:
        srv.shutdown()
        srv.server_close()


# -- BigQuery: a real BigQuery REST server (bqemulator) in its own venv ----------

BQ_PROJECT = "cbi-test"
#: The emulator's own environment (its pins clash with google-cloud-bigquery's).
BQEMU_PINS = ["bqemulator==1.4.0", "duckdb>=1.5,<3", "numpy"]
BQEMU_READY = ".cbi-bqemu-ready"


def bqemu_python() -> Path:
    """The python of the emulator's venv (``$CBI_BQEMU_VENV``, else ``.venv-bqemu``), made
    and cached on first use; a file lock keeps parallel pytest workers from racing."""
    import subprocess
    import sys

    from filelock import FileLock

    venv = Path(os.environ.get("CBI_BQEMU_VENV") or ROOT / ".venv-bqemu")
    python = venv / "bin" / "python"

    def ready() -> bool:
        if (venv / BQEMU_READY).is_file():
            return True
        return python.exists() and subprocess.run(
            [str(python), "-c", "import bqemulator, duckdb"], capture_output=True).returncode == 0

    if ready():
        return python
    with FileLock(str(venv.parent / f"{venv.name}.lock")):
        if ready():  # another worker made it while this one waited
            return python
        install = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                   "--retries", "1", "--timeout", "20", *BQEMU_PINS]
        clear = [] if venv.is_symlink() else ["--clear"]  # a shared venv is repaired, not wiped
        for cmd in ([sys.executable, "-m", "venv", *clear, str(venv)], install):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                pytest.fail(f"cannot create the BigQuery emulator's venv {venv} ({last}); reach the "
                            f"package index (or set PIP_INDEX_URL) and rerun pytest, or make it by "
                            f"hand: python -m venv {venv} && {python} -m pip install "
                            + " ".join(f"'{p}'" for p in BQEMU_PINS), pytrace=False)
        (venv / BQEMU_READY).write_text(" ".join(BQEMU_PINS) + "\n")
    return python


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    """Start ``bqemulator`` (from its venv, made on first use) on a free port for the
    session; yield its endpoint URL; stop it with SIGTERM."""
    import socket
    import subprocess
    import time
    import urllib.request

    from tests.browser_support import stop_process

    python = bqemu_python()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = tmp_path_factory.mktemp("bqemu") / "emulator.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(python), str(ROOT / "tests" / "bq_emulator_launcher.py"), "start",
         "--rest-port", str(port), "--grpc-port", "0", "--project", BQ_PROJECT],
        stdout=log, stderr=subprocess.STDOUT, cwd=log_path.parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/bigquery/v2/projects/{BQ_PROJECT}/datasets",
                                        timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"bqemulator did not start; its log:\n"
                            f"{log_path.read_text(errors='replace')[-3000:]}", pytrace=False)
            time.sleep(0.2)
    yield url
    stop_process(proc)
    log.close()


# -- the dashboard: a warehouse from real quick runs, headless Chromium ----------

from tests.browser_support import browser, chromium, quick_sink  # noqa: E402, F401
