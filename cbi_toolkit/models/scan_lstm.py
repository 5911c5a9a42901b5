"""An inference copy of a fitted ``nn.LSTM`` that exports as a loop, not 252 unrolled steps.

``torch.export`` decomposes ``nn.LSTM`` into every time step of every layer: at
window 252 and 3 layers, ExecuTorch's lowering of that graph takes minutes and its
XNNPACK partitioner grows quadratically with it. `ScanLSTM` computes the same
thing as the input projection of all steps at once (one matmul per layer) plus a
``torch.scan`` over time for the recurrence, so the exported graph stays ~120 nodes
whatever the window. Same outputs as the LSTM (to float rounding); inference only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch._higher_order_ops.scan import scan


class ScanLSTM(nn.Module):
    """``forward(x [B, T, D]) -> (h [B, T, hidden], None)`` of a batch-first, unidirectional LSTM."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not lstm.batch_first or lstm.bidirectional or lstm.proj_size or not lstm.bias:
            raise ValueError("ScanLSTM takes a batch-first, unidirectional LSTM with biases")
        self.num_layers, self.hidden_size = lstm.num_layers, lstm.hidden_size
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
            bias = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
            self.register_buffer(f"w_ih{k}", w_ih.detach().t().contiguous())
            self.register_buffer(f"w_hh{k}", w_hh.detach().t().contiguous())
            self.register_buffer(f"b{k}", bias.detach().clone())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = x.transpose(0, 1)  # [T, B, D]: scan runs over dim 0
        for k in range(self.num_layers):
            gates_x = torch.matmul(h, getattr(self, f"w_ih{k}")) + getattr(self, f"b{k}")
            zeros = torch.zeros_like(gates_x[0, :, :self.hidden_size])
            _, h = scan(_Step(getattr(self, f"w_hh{k}")), (zeros, zeros.clone()), gates_x)
        return h.transpose(0, 1), None


class _Step:
    """One LSTM step: ``((h, c), gates_x[t]) -> ((h', c'), h')`` (gate order i, f, g, o)."""

    def __init__(self, w_hh: torch.Tensor):
        self.w_hh = w_hh

    def __call__(self, carry, gates_x):
        h, c = carry
        i, f, g, o = (gates_x + h @ self.w_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return (h, c), h.clone()
