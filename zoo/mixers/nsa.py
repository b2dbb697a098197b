"""NSA, Native Sparse Attention (Yuan, Gao, Dai et al. 2025, "Native Sparse Attention:
Hardware-Aligned and Natively Trainable Sparse Attention", arXiv 2502.11089, §3): each query attends
through three branches (compressed, selected, sliding), mixed by learned sigmoid gates. Per head h
with d_h = d_model / H, a query q_t and, per branch c, its own keys/values k^c, v^c (the paper's
independent keys and values "to prevent shortcut learning"; `shared_kv=True` uses one set):

    o_t = Σ_{c ∈ {cmp, slc, win}} g^c_t · Attn(q_t, K̃^c_t, Ṽ^c_t),   g_t = σ(x_t W_g + b_g) ∈ (0,1)^{3H}  (5)

1. Compression (eq. 7-8), blocks of length l with stride d (d ≤ l; the paper uses d = l/2):
       K̃^cmp_t = { φ_K(k_{id : id+l} + E_K) : id + l − 1 ≤ t }      (only blocks complete at t: causal)
   φ a two-layer MLP (l·d_h → l·d_h → d_h, GELU) on the flattened block, E an intra-block position
   embedding [l, d_h]; p^cmp_t = softmax_i(q_t · K̃^cmp_{t,i} / √d_h). No complete block yet → the
   branch outputs 0 (softmax over an empty set := 0).
2. Selection (eq. 9-12), blocks of length l': block j's importance is the compressed attention that
   falls on it, p^slc_t[j] = Σ_{i : cmp block i overlaps slc block j} p^cmp_t[i] (eq. 9 written as
   an overlap sum, which needs no divisibility between l, d and l'); the n most important blocks
   among those that end before t's own block are selected, plus t's own block (the paper's always-on
   local block), causally masked inside it. Attn runs over the tokens of the selected blocks.
   Selection is a hard top-n: no gradient flows through it (the compressed branch learns the
   scores through its own output), as in the paper.
3. Sliding window (§3.3.3): K̃^win_t = k^win_{t−w+1 : t}.
Selected and sliding branches use RoPE inside the mixer (`positions="rope"`, as `attention.py`);
the compressed branch has only the intra-block embeddings E (a block has no single position).
Computation: dense masks over [T, T] (readable; fine at MQAR lengths), SDPA for branches 2-3.

Defaults: zoology's models_repo.py NSA setting (2 heads, l = d = l' = 8, n = 4, w = 16). Gates are
initialised to 1/2 each (W_g = 0, b_g = 0); PyTorch's default Linear init elsewhere, E ~ N(0, 0.02).
Simplifications: no GQA (one K/V head per query head, so no group-shared selection, eq. 10).

State at inference after T tokens, per layer (elements). Any past block may be selected at a later
step, so the selection branch must keep its whole raw KV cache: NSA's cache grows with T like
attention's (the sparsity saves reads, not memory). With n_cmp(T) = ⌊(T − l)/d⌋ + 1 complete blocks
(0 if T < l):
    independent K/V: 2·T·D (selected) + 2·min(T, w)·D (sliding) + 2·n_cmp·D (compressed K̃, Ṽ)
                     + 2·(T − n_cmp·d)·D (raw k, v of the compression branch not yet in a block)
    shared K/V:      2·T·D + 2·n_cmp·D
Zoology's NSA counts 2·n·l'·D for the selection branch instead (what one step reads, not what must
be stored).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .attention import apply_rope, rope_tables


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim restricted to `mask`; rows with no allowed entry give zeros (and
    zero gradients) instead of NaN."""
    s = logits.masked_fill(~mask, float("-inf"))
    m = s.amax(-1, keepdim=True).detach()
    e = (s - torch.where(torch.isfinite(m), m, torch.zeros_like(m))).exp()   # exp(−inf) = 0
    return e / e.sum(-1, keepdim=True).clamp_min(1e-30)


