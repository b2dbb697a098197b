"""The language-model backbone every mixer plugs into.

    tokens [N, T] -> embedding (+ learned positions) -> dropout
                  -> n_layers × Block: x += mixer(norm(x)); x += state_mixer(norm(x))
                  -> final norm -> head

Heads: `lm` is the tied unembedding (logits_t = h_t · Eᵀ). `compression` is MAD's autoencoder
(Poli et al. 2024, App. B.5): the encoder's last-position vector plus fixed sin-cos position
embeddings goes through a 2-layer GELU MLP, then the tied unembedding, so every position must be
reconstructed from one vector.

The backbone never re-initialises a mixer's parameters (Mamba's Δ and A inits must survive; MAD and
Zoology both shipped a generic re-init that overwrote them).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

Positions = Literal["none", "learned"]
StateMixer = Literal["none", "mlp", "swiglu"]
NormPosition = Literal["pre", "post"]
Head = Literal["lm", "compression"]


class MLP(nn.Module):
    """Channel mixer: Linear -> GELU -> Linear."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d_model, hidden), nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """Channel mixer: W2 (silu(W1 x) ⊙ W3 x) (Shazeer 2020)."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.w13 = nn.Linear(d_model, 2 * hidden, bias=False)
        self.w2 = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


def make_norm(kind: str, d_model: int) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(d_model)
    if kind == "rmsnorm":
        return nn.RMSNorm(d_model)
    raise ValueError(f"model.norm={kind!r}: expected 'layernorm' or 'rmsnorm'")


def make_state_mixer(kind: str, d_model: int, hidden: int) -> nn.Module | None:
    if kind == "none":
        return None
    if kind == "mlp":
        return MLP(d_model, hidden)
    if kind == "swiglu":
        return SwiGLU(d_model, hidden)
    raise ValueError(f"model.state_mixer={kind!r}: expected one of 'none', 'mlp', 'swiglu'")


class Block(nn.Module):
    """Residual block: a sequence mixer, then an optional state (channel) mixer; pre-norm
    x + f(norm(x)) or post-norm norm(x + f(x)) (Vaswani et al. 2017)."""

    def __init__(self, mixer: nn.Module, d_model: int, *, state_mixer: StateMixer, mlp_hidden: int,
                 norm: str, dropout: float, norm_position: NormPosition = "pre"):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"model.norm_position={norm_position!r}: expected 'pre' or 'post'")
        self.post_norm = norm_position == "post"
        self.norm1 = make_norm(norm, d_model)
        self.mixer = mixer
        self.mlp = make_state_mixer(state_mixer, d_model, mlp_hidden)
        self.norm2 = make_norm(norm, d_model) if self.mlp is not None else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.norm1(x + self.dropout(self.mixer(x)))
            return x if self.mlp is None else self.norm2(x + self.dropout(self.mlp(x)))
        x = x + self.dropout(self.mixer(self.norm1(x)))
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x


def sincos_positions(length: int, dim: int) -> torch.Tensor:
    """Fixed sin-cos position embeddings [length, dim] (Vaswani et al. 2017)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    emb = torch.zeros(length, dim)
    emb[:, 0::2] = torch.sin(pos * freq)
    emb[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return emb


class LanguageModel(nn.Module):
    """Embedding -> blocks -> norm -> head. `forward(inputs [N, T]) -> logits [N, T, vocab_size]`.

    Training code calls `hidden()` and then `logits_at(hidden, mask)`, which projects only the
    scored positions onto the vocabulary (MQAR scores ~6% of positions)."""

    def __init__(self, *, vocab_size: int, d_model: int, max_seq_len: int,
                 mixers: list[Callable[..., nn.Module]], positions: Positions = "none",
                 state_mixer: StateMixer = "none", mlp_ratio: float = 4.0, norm: str = "layernorm",
                 norm_position: NormPosition = "pre", dropout: float = 0.0, embed_dropout: float = 0.0, head: Head = "lm",
                 compression_hidden: int | None = None):
        super().__init__()
        if positions not in ("none", "learned"):
            raise ValueError(f"model.positions={positions!r}: expected 'none' or 'learned' "
                             f"(rope/alibi are options of the attention mixer)")
        if head not in ("lm", "compression"):
            raise ValueError(f"head={head!r}: expected 'lm' or 'compression'")
        self.vocab_size, self.d_model, self.max_seq_len, self.head = vocab_size, d_model, max_seq_len, head
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_seq_len, d_model) if positions == "learned" else None
        self.embed_dropout = nn.Dropout(embed_dropout)
        hidden = int(mlp_ratio * d_model)
        self.blocks = nn.ModuleList(
            Block(make_mixer(d_model, layer_idx=i), d_model, state_mixer=state_mixer,
                  mlp_hidden=hidden, norm=norm, dropout=dropout, norm_position=norm_position)
            for i, make_mixer in enumerate(mixers)
        )
        self.norm_f = make_norm(norm, d_model)
        if head == "compression":
            width = compression_hidden or hidden
            self.decoder = nn.Sequential(nn.Linear(d_model, width), nn.GELU(), nn.Linear(width, d_model))
            self.register_buffer("decoder_pos", sincos_positions(max_seq_len, d_model), persistent=False)
        self._init_own_weights()

    def _init_own_weights(self) -> None:
        """N(0, 0.02) for the backbone's embeddings; mixers keep their own initialisation."""
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.pos_embed is not None:
            nn.init.normal_(self.pos_embed.weight, std=0.02)

    def hidden(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs [N, T] int64 -> final-norm hidden states [N, T, D]."""
        T = inputs.shape[1]
        if T > self.max_seq_len and self.pos_embed is not None:
            raise ValueError(f"sequence length {T} exceeds the learned positions' max_seq_len={self.max_seq_len}")
        x = self.embed(inputs)
        if self.pos_embed is not None:
            x = x + self.pos_embed.weight[:T]
        x = self.embed_dropout(x)
        for block in self.blocks:
            x = block(x)
        return self.norm_f(x)

    def logits_at(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Logits [M, vocab] at the M positions where `mask` [N, T] is True (row-major order)."""
        if self.head == "lm":
            return hidden[mask] @ self.embed.weight.t()
        rows, cols = mask.nonzero(as_tuple=True)
        z = hidden[:, -1][rows] + self.decoder_pos[cols].to(hidden.dtype)
        return self.decoder(z) @ self.embed.weight.t()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = self.hidden(inputs)
        if self.head == "lm":
            return h @ self.embed.weight.t()
        mask = torch.ones(inputs.shape, dtype=torch.bool, device=inputs.device)
        return self.logits_at(h, mask).view(*inputs.shape, self.vocab_size)

    def state_size(self, seq_len: int) -> int:
        """Elements of recurrent state per sequence at inference (sum over layers)."""
        return sum(int(block.mixer.state_size(seq_len)) for block in self.blocks)

    def state_size_bytes(self, seq_len: int) -> int:
        """Bytes of recurrent state per sequence at inference, fp32 (attention: the KV cache)."""
        return 4 * self.state_size(seq_len)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
