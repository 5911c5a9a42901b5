"""Shared fixtures. Market data always comes from the real snapshot in ../shared/data."""

from __future__ import annotations

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
