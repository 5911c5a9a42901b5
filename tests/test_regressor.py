"""ForecastRegressor on real ZL samples, tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from cbi_toolkit.dataset import load_samples
from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.features.windows import Windows, WindowScaler
from cbi_toolkit.models.batching import TailSplit, WindowDataset
from cbi_toolkit.models.loss import GaussianForecastLoss
from cbi_toolkit.models.persistence import load_regressor, save_regressor
from cbi_toolkit.models.regressor import ForecastRegressor, TrainingDivergedError
from cbi_toolkit.pipeline import regressor_from_spec
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec

TINY = dict(module__hidden_dim=16, module__num_layers=1, module__num_heads=2,
            batch_size=64, max_epochs=3, device="cpu", verbose=0)


@pytest.fixture(scope="module")
def spec(specs_dir):
    return load_spec(specs_dir / "zl_1m_quick.yaml",
                     overrides={"window": 20, "horizons": ["1w", "1m"]})


@pytest.fixture(scope="module")
def data(spec, data_dir):
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    lab = samples.subset(np.flatnonzero(samples.labelled)[-400:])
    X = WindowScaler().fit_transform(lab.X)
    return X, lab.y.astype(np.float32)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return ForecastRegressor(**TINY, lr=3e-3, seed=1).fit(X, y)


def test_fit_lowers_training_loss_and_predicts(fitted, data):
    X, y = data
    losses = fitted.history[:, "train_loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    mu = fitted.predict(X[:7])
    mu2, sigma = fitted.predict_dist(X[:7])
    assert mu.shape == sigma.shape == (7, 2) and mu.dtype == np.float32
    np.testing.assert_array_equal(mu, mu2)
    assert (sigma > 0).all()
    assert str(fitted.device_) == "cpu" and fitted.precision_ == "fp32"
    assert fitted.n_features_in_ == X.values.shape[1] and fitted.n_horizons_ == 2


def test_accepts_3d_array(fitted, data):
    X, _ = data
    np.testing.assert_allclose(fitted.predict(X[:5].gather()), fitted.predict(X[:5]), atol=1e-6)


def test_validation_is_the_newest_tail(data):
    X, y = data
    split = TailSplit(fraction=0.1, gap=21)
    train_idx, valid_idx = split.indices(len(X))
    assert list(valid_idx) == list(range(360, 400))
    assert train_idx.max() == 400 - 40 - 21 - 1
    train, valid = split(WindowDataset(X, y))
    np.testing.assert_array_equal(valid.X.ends, X.ends[-40:])
    np.testing.assert_array_equal(valid.y, y[-40:])
    assert train.X.ends.max() < valid.X.ends.min()
    # the regressor uses that split: the valid batch count matches the tail
    reg = ForecastRegressor(**{**TINY, "max_epochs": 1, "batch_size": 16}, valid_gap=21).fit(X, y)
    assert reg.history[-1, "valid_batch_count"] == 3  # ceil(40 / 16)
    assert sum(reg.history[-1, "batches", :, "valid_batch_size"]) == 40
    assert sum(reg.history[-1, "batches", :, "train_batch_size"]) == 400 - 40 - 21


def test_same_seed_same_predictions(data):
    X, y = data
    a = ForecastRegressor(**TINY, seed=7).fit(X, y).predict(X[:20])
    b = ForecastRegressor(**TINY, seed=7).fit(X, y).predict(X[:20])
    c = ForecastRegressor(**TINY, seed=8).fit(X, y).predict(X[:20])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_clone_and_nested_params(spec):
    reg = regressor_from_spec(spec.model, spec.training, n_horizons=2, valid_gap=21)
    assert reg.get_params()["module__hidden_dim"] == spec.model.hidden_dim
    assert reg.get_params()["criterion__nll"] == spec.model.loss.nll
    assert reg.valid_gap == 21 and reg.patience == spec.training.patience
    pipe = Pipeline([("scale", WindowScaler()), ("net", reg)])
    pipe.set_params(net__module__hidden_dim=32, net__lr=0.01, net__valid_fraction=0.2)
    params = pipe.get_params()
    assert params["net__module__hidden_dim"] == 32 and params["net__lr"] == 0.01
    copy = clone(pipe)
    assert copy.get_params()["net__module__hidden_dim"] == 32
    assert copy.named_steps["net"] is not reg
    assert copy.get_params()["net__valid_fraction"] == 0.2


def test_pipeline_fit_predict(data):
    X, y = data
    pipe = Pipeline([("scale", WindowScaler()), ("net", ForecastRegressor(**TINY))])
    pipe.set_params(net__module__attention=False, net__max_epochs=1, net__device="auto")
    assert pipe.fit(X, y).predict(X[-3:]).shape == (3, 2)
    net = pipe.named_steps["net"]
    assert net.device == "auto" and net.device_.type in ("cpu", "cuda", "mps")


def test_save_load_round_trip(fitted, data, tmp_path):
    X, _ = data
    save_regressor(fitted, tmp_path / "model")
    loaded = load_regressor(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    for a, b in zip(loaded.predict_dist(X[:9]), fitted.predict_dist(X[:9]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_params()["module__hidden_dim"] == 16


def test_tampered_weights_refused(fitted, tmp_path):
    path = save_regressor(fitted, tmp_path / "model") / "weights.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        load_regressor(tmp_path / "model")


@pytest.mark.parametrize("where, message", [("X", "NaN or infinite"), ("y_inf", "infinite"),
                                            ("y_row", "no known target")])
def test_non_finite_input_refused(data, where, message):
    X, y = data
    values, y = X.values.copy(), y.copy()
    if where == "X":
        values[X.ends[5]] = np.inf
    elif where == "y_inf":
        y[5, 1] = np.inf
    else:
        y[5, :] = np.nan  # an origin with no known target at all
    with pytest.raises(ValueError, match=message):
        ForecastRegressor(**TINY).fit(Windows(values, X.ends, X.window), y)


def test_unknown_targets_add_no_loss():
    """Horizon mask: a NaN target (that horizon's future not yet known) leaves the loss
    the mean over the known targets, and gives its output no gradient."""
    mu = torch.tensor([[0.01, 0.02], [0.03, -0.01]], requires_grad=True)
    sigma = torch.full((2, 2), 0.05)
    y = torch.tensor([[0.02, float("nan")], [0.0, 0.01]])
    loss = GaussianForecastLoss(nll=1.0, mae=0.5)((mu, sigma), y)
    known = torch.isfinite(y)
    err = (y[known] - mu[known]) / 1.0
    nll = 0.5 * (err / sigma[known]) ** 2 + torch.log(sigma[known]) + 0.5 * math.log(2 * math.pi)
    assert loss.item() == pytest.approx((nll.mean() + 0.5 * err.abs().mean()).item(), rel=1e-6)
    loss.backward()
    assert mu.grad[0, 1] == 0 and torch.all(mu.grad[known] != 0)


def test_diverging_training_stops_with_error(data):
    X, y = data
    huge = X.with_values(X.values * 1e30)  # finite, but the network overflows
    with pytest.raises(TrainingDivergedError, match="training loss became"):
        ForecastRegressor(**TINY, grad_clip=None).fit(huge, y)


def test_early_stopping_restores_best_weights(data):
    X, y = data
    reg = ForecastRegressor(**{**TINY, "max_epochs": 6}, patience=1, lr=0.05).fit(X, y)
    valid = reg.history[:, "valid_loss"]
    best = int(np.argmin(valid))
    mu, sigma = reg.predict_dist(X[-40:])
    import torch

    y_tail = torch.as_tensor(y[-40:])
    loss = reg.criterion_((torch.as_tensor(mu), torch.as_tensor(sigma)), y_tail,
                          scale=reg.module_.target_scale)
    assert float(loss) == pytest.approx(valid[best], rel=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_fits_on_cpu(data, precision):
    from cbi_toolkit.models.device import cpu_supports_bf16

    if precision == "bf16" and not cpu_supports_bf16():
        pytest.skip("this CPU has no bf16 support")
    X, y = data
    reg = ForecastRegressor(**{**TINY, "max_epochs": 1}, precision=precision).fit(X, y)
    assert reg.precision_ == precision
    mu, sigma = reg.predict_dist(X[:4])
    assert mu.dtype == np.float32 and np.isfinite(mu).all() and (sigma > 0).all()


def test_volatility_scaled_targets(spec, data_dir, tmp_path):
    # the net learns y / (trailing 63-session vol x sqrt(h)) and answers in log returns again
    from cbi_toolkit.pipeline import build_pipeline
    from cbi_toolkit.serving import serving_model

    def with_scale(value):
        return spec.model_copy(update={"model": spec.model.model_copy(
            update={"target_scale": value})})
    pipe = build_pipeline(with_scale("volatility"), verbose=0)
    net = pipe.named_steps["net"]
    assert (net.target_vol_window, net.horizon_days) == (63, (5, 21))
    assert build_pipeline(with_scale("none"), verbose=0).named_steps["net"].target_vol_window is None
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    lab = samples.subset(np.flatnonzero(samples.labelled)[-400:])
    pipe.set_params(**{f"net__{k}": v for k, v in TINY.items()})
    pipe.fit(lab.X, lab.y.astype(np.float32))
    # the scale, against pandas on the real closes at the origin dates
    px = pd.read_csv(data_dir / "zl" / "zl_tradingview_ZL1_daily.csv", parse_dates=["date"],
                     index_col="date")["close"]
    vol = np.log(px).diff().rolling(63).std().reindex(lab.dates).to_numpy()
    Xs = pipe[:-1].transform(lab.X)
    np.testing.assert_allclose(net.target_scale(Xs), vol[:, None] * np.sqrt([5.0, 21.0]), rtol=1e-9)
    # the heads' target statistics are those of volatility units (about 1), not of log returns
    assert 0.3 < float(net.module_.target_scale.min()) < float(net.module_.target_scale.max()) < 3
    mu_z, sigma_z = (t.numpy() for t in net.forward(Xs[-9:], training=False))
    mu, sigma = net.predict_dist(Xs[-9:])
    np.testing.assert_allclose(mu, mu_z * net.target_scale(Xs[-9:]), rtol=1e-6)
    np.testing.assert_allclose(sigma, sigma_z * net.target_scale(Xs[-9:]), rtol=1e-6)
    # saved and loaded, and served (eager here: the run folder has no export), the same
    save_regressor(net, tmp_path / "model")
    loaded = load_regressor(tmp_path / "model")
    for a, b in zip(loaded.predict_dist(Xs[-9:]), (mu, sigma), strict=True):
        np.testing.assert_array_equal(a, b)
    served = serving_model(tmp_path, pipe)
    for a, b in zip(served.predict_dist(lab.X[-9:]), (mu, sigma), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_pooled_spec_refuses_volatility_scaled_targets(specs_dir):
    from cbi_toolkit.errors import SpecError
    from cbi_toolkit.pooled import build_pooled_pipeline

    pooled = load_spec(specs_dir / "soy_complex_1m.yaml", overrides={"model.target_scale": "volatility"})
    with pytest.raises(SpecError, match="model.target_scale"):
        build_pooled_pipeline(pooled)
