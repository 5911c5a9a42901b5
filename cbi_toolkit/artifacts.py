"""Saving and loading a fitted pipeline and its run folder, without pickle.

``model/`` holds the regressor (safetensors weights + JSON, see
`save_regressor`), the scaler's statistics as JSON (a pooled pipeline's: one
``members`` entry per commodity) and a manifest with the sha256 of every file,
written last; loading refuses any file whose checksum differs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.features.pooled import PooledWindowScaler
from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.persistence import load_regressor, save_regressor
from cbi_toolkit.storage import atomic_write_text, file_sha256

MANIFEST = "manifest.json"


def save_pipeline(pipe: Pipeline, directory: Path, meta: dict[str, Any]) -> Path:
    """Write the fitted scaler + regressor and ``meta`` (JSON-able) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    scaler = pipe.named_steps["scale"]
    if isinstance(scaler, PooledWindowScaler):
        stats = {"clip": scaler.clip, "members": [_stats(s) for s in scaler.scalers_]}
    else:
        stats = {"clip": scaler.clip, **_stats(scaler)}
    atomic_write_text(directory / "scaler.json", json.dumps(stats))
    save_regressor(pipe.named_steps["net"], directory / "net")
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=2, default=str))
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    manifest = {str(p.relative_to(directory)): file_sha256(p) for p in files}
    atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=2))  # last: it vouches
    return directory


def _stats(scaler: WindowScaler) -> dict[str, list[float]]:
    return {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()}


def _scaler(clip: float | None, stats: dict) -> WindowScaler:
    scaler = WindowScaler(clip=clip)
    scaler.mean_ = np.asarray(stats["mean"], dtype=float)
    scaler.scale_ = np.asarray(stats["scale"], dtype=float)
    scaler.n_features_in_ = len(scaler.mean_)
    return scaler


def load_pipeline(directory: Path, device: str | None = "cpu") -> tuple[Pipeline, dict[str, Any]]:
    """The fitted pipeline and its meta; refuses missing or altered files."""
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a saved model (or incomplete)")
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{manifest_path}: unreadable ({str(exc)[:80]}; cut off or "
                            "edited); retrain or restore it") from None
    for name, digest in manifest.items():
        path = directory / name
        if not path.is_file():
            raise ArtifactError(f"{path}: missing from the saved model")
        if file_sha256(path) != digest:
            raise ArtifactError(f"{path}: checksum differs from {manifest_path}; the file was "
                                "changed or corrupted; retrain or restore it")
    try:
        stats = json.loads((directory / "scaler.json").read_text())
        if "members" in stats:
            scaler = PooledWindowScaler(clip=stats["clip"])
            scaler.scalers_ = [_scaler(stats["clip"], m) for m in stats["members"]]
            scaler.n_commodities_ = len(scaler.scalers_)
        else:
            scaler = _scaler(stats["clip"], stats)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{directory / 'scaler.json'}: unreadable ({exc}); retrain or "
                            "restore it") from None
    try:
        net = load_regressor(directory / "net", device=device)
        meta = json.loads((directory / "meta.json").read_text())
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors/JSON/shape errors: unusable model
        raise ArtifactError(f"{directory}: the saved model cannot be loaded "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                            "retrain or restore it") from None
    return Pipeline([("scale", scaler), ("net", net)]), meta
