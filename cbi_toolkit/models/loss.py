"""The network's training loss: Gaussian NLL of forward log returns, optionally mixed
with MAE and a direction term, NaN targets (a horizon's unknown future) masked out."""

from __future__ import annotations

import math

import torch


class GaussianForecastLoss(torch.nn.Module):
    """Gaussian NLL of forward log returns, optionally mixed with MAE and a direction term.

    All terms are computed in standardised target units (``(y - loc) / scale``
    with the training mean and std per horizon) so their weights are
    comparable: ``nll`` is the Gaussian negative log-likelihood, ``mae`` the
    mean absolute error of the mean, ``direction`` the log loss of the
    predicted probability of the observed sign, ``-log Phi(sign(y) * mu / sigma)``.
    """

    def __init__(self, nll: float = 1.0, mae: float = 0.0, direction: float = 0.0):
        super().__init__()
        self.nll, self.mae, self.direction = nll, mae, direction

    def forward(self, y_pred, y_true, scale=None):
        mu, sigma = y_pred
        if scale is None:
            scale = torch.ones_like(mu[:1])
        scale = scale.to(mu.dtype)
        # horizon mask: a NaN target (that horizon's future not yet known) adds no loss
        known = torch.isfinite(y_true)
        y_true = torch.where(known, y_true, mu.detach()).to(mu.dtype)
        weight = known.to(mu.dtype) / known.sum().clamp(min=1)
        err = (y_true - mu) / scale
        s = sigma / scale
        loss = mu.new_zeros(())
        if self.nll:
            nll = 0.5 * (err / s) ** 2 + torch.log(s) + 0.5 * math.log(2 * math.pi)
            loss = loss + self.nll * (weight * nll).sum()
        if self.mae:
            loss = loss + self.mae * (weight * err.abs()).sum()
        if self.direction:
            sign = torch.where(y_true >= 0, 1.0, -1.0).to(mu.dtype)
            loss = loss - self.direction * (weight * torch.special.log_ndtr(sign * mu / sigma)).sum()
        return loss
