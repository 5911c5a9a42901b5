"""Side-by-side performance benchmark of cbi_toolkit (never part of the test suite).

    python bench/run.py [--quick] [--json PATH] [--data-dir DIR] [--skip-run]

Measures in one process, competing variants interleaved round by round so
that load from other processes hits them alike:

(a) a minimal hand-written PyTorch training loop of `ForecastNet` at design size
    (window 252, hidden 256, 3 LSTM layers, 8 heads, batch 32) on real windows,
    fp32 and bf16 autocast: the ceiling;
(b) the toolkit's training path (the skorch regressor inside the pipeline from
    `build_pipeline(spec)`, one epoch on the same real windows, validation tail
    included) at the same settings: samples/s and the ratio b/a;
(c) forecast latency for one origin date (p50, p95 over >= 200 calls) and batch
    throughput, per serving path (eager no_grad, inference_mode fp32 and bf16,
    TorchScript, ONNX Runtime fp32 and int8, ExecuTorch + XNNPACK), with the max
    |difference| from eager fp32 (`--serving-run RUN`: of a trained run's model);
(d) wall time of a full `cbi-run` of specs/zl_1m_quick.yaml (subprocess) and an
    extrapolation for specs/zl_1m.yaml from the measured training speed;
(e) peak RSS of this process and of the cbi-run child;
(g) with ``--peers PYTHON``: bench/peers_speed.py run by that interpreter (the peers'
    own environment, bench/peers-requirements.txt): the toolkit's training speed against
    neuralforecast's LSTM at the quick and the design size, merged under details.peers;
plus end-of-training validation loss fp32 vs bf16 (real data) and walk-forward
metrics of cold refits vs warm start vs refit_every=2.

Every figure is printed with the 1-minute load average at the time. The JSON has
the stable keys train_samples_per_s, train_ratio_vs_plain, forecast_p50_ms,
forecast_p95_ms, run_wall_s, peak_rss_mb (each for the default/fastest
setting), and a ``details`` mapping with everything else.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cbi_toolkit.backtest import backtest, labelled_samples  # noqa: E402
from cbi_toolkit.evaluation import score_folds, summarise  # noqa: E402
from cbi_toolkit.export import (  # noqa: E402
    eager_callable,
    export_executorch,
    export_onnx,
    export_onnx_int8,
    export_torchscript,
    load_exported,
    raw_windows,
    scaled_module,
)
from cbi_toolkit.features.windows import WindowScaler  # noqa: E402
from cbi_toolkit.models.device import cpu_supports_bf16  # noqa: E402
from cbi_toolkit.models.loss import GaussianForecastLoss  # noqa: E402
from cbi_toolkit.models.network import ForecastNet  # noqa: E402
from cbi_toolkit.pipeline import build_baselines, build_pipeline, predict_dist  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402

DESIGN_SPEC = ROOT / "specs" / "zl_1m.yaml"
QUICK_SPEC = ROOT / "specs" / "zl_1m_quick.yaml"


def load() -> float:
    return round(os.getloadavg()[0], 2)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict:
    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    caps = {}
    get_caps = getattr(torch.cpu, "get_capabilities", None)
    if get_caps is not None:
        c = get_caps()
        caps = {k: c.get(k) for k in ("avx512_bf16", "amx_bf16", "amx_tile")}
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu_supports_bf16(), **caps,
            "cuda": torch.cuda.is_available(), "loadavg_start": os.getloadavg()}


def interleave(variants: dict, rounds: int) -> dict[str, dict]:
    """Run each variant's ``fn() -> (samples, seconds)`` once per round, in turn."""
    tot = {k: [0, 0.0, []] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            n, sec = fn()
            tot[name][0] += n
            tot[name][1] += sec
            tot[name][2].append(load())
    return {k: {"samples": n, "seconds": round(s, 2), "samples_per_s": round(n / s, 2),
                "load": round(float(np.mean(ld)), 2)} for k, (n, s, ld) in tot.items()}


# ---------------------------------------------------------------------------
# (a) plain loop and (b) toolkit path

class PlainLoop:
    """The ceiling: the same module, loss, AdamW, clipping and gather-by-index batches."""

    def __init__(self, X, y, spec, precision: str, batches: int, threads: int):
        torch.manual_seed(0)
        self.threads = threads
        m, t = spec.model, spec.training
        self.net = ForecastNet(X.values.shape[1], y.shape[1], m.hidden_dim, m.num_layers,
                               m.num_heads, m.dropout, m.attention)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        self.crit = GaussianForecastLoss()
        self.values = torch.from_numpy(np.ascontiguousarray(X.values, dtype=np.float32))
        self.ends = torch.from_numpy(X.ends)
        self.offsets = torch.from_numpy(X.offsets())
        self.y = torch.from_numpy(np.asarray(y, dtype=np.float32))
        self.bs, self.batches, self.bf16 = t.batch_size, batches, precision == "bf16"
        self.gen = torch.Generator().manual_seed(0)
        with threads_set(threads):
            self.step()  # warm-up

    def step(self) -> int:
        idx = torch.randint(0, len(self.ends), (self.bs,), generator=self.gen)
        xb = self.values[self.ends[idx, None] + self.offsets]
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.net(xb)
        loss = self.crit(tuple(o.float() for o in out), self.y[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        return self.bs

    def __call__(self) -> tuple[int, float]:
        self.net.train()
        with threads_set(self.threads):
            start = time.perf_counter()
            n = sum(self.step() for _ in range(self.batches))
            return n, time.perf_counter() - start


class ToolkitFit:
    """`build_pipeline(spec).fit(X, y)` for one epoch on real samples: ``batches`` full
    training batches plus the validation tail (and its gap) that the spec asks for.
    Every origin is trained (``stride: 1``): this compares the speed per window with the
    plain loop; the stride's saving is measured by the design fold (f)."""

    def __init__(self, spec, samples, precision: str, batches: int, threads: int):
        self.spec = spec.model_copy(update={"training": spec.training.model_copy(update={
            "max_epochs": 1, "precision": precision, "device": "cpu", "threads": threads,
            "stride": 1})})
        from cbi_toolkit.models.batching import TailSplit

        net = build_pipeline(self.spec, verbose=0)[-1]
        split = TailSplit(net.valid_fraction, net.valid_gap)
        want = batches * spec.training.batch_size
        n = want + 2
        while len(split.indices(n)[0]) < want:
            n += 1
        self.n_train = len(split.indices(n)[0])
        idx = np.arange(len(samples) - n, len(samples))
        self.X, self.y = samples.X[idx], samples.y[idx]

    def __call__(self) -> tuple[int, float]:
        pipe = build_pipeline(self.spec, verbose=0)
        start = time.perf_counter()
        pipe.fit(self.X, self.y)
        return self.n_train, time.perf_counter() - start


class threads_set:  # noqa: N801 - used like torch's context managers
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def bench_training(spec, samples, quick: bool, threads: list[int]) -> dict:
    X = WindowScaler().fit_transform(samples.X)
    precisions = ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]
    batches = 2 if quick else 6
    rounds = 1 if quick else 2
    variants = {}
    for th in threads:
        for p in precisions:
            # other thread counts: one batch a round (on a loaded machine they can be very slow)
            variants[f"plain_{p}_t{th}"] = PlainLoop(X, samples.y, spec, p,
                                                     batches if th == threads[0] else 1, th)
            if th == threads[0]:
                variants[f"toolkit_{p}_t{th}"] = ToolkitFit(spec, samples, p, batches, th)
    for fn in variants.values():  # warm-up: oneDNN primitives for every shape
        if isinstance(fn, ToolkitFit):
            fn()
    res = interleave(variants, rounds)
    for name in list(res):
        if name.startswith("toolkit_"):
            plain = name.replace("toolkit_", "plain_")
            res[name]["ratio_vs_plain"] = round(res[name]["samples_per_s"]
                                                / res[plain]["samples_per_s"], 3)
    res["batches_per_round"], res["rounds"] = batches, rounds
    return res


# ---------------------------------------------------------------------------
# precision: validation loss at the end of training, fp32 vs bf16

def bench_precision(spec, samples, quick: bool, threads: int) -> dict:
    if not cpu_supports_bf16():
        return {"skipped": "no native bf16 on this CPU"}
    epochs = 3 if quick else 8
    out = {"spec": "zl_1m_quick sizes (window 63, hidden 64, 2 layers)", "epochs": epochs}
    for p in ("fp32", "bf16"):
        s = spec.model_copy(update={"training": spec.training.model_copy(update={
            "max_epochs": epochs, "precision": p, "device": "cpu", "patience": epochs,
            "threads": threads})})
        pipe = build_pipeline(s, verbose=0)
        start = time.perf_counter()
        pipe.fit(samples.X, samples.y)
        hist = pipe[-1].history
        out[p] = {"final_valid_loss": round(float(hist[-1, "valid_loss"]), 5),
                  "best_valid_loss": round(float(min(hist[:, "valid_loss"])), 5),
                  "fit_s": round(time.perf_counter() - start, 1), "load": load()}
    out["final_rel_diff"] = round(abs(out["bf16"]["final_valid_loss"] - out["fp32"]["final_valid_loss"])
                                  / abs(out["fp32"]["final_valid_loss"]), 4)
    out["best_rel_diff"] = round(abs(out["bf16"]["best_valid_loss"] - out["fp32"]["best_valid_loss"])
                                 / abs(out["fp32"]["best_valid_loss"]), 4)
    return out


# ---------------------------------------------------------------------------
# (c) serving

def _untrained_module(spec, X):
    """The design-size scaler + net with untrained weights (speed does not depend on them)."""
    torch.manual_seed(0)
    m = spec.model
    scaler = WindowScaler().fit(X)
    net = ForecastNet(X.values.shape[1], len(spec.horizons), m.hidden_dim, m.num_layers,
                      m.num_heads, m.dropout, m.attention)

    class _Pipe:  # what scaled_module reads from a fitted pipeline
        named_steps = {"scale": scaler, "net": type("N", (), {"module_": net})()}

    return scaled_module(_Pipe)


def bench_serving(spec, samples, quick: bool, run_dir: str | None = None,
                  data_dir: str | None = None) -> dict:
    """Forecast latency per serving path; with ``run_dir``, of that saved run's trained
    model on its own newest windows (so the differences from eager fp32 are real ones)."""
    if run_dir:
        from cbi_toolkit.run.saved import load_run

        _, samples, pipe, _, _ = load_run(run_dir, data_dir)
        module = scaled_module(pipe)
    else:
        module = _untrained_module(spec, samples.X)
    X = samples.X
    one = raw_windows(X[[len(X) - 1]])
    batch = raw_windows(X[np.arange(len(X) - 256, len(X))])
    tmp = Path(tempfile.mkdtemp(prefix="cbi-bench-"))
    paths = {"eager_no_grad": None, "inference_mode": eager_callable(module)}
    export_s = {}

    def no_grad(w):
        with torch.no_grad():
            mu, s = module(torch.from_numpy(w))
        return mu.numpy(), s.numpy()

    paths["eager_no_grad"] = no_grad
    if cpu_supports_bf16():
        def bf16(w):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                mu, s = module(torch.from_numpy(w))
            return mu.float().numpy(), s.float().numpy()
        paths["inference_mode_bf16"] = bf16
    export_torchscript(module, torch.from_numpy(one), tmp / "m.pt")
    paths["torchscript"] = load_exported(tmp / "m.pt")
    try:
        export_onnx(module, torch.from_numpy(one), tmp / "m.onnx")
        paths["onnxruntime"] = load_exported(tmp / "m.onnx")
        export_onnx_int8(module, torch.from_numpy(one), tmp / "m.int8.onnx")
        paths["onnxruntime_int8"] = load_exported(tmp / "m.int8.onnx")
    except Exception as exc:  # onnxruntime missing or export failure: report, go on
        print(f"onnx: {exc}")
    try:
        start = time.perf_counter()
        export_executorch(module, torch.from_numpy(one), tmp / "m.pte")
        export_s["executorch_xnnpack"] = round(time.perf_counter() - start, 1)
        paths["executorch_xnnpack"] = load_exported(tmp / "m.pte")
    except Exception as exc:  # executorch missing or export failure: report, go on
        print(f"executorch: {exc}")
    ref = paths["inference_mode"](batch[:16])
    calls = 200 if quick else 400
    chunk = 20
    lat = {k: [] for k in paths}
    for fn in paths.values():  # warm-up
        for _ in range(5):
            fn(one)
    for _ in range(calls // chunk):
        for k, fn in paths.items():
            for _ in range(chunk):
                t = time.perf_counter()
                fn(one)
                lat[k].append((time.perf_counter() - t) * 1000)
    thr = {k: [0, 0.0] for k in paths}
    for _ in range(1 if quick else 3):
        for k, fn in paths.items():
            t = time.perf_counter()
            fn(batch)
            thr[k][0] += len(batch)
            thr[k][1] += time.perf_counter() - t
    out = {}
    for k, fn in paths.items():
        mu, s = fn(batch[:16])
        out[k] = {"p50_ms": round(float(np.percentile(lat[k], 50)), 3),
                  "p95_ms": round(float(np.percentile(lat[k], 95)), 3),
                  "calls": len(lat[k]),
                  "batch256_samples_per_s": round(thr[k][0] / thr[k][1], 1),
                  "max_abs_diff_vs_eager_fp32": float(max(np.abs(mu - ref[0]).max(),
                                                          np.abs(s - ref[1]).max()))}
    for k, seconds in export_s.items():
        out[k]["export_s"] = seconds
    out["load"] = load()
    return out


# ---------------------------------------------------------------------------
# walk-forward: cold refits vs warm start vs refit_every

def bench_folds(spec, samples, quick: bool, threads: int, precision: str) -> dict:
    epochs = 1 if quick else spec.training.max_epochs
    base = spec.model_copy(update={"training": spec.training.model_copy(update={
        "max_epochs": epochs, "device": "cpu", "threads": threads, "precision": precision})})
    variants = {"cold": {}, "warm_start": {"warm_start": True,
                                           "warm_epochs": max(1, epochs // 2)},
                "refit_every_2": {"refit_every": 2}}
    out = {"epochs": epochs, "n_splits": spec.validation.n_splits, "precision": precision,
           "threads": threads}
    for name, upd in variants.items():
        s = base.model_copy(update={"validation": base.validation.model_copy(update=upd)})
        models = {"model": build_pipeline(s, verbose=0), **build_baselines()}
        start = time.perf_counter()
        preds, seconds, _ = backtest(s, samples, models)
        wall = time.perf_counter() - start
        summ = summarise(preds, score_folds(preds))
        row = summ[summ["model"] == "model"].iloc[0]
        out[name] = {"wall_s": round(wall, 1), "model_fit_s": round(sum(seconds["model"]), 1),
                     "fits": sum(1 for x in seconds["model"] if x > 0),
                     "mae": round(float(row["mae"]), 4), "mase": round(float(row["mase"]), 4),
                     "direction": round(float(row.get("direction_accuracy", np.nan)), 4),
                     "load": load()}
    return out


# ---------------------------------------------------------------------------
# (d) cbi-run wall time

def bench_run(spec_path: Path, data_dir: str | None, extra: list[str]) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="cbi-bench-run-"))
    cmd = [sys.executable, "-m", "cbi_toolkit.cli", str(spec_path), "--runs-dir", str(tmp),
           "--sink", f"duckdb://{tmp / 'f.duckdb'}", "-q", *extra]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    wall = time.perf_counter() - start
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"cmd": " ".join(cmd[2:]), "exit_code": proc.returncode, "wall_s": round(wall, 1),
            "peak_rss_mb": round(max(child_rss, before) / 1024.0, 1), "load": load(),
            "stderr_tail": proc.stderr[-400:] if proc.returncode not in (0, 3) else ""}


# today's path: one process, every training origin each epoch, the learning rate warmed up
# over 10% of max_epochs worth of steps then cosine to 0 at max_epochs (100 epochs)
OLD_PATH = {"training.n_jobs": 1, "training.stride": 1, "training.lr_schedule": "cosine",
            "training.warmup": 0.1, "training.max_epochs": 100, "training.patience": 10}


def _fit_design_fold(spec, samples, fold: int, over: dict, seed: int, threads: int) -> dict:
    """Fit one design-size fold with the ``over`` settings and ``seed``; its fit seconds,
    epochs and out-of-sample MASE / CRPS (the net's own Gaussian, uncalibrated)."""
    from cbi_toolkit.evaluation import score
    from cbi_toolkit.metrics import FoldPrediction
    from cbi_toolkit.walkforward import walk_forward

    torch.set_num_threads(threads)
    f = walk_forward(spec, len(samples), samples.dates).folds(len(samples))[fold]
    s = spec.model_copy(update={"training": spec.training.model_copy(update={
        **{k.split(".")[1]: v for k, v in over.items()}, "threads": threads, "device": "cpu",
        "seed": seed})})
    pipe = build_pipeline(s, verbose=0)
    start = time.perf_counter()
    pipe.fit(samples.X[f.train], samples.y[f.train])
    wall = time.perf_counter() - start
    mu, sigma = (a[:, 0] for a in predict_dist(pipe, samples.X[f.test]))
    row = score(FoldPrediction("net", fold, spec.horizons[0], samples.y[f.test, 0], mu, sigma,
                               samples.price[f.test], samples.dates[f.test], f.role))
    history = pipe[-1].history
    return {"seed": seed, "fit_s": round(wall, 1), "epochs": len(history),
            "best_valid_loss": round(float(min(history[:, "valid_loss"])), 5),
            "mase": round(float(row["mase"]), 4), "crps": round(float(row["crps"]), 5),
            "load": load()}


def bench_design_fold(spec, samples, threads: int, fold: int = 0, seeds: int = 3) -> dict:
    """One design-size walk-forward fold, today's path against the new default (and the
    new default in bf16 autocast where the CPU has native bf16: the check for making it the
    default), ``seeds`` seeds each: the fits run side by side in one worker process per
    core (the old path's longest first), each with ``threads`` torch threads, so every
    path shares the same load."""
    from joblib import Parallel, delayed

    from cbi_toolkit.walkforward import walk_forward

    f = walk_forward(spec, len(samples), samples.dates).folds(len(samples))[fold]
    out = {"fold": fold, "train_origins": len(f.train), "test_origins": len(f.test),
           "seeds": seeds}
    paths = {"old": OLD_PATH, "new": {}}
    if cpu_supports_bf16():
        paths["new_bf16"] = {"training.precision": "bf16"}
    jobs = [(name, over, seed) for seed in range(seeds) for name, over in paths.items()]
    jobs.sort(key=lambda j: j[0] != "old")  # the long fits first
    workers = max(1, min(len(jobs), (os.cpu_count() or 1) // threads))
    fits = Parallel(n_jobs=workers, backend="loky")(
        delayed(_fit_design_fold)(spec, samples, fold, over, seed, threads)
        for _, over, seed in jobs)
    for name in paths:
        mine = [r for (n, _, _), r in zip(jobs, fits, strict=True) if n == name]
        out[name] = {"fits": sorted(mine, key=lambda r: r["seed"]),
                     **{k: round(float(np.mean([r[k] for r in mine])), 5)
                        for k in ("fit_s", "epochs", "best_valid_loss", "mase", "crps")}}
        print(name, json.dumps(out[name]), flush=True)
    out["fold_speedup"] = round(out["old"]["fit_s"] / out["new"]["fit_s"], 2)
    if "new_bf16" in out:  # bf16 becomes the default only within 2% of fp32's validation loss
        out["bf16_valid_loss_rel_diff"] = round(
            out["new_bf16"]["best_valid_loss"] / out["new"]["best_valid_loss"] - 1, 4)
    return out


def walk_forward_fits(spec, samples) -> list[int]:
    """Training origins of every fit of a run: each walk-forward refit and the final fit."""
    from cbi_toolkit.walkforward import walk_forward

    folds = walk_forward(spec, len(samples), samples.dates).folds(len(samples))
    return [len(f.train) for k, f in enumerate(folds) if k % spec.validation.refit_every == 0] + \
        [len(samples)]


def extrapolate_design(spec, samples, samples_per_s: float) -> dict:
    """Training-time estimate of `cbi-run specs/zl_1m.yaml` from measured samples/s, one
    process (each epoch trains every ``training.stride``-th origin)."""
    vf, stride = spec.training.valid_fraction, spec.training.stride
    per_epoch = [(int(n * (1 - vf)) - spec.max_horizon) // stride
                 for n in walk_forward_fits(spec, samples)]
    total = sum(per_epoch)
    out = {"train_samples_per_epoch_all_fits": total, "samples_per_s": samples_per_s}
    for epochs in (spec.training.max_epochs, 30):
        out[f"hours_at_{epochs}_epochs"] = round(total * epochs / samples_per_s / 3600, 2)
    return out


# ---------------------------------------------------------------------------
# (g) against the peers, in their own environment

def bench_peers(python: str, quick: bool, data_dir: str | None) -> dict:
    """Run bench/peers_speed.py with ``python`` (its table goes to our stderr) and return
    its JSON; a failure is reported in the result, not raised."""
    cmd = [python, str(ROOT / "bench" / "peers_speed.py")] + (["--quick"] if quick else [])
    if data_dir:
        cmd += ["--data-dir", data_dir]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return {"cmd": " ".join(cmd), "exit_code": proc.returncode}
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------

def table(rows: list[list], head: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False))  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and calls (a few minutes)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skip-run", action="store_true", help="skip the cbi-run subprocess (d)")
    ap.add_argument("--skip-folds", action="store_true", help="skip cold/warm/refit walk-forward")
    ap.add_argument("--design", action="store_true",
                    help="(f) also run the design-size main job `cbi-run specs/zl_1m.yaml` "
                         "(~13 min) and one design fold on today's path against the new default, "
                         "3 seeds each, side by side (~15 min more)")
    ap.add_argument("--design-seeds", type=int, default=3,
                    help="(f) seeds of the design fold, each path (default 3)")
    ap.add_argument("--peers", metavar="PYTHON",
                    help="(g) also run bench/peers_speed.py with this interpreter (a venv with "
                         "bench/peers-requirements.txt and the toolkit; docs/performance.md)")
    ap.add_argument("--serving-run", metavar="RUN",
                    help="(c) time the serving paths on this saved run's trained model (a "
                         "design-size runs/<run_id>), so the differences from eager are real; "
                         "default: untrained design-size weights")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the toolkit, serving and runs (default 1; training "
                         "is also measured with every other count up to the core count)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    thread_counts = [args.threads] + [n for n in range(1, (os.cpu_count() or 1) + 1)
                                      if n != args.threads]
    info = machine()
    print("machine:", json.dumps(info))
    design = load_spec(DESIGN_SPEC)
    quick_spec = load_spec(QUICK_SPEC)
    _, s_design = prepare(design, args.data_dir)
    lab_design = labelled_samples(s_design)
    _, s_quick = prepare(quick_spec, args.data_dir)
    lab_quick = labelled_samples(s_quick)
    details: dict = {"machine": info, "quick": args.quick}

    print("\n(a)/(b) training, design size, samples/s (interleaved)")
    tr = bench_training(design, lab_design, args.quick, thread_counts)
    details["training_design"] = tr
    best_p = "bf16" if f"toolkit_bf16_t{args.threads}" in tr else "fp32"
    best = f"toolkit_{best_p}_t{args.threads}"
    print(table([[k, v["samples_per_s"], v.get("ratio_vs_plain", ""), v["load"]]
                 for k, v in tr.items() if isinstance(v, dict)],
                ["variant", "samples/s", "toolkit/plain", "load1"]))

    print("\n(c) serving, design size, one origin")
    sv = bench_serving(design, lab_design, args.quick, args.serving_run, args.data_dir)
    details["serving_design"] = sv
    print(table([[k, v["p50_ms"], v["p95_ms"], v["batch256_samples_per_s"],
                  f"{v['max_abs_diff_vs_eager_fp32']:.1e}"] for k, v in sv.items() if isinstance(v, dict)],
                ["path", "p50 ms", "p95 ms", "batch256/s", "max|diff|"]) + f"\nload1 {sv['load']}")

    print("\nprecision: validation loss at the end of training (real data)")
    pr = bench_precision(quick_spec, lab_quick, args.quick, args.threads)
    details["precision_check"] = pr
    print(json.dumps(pr, indent=1))

    if not args.skip_folds:
        print("\nwalk-forward, quick spec: cold refits vs warm start vs refit_every=2")
        fo = bench_folds(quick_spec, lab_quick, args.quick, args.threads, best_p)
        details["folds"] = fo
        print(table([[k, v["wall_s"], v["fits"], v["mae"], v["mase"], v["load"]]
                     for k, v in fo.items() if isinstance(v, dict)],
                    ["variant", "wall s", "fits", "MAE", "MASE", "load1"]))

    details["design_run_estimate"] = {
        p: extrapolate_design(design, lab_design, tr[f"toolkit_{p}_t{args.threads}"]["samples_per_s"])
        for p in ("fp32", "bf16") if f"toolkit_{p}_t{args.threads}" in tr}
    print("\n(d) design spec estimate (training only, extrapolated from (b)):",
          json.dumps(details["design_run_estimate"]))
    run_wall = None
    if not args.skip_run:
        print("\n(d) cbi-run specs/zl_1m_quick.yaml")
        runs = {}
        for p in sorted({best_p, "fp32"}) if not args.quick else [best_p]:
            runs[p] = bench_run(QUICK_SPEC, args.data_dir, ["--set", f"training.precision={p}",
                                                            "--set", f"training.threads={args.threads}"])
            print(p, json.dumps(runs[p]))
        details["run_quick"] = runs
        run_wall = min(r["wall_s"] for r in runs.values() if r["exit_code"] in (0, 3))

    design_wall = design_speedup = None
    if args.design:
        print("\n(f) design size: one fold, today's path against the new default")
        fold = bench_design_fold(design, lab_design, args.threads, seeds=args.design_seeds)
        print("\n(f) cbi-run specs/zl_1m.yaml (the README's main job)")
        run = bench_run(DESIGN_SPEC, args.data_dir, [])
        print(json.dumps(run))
        design_wall = run["wall_s"] if run["exit_code"] in (0, 3) else None
        # today's path never finished the main job here (hours): its time is the measured
        # fold's seconds per training origin times the origins of all nine fits
        fits = walk_forward_fits(design, lab_design)
        old_s = fold["old"]["fit_s"] / fold["train_origins"] * sum(fits)
        details["design"] = {"fold": fold, "run": run, "fits_train_origins": fits,
                             "old_path_run_estimate_s": round(old_s, 1)}
        design_speedup = round(old_s / design_wall, 2) if design_wall else None

    if args.peers:
        print("\n(g) against the peers: neuralforecast's LSTM, same steps, fp32, 1 thread")
        details["peers"] = bench_peers(args.peers, args.quick, args.data_dir)

    serve_paths = {k: v for k, v in sv.items() if isinstance(v, dict)}
    fastest = min(serve_paths, key=lambda k: serve_paths[k]["p50_ms"])
    result = {
        "train_samples_per_s": tr[best]["samples_per_s"],
        "train_ratio_vs_plain": tr[best]["ratio_vs_plain"],
        "forecast_p50_ms": serve_paths[fastest]["p50_ms"],
        "forecast_p95_ms": serve_paths[fastest]["p95_ms"],
        "run_wall_s": run_wall,
        "design_run_wall_s": design_wall,
        "design_run_speedup": design_speedup,
        "peak_rss_mb": round(max(rss_mb(), max((r["peak_rss_mb"] for r in
                                                details.get("run_quick", {}).values()),
                                               default=0)), 1),
        "bench_process_rss_mb": round(rss_mb(), 1),
        "train_setting": best,
        "forecast_path": fastest,
        "loadavg_end": os.getloadavg(),
        "details": details,
    }
    print("\nsummary:", json.dumps({k: v for k, v in result.items() if k != "details"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
