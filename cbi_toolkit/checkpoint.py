"""Checkpoints that let an interrupted run resume with the same result.

Two levels, both inside the run folder under ``checkpoints/``:

* per fold: when a walk-forward fold is finished, every model's out-of-sample
  predictions and fit times are written as JSON (``fold-<k>.json``); a resumed
  run loads them instead of refitting that fold;
* per epoch: `EpochCheckpoint`, a skorch callback, writes after every epoch
  the module weights, optimizer state, history, the callbacks' state and both
  random generators (the net's shuffling generator and torch's global one) as a
  tensors-and-primitives dict with ``torch.save``; it is read back with
  ``torch.load(weights_only=True)``, so nothing is unpickled. On resume the
  callback restores all of it at ``on_train_begin`` and stops the loop after
  ``max_epochs`` epochs in total, so the fit ends where an uninterrupted one would.

Every file is written to a temporary name and renamed into place
(`cbi_toolkit.storage.atomic_write_bytes`), so a kill part-way through a write leaves the previous
checkpoint intact.

Every checkpoint proves it belongs to its run: ``run-key.json`` holds the
digests of the resolved spec and of the samples (features, targets, dates) the
run started from; each fold file and epoch file carries that key and a sha256
of its own content. A resumed run whose spec or data changed, an edited fold
file or a corrupted epoch file is refused in one line naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import Callback
from skorch.history import History

from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.metrics import FoldPrediction
from cbi_toolkit.storage import atomic_write_bytes, atomic_write_text, file_sha256, storage_error

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
EPOCH_FILE = "epoch.pt"
RUN_KEY = "run-key.json"
FORMAT = 1
#: an epoch file starts with this line and the payload's sha256, then the torch payload
EPOCH_MAGIC = b"cbi-epoch-checkpoint v1\n"


# ---------------------------------------------------------------------------
# what run the checkpoints belong to

def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def data_digest(samples) -> str:
    """sha256 of what a run trains on: feature values, windows, targets, prices, dates."""
    h = hashlib.sha256()
    x = samples.X
    for arr in (getattr(x, "values", None), getattr(x, "ends", None), samples.y,
                samples.price, np.asarray(samples.dates.asi8)):
        if arr is not None:
            arr = np.ascontiguousarray(arr)
            h.update(str((arr.dtype.str, arr.shape)).encode())
            h.update(arr.tobytes())
    h.update(_canonical([getattr(x, "window", None), samples.feature_names, samples.horizons]))
    return h.hexdigest()


def bind_run(directory: Path, spec_digest: str, data: str) -> dict[str, str]:
    """Record (new run) or check (resumed run) what the checkpoints belong to.

    Refuses, naming ``run-key.json``, when the spec or the data differ from those
    the run started with: its folds would be mixed with another split otherwise."""
    key = {"spec": spec_digest, "data": data}
    path = directory / RUN_KEY
    if path.is_file():
        stored = _read_checked(path, "run key")
        stored.pop("checksum", None)
        for part, what in (("spec", "spec"), ("data", "data")):
            if stored.get(part) != key[part]:
                raise ArtifactError(
                    f"{path}: the run started from another {what} (digest "
                    f"{str(stored.get(part))[:12]}, now {key[part][:12]}); its checkpoints do "
                    "not belong to this one; start a new run (cbi-run SPEC) or restore the "
                    f"{what} it ran on")
        return key
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**key, "checksum": _sha256(_canonical(key))}))
    return key


def run_key(directory: Path) -> dict[str, str] | None:
    """The key recorded in ``directory`` (None where a run recorded none)."""
    path = directory / RUN_KEY
    if not path.is_file():
        return None
    stored = _read_checked(path, "run key")
    return {"spec": stored.get("spec"), "data": stored.get("data")}


def _read_checked(path: Path, what: str) -> dict[str, Any]:
    """A JSON file with a ``checksum`` of the rest of its content, verified."""
    try:
        doc = json.loads(path.read_text())
        checksum = doc.pop("checksum")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ArtifactError(f"{path}: unreadable {what} (cut off, edited or without its "
                            "checksum); delete the run's checkpoints to start afresh") from None
    if _sha256(_canonical(doc)) != checksum:
        raise ArtifactError(f"{path}: checksum differs from its content: the {what} was edited "
                            "or damaged; delete it to start afresh")
    return doc


RUN_FILES = "run-files.json"


def record_files(run_dir: Path, names: list[str]) -> None:
    """Record the sha256 of finished run files (``forecasts.csv``, ``metrics.json``) and
    the run's key, so ``--sink-only`` writes exactly what the run produced."""
    doc = {"files": {name: file_sha256(run_dir / name) for name in names},
           "run_key": run_key(run_dir / CHECKPOINTS)}
    atomic_write_text(run_dir / RUN_FILES, json.dumps({**doc, "checksum": _sha256(
        _canonical(doc))}))


