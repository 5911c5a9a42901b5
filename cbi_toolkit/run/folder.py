"""The run folder: making it (``runs/<run_id>/``), its ``status.json``, its
``invocation.json`` (where the run writes) and the model version it stamps on forecasts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from cbi_toolkit.errors import ArtifactError, CbiError
from cbi_toolkit.spec import Spec, load_spec, spec_fingerprint
from cbi_toolkit.storage import atomic_write_text, json_sha256

log = logging.getLogger(__name__)

STATUS = "status.json"
INVOCATION = "invocation.json"


def spec_digest(spec: Spec) -> str:
    """The spec's fingerprint (less where the run writes): a resumed run must match it."""
    return spec_fingerprint(spec)


def model_version(spec: Spec) -> str:
    """Stable for the same spec: re-running it upserts instead of adding rows."""
    return f"{spec.name}-{spec_digest(spec)[:12]}"


def set_status(run_dir: Path, state: str, **extra) -> bool:
    """``status.json``: running, interrupted, failed, gate_failed, sink_failed or done.

    Never raises: on a full disk the atomic rename fails, so the file is rewritten in
    place (its old blocks are freed first); on a read-only one it stays as it was.
    Returns whether the status was written."""
    text = json.dumps({"state": state, "updated": pd.Timestamp.now(tz="UTC").isoformat(),
                       **extra})
    try:
        atomic_write_text(run_dir / STATUS, text)
        return True
    except CbiError:
        pass
    try:
        with open(run_dir / STATUS, "r+b") as fh:
            fh.truncate(0)
            fh.write(text.encode())
        return True
    except OSError:
        log.warning("%s: could not record status %s", run_dir / STATUS, state)
        return False


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATUS).read_text())
    except (OSError, ValueError):
        return {}


def remove_temp_files(run_dir: Path) -> None:
    """Temporary files of interrupted writes (``.name.PID.tmp``), which would keep a full
    disk full and make ``--resume`` refuse."""
    for tmp in run_dir.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def new_run_dir(spec: Spec, runs_dir: str | None) -> tuple[str, Path]:
    root = Path(runs_dir or spec.runs_dir)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")
    run_id = f"{spec.name}-{stamp}"
    path = root / run_id
    n = 1
    while path.exists():
        n += 1
        path = root / f"{run_id}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise CbiError(f"cannot create the run folder {path} ({exc.strerror or exc}); choose "
                       "another --runs-dir or free space") from None
    check_writable(path, remove_on_failure=True)
    return path.name, path


def check_writable(path: Path, remove_on_failure: bool = False, size: int = 1 << 20) -> None:
    """Write and remove a 1 MiB probe file; CbiError if the folder is read-only or full."""
    probe = path / ".write_test"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * size)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        if remove_on_failure:
            shutil.rmtree(path, ignore_errors=True)
        raise CbiError(f"cannot write the run folder {path} ({exc.strerror or exc}); choose "
                       "another --runs-dir or free space") from None


def write_invocation(run_dir: Path, sink: str | None, digest: str) -> None:
    """Record where the run writes, so ``--resume`` and ``--sink-only`` write there too."""
    invocation = {"sink": sink, "spec": digest}
    atomic_write_text(run_dir / INVOCATION,
                      json.dumps({**invocation, "checksum": json_sha256(invocation)}))


def read_invocation(path: Path, spec: Spec) -> dict:
    """``invocation.json``, checked: a cut or edited one would send ``--sink-only`` to
    the spec's default sink instead of the one the run was started with."""
    file = path / INVOCATION
    if not file.exists():
        return {}
    try:
        doc = json.loads(file.read_text())
        checksum = doc.pop("checksum", None)
        if not isinstance(doc, dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise ArtifactError(f"{file}: unreadable (cut off or edited); it records where the "
                            "run writes: pass --sink to say where, or restore it") from None
    if checksum is not None and checksum != json_sha256(doc):
        raise ArtifactError(f"{file}: its checksum differs from its content (edited); pass "
                            "--sink to say where to write, or restore it")
    if doc.get("spec") not in (None, spec_digest(spec)):
        raise ArtifactError(f"{path / 'spec.yaml'}: changed since the run started, or the run "
                            f"was made by a cbi_toolkit from before 2026-12-02 (its digest differs "
                            f"from {file}); restore it, or start a new run")
    return doc


def open_run_folder(value: str | Path) -> tuple[Path, Spec, dict]:
    """An existing run folder: its path, its spec and its invocation record."""
    path = Path(value)
    if not (path / "spec.yaml").is_file():
        raise ArtifactError(f"{path}: no spec.yaml; is this a run folder (runs/<run_id>)?")
    spec = load_spec(path / "spec.yaml")
    return path, spec, read_invocation(path, spec)
