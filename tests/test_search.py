"""Grid search over spec variants (cbi_toolkit.search) on the real snapshot, tiny models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.model_selection import GridSearchCV

from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.errors import SpecError
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.search import (
    RESULTS_FILE,
    ForecastScorer,
    load_grid,
    load_store,
    main,
    param_grid_for,
    run_search,
)
from cbi_toolkit.spec import DEFAULT_BASELINES, load_spec
from cbi_toolkit.walkforward import walk_forward

#: Tiny everything: one LSTM layer, 1 epoch, 2 folds (the real sizes are in docs/search.md).
TINY = {"model": {"num_layers": 1, "num_heads": 2, "dropout": 0.0},
        "training": {"max_epochs": 1, "patience": 1, "batch_size": 128, "device": "cpu"},
        "validation": {"n_splits": 2}}
#: Two data groups (window) x two pipeline values (hidden size): 4 variants.
GRID = {"window": [20, 24], "model.hidden_dim": [8, 16]}
METRIC_COLUMNS = ["variant", "window", "model.hidden_dim", "mase_1m", "mase_1m_std", "mae_1m",
                  "mape_1m", "direction_1m", "coverage_80_1m", "coverage_95_1m", "crps_1m"]


def write_grid(path, specs_dir, grid=None, **extra):
    doc = {"base": str(specs_dir / "zl_1m_quick.yaml"), "name": "tiny",
           "grid": GRID if grid is None else grid, "set": TINY, **extra}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As in every search task: one torch thread (the machine may be shared)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def grid_file(tmp_path_factory, specs_dir):
    return write_grid(tmp_path_factory.mktemp("grid") / "tiny.yaml", specs_dir)


@pytest.fixture(scope="module")
def sequential(grid_file, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("seq")
    return run_search(load_grid(grid_file), str(data_dir), output=out, n_jobs=1, quiet=True)


# -- bad grids: refused before anything runs ------------------------------------

@pytest.mark.parametrize("grid, extra, message", [
    ({"model.hiden_dim": [8, 16]}, {}, "unknown key 'hiden_dim' (did you mean 'hidden_dim'?)"),
    ({"modle.hidden_dim": [8]}, {}, "unknown key 'modle'"),
    ({"model.hidden_dim": ["big"]}, {}, "model.hidden_dim"),
    ({"training.lr": [-1.0]}, {}, "training.lr"),
    ({}, {}, "the grid is empty"),
    ({"window": []}, {}, "window: no values"),
    ({"window": 20}, {}, "values must be a list"),
    ({"window": [20, 24]}, {"metric": "rmse"}, "unknown metric 'rmse'"),
    ({"window": [20, 24]}, {"horizon": "3m"}, "ranking horizon '3m'"),
    ({"window": [20, 24]}, {"method": "random"}, "needs n:"),
    ({"window": [20, 24]}, {"colour": "red"}, "unknown key"),
    ({"window": [20, 20]}, {}, "resolve to the same spec"),
])
def test_bad_grid_refused(tmp_path, specs_dir, grid, extra, message, capsys):
    path = write_grid(tmp_path / "bad.yaml", specs_dir, grid, **extra)
    with pytest.raises(SpecError, match=None) as err:
        load_grid(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert main([str(path), "--output", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and message in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_max_variants_needs_yes(tmp_path, specs_dir):
    path = write_grid(tmp_path / "big.yaml", specs_dir,
                      {"window": [20, 24, 30], "model.hidden_dim": [8, 16]}, max_variants=4)
    with pytest.raises(SpecError, match="6 variants, more than max_variants 4; pass --yes"):
        load_grid(path)
    assert len(load_grid(path, yes=True).variants) == 6
    assert main([str(path), "--check", "--yes"]) == 0


def test_random_sampling_is_seeded(tmp_path, specs_dir):
    grid = {"window": [20, 24, 30], "model.hidden_dim": [8, 16], "training.lr": [1e-3, 3e-3]}
    path = write_grid(tmp_path / "r.yaml", specs_dir, grid, method="random", n=4, seed=7)
    first = [v.hash for v in load_grid(path).variants]
    assert len(first) == len(set(first)) == 4
    assert first == [v.hash for v in load_grid(path).variants]
    path = write_grid(tmp_path / "r.yaml", specs_dir, grid, method="random", n=4, seed=8)
    assert first != [v.hash for v in load_grid(path).variants]


def test_search_section_in_a_spec(tmp_path, specs_dir):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"extends": str(specs_dir / "zl_1m_quick.yaml"), **TINY,
                                    "search": {"grid": {"training.lr": [1e-3, 1e-2]}}}))
    grid = load_grid(spec)
    assert [v.spec.training.lr for v in grid.variants] == [1e-3, 1e-2]
    assert grid.variants[0].spec.model.num_layers == 1 and grid.horizon == "1m"


# -- the translation to sklearn -------------------------------------------------

def test_spec_grid_translates_to_gridsearchcv(grid_file, data_dir):
    grid = load_grid(grid_file)
    specs = [v.spec for v in grid.variants if v.spec.window == 20]
    param_grid = param_grid_for(specs)
    assert param_grid == [{"net__module__hidden_dim": [8]}, {"net__module__hidden_dim": [16]}]
    _, samples = prepare(specs[0], str(data_dir))
    lab = labelled_samples(samples)
    n = len(lab)
    search = GridSearchCV(build_pipeline(specs[0], verbose=0), param_grid,
                          cv=walk_forward(specs[0], n, lab.dates, part="selection"),
                          scoring=ForecastScorer(lab), refit=False)
    search.fit(lab.X, lab.y)
    mase = search.cv_results_["mean_test_mase_1m"]
    assert mase.shape == (2,) and np.isfinite(mase).all()
    assert search.cv_results_["params"] == [{"net__module__hidden_dim": 8},
                                            {"net__module__hidden_dim": 16}]


# -- running: sequential, Dask, resume ------------------------------------------

def test_sequential_leaderboard(sequential):
    board = sequential.leaderboard
    assert len(board) == 4 and list(board["rank"]) == [1, 2, 3, 4]
    assert board["mase_1m"].is_monotonic_increasing and np.isfinite(board["mase_1m"]).all()
    assert (board["torch_threads"] == 1).all() and (board["fit_seconds"] > 0).all()
    assert (board["folds"] == 2).all() and board["origins"].nunique() == 1
    out = sequential.output
    csv = pd.read_csv(out / "leaderboard.csv")
    assert list(csv["variant"]) == list(board["variant"])
    assert "mase_1m_std" in csv and "fit_seconds" in csv and "crps_1m" in csv
    assert "rank |" in (out / "leaderboard.md").read_text()
    best = load_spec(sequential.best_spec_path)  # a complete spec, loads on its own
    assert best.window == board.iloc[0]["window"]
    assert best.model.hidden_dim == board.iloc[0]["model.hidden_dim"]
    refs = sequential.baselines.set_index("model")["mase_1m"]
    assert list(refs.index) == DEFAULT_BASELINES and refs["random_walk"] == 1.0
    assert (out / "baselines.csv").is_file()
    rows = [json.loads(line) for line in (out / RESULTS_FILE).read_text().splitlines()]
    assert len(rows) == 4 and len({r["variant"] for r in rows}) == 4


def test_dask_cluster_gives_the_same_leaderboard(grid_file, data_dir, sequential, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        result = run_search(load_grid(grid_file), str(data_dir), output=tmp_path,
                            scheduler=cluster.scheduler_address, quiet=True)
    assert sorted(result.ran) == sorted(sequential.leaderboard["variant"])
    assert (result.leaderboard["torch_threads"] == 1).all()
    pd.testing.assert_frame_equal(result.leaderboard[METRIC_COLUMNS],
                                  sequential.leaderboard[METRIC_COLUMNS])


def test_interrupted_search_resumes(grid_file, data_dir, sequential, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_first(row):
        raise Stop(row["variant"])

    with pytest.raises(Stop) as stopped:
        run_search(load_grid(grid_file), str(data_dir), output=tmp_path, on_variant=stop_after_first,
                   quiet=True)
    first = str(stopped.value)
    assert [r["variant"] for r in load_store(tmp_path / RESULTS_FILE).values()] == [first]
    with open(tmp_path / RESULTS_FILE, "a") as fh:  # as if killed in the middle of a write
        fh.write('{"store_version": 1, "key": "cut sh')
    assert len(load_store(tmp_path / RESULTS_FILE)) == 1

    seen = []
    resumed = run_search(load_grid(grid_file), str(data_dir), output=tmp_path,
                         on_variant=lambda row: seen.append(row["variant"]), quiet=True)
    assert resumed.skipped == [first] and first not in seen and len(seen) == 3
    assert len(load_store(tmp_path / RESULTS_FILE)) == 4  # the cut line did not swallow a row
    pd.testing.assert_frame_equal(resumed.leaderboard[METRIC_COLUMNS],
                                  sequential.leaderboard[METRIC_COLUMNS])
    # a third run evaluates nothing: the CLI ranks from the store, then runs the best spec
    runs = tmp_path / "runs"
    rc = main([str(grid_file), "--data-dir", str(data_dir), "--output", str(tmp_path), "-q",
               "--run-best", "--runs-dir", str(runs), "--sink", f"duckdb://{runs / 'f.duckdb'}"])
    assert rc in (0, 3)  # 3: the tiny model failed its deploy gate; the run is complete anyway
    assert len(load_store(tmp_path / RESULTS_FILE)) == 4
    (run_dir,) = [d for d in runs.iterdir() if d.is_dir()]
    assert (run_dir / "report.md").is_file() and (run_dir / "metrics.csv").is_file()
    assert load_spec(run_dir / "spec.yaml").name == resumed.best.spec.name
