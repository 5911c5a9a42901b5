"""An inference copy of a fitted ``nn.MultiheadAttention`` with its projections as plain linears.

``nn.MultiheadAttention`` keeps the query, key and value projections in one packed
``in_proj_weight`` that its exported ONNX graph slices at run time, so a quantiser sees no
constant weight there and leaves those matmuls in fp32 (about a tenth of an int8
forecast's time at design size). `LastQueryAttention` holds the same weights as four
``nn.Linear`` layers and computes the same thing (to float rounding) for the net's
single query; inference only (no dropout, no masks).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LastQueryAttention(nn.Module):
    """``forward(query [B, 1, E], key [B, T, E], value [B, T, E]) -> (out [B, 1, E], None)``."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        if not mha.batch_first or not mha._qkv_same_embed_dim or mha.in_proj_bias is None:
            raise ValueError("LastQueryAttention takes a batch-first attention with packed, "
                             "biased projections")
        e = mha.embed_dim
        self.num_heads, self.head_dim = mha.num_heads, e // mha.num_heads
        weight, bias = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
        self.q, self.k, self.v = (self._linear(weight[i * e:(i + 1) * e], bias[i * e:(i + 1) * e])
                                  for i in range(3))
        self.out = self._linear(mha.out_proj.weight.detach(), mha.out_proj.bias.detach())

    @staticmethod
    def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
        lin = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            lin.weight.copy_(weight)
            lin.bias.copy_(bias)
        return lin

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)  # [B, heads, T, d]

    def forward(self, query, key, value, need_weights: bool = False):
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(value))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(query.shape)
        return self.out(attended), None
