"""The resume store: one JSON line per finished variant, skipped on re-run."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"
STORE_VERSION = 1


# ---------------------------------------------------------------------------
# the resume store

def load_store(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of ``results.jsonl`` by key; a line cut short by a kill is skipped."""
    rows: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return rows
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d: unreadable (interrupted write?), ignored", path, n)
            continue
        if row.get("store_version") == STORE_VERSION:
            rows[row["key"]] = row
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (after a newline if a killed write left the last line open)."""
    with open(path, "a+b") as fh:
        fh.seek(0, 2)
        if fh.tell():
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(row, default=_json_default) + "\n").encode())
        fh.flush()
        with contextlib.suppress(OSError):
            import os

            os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
