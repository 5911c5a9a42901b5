"""Export a saved run's model to ONNX, TorchScript or ExecuTorch (`cbi-export`), checked
against the eager model.

`cbi-export runs/<run_id> --format onnx|onnx-int8|torchscript|executorch` writes
``runs/<run_id>/export/model.onnx`` (or ``model.int8.onnx``, ``model.pt``, ``model.pte``)
and ``export.json``. The
exported graph holds the fitted scaler *and* the network: its input is the raw
feature windows ``windows [batch, window, n_features]`` (float32, dynamic batch
axis), its outputs ``mu`` and ``sigma`` of the forward log return per horizon,
exactly what ``predict_dist`` of the saved pipeline gives. After writing, the
exported model is run on the run's newest real windows and the largest absolute
difference from the eager model is recorded (and checked against ``--atol``).
The ExecuTorch program (``.pte``, XNNPACK-delegated where XNNPACK takes the op) has a
fixed batch of one window: its runtime fails on a dynamic batch inside the LSTM's
loop (`ScanLSTM`), so its loader runs a batch window by window.

Serving a run from its export: `cbi_toolkit.serving`.
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

from cbi_toolkit.console import guarded
from cbi_toolkit.errors import ArtifactError, CbiError
from cbi_toolkit.features.windows import Windows
from cbi_toolkit.serving import (  # noqa: F401 - the exported module and its loaders
    EXPORT_DIR,
    FORMATS,
    INFO_FILE,
    ScaledForecastNet,
    eager_callable,
    load_exported,
    raw_windows,
    scaled_module,
)
from cbi_toolkit.storage import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_ATOL = 1e-4


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


def export_onnx_int8(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """The ONNX model with the LSTM and linear weights in int8 (onnxruntime's dynamic
    quantisation; activations are quantised per call). About 2.7x faster than fp32 ONNX for
    one design-size forecast on one thread, at a recorded difference (docs/performance.md)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(path.stem + ".fp32-tmp.onnx")
    export_onnx(module, example, fp32)
    root_level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quiets its "consider pre-processing" advice
    try:
        quantize_dynamic(fp32, path, weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().setLevel(root_level)
        fp32.unlink(missing_ok=True)
    return path


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """A traced TorchScript module (batch size is dynamic: nothing depends on it)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.freeze(torch.jit.trace(module, (example,), check_trace=False))
    traced.save(str(path))
    return path


def export_executorch(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """An ExecuTorch program for one window ``[1, window, F]``: the LSTM as `ScanLSTM`
    (a loop, not the unrolled steps), lowered with the XNNPACK partitioner."""
    import copy

    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError as exc:
        raise CbiError(f"--format executorch needs the executorch package ({exc}); "
                       "install it with: pip install 'cbi_toolkit[edge]' "
                       "(in a checkout: pip install -e '.[edge]')") from None

    from cbi_toolkit.models.scan_lstm import ScanLSTM

    module = copy.deepcopy(module).eval()
    for net in [m for m in module.modules() if isinstance(getattr(m, "lstm", None), nn.LSTM)]:
        net.lstm = ScanLSTM(net.lstm)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example[:1].clone(),))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        path.write_bytes(lowered.to_executorch().buffer)
    return path


EXPORTERS = {"onnx": export_onnx, "onnx-int8": export_onnx_int8,
             "torchscript": export_torchscript, "executorch": export_executorch}
# int8 weights move a forecast by a few thousandths of a log return (measured 2e-3 at 1m on
# the design model, against a forecast sigma of 0.07); the exact formats by float rounding
FORMAT_ATOL = {"onnx-int8": 1e-2}


def export_pipeline(pipe, fmt: str, out_dir: Path, check_windows: np.ndarray,
                    atol: float | None = None) -> dict:
    """Export ``pipe`` into ``out_dir`` and check it against the eager model.

    ``check_windows`` are raw windows ``[n, window, F]`` (n >= 2, so the dynamic
    batch axis is exercised with a batch size other than the example's).
    Returns the info written to ``export.json`` (``max_abs_diff`` included);
    raises `ArtifactError` when the difference exceeds ``atol`` (default: `FORMAT_ATOL`, else `DEFAULT_ATOL`).
    """
    if fmt not in FORMATS:
        raise CbiError(f"unknown export format {fmt!r}; allowed: {', '.join(FORMATS)}")
    atol = FORMAT_ATOL.get(fmt, DEFAULT_ATOL) if atol is None else atol
    out_dir.mkdir(parents=True, exist_ok=True)
    module = scaled_module(pipe)
    example = torch.from_numpy(check_windows[:1])
    path = out_dir / FORMATS[fmt]
    start = time.perf_counter()
    EXPORTERS[fmt](module, example, path)
    seconds = time.perf_counter() - start
    ref_mu, ref_sigma = eager_callable(module)(check_windows)
    mu, sigma = load_exported(path)(check_windows)
    diff = float(max(np.max(np.abs(mu - ref_mu)), np.max(np.abs(sigma - ref_sigma))))
    # the same difference in units of the forecast's own spread
    diff_sigmas = float(max(np.max(np.abs(mu - ref_mu) / ref_sigma),
                            np.max(np.abs(sigma - ref_sigma) / ref_sigma)))
    info = {"format": fmt, "file": path.name, "input": "windows [batch, window, n_features] float32",
            "outputs": ["mu", "sigma"], "window": int(check_windows.shape[1]),
            "n_features": int(check_windows.shape[2]), "checked_samples": int(len(check_windows)),
            "batch": 1 if fmt == "executorch" else "dynamic", "max_abs_diff": diff,
            "max_diff_in_sigmas": diff_sigmas, "atol": atol,
            "export_seconds": round(seconds, 3),
            "torch": torch.__version__}
    if window := pipe.named_steps["net"].target_vol_window:  # the outputs are volatility units
        info["outputs_times"] = (f"the trailing {window}-session volatility of the daily log "
                                 "returns x sqrt(horizon in sessions)")
    infos = {}
    info_path = out_dir / INFO_FILE
    if info_path.is_file():
        try:
            infos = json.loads(info_path.read_text())
        except json.JSONDecodeError:
            infos = {}
    infos[fmt] = info
    atomic_write_text(info_path, json.dumps(infos, indent=2) + "\n")
    if not diff <= atol:
        raise ArtifactError(f"{path}: exported outputs differ from the eager model by {diff:.3g} "
                            f"(more than {atol:g}); do not serve this file")
    return info


# ---------------------------------------------------------------------------
# cbi-export

def export_run(run_dir: str | Path, fmt: str, data_dir: str | None = None,
               atol: float | None = None, n_check: int = 64) -> dict:
    """Export a saved run's model; check it on the newest ``n_check`` real windows."""
    from cbi_toolkit.run.saved import load_run

    spec, samples, pipe, meta, path = load_run(str(run_dir), data_dir)
    n = min(len(samples), max(2, n_check))
    X: Windows = samples.X[np.arange(len(samples) - n, len(samples))]
    info = export_pipeline(pipe, fmt, path / EXPORT_DIR, raw_windows(X), atol=atol)
    info["path"] = str(path / EXPORT_DIR / info["file"])
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cbi-export", description="Export a saved run's model (scaler + network) to ONNX "
        "(fp32, or int8 weights: the fastest forecast), TorchScript (dynamic batch axis) or "
        "ExecuTorch (one window), checked against the eager model.")
    p.add_argument("run_dir", help="a run folder, runs/<run_id>")
    p.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    p.add_argument("--data-dir", help="data directory for the check windows (default as cbi-run)")
    p.add_argument("--atol", type=float, default=None,
                   help=f"largest allowed |exported - eager| (default {DEFAULT_ATOL:g}; "
                   f"{FORMAT_ATOL['onnx-int8']:g} for onnx-int8)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    return guarded(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    info = export_run(args.run_dir, args.format, args.data_dir, args.atol)
    print(f"{info['path']}: {info['format']}, input windows [batch, {info['window']}, "
          f"{info['n_features']}], max |exported - eager| = {info['max_abs_diff']:.2e} "
          f"({info['max_diff_in_sigmas']:.2%} of the forecast's sigma) on "
          f"{info['checked_samples']} real windows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
