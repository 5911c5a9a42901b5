"""The walk-forward refits and the final fit run in worker processes (joblib's loky,
or a real Dask LocalCluster) and give the same predictions as one process with one
thread; a parallel run interrupted with Ctrl-C leaves no worker behind and resumes to
the same result. Real ZL windows, a tiny net; no timings (bench/ has them)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

from cbi_toolkit.backtest import backtest
from cbi_toolkit.dataset import load_samples
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.skill import baselines_for
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec
from tests.reliability_support import (
    cli_args,
    comparable_forecasts,
    comparable_metrics,
    make_small_data,
    only_run,
    subprocess_cli,
    wait_for,
    write_spec,
)

TINY = {"window": 20, "model.hidden_dim": 8, "model.num_layers": 1, "model.num_heads": 2,
        "training.max_epochs": 2, "training.threads": 1, "training.batch_size": 32,
        "validation.test_start": None, "validation.n_splits": 3, "validation.test_size": 40,
        "validation.stride": 1}


@pytest.fixture(scope="module")
def setup(specs_dir, data_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={**TINY, "training.n_jobs": 1})
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    return spec, samples.subset(np.flatnonzero(samples.labelled)[-300:])


def _run(spec, samples):
    models = {"net": build_pipeline(spec, verbose=0), "random_walk": baselines_for(spec)["random_walk"]}
    preds, seconds, final = backtest(spec, samples, models, final=build_pipeline(spec, verbose=0))
    return preds, seconds, final.predict(samples.X[-5:])


@pytest.fixture(scope="module")
def sequential(setup):
    return _run(*setup)


def _same(a, b) -> None:
    preds_a, seconds_a, final_a = a
    preds_b, seconds_b, final_b = b
    key = lambda p: (p.model, p.fold, p.horizon)  # noqa: E731
    assert [key(p) for p in preds_a] == [key(p) for p in preds_b]  # fold order, whatever finished first
    for p, q in zip(preds_a, preds_b, strict=True):
        np.testing.assert_array_equal(p.mu, q.mu)
        np.testing.assert_array_equal(p.sigma, q.sigma)
        np.testing.assert_array_equal(p.dates, q.dates)
    np.testing.assert_array_equal(final_a, final_b)
    assert set(seconds_a) == set(seconds_b) and all(len(v) == 3 for v in seconds_b.values())


def test_local_workers_give_the_sequential_predictions(setup, sequential):
    spec, samples = setup
    parallel = spec.model_copy(update={"training": spec.training.model_copy(update={"n_jobs": 2})})
    _same(sequential, _run(parallel, samples))


def test_refit_every_groups_run_in_workers(setup):
    spec, samples = setup
    grouped = spec.model_copy(update={
        "validation": spec.validation.model_copy(update={"refit_every": 2})})
    one = _run(grouped, samples)
    two = _run(grouped.model_copy(update={
        "training": grouped.training.model_copy(update={"n_jobs": 2})}), samples)
    _same(one, two)
    assert two[1]["net"][1] == 0.0 and two[1]["net"][0] > 0  # fold 1 reuses fold 0's fit


def test_dask_cluster_gives_the_sequential_predictions(setup, sequential):
    from distributed import LocalCluster

    spec, samples = setup
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        on_dask = spec.model_copy(update={"training": spec.training.model_copy(
            update={"scheduler": cluster.scheduler_address})})
        _same(sequential, _run(on_dask, samples))


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_interrupted_parallel_run_leaves_no_worker_and_resumes_to_the_same_result(
        data_dir, tmp_path):
    data = make_small_data(data_dir, tmp_path / "data")
    base = {"max_epochs": 2, "batch_size": 128, "device": "cpu", "patience": 5}
    one = write_spec(tmp_path / "one.yaml", training={**base, "n_jobs": 1})
    two = write_spec(tmp_path / "two.yaml", training={**base, "n_jobs": 2})
    ref = subprocess_cli([*cli_args(one, data, tmp_path / "ref"), "-q"])
    _, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err

    root = tmp_path / "par"
    proc = subprocess_cli([*cli_args(two, data, root), "-q"])
    wait_for("runs/*/checkpoints/fit-*/epoch.pt", root, proc)
    workers = _children(proc.pid) - {proc.pid}
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "cbi-run --resume" in err and "Traceback" not in err
    deadline = time.monotonic() + 30
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(workers), "a worker outlived the interrupted run"
    run_dir = only_run(root)
    assert not (run_dir / "forecasts.csv").exists()

    proc = subprocess_cli(["--resume", str(run_dir), "--data-dir", str(data)])
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    ref_dir = only_run(tmp_path / "ref")
    assert comparable_forecasts(run_dir).equals(comparable_forecasts(ref_dir))
    assert comparable_metrics(run_dir).equals(comparable_metrics(ref_dir))
