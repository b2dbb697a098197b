"""LSTM baseline (Hochreiter & Schmidhuber 1997), via `torch.nn.LSTM`: the recurrent model that
extrapolates perfectly on flip-flop language modelling (Liu et al. 2023, "Exposing Attention
Glitches with Flip-Flop Language Modeling", arXiv 2306.00946).

    i_t, f_t, o_t = σ(W_{i,f,o} x_t + U_{i,f,o} h_{t−1} + b),  g_t = tanh(W_g x_t + U_g h_{t−1} + b)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t,   h_t = o_t ⊙ tanh(c_t)
    y_t = W_p h_t   (projection back to d_model, only when hidden_size ≠ d_model)

The recurrence is non-linear in h, so it has no parallel form: cuDNN/PyTorch run it step by step.
Default nn.LSTM initialisation (uniform ±1/√hidden).

State at inference: (h, c) per LSTM layer, state_size = 2 · hidden_size · num_layers.
"""
from __future__ import annotations

import torch
from torch import nn


class LSTM(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, hidden_size: int | None = None,
                 num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        hidden_size = d_model if hidden_size is None else hidden_size
        if hidden_size < 1 or num_layers < 1:
            raise ValueError(f"LSTM: hidden_size={hidden_size} and num_layers={num_layers} must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTM: dropout={dropout} must be in [0, 1)")
        self.d_model, self.layer_idx = d_model, layer_idx
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.lstm = nn.LSTM(d_model, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout if num_layers > 1 else 0.0)
        self.proj = nn.Linear(hidden_size, d_model) if hidden_size != d_model else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)  # [B, T, hidden]
        return self.proj(y)

    def state_size(self, seq_len: int) -> int:
        """2 · hidden_size · num_layers (h and c)."""
        return 2 * self.hidden_size * self.num_layers
