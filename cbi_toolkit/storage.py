"""Writing files so that a kill, a full disk or a read-only folder never leaves half a
file: every artifact of a run, checkpoint and cache entry goes through `atomic_write_bytes`
(a temporary name in the same folder, fsync, rename over the target). Also the files'
sha256, which manifests and checksums record."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from cbi_toolkit.errors import StorageError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary name and rename it over ``path``. On failure
    (a full or read-only disk) the temporary file is removed, ``path`` is as it was,
    and a one-line StorageError names the file. The temporary name (``.name.PID.tmp``)
    is the writer's own, so processes writing the same file do not mix their bytes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise storage_error(path, exc) from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def storage_error(path: Path, exc: OSError) -> StorageError:
    """The one-line error for a write the file system refused."""
    why = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    return StorageError(f"cannot write {path} ({why}); free space or make the folder "
                        "writable")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def json_sha256(doc) -> str:
    """Hex sha256 of a JSON-able document, keys sorted (so equal documents hash equal)."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
