"""`EnsembleNet`: k independently initialised `ForecastNet` members, trained side by side.

The seeds of one net disagree more than they agree (their test-span means correlate
-0.18..0.17 at design size, docs/skill.md), so one net's mean is mostly seed noise. An
ensemble averages that noise away (Lakshminarayanan et al. 2017, deep ensembles).

While training, ``forward`` returns every member's output stacked, ``(mu, sigma)
[k, B, H]``; `GaussianForecastLoss` broadcasts the targets over the members and sums
their losses, so each member gets the gradient it would get alone (the regressor clips
each member's gradients separately). The members differ in initialisation and dropout;
they see the same batches; the logged training loss is their mean. In eval mode
(validation, early stopping, prediction, export) it returns the ensemble's forecast:
the members' mean ``mu`` and the mixture's sigma, ``sqrt(mean(sigma_i^2) + var(mu_i))``.
"""

from __future__ import annotations

import torch
from torch import nn

from cbi_toolkit.models.network import ForecastNet


class EnsembleNet(nn.Module):
    """``members`` `ForecastNet` s of the same size; the other arguments go to each."""

    def __init__(self, n_features: int, n_horizons: int, members: int = 3, **net_kwargs):
        super().__init__()
        if members < 1:
            raise ValueError(f"members must be at least 1, got {members}")
        self.n_features, self.n_horizons = n_features, n_horizons
        self.members = nn.ModuleList(ForecastNet(n_features, n_horizons, **net_kwargs)
                                     for _ in range(members))

    @property
    def target_scale(self) -> torch.Tensor:
        return self.members[0].target_scale

    def set_target_stats(self, loc, scale) -> None:
        for net in self.members:
            net.set_target_stats(loc, scale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [net(x) for net in self.members]
        mu = torch.stack([m for m, _ in outs])
        sigma = torch.stack([s for _, s in outs])
        if self.training:
            return mu, sigma
        mean = mu.mean(0)
        var = (sigma ** 2).mean(0) + ((mu - mean) ** 2).mean(0)
        return mean, var.sqrt()
