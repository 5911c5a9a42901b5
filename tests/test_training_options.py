"""Training options that make a fit cheaper: a training stride with a fresh phase per
epoch (the validation tail stays whole), and a learning-rate schedule measured in
optimizer steps. Real ZL windows, a tiny net; no timings here (bench/ has them)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cbi_toolkit.dataset import load_samples
from cbi_toolkit.errors import CbiError
from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.batching import WindowBatches, WindowDataset
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.spec import load_spec

TINY = dict(module__hidden_dim=8, module__num_layers=1, module__num_heads=2,
            batch_size=16, device="cpu", verbose=0, threads=1)


@pytest.fixture(scope="module")
def samples(specs_dir, data_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"window": 20})
    _, samples = load_samples(spec, SourceContext(data_dir=data_dir))
    return samples.subset(np.flatnonzero(samples.labelled)[-240:])


@pytest.fixture(scope="module")
def scaled(samples):
    return WindowScaler().fit_transform(samples.X), samples.y


def _rows(batches: WindowBatches) -> list[int]:
    """The sample indices one pass yields, recovered from the gathered windows."""
    ends = batches.ends.tolist()
    order = batches._order().tolist()
    return [ends[i] for i in order]


def test_stride_takes_every_kth_origin_from_a_fresh_phase(scaled):
    X, y = scaled
    data = WindowDataset(X, y)
    batches = WindowBatches(data, 32, torch.device("cpu"), shuffle=True,
                            generator=torch.Generator().manual_seed(1), stride=4)
    phases = set()
    for _ in range(12):
        order = batches._order().numpy()
        phase = int(order.min())
        phases.add(phase)
        assert phase < 4 and (order % 4 == phase).all()
        assert sorted(order) == list(range(phase, len(data), 4))  # each once, in shuffled order
        assert len(batches) == math.ceil(math.ceil(len(data) / 4) / 32)
    assert len(phases) > 1, "the phase should change between passes"
    # a seed fixes the passes
    again = WindowBatches(data, 32, torch.device("cpu"), shuffle=True,
                          generator=torch.Generator().manual_seed(1), stride=4)
    first = WindowBatches(data, 32, torch.device("cpu"), shuffle=True,
                          generator=torch.Generator().manual_seed(1), stride=4)
    assert _rows(again) == _rows(first)
    # the batches hold the windows of those samples
    xb, yb = next(iter(WindowBatches(data, 8, torch.device("cpu"), stride=4,
                                     generator=torch.Generator().manual_seed(2))))
    phase = next(p for p in range(4) if np.allclose(yb.numpy(), y[p::4][:8]))
    rows = np.arange(phase, len(data), 4)[:8]
    torch.testing.assert_close(xb, torch.as_tensor(X.gather(rows), dtype=torch.float32))


def test_regressor_stride_trains_on_a_kth_and_validates_on_the_whole_tail(scaled):
    X, y = scaled
    reg = ForecastRegressor(**TINY, max_epochs=3, train_stride=5, valid_fraction=0.2,
                            patience=None).fit(X, y)
    n_valid = round(len(y) * 0.2)
    n_train = len(y) - n_valid
    for epoch in reg.history:
        seen = sum(b["train_batch_size"] for b in epoch["batches"] if "train_batch_size" in b)
        validated = sum(b["valid_batch_size"] for b in epoch["batches"] if "valid_batch_size" in b)
        assert seen in (n_train // 5, n_train // 5 + 1)
        assert validated == n_valid


def test_plateau_schedule_warms_up_in_steps_then_halves_on_plateaus(scaled):
    X, y = scaled
    reg = ForecastRegressor(**TINY, max_epochs=8, lr=0.01, warmup_steps=15, patience=None,
                            callbacks__lr_schedule__patience=1).fit(X, y)
    steps_per_epoch = math.ceil((len(y) - round(len(y) * 0.1)) / 16)
    lrs = reg.history[:, "lr"]
    losses = reg.history[:, "valid_loss"]
    # epoch 1 ends inside the warm-up: the rate is the base times (steps taken / warm-up)
    assert lrs[0] == pytest.approx(0.01 * min(1.0, steps_per_epoch / 15))
    # afterwards the rate is the base rate, halved once for each epoch without a new best
    best, scale = math.inf, 1.0
    for epoch, (lr, loss) in enumerate(zip(lrs, losses, strict=True)):
        warm = min(1.0, (epoch + 1) * steps_per_epoch / 15)
        assert lr == pytest.approx(0.01 * warm * scale), epoch
        if loss < best:
            best = loss
        elif (epoch + 1) * steps_per_epoch >= 15:
            scale *= 0.5


def test_cosine_schedule_is_kept_as_the_old_path(scaled):
    X, y = scaled
    reg = ForecastRegressor(**TINY, max_epochs=4, lr=0.01, lr_schedule="cosine", warmup=0.25,
                            patience=None).fit(X, y)
    lrs = reg.history[:, "lr"]
    assert lrs[0] == pytest.approx(0.01)  # the warm-up ends with epoch 1 of 4
    assert lrs[-1] < 0.01 * 0.01 and lrs[1] > lrs[2] > lrs[3]  # cosine to 0 at max_epochs
    with pytest.raises(ValueError, match="lr_schedule"):
        ForecastRegressor(**TINY, max_epochs=1, lr_schedule="linear").fit(X, y)


def test_spec_keys_reach_the_regressor(specs_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={
        "training.stride": 3, "training.lr_schedule": "cosine", "training.warmup_steps": 7})
    net = build_pipeline(spec)[-1]
    assert (net.train_stride, net.lr_schedule, net.warmup_steps) == (3, "cosine", 7)
    for key, bad in (("training.stride", 0), ("training.lr_schedule", "linear"),
                     ("training.n_jobs", 0)):
        with pytest.raises(CbiError, match=key.split(".")[1]):
            load_spec(specs_dir / "zl_1m_quick.yaml", overrides={key: bad})


def _twins(bptt_steps):
    """Two nets with the same weights, the second truncating backprop; no dropout, so a
    training-mode forward pass is deterministic."""
    from cbi_toolkit.models.network import ForecastNet

    torch.manual_seed(0)
    full = ForecastNet(3, 1, hidden_dim=8, num_layers=2, num_heads=2, dropout=0.0)
    cut = ForecastNet(3, 1, hidden_dim=8, num_layers=2, num_heads=2, dropout=0.0,
                      bptt_steps=bptt_steps)
    cut.load_state_dict(full.state_dict())
    return full, cut


def test_bptt_keeps_the_forward_pass_and_cuts_gradients_before_the_last_k_steps(scaled):
    X, y = scaled
    x = torch.from_numpy(X[np.arange(8)].gather().astype(np.float32)[..., :3])  # [8, 20, 3]
    full, cut = _twins(bptt_steps=5)
    grads = {}
    for name, net in (("full", full), ("cut", cut)):
        xi = x.clone().requires_grad_(True)
        mu, sigma = net.train()(xi)
        (mu.sum() + sigma.sum()).backward()
        grads[name] = (mu.detach(), xi.grad, net.lstm.weight_hh_l0.grad.clone())
    # the state handed over from step 15 makes the outputs those of the whole window
    assert torch.allclose(grads["cut"][0], grads["full"][0], atol=1e-6)
    # gradients reach the last 5 steps only, and change the weights' gradient
    assert (grads["cut"][1][:, :15] == 0).all() and (grads["cut"][1][:, 15:] != 0).any()
    assert (grads["full"][1][:, :15] != 0).any()
    assert not torch.allclose(grads["cut"][2], grads["full"][2])
    # prediction (eval) is the whole window's either way
    with torch.no_grad():
        assert torch.equal(full.eval()(x)[0], cut.eval()(x)[0])


def test_bptt_over_the_whole_window_is_full_backprop(scaled):
    X, _ = scaled
    x = torch.from_numpy(X[np.arange(4)].gather().astype(np.float32)[..., :3])
    full, cut = _twins(bptt_steps=20)  # = the window
    for net in (full, cut):
        net.train()(x)[0].sum().backward()
    assert torch.equal(full.lstm.weight_ih_l0.grad, cut.lstm.weight_ih_l0.grad)


def test_bptt_steps_reach_the_module_and_are_checked(specs_dir, scaled):
    X, y = scaled
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"training.bptt_steps": 5})
    net = build_pipeline(spec)[-1]
    assert net.get_params()["module__bptt_steps"] == 5
    reg = ForecastRegressor(**TINY, max_epochs=1, module__bptt_steps=5).fit(X, y)
    assert reg.module_.bptt_steps == 5 and np.isfinite(reg.predict(X)).all()
    default = build_pipeline(load_spec(specs_dir / "zl_1m_quick.yaml"))[-1]
    assert "module__bptt_steps" not in default.get_params()  # the whole window by default
    with pytest.raises(CbiError, match="bptt_steps"):
        load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"training.bptt_steps": 0})


def test_bptt_steps_are_refused_for_the_pooled_net(specs_dir):
    from cbi_toolkit.models.global_regressor import pooled_regressor_from_spec

    spec = load_spec(specs_dir / "soy_complex_1m_quick.yaml", overrides={"training.bptt_steps": 5})
    with pytest.raises(CbiError, match="bptt_steps"):
        pooled_regressor_from_spec(spec.model, spec.training)
    plain = load_spec(specs_dir / "soy_complex_1m_quick.yaml")
    assert "module__bptt_steps" not in pooled_regressor_from_spec(plain.model, plain.training).get_params()
