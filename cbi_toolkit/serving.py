"""Forecasting from a saved run with the fastest model it has.

`serving_model(run_dir, pipe)` picks an exported ONNX model when onnxruntime is
installed (the int8 one first, if it was exported: ``cbi-export --format onnx-int8``),
else TorchScript, else ExecuTorch (the slowest here: its LSTM loop runs
outside XNNPACK), else the eager network under ``torch.inference_mode``.
The exported graph (`ScaledForecastNet`) holds the fitted scaler and the network:
its input is raw feature windows ``[batch, window, n_features]`` (float32), its outputs
``mu`` and ``sigma`` of the forward log return per horizon (for a net on volatility-scaled
targets, ``model.target_scale``, in units of the trailing volatility x sqrt(h), which
`ServingModel` multiplies back from the windows' price context). Writing exports:
`cbi_toolkit.export`.
"""

from __future__ import annotations

import importlib
import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cbi_toolkit.features.windows import as_windows

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
FORMATS = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx", "torchscript": "model.pt",
           "executorch": "model.pte"}
# fastest first (docs/performance.md); int8 is there only if someone exported it
SERVING_ORDER = ("onnx-int8", "onnx", "torchscript", "executorch")
RUNTIMES = {"onnx": "onnxruntime", "onnx-int8": "onnxruntime", "executorch": "executorch.runtime"}
INFO_FILE = "export.json"


class ScaledForecastNet(nn.Module):
    """The fitted `WindowScaler` followed by the network, as one module.

    ``forward(windows [B, window, F]) -> (mu [B, H], sigma [B, H])``.
    """

    def __init__(self, net: nn.Module, mean, scale, clip: float | None):
        super().__init__()
        self.net = net
        self.register_buffer("feat_mean", torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.register_buffer("feat_scale", torch.as_tensor(np.asarray(scale), dtype=torch.float32))
        self.clip = float(clip) if clip is not None else 0.0

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (windows - self.feat_mean) / self.feat_scale
        if self.clip > 0:
            x = torch.clamp(x, -self.clip, self.clip)
        return self.net(x)


def scaled_module(pipe) -> ScaledForecastNet:
    """`ScaledForecastNet` (eval mode, fp32, on the CPU) from a fitted pipeline."""
    scaler = pipe.named_steps["scale"]
    net = pipe.named_steps["net"].module_
    module = ScaledForecastNet(net, scaler.mean_, scaler.scale_, scaler.clip)
    return module.to("cpu").float().eval()


def raw_windows(X) -> np.ndarray:
    """The 3D float32 array of raw (unscaled) windows."""
    return np.ascontiguousarray(as_windows(X).gather(), dtype=np.float32)


def load_exported(path: Path):
    """A callable ``windows (np.ndarray [B, W, F]) -> (mu, sigma)`` for an exported file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

        def run_onnx(windows: np.ndarray):
            mu, sigma = session.run(None, {"windows": np.asarray(windows, dtype=np.float32)})
            return mu, sigma

        return run_onnx
    if path.suffix == ".pte":
        return _executorch_callable(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run_ts(windows: np.ndarray):
        with torch.inference_mode():
            mu, sigma = module(torch.from_numpy(np.asarray(windows, dtype=np.float32)))
        return mu.numpy(), sigma.numpy()

    return run_ts


def _executorch_callable(path: Path):
    """An ExecuTorch program of one window, run window by window."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")

    def run_pte(windows: np.ndarray):
        windows = torch.from_numpy(np.asarray(windows, dtype=np.float32))
        outs = [method.execute([windows[i:i + 1].contiguous()]) for i in range(len(windows))]
        return (np.concatenate([o[0].numpy() for o in outs]),
                np.concatenate([o[1].numpy() for o in outs]))

    return run_pte


def eager_callable(module: nn.Module, bf16: bool = False):
    """The eager module under ``torch.inference_mode`` (and bf16 autocast if asked),
    as ``windows -> (mu, sigma)``."""
    module = module.eval()

    def run_eager(windows: np.ndarray):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mu, sigma = module(torch.from_numpy(np.asarray(windows, dtype=np.float32)))
        return mu.float().numpy(), sigma.float().numpy()

    return run_eager


class ServingModel:
    """``predict_dist(X) -> (mu, sigma)`` through the fastest available path.

    ``kind`` is ``onnx-int8``, ``onnx``, ``torchscript``, ``executorch``, ``eager`` or
    ``eager_bf16``.
    """

    def __init__(self, fn, kind: str, target_scale=None):
        self.fn, self.kind, self.target_scale = fn, kind, target_scale

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = (np.asarray(a) for a in self.fn(raw_windows(X)))
        scale = None if self.target_scale is None else self.target_scale(X)
        return (mu, sigma) if scale is None else (mu * scale, sigma * scale)


def _runtime_available(fmt: str) -> bool:
    if fmt not in RUNTIMES:
        return True
    try:
        importlib.import_module(RUNTIMES[fmt])
    except ImportError:
        return False
    return True


def serving_model(run_dir: str | Path, pipe) -> ServingModel:
    """The fastest way to forecast from a run: its exported int8 ONNX model, else its
    fp32 one (with onnxruntime), else its TorchScript file, else its ExecuTorch program, else the
    eager net in inference mode.

    A model trained in bf16 on the CPU is served eagerly under bf16 autocast:
    that is how the run itself forecast (same numbers), and it was measured
    the fastest path on a CPU with native bf16 (docs/performance.md).
    An export is used only if its recorded check passed and it matches the
    saved model's window and feature count.
    """
    net = pipe.named_steps["net"]
    scale = net.target_scale  # a net on volatility-scaled targets: its outputs scaled back
    if getattr(net, "precision_", "fp32") == "bf16" and getattr(net, "device_", None) is not None \
            and net.device_.type == "cpu":
        return ServingModel(eager_callable(scaled_module(pipe), bf16=True), "eager_bf16", scale)
    export_dir = Path(run_dir) / EXPORT_DIR
    infos = {}
    if (export_dir / INFO_FILE).is_file():
        try:
            infos = json.loads((export_dir / INFO_FILE).read_text())
        except json.JSONDecodeError:
            infos = {}
    n_features = pipe.named_steps["scale"].n_features_in_
    for fmt in SERVING_ORDER:
        info = infos.get(fmt)
        if not info or not (export_dir / FORMATS[fmt]).is_file() or not _runtime_available(fmt):
            continue
        if info.get("n_features") != n_features or not info.get("max_abs_diff", 1) <= info.get("atol", 0):
            log.warning("%s: export does not match the saved model; not used", export_dir / FORMATS[fmt])
            continue
        return ServingModel(load_exported(export_dir / FORMATS[fmt]), fmt, scale)
    return ServingModel(eager_callable(scaled_module(pipe)), "eager", scale)
