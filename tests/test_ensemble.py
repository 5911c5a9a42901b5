"""`EnsembleNet` (``model.ensemble``) on real ZL windows, tiny sizes: independent members,
the mixture forecast, saving, export, and the spec key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.pipeline import Pipeline

from cbi_toolkit.errors import SpecError
from cbi_toolkit.export import export_pipeline, raw_windows
from cbi_toolkit.features.windows import WindowScaler
from cbi_toolkit.models.ensemble import EnsembleNet
from cbi_toolkit.models.global_regressor import pooled_regressor_from_spec
from cbi_toolkit.models.loss import GaussianForecastLoss
from cbi_toolkit.models.network import ForecastNet
from cbi_toolkit.models.persistence import load_regressor, save_regressor
from cbi_toolkit.models.regressor import ForecastRegressor
from cbi_toolkit.pipeline import build_pipeline
from cbi_toolkit.spec import load_spec

TINY = dict(module=EnsembleNet, module__members=3, module__hidden_dim=8, module__num_layers=1,
            module__num_heads=2, batch_size=64, max_epochs=2, device="cpu", verbose=0)


@pytest.fixture(scope="module")
def pipe(tiny_samples):
    net = ForecastRegressor(**TINY, seed=5)
    return Pipeline([("scale", WindowScaler()), ("net", net)]).fit(tiny_samples.X, tiny_samples.y)


def _scaled(pipe, tiny_samples, n=40) -> torch.Tensor:
    return torch.as_tensor(pipe[:-1].transform(tiny_samples.X[-n:]).gather())


def test_forecast_is_the_members_mixture(pipe, tiny_samples):
    x = _scaled(pipe, tiny_samples)
    ens = pipe.named_steps["net"].module_.eval()
    with torch.no_grad():
        outs = [net(x) for net in ens.members]
        mu_i = torch.stack([m for m, _ in outs])
        sigma_i = torch.stack([s for _, s in outs])
    mu, sigma = pipe.named_steps["net"].predict_dist(pipe[:-1].transform(tiny_samples.X[-40:]))
    np.testing.assert_allclose(mu, mu_i.mean(0).numpy(), rtol=1e-5, atol=1e-7)
    mixture = (sigma_i ** 2).mean(0) + mu_i.var(0, unbiased=False)
    np.testing.assert_allclose(sigma, mixture.sqrt().numpy(), rtol=1e-5)
    # the members were initialised apart and trained apart: they disagree, and the
    # mixture is wider than the average member by their disagreement
    assert not torch.allclose(mu_i[0], mu_i[1])
    assert (sigma >= sigma_i.pow(2).mean(0).sqrt().numpy() - 1e-7).all()


def test_each_member_gets_the_gradient_it_would_get_alone(pipe, tiny_samples):
    """The training loss is the sum of the members' own losses, so a member's gradient
    does not depend on the others."""
    x = _scaled(pipe, tiny_samples, 64)
    y = torch.as_tensor(tiny_samples.y[-64:], dtype=torch.float32)
    ens = pipe.named_steps["net"].module_.train()
    loss = GaussianForecastLoss(nll=1.0, mae=0.5, direction=0.1)
    scale = ens.target_scale

    def member_grads(total):
        ens.zero_grad()
        total.backward()
        return [p.grad.clone() for p in ens.members[1].parameters()]

    torch.manual_seed(0)  # the same dropout draws for both passes
    together = member_grads(loss(ens(x), y, scale=scale))
    torch.manual_seed(0)
    outs = [net(x) for net in ens.members]
    alone = member_grads(loss(outs[1], y, scale=scale))
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    ens.eval()


def test_save_load_and_onnx_export_keep_the_ensemble(pipe, tiny_samples, tmp_path):
    net = pipe.named_steps["net"]
    save_regressor(net, tmp_path / "model")
    loaded = load_regressor(tmp_path / "model")
    assert isinstance(loaded.module_, EnsembleNet) and len(loaded.module_.members) == 3
    X = pipe[:-1].transform(tiny_samples.X[-25:])
    for a, b in zip(loaded.predict_dist(X), net.predict_dist(X), strict=True):
        np.testing.assert_array_equal(a, b)
    info = export_pipeline(pipe, "onnx", tmp_path / "export", raw_windows(tiny_samples.X[-17:]),
                           atol=1e-4)
    assert info["max_abs_diff"] <= 1e-4


def test_spec_key_builds_the_ensemble(tiny_spec, specs_dir):
    one = build_pipeline(tiny_spec).named_steps["net"]
    assert one.module is ForecastNet
    three = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"model.ensemble": 3})
    net = build_pipeline(three).named_steps["net"]
    assert net.module is EnsembleNet and net.get_params()["module__members"] == 3
    with pytest.raises(SpecError, match="model.ensemble"):
        pooled_regressor_from_spec(three.model, three.training)
