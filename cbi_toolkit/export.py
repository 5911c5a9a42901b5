"""Export a saved run's model to ONNX or TorchScript, and serve it.

`cbi-export runs/<run_id> --format onnx|torchscript` writes
``runs/<run_id>/export/model.onnx`` (or ``model.pt``) and ``export.json``. The
exported graph holds the fitted scaler *and* the network: its input is the raw
feature windows ``windows [batch, window, n_features]`` (float32, dynamic batch
axis), its outputs ``mu`` and ``sigma`` of the forward log return per horizon,
exactly what ``predict_dist`` of the saved pipeline gives. After writing, the
exported model is run on the run's newest real windows and the largest absolute
difference from the eager model is recorded (and checked against ``--atol``).

`serving_model(run_dir, pipe)` picks the fastest way to forecast from a run:
an exported ONNX model when onnxruntime is installed, else TorchScript, else the
eager network under ``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cbi_toolkit.errors import ArtifactError, CbiError
from cbi_toolkit.features.windows import Windows, as_windows

log = logging.getLogger(__name__)

EXPORT_DIR = "export"
FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
INFO_FILE = "export.json"
DEFAULT_ATOL = 1e-4


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
        h = self.net.encode(x)
        return self.net.heads(h)


def scaled_module(pipe) -> ScaledForecastNet:
    """`ScaledForecastNet` (eval mode, fp32, on the CPU) from a fitted pipeline."""
    scaler = pipe.named_steps["scale"]
    net = pipe.named_steps["net"].module_
    module = ScaledForecastNet(net, scaler.mean_, scaler.scale_, scaler.clip)
    return module.to("cpu").float().eval()


def raw_windows(X) -> np.ndarray:
    """The 3D float32 array of raw (unscaled) windows."""
    return np.ascontiguousarray(as_windows(X).gather(), dtype=np.float32)


# ---------------------------------------------------------------------------
# writing

def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """ONNX with a dynamic batch axis (opset 17, the TorchScript-based exporter,
    which handles LSTM as one ONNX ``LSTM`` node)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["windows"], output_names=["mu", "sigma"],
                          dynamic_axes={"windows": {0: "batch"}, "mu": {0: "batch"},
                                        "sigma": {0: "batch"}})
    return path


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """A traced TorchScript module (batch size is dynamic: nothing depends on it)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.freeze(torch.jit.trace(module, (example,), check_trace=False))
    traced.save(str(path))
    return path


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run_ts(windows: np.ndarray):
        with torch.inference_mode():
            mu, sigma = module(torch.from_numpy(np.asarray(windows, dtype=np.float32)))
        return mu.numpy(), sigma.numpy()

    return run_ts


def eager_callable(module: nn.Module, bf16: bool = False):
    """The eager module under ``torch.inference_mode`` (and bf16 autocast if asked),
    as ``windows -> (mu, sigma)``."""
    module = module.eval()

    def run_eager(windows: np.ndarray):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            mu, sigma = module(torch.from_numpy(np.asarray(windows, dtype=np.float32)))
        return mu.float().numpy(), sigma.float().numpy()

    return run_eager


def export_pipeline(pipe, fmt: str, out_dir: Path, check_windows: np.ndarray,
                    atol: float = DEFAULT_ATOL) -> dict:
    """Export ``pipe`` into ``out_dir`` and check it against the eager model.

    ``check_windows`` are raw windows ``[n, window, F]`` (n >= 2, so the dynamic
    batch axis is exercised with a batch size other than the example's).
    Returns the info written to ``export.json`` (``max_abs_diff`` included);
    raises `ArtifactError` when the difference exceeds ``atol``.
    """
    if fmt not in FORMATS:
        raise CbiError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    module = scaled_module(pipe)
    example = torch.from_numpy(check_windows[:1])
    path = out_dir / FORMATS[fmt]
    start = time.perf_counter()
    if fmt == "onnx":
        export_onnx(module, example, path)
    else:
        export_torchscript(module, example, path)
    seconds = time.perf_counter() - start
    ref_mu, ref_sigma = eager_callable(module)(check_windows)
    mu, sigma = load_exported(path)(check_windows)
    diff = float(max(np.max(np.abs(mu - ref_mu)), np.max(np.abs(sigma - ref_sigma))))
    info = {"format": fmt, "file": path.name, "input": "windows [batch, window, n_features] float32",
            "outputs": ["mu", "sigma"], "window": int(check_windows.shape[1]),
            "n_features": int(check_windows.shape[2]), "checked_samples": int(len(check_windows)),
            "max_abs_diff": diff, "atol": atol, "export_seconds": round(seconds, 3),
            "torch": torch.__version__}
    infos = {}
    info_path = out_dir / INFO_FILE
    if info_path.is_file():
        try:
            infos = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            infos = {}
    infos[fmt] = info
    info_path.write_text(json.dumps(infos, indent=2) + "\n")
    if not diff <= atol:
        raise ArtifactError(f"{path}: exported outputs differ from the eager model by {diff:.3g} "
                            f"(more than {atol:g}); do not serve this file")
    return info


# ---------------------------------------------------------------------------
# serving

class ServingModel:
    """``predict_dist(X) -> (mu, sigma)`` through the fastest available path.

    ``kind`` is ``onnx``, ``torchscript`` or ``eager``.
    """

    def __init__(self, fn, kind: str):
        self.fn, self.kind = fn, kind

    def predict_dist(self, X) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.fn(raw_windows(X))
        return np.asarray(mu), np.asarray(sigma)


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def serving_model(run_dir: str | Path, pipe) -> ServingModel:
    """The fastest way to forecast from a run: its exported ONNX model (with
    onnxruntime), else its TorchScript file, else the eager net in inference mode.

    A model trained in bf16 on the CPU is served eagerly under bf16 autocast:
    that is how the run itself forecast (same numbers), and it was measured
    the fastest path on a CPU with native bf16 (docs/performance.md).
    An export is used only if its recorded check passed and it matches the
    saved model's window and feature count.
    """
    net = pipe.named_steps["net"]
    if getattr(net, "precision_", "fp32") == "bf16" and getattr(net, "device_", None) is not None \
            and net.device_.type == "cpu":
        return ServingModel(eager_callable(scaled_module(pipe), bf16=True), "eager_bf16")
    export_dir = Path(run_dir) / EXPORT_DIR
    infos = {}
    if (export_dir / INFO_FILE).is_file():
        try:
            infos = json.loads((export_dir / INFO_FILE).read_text())
        except json.JSONDecodeError:
            infos = {}
    n_features = pipe.named_steps["scale"].n_features_in_
    for fmt in ("onnx", "torchscript"):
        info = infos.get(fmt)
        if not info or not (export_dir / FORMATS[fmt]).is_file():
            continue
        if fmt == "onnx" and not _onnxruntime_available():
            continue
        if info.get("n_features") != n_features or not info.get("max_abs_diff", 1) <= info.get("atol", 0):
            log.warning("%s: export does not match the saved model; not used", export_dir / FORMATS[fmt])
            continue
        return ServingModel(load_exported(export_dir / FORMATS[fmt]), fmt)
    return ServingModel(eager_callable(scaled_module(pipe)), "eager")


# ---------------------------------------------------------------------------
# cbi-export

def export_run(run_dir: str | Path, fmt: str, data_dir: str | None = None,
               atol: float = DEFAULT_ATOL, n_check: int = 64) -> dict:
    """Export a saved run's model; check it on the newest ``n_check`` real windows."""
    from cbi_toolkit.forecast_run import load_run

    spec, samples, pipe, meta, path = load_run(str(run_dir), data_dir)
    n = min(len(samples), max(2, n_check))
    X: Windows = samples.X[np.arange(len(samples) - n, len(samples))]
    info = export_pipeline(pipe, fmt, path / EXPORT_DIR, raw_windows(X), atol=atol)
    info["path"] = str(path / EXPORT_DIR / info["file"])
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cbi-export", description="Export a saved run's model (scaler + network) to ONNX "
        "or TorchScript with a dynamic batch axis, checked against the eager model.")
    p.add_argument("run_dir", help="a run folder, runs/<run_id>")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    p.add_argument("--data-dir", help="data directory for the check windows (default as cbi-run)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help=f"largest allowed |exported - eager| (default {DEFAULT_ATOL:g})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    try:
        info = export_run(args.run_dir, args.format, args.data_dir, args.atol)
    except CbiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{info['path']}: {info['format']}, input windows [batch, {info['window']}, "
          f"{info['n_features']}], max |exported - eager| = {info['max_abs_diff']:.2e} on "
          f"{info['checked_samples']} real windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
