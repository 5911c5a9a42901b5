"""Where a design-size fp32 training step spends its time, the toolkit's and neuralforecast's
LSTM (never a test): torch.profiler over 3 optimizer steps of each, after a warm-up, one
thread, real windows.

    .venv-peers/bin/python bench/profile_design_step.py
"""

from __future__ import annotations

import sys
import warnings
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers_speed import SIZES, NeuralForecastLSTM, Plain  # noqa: E402

from cbi_toolkit.backtest import labelled_samples  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402

GROUPS = {"LSTM forward (oneDNN)": ("aten::mkldnn_rnn_layer",),
          "LSTM backward (oneDNN)": ("aten::mkldnn_rnn_layer_backward",),
          "matmuls (input projection, attention, heads, decoder)": ("aten::mm", "aten::addmm",
                                                                    "aten::bmm", "aten::linear"),
          "dropout masks": ("aten::bernoulli_",),
          "copies, fills (gathers, concatenation, zeroing)": ("aten::copy_", "aten::fill_",
                                                              "aten::index", "aten::cat",
                                                              "aten::unfold", "aten::zero_")}


def breakdown(prof, steps: int) -> dict[str, float]:
    """Self CPU seconds per optimizer step, by group of operators."""
    out = defaultdict(float)
    total = 0.0
    for ev in prof.key_averages():
        sec = ev.self_cpu_time_total / 1e6 / steps
        total += sec
        for group, names in GROUPS.items():
            if ev.key in names:
                out[group] += sec
                break
        else:
            out["everything else (elementwise, optimizer, framework)"] += sec
    return {**{k: round(v, 4) for k, v in out.items()}, "total": round(total, 4)}


def main() -> int:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    import logging

    import pytorch_lightning  # noqa: F401
    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    spec = load_spec(SIZES["design"])
    _, samples = prepare(spec, None)
    samples = labelled_samples(samples)
    steps = 3
    runs = {"toolkit net (plain loop)": Plain(spec, samples, steps),
            "neuralforecast LSTM": NeuralForecastLSTM(spec, samples, steps, exog=False),
            "neuralforecast LSTM + 60 exog": NeuralForecastLSTM(spec, samples, steps, exog=True)}
    table = {}
    for name, fn in runs.items():
        fn()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        table[name] = breakdown(prof, steps)
    groups = list(dict.fromkeys(g for t in table.values() for g in t))
    print("seconds per optimizer step (self CPU time), design size, fp32, 1 thread")
    print(f"{'':<58}" + "".join(f"{n[:30]:>32}" for n in table))
    for g in groups:
        print(f"{g:<58}" + "".join(f"{t.get(g, 0.0):>32}" for t in table.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
