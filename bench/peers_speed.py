"""Training speed of the toolkit against neuralforecast's LSTM on the same work (never a test).

    .venv-peers/bin/python bench/peers_speed.py [--quick] [--json PATH] [--data-dir DIR]

Runs in the benchmark's own environment (``bench/peers-requirements.txt``, see
docs/performance.md "Against the peers"), never the product's. At two sizes, the
``zl_1m_quick`` spec's (window 63, hidden 64, 2 layers, batch 64) and the design's
(``zl_1m``: window 252, hidden 256, 3 layers, batch 32), on the snapshot's real ZL
windows, fp32, one torch thread, the same number of optimizer steps each, interleaved
round by round in this one process so load from other processes hits every variant alike:

- ``toolkit``: ``build_pipeline(spec).fit`` (scaler, skorch regressor, one epoch of exactly
  ``steps`` batches, no validation tail: the peers fit none either);
- ``toolkit_mha``: the same with the network's attention as it was before `attend_last`
  (``nn.MultiheadAttention`` projecting every step's key and value): the gain of that change;
- ``toolkit_bpttK``: the same with ``training.bptt_steps: K`` (truncated backprop, opt-in:
  less work per step than the peer, which backpropagates through the whole window);
- ``plain``: a hand-written loop of the same `ForecastNet` (bench/run.py's `PlainLoop`);
- ``nf``: ``neuralforecast.NeuralForecast([LSTM(...)]).fit`` on the ZL log price in long
  format (one series), ``input_size`` = window, ``encoder_hidden_size`` / ``_n_layers`` /
  ``windows_batch_size`` = the toolkit's sizes, ``h`` = 21 (1m), ``max_steps`` = steps,
  AdamW at the same lr / weight decay, gradient clipping 1.0, LSTM dropout 0.1;
- ``nf_exog``: the same with the toolkit's 60 features as ``hist_exog_list`` (the same
  inputs the toolkit reads).

Each fit is timed end to end (``fit_s``, what a user waits for) and inside its training loop
(``step_s``: the optimizer steps alone, from batch start to batch end, by a callback in
skorch and in Lightning). Ratios are toolkit / peer in windows per second (> 1: the toolkit
is faster). Prints a table and one JSON document (``--json`` also writes it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cbi_toolkit.backtest import labelled_samples  # noqa: E402
from cbi_toolkit.features.windows import WindowScaler  # noqa: E402
from cbi_toolkit.models.network import ForecastNet  # noqa: E402
from cbi_toolkit.pipeline import build_pipeline  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402

SIZES = {"quick": ROOT / "specs" / "zl_1m_quick.yaml", "design": ROOT / "specs" / "zl_1m.yaml"}
H_1M = 21  # trading days of the 1m horizon: the peer's forecast horizon


def load() -> float:
    return round(os.getloadavg()[0], 2)


class _Clock:
    """Sums the seconds between a training batch's start and its end."""

    def __init__(self):
        self.seconds, self.steps, self._t = 0.0, 0, None

    def start(self):
        self._t = time.perf_counter()

    def stop(self):
        self.seconds += time.perf_counter() - self._t
        self.steps += 1


def _skorch_clock(clock: _Clock):
    from skorch.callbacks import Callback

    class StepClock(Callback):
        def on_batch_begin(self, net, batch=None, training=None, **kw):  # noqa: ARG002
            if training:
                clock.start()

        def on_batch_end(self, net, batch=None, training=None, **kw):  # noqa: ARG002
            if training:
                clock.stop()

    return StepClock()


def _lightning_clock(clock: _Clock):
    import pytorch_lightning as pl

    class StepClock(pl.Callback):
        def on_train_batch_start(self, *a, **kw):  # noqa: ARG002
            clock.start()

        def on_train_batch_end(self, *a, **kw):  # noqa: ARG002
            clock.stop()

    return StepClock()


class MultiheadAttentionNet(ForecastNet):
    """`ForecastNet` as it was before `attend_last`: ``nn.MultiheadAttention`` projecting the
    keys and values of every step (same parameters, same outputs to rounding)."""

    def encode(self, x):
        h = self.sequence(x)
        last = h[:, -1:, :]
        attended, _ = self.attention(last, h, h, need_weights=False)
        return self.attn_norm(last + self.attn_dropout(attended))[:, 0, :]


