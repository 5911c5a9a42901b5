"""ForecastNet shapes (random tensors are fine here: shapes only, no prices)."""

from __future__ import annotations

import pytest
import torch

from cbi_toolkit.models.last_step_attention import attend_last
from cbi_toolkit.models.network import ForecastNet


@pytest.mark.parametrize("attention", [True, False])
def test_output_shapes_and_positive_sigma(attention):
    net = ForecastNet(n_features=7, n_horizons=3, hidden_dim=16, num_layers=2, num_heads=4,
                      attention=attention)
    mu, sigma = net(torch.randn(5, 20, 7))
    assert mu.shape == sigma.shape == (5, 3)
    assert (sigma > 0).all()
    assert (net.attention is None) is (not attention)


def test_attention_changes_parameters():
    with_attn = ForecastNet(4, 1, hidden_dim=16, num_layers=1, num_heads=2, attention=True)
    without = ForecastNet(4, 1, hidden_dim=16, num_layers=1, num_heads=2, attention=False)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(with_attn) > n(without)


def test_last_step_query_equals_full_self_attention():
    torch.manual_seed(0)
    net = ForecastNet(4, 2, hidden_dim=16, num_layers=1, num_heads=4).eval()
    x = torch.randn(3, 12, 4)
    with torch.no_grad():
        h, _ = net.lstm(net.input_proj(x))
        full, _ = net.attention(h, h, h, need_weights=False)
        expected = net.attn_norm(h + full)[:, -1]
        assert torch.allclose(net.encode(x), expected, atol=1e-5)


@pytest.mark.parametrize("training", [False, True])
def test_folded_attention_equals_multihead_attention_and_its_gradients(training):
    """`attend_last` is nn.MultiheadAttention of one query, with the same dropout draws
    for the same seed (so training follows today's path) and the same gradients."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, dropout=0.3, batch_first=True).train(training)
    h = torch.randn(3, 12, 16, requires_grad=True)
    torch.manual_seed(1)
    ref = mha(h[:, -1:], h, h, need_weights=False)[0]
    ref_grads = torch.autograd.grad(ref.square().sum(), [h, mha.in_proj_weight, mha.in_proj_bias])
    torch.manual_seed(1)
    out = attend_last(mha, h[:, -1:], h)
    grads = torch.autograd.grad(out.square().sum(), [h, mha.in_proj_weight, mha.in_proj_bias])
    assert out.shape == ref.shape == (3, 1, 16)
    assert torch.allclose(out, ref, atol=1e-6)
    for g, r in zip(grads[:2], ref_grads[:2], strict=True):
        assert torch.allclose(g, r, atol=1e-5)
    # the key bias cancels in the softmax: its gradient is zero in both
    assert torch.allclose(grads[2], ref_grads[2], atol=1e-5)


def test_target_stats_map_outputs_to_target_units():
    torch.manual_seed(0)
    net = ForecastNet(3, 2, hidden_dim=8, num_layers=1, num_heads=2).eval()
    x = torch.randn(4, 10, 3)
    mu0, sigma0 = net(x)
    net.set_target_stats([0.01, -0.02], [0.05, 0.1])
    mu1, sigma1 = net(x)
    loc, scale = torch.tensor([0.01, -0.02]), torch.tensor([0.05, 0.1])
    assert torch.allclose(mu1, loc + scale * mu0, atol=1e-6)
    assert torch.allclose(sigma1, scale * sigma0, atol=1e-6)
    assert set(net.state_dict()) >= {"target_loc", "target_scale"}


def test_rejects_bad_configuration_and_input():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        ForecastNet(3, 1, hidden_dim=10, num_heads=4)
    net = ForecastNet(3, 1, hidden_dim=8, num_layers=1, num_heads=2)
    with pytest.raises(ValueError, match="expected input"):
        net(torch.randn(2, 5, 4))


def test_backward_reaches_all_parameters():
    net = ForecastNet(3, 2, hidden_dim=8, num_layers=2, num_heads=2)
    mu, sigma = net(torch.randn(4, 6, 3))
    (mu.sum() + sigma.sum()).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing
