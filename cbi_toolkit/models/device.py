"""Device and precision resolution: ``auto`` picks cuda, then mps, then cpu."""

from __future__ import annotations

import contextlib
import os

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``auto|cpu|cuda|mps`` (or an explicit ``cuda:1``)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = str(device).split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but CUDA is not available; "
                         "use device: auto or cpu")
    if kind == "mps" and not _mps_available():
        raise ValueError("device 'mps' was asked for but MPS is not available; "
                         "use device: auto or cpu")
    return torch.device(device)


def cpu_supports_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AVX512-BF16 or AMX-BF16).

    Without it oneDNN emulates bf16 with fp32 instructions, which is slower than fp32.
    """
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # pragma: no cover - probe unavailable on this build
                continue
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - very old torch
        return False
    return "AMX" in capability


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for this device.

    ``auto`` means bf16 on CUDA devices that support it and on CPUs with native
    bf16 (AVX512-BF16 or AMX), fp32 elsewhere (MPS autocast support varies by
    torch version). On a CPU with AVX512-BF16, bf16 autocast trains the design
    model ~1.9x faster than fp32 (the LSTM runs as oneDNN bf16 kernels). Its
    validation loss was within 0.3% of fp32 at the quick spec's size but 13%
    higher after a 3-epoch design-size fit: see docs/performance.md before
    relying on ``auto`` for a final design-size run.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        if device.type == "cpu" and cpu_supports_bf16():
            return "bf16"
        return "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_supports_bf16():
        raise ValueError("precision 'bf16' was asked for but this CPU has no native bf16 "
                         f"(capability {torch.backends.cpu.get_cpu_capability()}); use fp32 or auto")
    return precision


def resolve_threads(threads: int | str | None) -> int | None:
    """Intra-op threads for training: ``None`` leaves torch's setting, an int sets it,
    ``auto`` uses every core unless the machine is oversubscribed: with a
    1-minute load average (which counts this process) of ``cpu_count + 1`` or
    more it takes ``2 * cpu_count + 1 - load`` threads, at least 1.

    Measured on a shared 2-core machine (docs/performance.md): 2 threads beat 1
    by ~1.5x at load 2.4, but were up to ~25x slower at load 4-6 (the OpenMP
    threads wait on each other at every LSTM time step).
    """
    if threads is None:
        return None
    if threads == "auto":
        n = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - no loadavg (Windows)
            return n
        if busy < n + 1:
            return n
        return max(1, min(n, int(2 * n + 1 - busy)))
    n = int(threads)
    if n < 1:
        raise ValueError(f"threads must be a positive integer, 'auto' or None, got {threads!r}")
    return n


@contextlib.contextmanager
def torch_threads(threads: int | str | None):
    """Run the block with ``resolve_threads(threads)`` intra-op threads, then restore."""
    n = resolve_threads(threads)
    saved = torch.get_num_threads()
    if n is not None and n != saved:
        torch.set_num_threads(n)
    try:
        yield n or saved
    finally:
        if n is not None and n != saved:
            torch.set_num_threads(saved)