class Toolkit:
    """`build_pipeline(spec).fit` on the newest ``steps * batch`` real samples, one epoch;
    ``module`` replaces the network class, ``bptt_steps`` sets `training.bptt_steps`."""

    def __init__(self, spec, samples, steps: int, module=None, bptt_steps: int | None = None):
        t = spec.training
        self.module = module
        self.spec = spec.model_copy(update={"training": t.model_copy(update={
            "max_epochs": 1, "precision": "fp32", "device": "cpu", "threads": 1, "stride": 1,
            "n_jobs": 1, "bptt_steps": bptt_steps})})
        n = steps * t.batch_size
        idx = np.arange(len(samples) - n, len(samples))
        self.X, self.y, self.windows = samples.X[idx], samples.y[idx], n

    def __call__(self) -> dict:
        clock = _Clock()
        pipe = build_pipeline(self.spec, verbose=0)
        pipe.set_params(net__valid_fraction=0.0, net__callbacks=[("step_clock", _skorch_clock(clock))])
        if self.module is not None:
            pipe.set_params(net__module=self.module)
        start = time.perf_counter()
        pipe.fit(self.X, self.y)
        return {"windows": self.windows, "fit_s": time.perf_counter() - start,
                "step_s": clock.seconds, "steps": clock.steps}


class Plain:
    """bench/run.py's hand-written loop of the same network: the ceiling of the toolkit."""

    def __init__(self, spec, samples, steps: int):
        from run import PlainLoop

        X = WindowScaler().fit_transform(samples.X)
        self.loop = PlainLoop(X, samples.y, spec, "fp32", steps, 1)
        self.steps = steps

    def __call__(self) -> dict:
        n, seconds = self.loop()
        return {"windows": n, "fit_s": seconds, "step_s": seconds, "steps": self.steps}


def long_format(samples, exog: bool):
    """The ZL log price per row of the feature matrix in neuralforecast's long format
    (``unique_id``, ``ds`` = row number, ``y``), with the 60 features as columns when
    ``exog``: the real series the toolkit's windows read, from its own dataset code."""
    import pandas as pd

    win = samples.X
    ok = np.isfinite(win.context) & np.isfinite(win.values).all(axis=1)
    first = int(np.flatnonzero(~ok).max()) + 1 if not ok.all() else 0
    rows = np.arange(first, len(ok))  # the newest run of complete rows
    df = pd.DataFrame({"unique_id": "ZL", "ds": np.arange(len(rows)),
                       "y": win.context[rows].astype(np.float32)})
    cols = []
    if exog:
        cols = [f"f{j}" for j in range(win.values.shape[1])]
        scaled = WindowScaler().fit_transform(win).values[rows].astype(np.float32)
        df = pd.concat([df, pd.DataFrame(scaled, columns=cols)], axis=1)
    return df, cols


class NeuralForecastLSTM:
    """``NeuralForecast([LSTM(...)], freq=1).fit(df)`` at the toolkit's sizes."""

    def __init__(self, spec, samples, steps: int, exog: bool):
        self.spec, self.steps = spec, steps
        self.df, self.cols = long_format(samples, exog)

    def __call__(self) -> dict:
        from neuralforecast import NeuralForecast
        from neuralforecast.models import LSTM

        m, t = self.spec.model, self.spec.training
        clock = _Clock()
        model = LSTM(h=H_1M, input_size=self.spec.window, encoder_n_layers=m.num_layers,
                     encoder_hidden_size=m.hidden_dim, encoder_dropout=m.dropout,
                     decoder_hidden_size=m.hidden_dim, hist_exog_list=self.cols or None,
                     max_steps=self.steps, learning_rate=t.lr, batch_size=1,
                     windows_batch_size=t.batch_size, optimizer=torch.optim.AdamW,
                     optimizer_kwargs={"weight_decay": t.weight_decay}, random_seed=1,
                     accelerator="cpu", devices=1, gradient_clip_val=1.0, logger=False,
                     enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[_lightning_clock(clock)])
        nf = NeuralForecast(models=[model], freq=1)
        start = time.perf_counter()
        nf.fit(self.df, val_size=0)
        return {"windows": self.steps * t.batch_size, "fit_s": time.perf_counter() - start,
                "step_s": clock.seconds, "steps": clock.steps}


