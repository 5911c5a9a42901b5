"""The forecasting network: input projection -> LSTM -> temporal attention -> Gaussian heads.

`ForecastNet` maps a batch of windows ``[B, window, F]`` to a mean and a sigma
of the forward log return at each horizon, ``(mu [B, H], sigma [B, H])``.
Outputs are in the units of the targets: the heads work in standardised units
and two buffers (``target_loc``, ``target_scale``, set by the regressor from the
training targets and saved with the weights) map them back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cbi_toolkit.models.last_step_attention import attend_last

SIGMA_EPS = 1e-4  # floor of sigma, in standardised target units


class ForecastNet(nn.Module):
    """LSTM + multi-head temporal self-attention with a Gaussian output per horizon.

    Only the last time step feeds the heads, so the attention block computes
    the query of that step alone (against keys and values of every step): the
    result equals full self-attention followed by taking the last step, at
    ``O(window)`` instead of ``O(window^2)`` cost, and `attend_last` folds the key
    and value projections into that one query instead of projecting every step.
    """

    def __init__(self, n_features: int, n_horizons: int, hidden_dim: int = 256,
                 num_layers: int = 3, num_heads: int = 8, dropout: float = 0.1,
                 attention: bool = True, bptt_steps: int | None = None):
        super().__init__()
        if bptt_steps is not None and bptt_steps < 1:
            raise ValueError(f"bptt_steps must be positive or None, got {bptt_steps}")
        if n_features < 1 or n_horizons < 1:
            raise ValueError(f"n_features ({n_features}) and n_horizons ({n_horizons}) "
                             "must be positive")
        if attention and hidden_dim % num_heads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be a multiple of "
                             f"num_heads ({num_heads})")
        self.n_features, self.n_horizons = n_features, n_horizons
        self.bptt_steps = bptt_steps
        self.input_proj = nn.Sequential(
            nn.Linear(n_features, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.lstm = nn.LSTM(hidden_dim, hidden_dim, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        if attention:
            self.attention = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout,
                                                   batch_first=True)
            self.attn_dropout = nn.Dropout(dropout)
            self.attn_norm = nn.LayerNorm(hidden_dim)
        else:
            self.attention = None
        self.mean_head = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                       nn.Dropout(dropout), nn.Linear(hidden_dim, n_horizons))
        self.sigma_head = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
                                        nn.Dropout(dropout), nn.Linear(hidden_dim, n_horizons))
        self.softplus = nn.Softplus()
        self.register_buffer("target_loc", torch.zeros(n_horizons))
        self.register_buffer("target_scale", torch.ones(n_horizons))
        self._init_heads()

    def _init_heads(self) -> None:
        # start near "no signal": mean ~ training mean, sigma ~ training std
        nn.init.normal_(self.mean_head[-1].weight, std=1e-3)
        nn.init.zeros_(self.mean_head[-1].bias)
        nn.init.normal_(self.sigma_head[-1].weight, std=1e-3)
        nn.init.constant_(self.sigma_head[-1].bias, math.log(math.e - 1.0))  # softplus -> 1

    def set_target_stats(self, loc, scale) -> None:
        """Set the mean and std of the training targets (per horizon)."""
        loc = torch.as_tensor(loc, dtype=self.target_loc.dtype)
        scale = torch.as_tensor(scale, dtype=self.target_scale.dtype)
        self.target_loc.copy_(loc.reshape(self.n_horizons))
        self.target_scale.copy_(scale.reshape(self.n_horizons))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The representation of the last time step, ``[B, hidden_dim]``."""
        h = self.sequence(x)
        last = h[:, -1:, :]
        if self.attention is not None:
            attended = attend_last(self.attention, last, h)
            last = self.attn_norm(last + self.attn_dropout(attended))
        return last[:, 0, :]

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """The LSTM's output at every step, ``[B, window, hidden_dim]``.

        With ``bptt_steps`` k while training (truncated backpropagation through time), the
        steps before the last k run without gradients and hand their state on to the last
        k: the outputs are those of the whole window, but gradients reach only the last k
        steps, so the backward pass (two thirds of a step) costs k / window of the full one.
        """
        k = self.bptt_steps
        if not (self.training and k and k < x.shape[1] and torch.is_grad_enabled()):
            return self.lstm(self.input_proj(x))[0]
        with torch.no_grad():
            head, state = self.lstm(self.input_proj(x[:, :-k]))
        tail, _ = self.lstm(self.input_proj(x[:, -k:]), state)
        return torch.cat([head, tail], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"expected input [batch, window, {self.n_features}], "
                             f"got {tuple(x.shape)}")
        return self.heads(self.encode(x))

    def heads(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and sigma ``[B, H]`` in target units from the encoding ``z [B, hidden_dim]``."""
        scale = self.target_scale
        mu = self.target_loc + scale * self.mean_head(z)
        sigma = scale * (self.softplus(self.sigma_head(z)) + SIGMA_EPS)
        return mu, sigma