class NSA(nn.Module):
    def __init__(self, d_model: int, *, layer_idx: int, num_heads: int = 2, block_size: int = 8,
                 block_stride: int = 8, select_block_size: int = 8, num_selected: int = 4,
                 window: int = 16, shared_kv: bool = False,
                 positions: Literal["rope", "none"] = "rope", rope_base: float = 10000.0):
        super().__init__()
        if num_heads < 1 or d_model % num_heads:
            raise ValueError(f"NSA: num_heads={num_heads} must be >= 1 and divide d_model={d_model}")
        if not 1 <= block_stride <= block_size:
            raise ValueError(f"NSA: need 1 <= block_stride <= block_size (overlapping or adjacent "
                             f"compression blocks), got block_stride={block_stride}, block_size={block_size}")
        if min(select_block_size, window) < 1 or num_selected < 0:
            raise ValueError(f"NSA: need select_block_size, window >= 1 and num_selected >= 0, got "
                             f"{select_block_size}, {window}, {num_selected}")
        if positions not in ("rope", "none"):
            raise ValueError(f"NSA(positions={positions!r}): expected 'rope' or 'none'")
        if positions == "rope" and (d_model // num_heads) % 2:
            raise ValueError(f"NSA: rope needs an even head dim, got {d_model // num_heads}")
        D, H = d_model, num_heads
        self.d_model, self.layer_idx, self.num_heads, self.head_dim = D, layer_idx, H, D // H
        self.block_size, self.block_stride = block_size, block_stride
        self.select_block_size, self.num_selected, self.window = select_block_size, num_selected, window
        self.shared_kv, self.positions, self.rope_base = shared_kv, positions, rope_base
        dh, l = self.head_dim, block_size
        self.q = nn.Linear(D, D, bias=False)
        self.kv = nn.Linear(D, 2 * D * (1 if shared_kv else 3), bias=False)  # [k, v] per branch
        self.block_pos = nn.Parameter(0.02 * torch.randn(2, l, dh))          # E_K, E_V
        self.phi_k, self.phi_v = (nn.Sequential(nn.Linear(l * dh, l * dh), nn.GELU(), nn.Linear(l * dh, dh))
                                  for _ in range(2))
        self.gate = nn.Linear(D, 3 * H)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)                                       # every gate starts at 1/2
        self.out = nn.Linear(D, D, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """x [B, T, D] -> q (no RoPE), q with RoPE, and [k, v] of the cmp, slc, win branches
        (RoPE on slc/win keys), every tensor [B, H, T, d_h]."""
        heads = lambda z: rearrange(z, "b t (h d) -> b h t d", h=self.num_heads)
        q = heads(self.q(x))
        kv = [heads(z) for z in self.kv(x).chunk(2 if self.shared_kv else 6, dim=-1)]
        kv = kv * 3 if self.shared_kv else kv                                # k_c, v_c, k_s, v_s, k_w, v_w
        q_rot = q
        if self.positions == "rope":
            cos, sin = rope_tables(x.shape[1], self.head_dim, self.rope_base, x.device, q.dtype)
            q_rot = apply_rope(q, cos, sin)
            kv[2], kv[4] = apply_rope(kv[2], cos, sin), apply_rope(kv[4], cos, sin)
        return q, q_rot, kv

    def num_blocks(self, seq_len: int) -> int:
        """n_cmp(T): compression blocks complete after T tokens."""
        return (seq_len - self.block_size) // self.block_stride + 1 if seq_len >= self.block_size else 0

    def compress(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (7): k, v [B, H, T, d_h] -> K̃, Ṽ [B, H, n_cmp, d_h], block i = tokens i·d .. i·d + l − 1."""
        out = []
        for z, pos, phi in ((k, self.block_pos[0], self.phi_k), (v, self.block_pos[1], self.phi_v)):
            blocks = z.unfold(2, self.block_size, self.block_stride).transpose(-1, -2)  # [B, H, n, l, d_h]
            out.append(phi((blocks + pos).flatten(-2)))                                 # [B, H, n, d_h]
        return out[0], out[1]

    def block_overlap(self, n_cmp: int, n_slc: int, device) -> torch.Tensor:
        """[n_cmp, n_slc] 0/1: compression block i shares a token with selection block j."""
        start = torch.arange(n_cmp, device=device) * self.block_stride
        lo = torch.arange(n_slc, device=device) * self.select_block_size
        return ((start[:, None] <= lo + self.select_block_size - 1)
                & (start[:, None] + self.block_size - 1 >= lo)).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, q_rot, (k_c, v_c, k_s, v_s, k_w, v_w) = self.project(x)
        t = torch.arange(T, device=x.device)
        scale = 1 / math.sqrt(self.head_dim)

        # 1. compressed attention over the blocks complete at t
        n_cmp = self.num_blocks(T)
        if n_cmp:
            kc, vc = self.compress(k_c, v_c)
            ends = torch.arange(n_cmp, device=x.device) * self.block_stride + self.block_size - 1
            p_cmp = masked_softmax(q @ kc.transpose(-1, -2) * scale, ends <= t[:, None])  # [B, H, T, n_cmp]
            o_cmp = p_cmp @ vc
        else:
            p_cmp, o_cmp = q.new_zeros(B, self.num_heads, T, 0), torch.zeros_like(q)

        # 2. selected attention: top-n earlier blocks by p_slc, plus t's own block
        ls = self.select_block_size
        n_slc = -(-T // ls)
        own = t // ls                                                        # t's selection block
        blk = torch.arange(n_slc, device=x.device)
        chosen = (blk == own[:, None]).expand(B, self.num_heads, T, n_slc)   # [B, H, T, n_slc]
        k_top = min(self.num_selected, n_slc)
        if n_cmp and k_top:
            earlier = blk < own[:, None]                                     # whole blocks before t's
            p_slc = p_cmp.detach() @ self.block_overlap(n_cmp, n_slc, x.device)  # eq. (9)
            top = p_slc.masked_fill(~earlier, float("-inf")).topk(k_top, dim=-1).indices
            picked = torch.zeros_like(chosen).scatter(-1, top, True) & earlier  # eq. (11)
            chosen = chosen | picked
        mask = chosen[..., t // ls] & (t[None, :] <= t[:, None])             # eq. (12), [B, H, T, T]
        o_slc = F.scaled_dot_product_attention(q_rot, k_s, v_s, attn_mask=mask)

        # 3. sliding window: t − w < s ≤ t
        dist = t[:, None] - t[None, :]
        o_win = F.scaled_dot_product_attention(q_rot, k_w, v_w, attn_mask=(dist >= 0) & (dist < self.window))

        # eq. (5): gated sum of the branches
        g = rearrange(torch.sigmoid(self.gate(x)), "b t (h c) -> c b h t 1", c=3)
        o = g[0] * o_cmp + g[1] * o_slc + g[2] * o_win
        return self.out(rearrange(o, "b h t d -> b t (h d)"))

    def state_size(self, seq_len: int) -> int:
        """KV caches after seq_len tokens (elements); see the module docstring."""
        T, D = seq_len, self.d_model
        n_cmp = self.num_blocks(T)
        compressed = 2 * n_cmp * D
        if self.shared_kv:
            return 2 * T * D + compressed
        pending = T - n_cmp * self.block_stride                              # raw k, v awaiting a block
        return 2 * T * D + 2 * min(T, self.window) * D + compressed + 2 * pending * D