def verify_files(run_dir: Path, names: list[str]) -> None:
    """Refuse a run file changed since the run wrote it (runs from before
    ``run-files.json`` existed are not checked)."""
    path = run_dir / RUN_FILES
    if not path.exists():
        return
    files = _read_checked(path, "run file record").get("files", {})
    for name in names:
        if name in files and (not (run_dir / name).is_file()
                              or file_sha256(run_dir / name) != files[name]):
            raise ArtifactError(f"{run_dir / name}: changed since the run wrote it (its sha256 "
                                f"differs from {path}); restore it, or run the spec again")


# ---------------------------------------------------------------------------
# per fold

def save_fold(directory: Path, k: int, preds: list[FoldPrediction],
              fit_seconds: dict[str, float]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    def array(values) -> dict[str, Any]:  # exact: float64 JSON of the values, and their dtype
        values = np.asarray(values)
        return {"dtype": values.dtype.str, "values": values.astype(float).tolist()}

    doc = {"format": FORMAT, "fold": k, "fit_seconds": fit_seconds, "run_key": run_key(directory),
           "preds": [
        {"model": p.model, "fold": p.fold, "horizon": p.horizon, "y": array(p.y),
         "mu": array(p.mu), "sigma": array(p.sigma), "price": array(p.price),
         "dates": [f"{d:%Y-%m-%d}" for d in p.dates], "role": p.role} for p in preds]}
    doc["checksum"] = _sha256(_canonical(doc))
    atomic_write_text(directory / f"fold-{k}.json", json.dumps(doc))


def load_fold(directory: Path, k: int) -> tuple[list[FoldPrediction], dict[str, float]] | None:
    """A finished fold's predictions, or None when fold ``k`` has no checkpoint."""
    path = directory / f"fold-{k}.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        checksum = doc.pop("checksum", None) if isinstance(doc, dict) else None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable fold checkpoint ({str(exc)[:80]}); delete it "
                            "to refit that fold") from None
    if checksum is None or _sha256(_canonical(doc)) != checksum:
        why = "no checksum" if checksum is None else "its checksum differs from its content"
        raise ArtifactError(f"{path}: unreadable fold checkpoint ({why}: edited, damaged or "
                            "from an older version); delete it to refit that fold")
    if doc.get("run_key") != run_key(directory):
        raise ArtifactError(f"{path}: the fold checkpoint belongs to another run (its spec or "
                            f"data digest differs from {directory / RUN_KEY}); delete it to "
                            "refit that fold")
    try:

        def array(a: dict[str, Any]) -> np.ndarray:
            dtype = np.dtype(a["dtype"])
            if dtype.kind != "f":
                raise ValueError(f"dtype {dtype} is not a float type")
            return np.asarray(a["values"], dtype=float).astype(dtype)

        preds = [FoldPrediction(
            model=p["model"], fold=int(p["fold"]), horizon=p["horizon"], y=array(p["y"]),
            mu=array(p["mu"]), sigma=array(p["sigma"]), price=array(p["price"]),
            dates=pd.DatetimeIndex(pd.to_datetime(p["dates"])), role=p.get("role", "test"))
            for p in doc["preds"]]
        return preds, {k_: float(v) for k_, v in doc["fit_seconds"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: unreadable fold checkpoint ({exc}); delete it to refit "
                            "that fold") from None


# ---------------------------------------------------------------------------
# per epoch

def _plain(value: Any) -> Any:
    """``value`` as something ``torch.load(weights_only=True)`` reads back, or a
    ValueError when it has no such form."""
    if isinstance(value, np.generic):  # before float: np.float64 is a float subclass
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return type(value)(value) if value is not None else None
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu").clone()
    if isinstance(value, dict):
        return OrderedDict((k, _plain(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise ValueError(type(value).__name__)


def _callback_state(net) -> dict[str, dict[str, Any]]:
    out = {}
    for name, cb in getattr(net, "callbacks_", []):
        if isinstance(cb, EpochCheckpoint):
            continue
        state = {}
        for key, value in vars(cb).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            try:
                state[key] = _plain(value)
            except ValueError:
                continue
        out[name] = state
    return out


class EpochCheckpoint(Callback):
    """Save the fit's state after every epoch into ``directory``; resume from it.

    With ``resume=True`` and a checkpoint present, ``on_train_begin`` restores
    weights, optimizer, history, callbacks' state and random generators, and
    ``on_epoch_end`` stops the loop once ``max_epochs`` epochs are done in total.
    """

    def __init__(self, directory: str | os.PathLike, resume: bool = True):
        self.directory = directory
        self.resume = resume

    def initialize(self):
        self.resumed_from_ = 0
        return self

    @property
    def path(self) -> Path:
        return Path(self.directory) / EPOCH_FILE

    def on_train_begin(self, net, **kwargs):  # noqa: ARG002
        self.resumed_from_ = 0
        if not self.resume or not self.path.is_file():
            return
        state = load_epoch_state(self.path)
        if state.get("run_key") != json.dumps(run_key(Path(self.directory).parent)):
            raise ArtifactError(f"{self.path}: the epoch checkpoint belongs to another run (its "
                                "spec or data digest differs); delete it to restart that fit")
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history_ = History(json.loads(state["history"]))
        generator = getattr(net, "generator_", None)
        if generator is not None and state.get("generator") is not None:
            generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        callbacks = dict(getattr(net, "callbacks_", []))
        for name, attrs in state["callbacks"].items():
            cb = callbacks.get(name)
            if cb is None:
                continue
            for key, value in attrs.items():
                setattr(cb, key, value)
        self.resumed_from_ = len(net.history)
        log.info("resuming the fit from its checkpoint after epoch %d (%s)", self.resumed_from_,
                 self.path)

    def on_epoch_begin(self, net, **kwargs):  # noqa: ARG002
        if self.resumed_from_ >= net.max_epochs:
            raise KeyboardInterrupt  # the checkpoint holds the finished fit: nothing to train

    def on_epoch_end(self, net, **kwargs):  # noqa: ARG002
        state = {
            "format": FORMAT,
            "epoch": len(net.history),
            "module": _plain(net.module_.state_dict()),
            "optimizer": _plain(net.optimizer_.state_dict()),
            "history": json.dumps(net.history.to_list(), default=float),
            "generator": (net.generator_.get_state() if getattr(net, "generator_", None)
                          is not None else None),
            "torch_rng": torch.get_rng_state(),
            "callbacks": _callback_state(net),
        }
        directory = Path(self.directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(directory, exc) from None
        state["run_key"] = json.dumps(run_key(directory.parent))
        buffer = io.BytesIO()
        torch.save(state, buffer)  # in memory: a full disk fails in the write below, cleanly
        payload = buffer.getvalue()
        atomic_write_bytes(self.path, EPOCH_MAGIC + _sha256(payload).encode() + b"\n" + payload)
        if self.resumed_from_ and len(net.history) >= net.max_epochs:
            raise KeyboardInterrupt  # skorch ends the loop as after its last epoch


def load_epoch_state(path: Path) -> dict[str, Any]:
    """Read an epoch checkpoint without unpickling code; ArtifactError otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the epoch checkpoint ({exc.strerror})") \
            from None
    signed = raw.startswith(EPOCH_MAGIC)
    if signed:
        digest, _, payload = raw[len(EPOCH_MAGIC):].partition(b"\n")
        if _sha256(payload).encode() != digest:
            raise ArtifactError(f"{path}: the epoch checkpoint is damaged (its checksum differs "
                                "from its content); delete it to restart that fit from scratch")
        raw = payload
    try:
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        text = str(exc).strip()
        if "weights only load failed" in text.lower() or "weights_only" in text:
            why = "it holds objects that only unpickling code could build"
        else:
            why = (text.splitlines()[0] if text else type(exc).__name__)[:160]
        raise ArtifactError(f"{path}: refused to load the epoch checkpoint ({why}); "
                            "delete it to restart that fit from scratch") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not an epoch checkpoint of format {FORMAT}")
    if not signed:
        raise ArtifactError(f"{path}: the epoch checkpoint has no checksum (from an older "
                            "version, or not written by cbi-run); delete it to restart that fit")
    return state