def measure(size: str, steps: int, rounds: int, data_dir: str | None, bptt: list[int]) -> dict:
    spec = load_spec(SIZES[size])
    _, samples = prepare(spec, data_dir)
    samples = labelled_samples(samples)
    variants = {"toolkit": Toolkit(spec, samples, steps),
                "toolkit_mha": Toolkit(spec, samples, steps, module=MultiheadAttentionNet),
                **{f"toolkit_bptt{k}": Toolkit(spec, samples, steps, bptt_steps=k)
                   for k in bptt if k < spec.window},
                "plain": Plain(spec, samples, steps),
                "nf": NeuralForecastLSTM(spec, samples, steps, exog=False),
                "nf_exog": NeuralForecastLSTM(spec, samples, steps, exog=True)}
    for fn in variants.values():  # warm-up: imports, oneDNN primitives for every shape
        fn()
    tot = {k: {"windows": 0, "fit_s": 0.0, "step_s": 0.0, "steps": 0, "load": [], "rounds": []}
           for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            r = fn()
            for k in ("windows", "fit_s", "step_s", "steps"):
                tot[name][k] += r[k]
            tot[name]["load"].append(load())
            tot[name]["rounds"].append(r["step_s"] / r["steps"])
    m = spec.model
    out = {"spec": SIZES[size].name, "window": spec.window, "hidden": m.hidden_dim,
           "layers": m.num_layers, "batch": spec.training.batch_size, "features": samples.X.values.shape[1],
           "steps_per_fit": steps, "rounds": rounds}
    for name, r in tot.items():
        out[name] = {"windows_per_s_fit": round(r["windows"] / r["fit_s"], 2),
                     "windows_per_s_steps": round(r["windows"] / r["step_s"], 2),
                     "s_per_step": round(r["step_s"] / r["steps"], 4),
                     "s_per_step_median_round": round(float(np.median(r["rounds"])), 4),
                     "fit_s": round(r["fit_s"], 2), "steps": r["steps"],
                     "load": round(float(np.mean(r["load"])), 2)}
    for mine in (k for k in variants if k.startswith("toolkit")):
        for peer in ("toolkit_mha", "plain", "nf", "nf_exog"):
            if peer == mine:
                continue
            for kind in ("fit", "steps"):
                out[f"ratio_{mine}_vs_{peer}_{kind}"] = round(
                    out[mine][f"windows_per_s_{kind}"] / out[peer][f"windows_per_s_{kind}"], 3)
            out[f"ratio_{mine}_vs_{peer}_median_round"] = round(
                out[peer]["s_per_step_median_round"] / out[mine]["s_per_step_median_round"], 3)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    ap.add_argument("--sizes", default="quick,design", help="comma-separated: quick, design")
    ap.add_argument("--json", help="also write the JSON here")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--steps", type=int, help="optimizer steps per fit (default: 30 quick, 4 design)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5)")
    ap.add_argument("--bptt", default="63",
                    help="comma-separated training.bptt_steps to time as toolkit_bpttK variants "
                         "(each where it is shorter than the window; '' for none)")
    args = ap.parse_args(argv)
    bptt = [int(k) for k in args.bptt.split(",") if k]
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import neuralforecast
    import pytorch_lightning  # noqa: F401 - sets its loggers' levels on import: quiet them after

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)

    result = {"torch": torch.__version__, "neuralforecast": neuralforecast.__version__,
              "torch_threads": torch.get_num_threads(), "precision": "fp32",
              "loadavg_start": os.getloadavg()}
    plan = {"quick": (20, 2) if args.quick else (30, 5), "design": (3, 1) if args.quick else (4, 5)}
    for size in args.sizes.split(","):
        steps, rounds = plan[size]
        steps, rounds = args.steps or steps, args.rounds or rounds
        r = measure(size, steps, rounds, args.data_dir, bptt)
        result[size] = r
        print(f"\n{size}: window {r['window']}, hidden {r['hidden']}, {r['layers']} layers, "
              f"batch {r['batch']}, {steps} steps x {rounds} rounds", file=sys.stderr)
        print(f"{'variant':<15} {'win/s fit':>10} {'win/s steps':>12} {'s/step':>8} "
              f"{'median round':>13} {'load':>5}", file=sys.stderr)
        for k, v in r.items():
            if not isinstance(v, dict):
                continue
            print(f"{k:<15} {v['windows_per_s_fit']:>10} {v['windows_per_s_steps']:>12} "
                  f"{v['s_per_step']:>8} {v['s_per_step_median_round']:>13} {v['load']:>5}",
                  file=sys.stderr)
        print(json.dumps({k: v for k, v in r.items() if k.startswith("ratio_toolkit")
                          and not k.endswith("_fit")}), file=sys.stderr)
    result["loadavg_end"] = os.getloadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
