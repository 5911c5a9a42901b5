"""Export round trips, serving paths, warm-start / refit_every folds and the
precision option, on real ZL windows with a tiny model (window 20, hidden 8).
No timings here: speed lives in bench/."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from cbi_toolkit import backtest as backtest_mod
from cbi_toolkit.errors import CbiError
from cbi_toolkit.export import (
    FORMATS,
    export_pipeline,
    load_exported,
    raw_windows,
    scaled_module,
)
from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.device import cpu_supports_bf16, resolve_precision
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.pipeline import predict_dist
from cbi_toolkit.serving import serving_model

TINY = dict(module__hidden_dim=8, module__num_layers=1, module__num_heads=2,
            batch_size=64, max_epochs=2, device="cpu", verbose=0)


@pytest.fixture(scope="module")
def pipe(tiny_samples):
    net = ForecastRegressor(**TINY, seed=3)
    return Pipeline([("scale", WindowScaler()), ("net", net)]).fit(tiny_samples.X, tiny_samples.y)


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - {"onnx-int8"}))  # int8: its own test
def test_export_round_trip_matches_eager(pipe, tiny_samples, tmp_path, fmt):
    windows = raw_windows(tiny_samples.X[-17:])  # a batch size other than the export example's
    info = export_pipeline(pipe, fmt, tmp_path, windows, atol=1e-4)
    assert (tmp_path / FORMATS[fmt]).is_file()
    assert 0 <= info["max_abs_diff"] <= 1e-4 and info["checked_samples"] == 17
    assert json.loads((tmp_path / "export.json").read_text())[fmt]["window"] == 20
    # the exported graph (scaler + net) gives the pipeline's own predictions
    mu_ref, sigma_ref = predict_dist(pipe, tiny_samples.X[-5:])
    mu, sigma = load_exported(tmp_path / FORMATS[fmt])(raw_windows(tiny_samples.X[-5:]))
    np.testing.assert_allclose(mu, mu_ref, atol=1e-4)
    np.testing.assert_allclose(sigma, sigma_ref, atol=1e-4)


def test_serving_model_prefers_a_checked_export(pipe, tiny_samples, tmp_path):
    eager = serving_model(tmp_path, pipe)
    assert eager.kind == "eager"
    export_pipeline(pipe, "torchscript", tmp_path / "export", raw_windows(tiny_samples.X[-8:]))
    served = serving_model(tmp_path, pipe)
    assert served.kind == "torchscript"
    mu, sigma = served.predict_dist(tiny_samples.X[-3:])
    mu_ref, sigma_ref = eager.predict_dist(tiny_samples.X[-3:])
    np.testing.assert_allclose(mu, mu_ref, atol=1e-5)
    np.testing.assert_allclose(sigma, sigma_ref, atol=1e-5)


def test_executorch_export_is_served_window_by_window(pipe, tiny_samples, tmp_path):
    info = export_pipeline(pipe, "executorch", tmp_path / "export", raw_windows(tiny_samples.X[-6:]))
    assert info["batch"] == 1 and info["file"] == "model.pte"
    served = serving_model(tmp_path, pipe)  # the only export there
    assert served.kind == "executorch"
    mu, sigma = served.predict_dist(tiny_samples.X[-3:])
    mu_ref, sigma_ref = predict_dist(pipe, tiny_samples.X[-3:])
    assert mu.shape == mu_ref.shape == (3, mu_ref.shape[1])
    np.testing.assert_allclose(mu, mu_ref, atol=1e-5)
    np.testing.assert_allclose(sigma, sigma_ref, atol=1e-5)
    # a faster checked export, once there, is preferred
    export_pipeline(pipe, "torchscript", tmp_path / "export", raw_windows(tiny_samples.X[-6:]))
    assert serving_model(tmp_path, pipe).kind == "torchscript"


def test_int8_export_quantises_the_lstm_and_linears_and_is_served_first(pipe, tiny_samples, tmp_path):
    import onnx

    windows = raw_windows(tiny_samples.X[-12:])
    export_pipeline(pipe, "onnx", tmp_path / "export", windows)
    info = export_pipeline(pipe, "onnx-int8", tmp_path / "export", windows)
    assert info["file"] == "model.int8.onnx" and info["atol"] == 1e-2
    ops = [node.op_type for node in onnx.load(tmp_path / "export" / "model.int8.onnx").graph.node]
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    # the input projection, the attention's output and the two heads' layers
    assert ops.count("MatMulInteger") >= 1 + 1 + 4
    served = serving_model(tmp_path, pipe)
    assert served.kind == "onnx-int8"
    mu, sigma = served.predict_dist(tiny_samples.X[-12:])
    mu_ref, sigma_ref = predict_dist(pipe, tiny_samples.X[-12:])
    diff = max(np.abs(mu - mu_ref).max(), np.abs(sigma - sigma_ref).max())
    assert diff == pytest.approx(info["max_abs_diff"], rel=1e-5, abs=1e-9)
    assert diff <= 1e-2 and info["max_diff_in_sigmas"] < 0.2
    # a check that fails leaves the file unserved: the fp32 export answers instead
    with pytest.raises(CbiError, match="differ from the eager model"):
        export_pipeline(pipe, "onnx-int8", tmp_path / "export", windows, atol=1e-12)
    assert serving_model(tmp_path, pipe).kind == "onnx"


def test_scan_lstm_equals_the_lstm():
    from cbi_toolkit.models.scan_lstm import ScanLSTM

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 6, num_layers=2, batch_first=True).eval()
    x = torch.randn(3, 11, 5)
    with torch.no_grad():
        ref, _ = lstm(x)
        got, _ = ScanLSTM(lstm)(x)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="batch-first"):
        ScanLSTM(torch.nn.LSTM(5, 6, bidirectional=True))


def test_export_refuses_unknown_format(pipe, tiny_samples, tmp_path):
    with pytest.raises(CbiError, match="unknown export format"):
        export_pipeline(pipe, "tflite", tmp_path, raw_windows(tiny_samples.X[-2:]))


def test_scaled_module_is_the_pipeline(pipe, tiny_samples):
    mu_ref, _ = predict_dist(pipe, tiny_samples.X[-4:])
    with torch.inference_mode():
        mu, _ = scaled_module(pipe)(torch.from_numpy(raw_windows(tiny_samples.X[-4:])))
    np.testing.assert_allclose(mu.numpy(), mu_ref, atol=1e-5)


# ---------------------------------------------------------------------------
# warm start and refit_every in the walk-forward loop

def _fold_spec(tiny_spec, **validation):
    """Three small folds, fitted in this process (the tests watch the fits)."""
    return tiny_spec.model_copy(update={
        "validation": tiny_spec.validation.model_copy(update={
            "n_splits": 3, "test_size": 40, "test_start": None, "stride": 1, **validation}),
        "training": tiny_spec.training.model_copy(update={"n_jobs": 1})})


def test_warm_start_from_copies_weights(pipe, tiny_samples):
    net = ForecastRegressor(**TINY, seed=9)
    net.warm_start_from(pipe[-1], max_epochs=1)
    assert net.warm_start and net.max_epochs == 1
    for a, b in zip(net.module_.state_dict().values(), pipe[-1].module_.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b)
    X = WindowScaler().fit_transform(tiny_samples.X)
    net.fit(X, tiny_samples.y)  # continues from the copied weights
    assert len(net.history) == 1


def test_warm_start_fold_starts_from_previous_fold(tiny_spec, tiny_samples, monkeypatch):
    starts = []
    original = ForecastRegressor.warm_start_from

    def spy(self, other, max_epochs=None):
        starts.append({k: v.clone() for k, v in other.module_.state_dict().items()})
        out = original(self, other, max_epochs)
        first = next(iter(self.module_.state_dict()))
        torch.testing.assert_close(self.module_.state_dict()[first], starts[-1][first])
        return out

    monkeypatch.setattr(ForecastRegressor, "warm_start_from", spy)
    fits = []
    fold_nets = []
    real_fit = Pipeline.fit

    def counting_fit(self, X, y=None, **kw):
        fits.append(len(X))
        out = real_fit(self, X, y, **kw)
        fold_nets.append(self[-1])
        return out

    monkeypatch.setattr(Pipeline, "fit", counting_fit)
    net = Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(**TINY))])
    preds, seconds, _ = backtest_mod.backtest(
        _fold_spec(tiny_spec, warm_start=True, warm_epochs=1), tiny_samples, {"model": net})
    assert len(fits) == 3 and len(starts) == 2
    # fold 2 started from fold 1's final weights
    first_fold_state = fold_nets[0].module_.state_dict()
    for key, value in starts[0].items():
        torch.testing.assert_close(value, first_fold_state[key])
    assert [len(n.history) for n in fold_nets[1:]] == [1, 1]  # warm_epochs
    assert all(np.isfinite(p.mu).all() for p in preds)


def test_refit_every_fits_fewer_times(tiny_spec, tiny_samples, monkeypatch):
    fits = []
    real_fit = Pipeline.fit

    def counting_fit(self, X, y=None, **kw):
        fits.append(len(X))
        return real_fit(self, X, y, **kw)

    monkeypatch.setattr(Pipeline, "fit", counting_fit)
    net = Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(**TINY))])
    preds, seconds, _ = backtest_mod.backtest(_fold_spec(tiny_spec, refit_every=2), tiny_samples,
                                           {"model": net})
    assert len(fits) == 2  # folds 0 and 2 of 3
    assert seconds["model"][1] == 0.0 and len(seconds["model"]) == 3
    assert sorted({p.fold for p in preds}) == [0, 1, 2]
    # fold 1 is predicted by fold 0's model: the same model on fold 1's windows
    assert all(np.isfinite(p.mu).all() and (p.sigma > 0).all() for p in preds)


def test_validation_keys_default_to_cold_refits(tiny_spec):
    assert tiny_spec.validation.warm_start is False and tiny_spec.validation.refit_every == 1
    assert tiny_spec.validation.warm_epochs is None


# ---------------------------------------------------------------------------
# precision

@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_precision_option_gives_finite_predictions(tiny_samples, precision):
    if precision == "bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    X = WindowScaler().fit_transform(tiny_samples.X)
    reg = ForecastRegressor(**{**TINY, "max_epochs": 1}, precision=precision).fit(X, tiny_samples.y)
    expected = resolve_precision(precision, torch.device("cpu"))
    assert reg.precision_ == expected
    assert expected in ("fp32", "bf16")
    mu, sigma = reg.predict_dist(X[-6:])
    assert mu.dtype == np.float32 and np.isfinite(mu).all() and (sigma > 0).all()


def test_auto_precision_on_cpu_follows_native_bf16():
    got = resolve_precision("auto", torch.device("cpu"))
    assert got == ("bf16" if cpu_supports_bf16() else "fp32")


# ---------------------------------------------------------------------------
# threads

def test_threads_setting_is_applied_during_fit_and_restored(tiny_samples, monkeypatch):
    from cbi_toolkit.models import device

    seen = []
    saved = torch.get_num_threads()
    real = ForecastRegressor.partial_fit

    def spy(self, *a, **kw):
        seen.append(torch.get_num_threads())
        return real(self, *a, **kw)

    monkeypatch.setattr(ForecastRegressor, "partial_fit", spy)
    X = WindowScaler().fit_transform(tiny_samples.X)
    ForecastRegressor(**{**TINY, "max_epochs": 1}, threads=1).fit(X, tiny_samples.y)
    assert seen == [1] and torch.get_num_threads() == saved
    assert 1 <= device.resolve_threads("auto") <= (os.cpu_count() or 1)
    assert device.resolve_threads(None) is None
    with pytest.raises(ValueError):
        device.resolve_threads(0)


def test_spec_threads_reaches_the_regressor(tiny_spec):
    from cbi_toolkit.pipeline import build_pipeline

    s = tiny_spec.model_copy(update={"training": tiny_spec.training.model_copy(update={"threads": "auto"})})
    assert build_pipeline(s, verbose=0)[-1].threads == "auto"
    assert build_pipeline(tiny_spec, verbose=0)[-1].threads is None


def test_bf16_model_is_served_as_it_forecast(tiny_samples, tmp_path):
    if not cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16")
    net = ForecastRegressor(**{**TINY, "max_epochs": 1}, precision="bf16")
    pipe = Pipeline([("scale", WindowScaler()), ("net", net)]).fit(tiny_samples.X, tiny_samples.y)
    served = serving_model(tmp_path, pipe)
    assert served.kind == "eager_bf16"
    mu, sigma = served.predict_dist(tiny_samples.X[-4:])
    mu_ref, sigma_ref = predict_dist(pipe, tiny_samples.X[-4:])
    np.testing.assert_allclose(mu, mu_ref, atol=1e-6)
    np.testing.assert_allclose(sigma, sigma_ref, atol=1e-6)


def test_cbi_export_cli_on_a_saved_run(pipe, tiny_spec, tiny_samples, data_dir, tmp_path, capsys):
    from cbi_toolkit.artifacts import save_pipeline
    from cbi_toolkit.export import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.yaml").write_text(tiny_spec.to_yaml())
    save_pipeline(pipe, run / "model", meta={"feature_names": tiny_samples.feature_names})
    assert main([str(run), "--format", "torchscript", "--data-dir", str(data_dir)]) == 0
    assert "max |exported - eager|" in capsys.readouterr().out
    info = json.loads((run / "export" / "export.json").read_text())["torchscript"]
    assert info["checked_samples"] == 64 and info["max_abs_diff"] <= 1e-4
    assert serving_model(run, pipe).kind == "torchscript"
    assert main([str(tmp_path / "missing"), "--data-dir", str(data_dir)]) == 2


def test_warm_start_with_fold_checkpoints(tiny_spec, tiny_samples, tmp_path, monkeypatch):
    starts = []
    original = ForecastRegressor.warm_start_from

    def spy(self, other, max_epochs=None):
        starts.append(other)
        return original(self, other, max_epochs)

    monkeypatch.setattr(ForecastRegressor, "warm_start_from", spy)
    net = Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(**TINY))])
    s = _fold_spec(tiny_spec, warm_start=True, warm_epochs=1)
    preds, _, _ = backtest_mod.backtest(s, tiny_samples, {"model": net}, checkpoint_dir=tmp_path)
    assert len(starts) == 2 and all(np.isfinite(p.mu).all() for p in preds)
    # fold checkpoints do not hold the weights a warm start chains on: a resumed
    # warm-started backtest refits from fold 0 and gives the same predictions
    again, _, _ = backtest_mod.backtest(s, tiny_samples, {"model": net}, checkpoint_dir=tmp_path)
    assert len(starts) == 4
    for a, b in zip(preds, again, strict=True):
        np.testing.assert_allclose(a.mu, b.mu)
