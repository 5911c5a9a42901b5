"""Saving and loading a fitted `ForecastRegressor` (or the pooled
`GlobalForecastRegressor`) without pickle: the weights as safetensors, the constructor
parameters as JSON with the weights' sha256; nothing is unpickled when loading, and a
changed weights file is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.models.ensemble import EnsembleNet
from cbi_toolkit.models.global_network import GlobalForecastNet
from cbi_toolkit.models.global_regressor import GlobalForecastRegressor
from cbi_toolkit.models.network import ForecastNet
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.storage import atomic_write_bytes, atomic_write_text, file_sha256

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "regressor.json"
FORMAT_VERSION = 1
#: the regressors that can be saved, by the ``class`` recorded, with their network and the
#: sizes they take from the data at fit time (`ForecastRegressor._sizes_from_data`)
_CLASSES = {"ForecastRegressor": (ForecastRegressor, ForecastNet),
            "GlobalForecastRegressor": (GlobalForecastRegressor, GlobalForecastNet)}
#: other networks a regressor may hold, by the ``module`` recorded
_MODULES = {"EnsembleNet": EnsembleNet}


_NOT_SAVED = {"_params_to_validate", "module", "criterion", "optimizer", "iterator_train", "iterator_valid",
              "dataset", "callbacks", "train_split", "predict_nonlinearity", "compile",
              "use_caching", "torch_load_kwargs", "warm_start"}


def _json_params(reg: ForecastRegressor) -> dict[str, Any]:
    params = {}
    for key, value in reg.get_params(deep=False).items():
        if key in _NOT_SAVED or key.startswith("callbacks__"):
            continue
        if value is None or isinstance(value, bool | int | float | str):
            params[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, int | float | str)
                                                     for v in value):
            params[key] = list(value)
        else:
            raise ArtifactError(f"parameter {key}={value!r} cannot be saved as JSON")
    return params


def save_regressor(reg: ForecastRegressor, directory: str | Path) -> Path:
    """Write ``weights.safetensors`` and ``regressor.json`` into ``directory``."""
    from safetensors.torch import save

    if not getattr(reg, "initialized_", False) or not hasattr(reg, "module_"):
        raise ArtifactError("the regressor is not fitted; fit it before saving")
    name = type(reg).__name__
    if (name not in _CLASSES or reg.module not in (_CLASSES[name][1], *_MODULES.values())
            or reg.train_split not in ("tail", None)):
        raise ArtifactError("only ForecastRegressor with ForecastNet or EnsembleNet (or "
                            "GlobalForecastRegressor with GlobalForecastNet) and the default "
                            "train_split can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in reg.module_.state_dict().items()}
    weights = directory / WEIGHTS_FILE
    atomic_write_bytes(weights, save(state))
    meta = {
        "format": FORMAT_VERSION,
        "class": name,
        **({"module": reg.module.__name__} if reg.module in _MODULES.values() else {}),
        "params": _json_params(reg),
        "train_split": reg.train_split,
        **{attr.rstrip("_"): int(getattr(reg, attr))
           for _, attr in reg._sizes_from_data},
        "weights": WEIGHTS_FILE,
        "sha256": file_sha256(weights),
        "torch": torch.__version__,
    }
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return directory


def load_regressor(directory: str | Path, device: str | None = None) -> ForecastRegressor:
    """Read a regressor written by `save_regressor`; refuse a tampered weights file.

    ``device`` overrides the saved device setting (e.g. ``"cpu"``).
    """
    from safetensors.torch import load_file

    directory = Path(directory)
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise ArtifactError(f"{config} not found; is {directory} a saved regressor?")
    try:
        meta = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{config}: malformed JSON ({exc.msg})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("class") not in _CLASSES:
        raise ArtifactError(f"{config}: not a ForecastRegressor of format {FORMAT_VERSION}")
    weights = directory / Path(meta["weights"]).name
    if not weights.is_file():
        raise ArtifactError(f"{weights} not found")
    if file_sha256(weights) != meta["sha256"]:
        raise ArtifactError(f"{weights}: sha256 differs from the one recorded in {config}; "
                            "the weights file was changed or corrupted")
    params = dict(meta["params"])
    if device is not None:
        params["device"] = device
    cls, module = _CLASSES[meta["class"]]
    if "module" in meta:
        if meta["module"] not in _MODULES:
            raise ArtifactError(f"{config}: unknown network {meta['module']!r}")
        module = _MODULES[meta["module"]]
    reg = cls(module=module, train_split=meta.get("train_split", "tail"), **params)
    for _, attr in reg._sizes_from_data:
        setattr(reg, attr, int(meta[attr.rstrip("_")]))
    reg.initialize()
    state = load_file(str(weights), device=str(reg.device_))
    reg.module_.load_state_dict(state)
    reg.target_stats_set_ = True
    return reg
