"""One network for several commodities: commodity encoders -> shared LSTM + temporal
attention -> cross-commodity attention -> Gaussian heads per commodity and horizon.

`GlobalForecastNet` maps ``x [B, C, window, F]`` (the windows of ``C`` commodities
ending on the same origin date) to ``(mu, sigma)``, each ``[B, C * H]``, commodity-major.

* **commodity encoders**: a linear projection per commodity (its features mean
  different things: its own returns, the others as drivers) plus a learned commodity
  embedding added to every time step, so the shared layers know whose window it is;
* **shared encoder**: one LSTM and one temporal attention over every commodity's
  window (the same weights learn from all of them);
* **cross-commodity attention**: each commodity's last-step encoding attends to the
  other commodities' encodings of the same day (residual, layer norm);
* **heads**: a mean and a sigma head per commodity, one output per horizon, in
  standardised target units mapped back by the ``target_loc``/``target_scale``
  buffers (one per commodity and horizon), as in `ForecastNet`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cbi_toolkit.models.last_step_attention import attend_last
from cbi_toolkit.models.network import SIGMA_EPS


def _head(hidden_dim: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, n_out))


class GlobalForecastNet(nn.Module):
    def __init__(self, n_features: int, n_horizons: int, n_commodities: int,
                 hidden_dim: int = 256, num_layers: int = 3, num_heads: int = 8,
                 dropout: float = 0.1, attention: bool = True, cross_attention: bool = True):
        super().__init__()
        if min(n_features, n_horizons, n_commodities) < 1:
            raise ValueError(f"n_features ({n_features}), n_horizons ({n_horizons}) and "
                             f"n_commodities ({n_commodities}) must be positive")
        if (attention or cross_attention) and hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be a multiple of "
                             f"num_heads ({num_heads})")
        self.n_features, self.n_horizons, self.n_commodities = n_features, n_horizons, n_commodities
        self.input_proj = nn.ModuleList(nn.Linear(n_features, hidden_dim)
                                        for _ in range(n_commodities))
        self.commodity_embedding = nn.Embedding(n_commodities, hidden_dim)
        nn.init.normal_(self.commodity_embedding.weight, std=0.1)
        self.input_act = nn.Sequential(nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.attention = (nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout,
                                                batch_first=True) if attention else None)
        self.attn_norm = nn.LayerNorm(hidden_dim)
        self.cross = (nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout,
                                            batch_first=True) if cross_attention else None)
        self.cross_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.mean_heads = nn.ModuleList(_head(hidden_dim, n_horizons, dropout)
                                        for _ in range(n_commodities))
        self.sigma_heads = nn.ModuleList(_head(hidden_dim, n_horizons, dropout)
                                         for _ in range(n_commodities))
        self.softplus = nn.Softplus()
        n_out = n_commodities * n_horizons
        self.register_buffer("target_loc", torch.zeros(n_out))
        self.register_buffer("target_scale", torch.ones(n_out))
        for mean, sigma in zip(self.mean_heads, self.sigma_heads, strict=True):
            # start near "no signal": mean ~ training mean, sigma ~ training std
            nn.init.normal_(mean[-1].weight, std=1e-3)
            nn.init.zeros_(mean[-1].bias)
            nn.init.normal_(sigma[-1].weight, std=1e-3)
            nn.init.constant_(sigma[-1].bias, math.log(math.e - 1.0))  # softplus -> 1

    def set_target_stats(self, loc, scale) -> None:
        """Mean and std of the training targets, one per commodity and horizon."""
        n_out = self.n_commodities * self.n_horizons
        self.target_loc.copy_(torch.as_tensor(loc, dtype=self.target_loc.dtype).reshape(n_out))
        self.target_scale.copy_(torch.as_tensor(scale, dtype=self.target_scale.dtype)
                                .reshape(n_out))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Per commodity, its last step after the shared encoder and the cross-commodity
        attention, ``[B, C, hidden_dim]``."""
        b, c, w, _ = x.shape
        h = torch.stack([proj(x[:, k]) for k, proj in enumerate(self.input_proj)], dim=1)
        h = h + self.commodity_embedding.weight[None, :, None, :]
        h = self.input_act(h).reshape(b * c, w, -1)
        h, _ = self.lstm(h)
        last = h[:, -1:, :]
        if self.attention is not None:
            attended = attend_last(self.attention, last, h)
            last = self.attn_norm(last + self.dropout(attended))
        z = last.reshape(b, c, -1)
        if self.cross is not None:
            mixed, _ = self.cross(z, z, z, need_weights=False)
            z = self.cross_norm(z + self.dropout(mixed))
        return z

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.n_commodities or x.shape[-1] != self.n_features:
            raise ValueError(f"expected input [batch, {self.n_commodities}, window, "
                             f"{self.n_features}], got {tuple(x.shape)}")
        z = self.encode(x)
        mean = torch.cat([head(z[:, k]) for k, head in enumerate(self.mean_heads)], dim=1)
        spread = torch.cat([head(z[:, k]) for k, head in enumerate(self.sigma_heads)], dim=1)
        scale = self.target_scale
        return self.target_loc + scale * mean, scale * (self.softplus(spread) + SIGMA_EPS)
