"""One pooled model for several commodities (a spec's ``targets``): the network, the
pipeline on real soy-complex windows, per-commodity scaling inside the fold, the spec key,
and `cbi-run` writing every commodity's series to DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from cbi_toolkit.cli import main
from cbi_toolkit.errors import SpecError
from cbi_toolkit.features.pooled import PooledWindows, PooledWindowScaler
from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.global_network import GlobalForecastNet
from cbi_toolkit.pooled import build_pooled_pipeline
from cbi_toolkit.pooled_dataset import labelled_pooled, load_pooled_samples
from cbi_toolkit.run.folder import read_status
from cbi_toolkit.run.prepare import source_context
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.spec import load_spec

TINY = {"window": 20, "model.hidden_dim": 8, "model.num_heads": 2, "model.num_layers": 1,
        "training.max_epochs": 1, "training.batch_size": 256, "training.device": "cpu",
        "training.threads": 1, "validation.n_splits": 2,
        "validation.test_start": "2023-01-03", "validation.test_size": 126}
TARGETS = ["zl", "zs", "zm"]


@pytest.fixture(scope="module")
def pooled(specs_dir, data_dir):
    spec = load_spec(specs_dir / "soy_complex_1m_quick.yaml",
                     {**TINY, "horizons": ["1w", "1m"]})
    _, samples = load_pooled_samples(spec, source_context(str(data_dir)))
    return spec, labelled_pooled(samples)


def test_cross_commodity_attention_mixes_the_commodities():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 10, 5)
    other = x.clone()
    other[:, 2] += 1.0  # change only the third commodity's window
    for cross in (True, False):
        net = GlobalForecastNet(5, 2, 3, hidden_dim=8, num_layers=1, num_heads=2,
                                cross_attention=cross).eval()
        with torch.no_grad():
            for head in net.mean_heads:  # heads that read the encoding (not near-zero)
                torch.nn.init.normal_(head[-1].weight)
            mu, sigma = net(x)
            mu2, _ = net(other)
        assert mu.shape == sigma.shape == (4, 6) and (sigma > 0).all()
        moved = (mu2[:, :2] - mu[:, :2]).abs().max().item()  # the first commodity's outputs
        assert (moved > 1e-4) if cross else (moved == 0.0)
        assert (mu2[:, 4:] - mu[:, 4:]).abs().max().item() > 1e-4


def test_pooled_pipeline_clones_fits_and_predicts_per_commodity(pooled):
    spec, samples = pooled
    assert samples.commodities == TARGETS and samples.horizons == ["1w", "1m"]
    X, y = samples.X, samples.y
    assert X.shape == (len(samples), 3, 20, X.n_features) and y.shape == (len(samples), 6)
    # y is commodity-major: columns 2..3 are ZS's 1w and 1m forward returns
    np.testing.assert_array_equal(y[:, samples.columns("zs")], samples.members["zs"].y)
    train = np.arange(len(samples) - 600, len(samples) - 100)
    proto = build_pooled_pipeline(spec, verbose=0)
    pipe = clone(proto).fit(X[train], y[train])
    mu = pipe.predict(X[-50:])
    mean, sigma = pipe[-1].predict_dist(pipe[:-1].transform(X[-50:]))
    assert mu.shape == mean.shape == sigma.shape == (50, 6)
    assert np.isfinite(mu).all() and (sigma > 0).all()
    # each commodity's sigma is on its own scale: the training std of its own targets
    stats = pipe[-1].module_.target_scale.numpy()
    np.testing.assert_allclose(stats, np.nanstd(y[train], axis=0), rtol=0.05)
    with pytest.raises(NotFittedError):
        clone(pipe).predict(X[-5:])
    assert clone(pipe).get_params()["net__module__hidden_dim"] == 8


def test_pooled_folds_and_final_fit_in_workers_give_the_sequential_predictions(
        specs_dir, pooled):
    from cbi_toolkit.pipeline import predict_dist
    from cbi_toolkit.pooled import backtest_pooled

    _, samples = pooled
    small = samples.subset(np.arange(len(samples) - 300, len(samples)))

    def run(n_jobs):
        spec = load_spec(specs_dir / "soy_complex_1m_quick.yaml", {
            **TINY, "horizons": ["1w", "1m"], "validation.test_start": None,
            "validation.test_size": 40, "validation.n_splits": 3, "training.n_jobs": n_jobs})
        preds, seconds, final = backtest_pooled(spec, small, build_pooled_pipeline(spec, 0),
                                                final=build_pooled_pipeline(spec, 0))
        return preds, seconds, predict_dist(final, small.X[-5:])

    (one, one_seconds, one_final), (two, two_seconds, two_final) = run(1), run(2)
    assert list(two) == TARGETS and len(one_seconds) == len(two_seconds) == 3
    for c in TARGETS:
        key = [(p.series, p.fold, p.horizon) for p in one[c]]
        assert key == [(p.series, p.fold, p.horizon) for p in two[c]]  # fold order
        assert {k[0] for k in key} == {c} and {k[1] for k in key} == {0, 1, 2}
        for p, q in zip(one[c], two[c], strict=True):
            np.testing.assert_array_equal(p.mu, q.mu)
            np.testing.assert_array_equal(p.sigma, q.sigma)
            np.testing.assert_array_equal(p.y, small.members[c].y[
                small.dates.get_indexer(p.dates), small.horizons.index(p.horizon)])
    for a, b in zip(one_final, two_final, strict=True):
        np.testing.assert_array_equal(a, b)


def test_each_commodity_is_scaled_on_its_training_fold_only(pooled):
    _, samples = pooled
    X = samples.X
    train = np.arange(1000, 2000)
    scaler = PooledWindowScaler().fit(X[train])
    # rows after each commodity's last training origin carry new (here: absurd) values
    changed = []
    for m in X.members:
        values = m.values.copy()
        values[m.ends[train].max() + 1:] += 1e6
        changed.append(m.with_values(values))
    again = PooledWindowScaler().fit(PooledWindows(changed)[train])
    for a, b, member in zip(scaler.scalers_, again.scalers_, X.members, strict=True):
        # equal up to summation order (a leaked row would move them by ~1e6)
        np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-12, atol=1e-12)
        alone = WindowScaler().fit(member[train])  # its own statistics, not the pool's
        np.testing.assert_array_equal(a.mean_, alone.mean_)
    means = [s.mean_ for s in scaler.scalers_]
    assert not np.allclose(means[0], means[1])  # ZL's features are not ZS's
    # and the test span is scaled with the training statistics
    out = scaler.transform(X[train[-1:] + 200])
    first = out.members[0].values[X.members[0].ends[train[-1]] + 200]
    raw = X.members[0].values[X.members[0].ends[train[-1]] + 200]
    expected = np.clip((raw - scaler.scalers_[0].mean_) / scaler.scalers_[0].scale_, -10, 10)
    np.testing.assert_allclose(first, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("targets, words", [
    ("[zl, zz]", "'zz' is not a price series named in data"),
    ("[zl, wti]", "'wti' is not a price series"),
    ("[zl]", "at least two"),
    ("[zl, zl]", "duplicate series"),
    ("zl", "valid list"),
])
def test_bad_targets_name_the_key(tmp_path, specs_dir, targets, words, capsys):
    path = tmp_path / "spec.yaml"
    path.write_text(f"extends: {specs_dir / 'soy_complex_1m_quick.yaml'}\ntargets: {targets}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: targets (line 2)") and words in msg
    assert main(["--check", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_target_alone_is_one_commodity_and_targets_sets_target(specs_dir):
    single = load_spec(specs_dir / "zs_1m_quick.yaml")
    assert single.targets is None and single.commodities == ["zs"]
    spec = load_spec(specs_dir / "soy_complex_1m_quick.yaml", {"targets": ["zm", "zl"]})
    assert spec.target == "zm" and spec.commodities == ["zm", "zl"]
    sub = spec.for_target("zl")
    assert sub.target == "zl" and sub.targets is None and sub.window == spec.window


def run_args(tmp_path, specs_dir, data_dir, db):
    args = [str(specs_dir / "soy_complex_1m_quick.yaml"), "--data-dir", str(data_dir), "-q",
            "--runs-dir", str(tmp_path / "runs"), "--sink", f"duckdb://{db}",
            "--set", "gate.worse_p=null", "--set", "gate.coverage_80=null",
            "--set", "gate.coverage_95=null", "--set", "baselines=[random_walk, vol_random_walk]"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    return args


def test_cbi_run_pooled_writes_every_series_to_duckdb(tmp_path, specs_dir, data_dir, capsys):
    db = tmp_path / "f.duckdb"
    assert main(run_args(tmp_path, specs_dir, data_dir, db)) == 0
    sink = DuckDBSink(db)
    predictions = sink.read("predictions")
    forecasts = predictions[predictions["kind"] == "forecast"]
    assert sorted(forecasts["series"]) == sorted(TARGETS)
    assert (pd.to_datetime(forecasts["origin_date"]) == pd.Timestamp("2023-12-29")).all()
    assert forecasts["model_version"].nunique() == 1
    backtest = predictions[predictions["kind"] == "backtest"]
    assert set(backtest["series"]) == set(TARGETS)
    # each commodity's forecast is on its own price scale (ZS in cents/bu, ZL in cents/lb)
    price = forecasts.set_index("series")["predicted_price"]
    assert price["zs"] > 5 * price["zl"]
    assert set(sink.read("actuals")["series"]) == set(TARGETS)
    assert set(sink.read("runs")["series"]) == set(TARGETS)
    (run,) = (tmp_path / "runs").iterdir()
    table = pd.read_csv(run / "comparison.csv")
    assert list(table["series"]) == TARGETS
    assert table[["model_mase", "single_model_mase", "net_mase", "single_net_mase"]].notna().all().all()
    assert read_status(run)["state"] == "done"
    assert not (run / "forecasts_held.csv").exists()  # the gate held nothing back
    # a pooled run folder: --sink-only writes the same rows elsewhere
    other = tmp_path / "g.duckdb"
    assert main(["--sink-only", str(run), "--sink", f"duckdb://{other}"]) == 0
    assert sorted(DuckDBSink(other).read_all()["series"]) == sorted(TARGETS)
    # --predict: the saved pooled model forecasts every commodity as the run did
    third = tmp_path / "h.duckdb"
    assert main(["--predict", str(run), "--data-dir", str(data_dir), "-q",
                 "--sink", f"duckdb://{third}"]) == 0
    numbers = ["predicted_price", "lower_80", "upper_80", "lower_95", "upper_95", "sigma"]
    ran = pd.read_csv(run / "forecasts.csv").set_index(["series", "horizon"])
    again = pd.read_csv(run / "predictions" / "origin-2023-12-29.csv").set_index(
        ["series", "horizon"])
    assert sorted(again.index) == sorted(ran.index) and len(ran) == 3  # horizons: [1m]
    pd.testing.assert_frame_equal(again.loc[ran.index, numbers], ran[numbers])
    written = DuckDBSink(third).read("predictions")
    assert sorted(written["series"]) == sorted(ran.index.get_level_values("series"))
    # --evaluate scores every commodity beside its baselines; --resume is refused by name
    capsys.readouterr()
    assert main(["--evaluate", str(run), "--data-dir", str(data_dir), "--since",
                 "2023-06-01"]) == 0
    assert capsys.readouterr().out.count("== z") == 3
    scored = pd.read_csv(run / "evaluations" / "since-2023-06-01.csv")
    assert list(dict.fromkeys(scored["series"])) == TARGETS
    assert {"net", "model", "random_walk"} <= set(scored["model"])
    assert np.isfinite(scored["mae"]).all()
    assert main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a pooled run" in err and "--resume" in err
    from cbi_toolkit.export import main as export_main

    assert export_main([str(run), "--data-dir", str(data_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a pooled run" in err


def test_the_gate_holds_back_only_the_commodity_that_fails(tmp_path, specs_dir, data_dir,
                                                          monkeypatch):
    import cbi_toolkit.pooled_run as pooled_run

    real = pooled_run.check_gate
    calls = []

    def gate(config, summary, intervals):  # the second commodity (ZS) fails its gate
        calls.append(len(calls))
        return real(config, summary, intervals) + (["1m: failed here"] if len(calls) == 2 else [])

    monkeypatch.setattr(pooled_run, "check_gate", gate)
    db = tmp_path / "f.duckdb"
    assert main(run_args(tmp_path, specs_dir, data_dir, db)) == 3
    sink = DuckDBSink(db)
    assert sorted(sink.read_all()["series"]) == ["zl", "zm"]
    runs = sink.read("runs").set_index("series")
    assert not runs.loc["zs", "gate_passed"] and runs.loc["zl", "gate_passed"]
    assert "failed here" in runs.loc["zs", "gate_failures"]
    (run,) = (tmp_path / "runs").iterdir()
    assert list(pd.read_csv(run / "forecasts_held.csv")["series"]) == ["zs"]
    # the folder says so too, as a single run whose gate fails
    status = read_status(run)
    assert status["state"] == "gate_failed" and status["written"] == ["zl", "zm"]
    assert any(f.startswith("zs ") and "failed here" in f for f in status["failures"])
    # --predict holds back what the run held back
    other = tmp_path / "g.duckdb"
    assert main(["--predict", str(run), "--data-dir", str(data_dir), "-q",
                 "--sink", f"duckdb://{other}"]) == 3
    assert sorted(DuckDBSink(other).read("predictions")["series"]) == ["zl", "zm"]


def test_pooled_batches_gather_each_commodity_and_take_the_training_stride(pooled):
    from cbi_toolkit.models.global_regressor import PooledBatches, PooledDataset

    _, samples = pooled
    data = PooledDataset(samples.X[:100], samples.y[:100])
    (xb, yb), = PooledBatches(data, 100, torch.device("cpu"))
    np.testing.assert_array_equal(xb.numpy(), samples.X[:100].gather())
    np.testing.assert_array_equal(yb.numpy(), samples.y[:100].astype(np.float32))
    strided = PooledBatches(data, 8, torch.device("cpu"), shuffle=True,
                            generator=torch.Generator().manual_seed(0), stride=3)
    seen = sum(len(b[0]) for b in strided)
    assert seen in (33, 34) and len(strided) == 5
