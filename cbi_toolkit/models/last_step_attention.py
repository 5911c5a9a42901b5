"""Multi-head attention of one query over every step, with the key and value projections
folded away: what ``nn.MultiheadAttention(query, h, h)`` computes, at a fraction of the cost.

With a single query ``q`` per window, the key projection need not touch every step:
``q_n . (W_k h_t + b_k) = (W_k,n^T q_n) . h_t + q_n . b_k``, and the second term is
the same for every ``t``, so it cancels in the softmax. Likewise the value projection
moves out of the weighted sum: ``sum_t a_t (W_v h_t + b_v) = W_v,n (sum_t a_t h_t) +
b_v,n sum_t a_t`` (after dropout on ``a`` its sum is not 1, hence the factor). Per step
this is ``2 * heads * hidden`` multiply-adds instead of ``2 * hidden^2``: training runs
1.07-1.12x faster at the quick size (hidden 64), 1.01-1.02x at the design size, where the
LSTM is 87% of a step (docs/performance.md). The parameters are the module's own
(``in_proj_weight`` etc.), so saved weights load unchanged; the result equals the module's
to floating-point rounding. The exported ONNX graph keeps this form too: a tenth of the
projections' cost, so an int8 export need not quantise them (docs/performance.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def attend_last(mha: nn.MultiheadAttention, query: torch.Tensor, h: torch.Tensor
                ) -> torch.Tensor:
    """``mha(query, h, h, need_weights=False)[0]`` for ``query [B, 1, E]``, ``h [B, T, E]``
    (``batch_first``, packed in-projection, biases), attention dropout in training mode."""
    batch, _, embed = h.shape
    heads = mha.num_heads
    head_dim = embed // heads
    w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
    b_q, _, b_v = mha.in_proj_bias.chunk(3)
    q = F.linear(query[:, 0], w_q, b_q).view(batch, heads, head_dim) * head_dim ** -0.5
    q_keys = torch.einsum("bnd,nde->bne", q, w_k.view(heads, head_dim, embed))  # [B, n, E]
    weights = torch.softmax(torch.bmm(q_keys, h.transpose(1, 2)), dim=-1)     # [B, n, T]
    weights = F.dropout(weights, mha.dropout, mha.training)
    summed = torch.bmm(weights, h)                                               # [B, n, E]
    values = torch.einsum("bne,nde->bnd", summed, w_v.view(heads, head_dim, embed))
    values = values + b_v.view(heads, head_dim) * weights.sum(-1, keepdim=True)
    return mha.out_proj(values.reshape(batch, 1, embed))

