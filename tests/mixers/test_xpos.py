"""xPos positions of the attention mixer (Sun et al. 2022, arXiv 2212.10554): the parallel forms
(centred, and in blocks of queries for long sequences) against a token loop written from the paper's
definition with absolute positions, forward and backward; the relative-position property (X) of
attention.py; equality with RoPE when the decay is off; extrapolation far past the lengths where the
factors ζ^{±n/B} over/underflow in fp32."""
from __future__ import annotations

import math

import pytest
import torch
from mixer_grads import fwd_bwd

import zoo
from zoo.mixers.attention import Attention

TOL = {"rtol": 1e-4, "atol": 1e-5}  # fp32, parallel vs step-by-step


def assert_same(ref: dict, got: dict, tol=TOL) -> None:
    assert ref.keys() == got.keys(), f"gradients reach different parameters: {ref.keys() ^ got.keys()}"
    for name, want in ref.items():
        torch.testing.assert_close(got[name], want, **tol, msg=lambda m, name=name: f"{name}: {m}")


def zeta(d: int, gamma: float) -> torch.Tensor:
    """ζ_i = (i/(d/2) + γ)/(1 + γ), i = 0..d/2-1 (the paper's §3.3)."""
    return (torch.arange(d // 2, dtype=torch.float64) / (d / 2) + gamma) / (1 + gamma)


def xpos_one(x: torch.Tensor, n: int, m: Attention, sign: int) -> torch.Tensor:
    """One position of xPos, straight from the paper: pairs (x_i, x_{i+d/2}) rotated by n·θ_i and
    scaled by ζ_i^{sign·n/B} (sign +1 for queries, -1 for keys), absolute positions n = 0, 1, ..."""
    d = x.shape[-1]
    theta = n * m.rope_base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    scale = (zeta(d, m.xpos_gamma) ** (sign * n / m.xpos_scale_base)).float()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    rot = torch.cat([x1 * theta.cos() - x2 * theta.sin(), x1 * theta.sin() + x2 * theta.cos()], -1)
    return rot * torch.cat([scale, scale])


def xpos_loop(m: Attention, x: torch.Tensor) -> torch.Tensor:
    """Token loop with a KV cache of the last `window` keys: softmax(q̃_t·k̃_s/√d_h) v_s, s ≤ t."""
    B, T, D = x.shape
    H, dh = m.num_heads, D // m.num_heads
    q, k, v = m.qkv(x).view(B, T, 3, H, dh).unbind(2)                # [B, T, H, dh]
    keys, values, outs = [], [], []
    for t in range(T):
        keys.append(xpos_one(k[:, t], t, m, -1)), values.append(v[:, t])
        if m.window is not None and len(keys) > m.window:
            keys.pop(0), values.pop(0)
        K, V = torch.stack(keys, 1), torch.stack(values, 1)          # [B, n, H, dh]
        s = torch.einsum("bhd,bnhd->bhn", xpos_one(q[:, t], t, m, +1), K) / math.sqrt(dh)
        outs.append(torch.einsum("bhn,bnhd->bhd", s.softmax(-1), V).reshape(B, D))
    return m.out(torch.stack(outs, 1))


@pytest.mark.parametrize("num_heads,window,block", [(1, None, math.inf), (2, None, math.inf), (2, 3, math.inf),
                                                    (2, None, 5), (2, 4, 5), (1, None, 1)])
def test_xpos_matches_token_loop(num_heads, window, block):
    """A small scale base (B = 4) makes the decay strong over 17 tokens; block < T takes the
    blocked path (each block of queries with its own reference position), block = inf the dense one."""
    m = Attention(16, layer_idx=0, num_heads=num_heads, positions="xpos", xpos_scale_base=4.0, window=window)
    m.xpos_block = block
    x = torch.randn(2, 17, 16)
    assert_same(fwd_bwd(m, lambda z: xpos_loop(m, z), x), fwd_bwd(m, m, x))


def test_xpos_scores_are_rope_scores_times_relative_decay():
    """(X): per rotation pair i, q̃_t·k̃_s = (RoPE's q_t·k_s on that pair) · ζ_i^{(t-s)/B}, for every
    t, s (either order), so the score depends on the positions only through t - s."""
    torch.manual_seed(0)
    xp = Attention(16, layer_idx=0, num_heads=2, positions="xpos", xpos_scale_base=8.0)
    rope = Attention(16, layer_idx=0, num_heads=2, positions="rope")
    rope.load_state_dict(xp.state_dict())
    x = torch.randn(1, 12, 16)
    (q, k, _), (qr, kr, _) = xp.project(x), rope.project(x)                # [1, H, T, 8]

    def per_pair(a, b):  # [1, H, T, T, 4]: contribution of pair i = (a_i b_i + a_{i+4} b_{i+4})
        prod = a[..., :, None, :] * b[..., None, :, :]
        return prod[..., :4] + prod[..., 4:]

    dist = torch.arange(12.0)[:, None] - torch.arange(12.0)[None, :]      # t - s
    decay = zeta(8, 0.4).float() ** (dist[..., None] / 8.0)                # [T, T, 4]
    torch.testing.assert_close(per_pair(q, k), per_pair(qr, kr) * decay, rtol=1e-4, atol=1e-6)
    # the same token everywhere: a Toeplitz score matrix, decaying with the distance
    q, k, _ = xp.project(torch.randn(1, 1, 16).expand(1, 12, 16))
    scores = q @ k.transpose(-1, -2)
    torch.testing.assert_close(scores[..., 1:, 1:], scores[..., :-1, :-1], rtol=1e-4, atol=1e-5)


def test_xpos_without_decay_is_rope():
    xp = Attention(16, layer_idx=0, num_heads=2, positions="xpos", xpos_scale_base=math.inf)
    rope = Attention(16, layer_idx=0, num_heads=2, positions="rope")
    rope.load_state_dict(xp.state_dict())
    x = torch.randn(2, 9, 16)
    assert_same(fwd_bwd(rope, rope, x), fwd_bwd(xp, xp, x), tol={"rtol": 0, "atol": 0})
    assert xp.xpos_block == math.inf
    xp.xpos_block = 4                                                      # the blocked path too
    torch.testing.assert_close(xp(x), rope(x), **TOL)


def test_xpos_extrapolates_where_naive_factors_overflow():
    """T = 3000 at B = 4: ζ_0^{±T/B} = e^{±940} is far outside fp32 (and fp64), yet the output is
    finite and equals an fp64 reference computed from (X) directly (the decay ζ^{(t-s)/B} ≤ 1 on
    and below the diagonal); at B = 4 the blocks hold 12 queries (ζ_0^{-12/4} ≈ e^{3.8})."""
    torch.manual_seed(0)
    T, B_ = 3000, 4.0
    m = Attention(8, layer_idx=0, num_heads=1, positions="xpos", xpos_scale_base=B_)
    assert m.xpos_block == 12
    x = torch.randn(1, T, 8)
    with torch.no_grad():
        y = m(x)
        q, k, v = (z.double() for z in m.rotate(x))                      # [1, 1, T, 8], rotated only
    assert torch.isfinite(y).all()
    t = torch.arange(T, dtype=torch.float64)
    dist = (t[:, None] - t[None, :]).clamp(min=0)                          # t - s where it counts
    q, k = q[0, 0], k[0, 0]                                                # [T, 8]
    scores = sum(zeta(8, 0.4)[i] ** (dist / B_) * (q[:, i::4] @ k[:, i::4].t())  # pair i: dims i, i+4
                 for i in range(4)) / math.sqrt(8)                         # [T, T]
    scores = scores.masked_fill(t[:, None] < t[None, :], float("-inf"))
    o = scores.softmax(-1) @ v[0, 0]
    ref = m.out(o.float()[None])
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)


def test_xpos_model_runs_past_training_length_and_is_causal():
    model = zoo.build_model("attention", vocab_size=16, d_model=32, n_layers=2, max_seq_len=64,
                            positions="xpos", num_heads=8).eval()
    for block in model.blocks:
        block.mixer.xpos_block = 128                                       # blocks at T = 300 (cheaply)
    x = torch.randint(0, 16, (1, 300))                                     # > max_seq_len
    with torch.no_grad():
        y = model(x)
        x2 = x.clone()
        x2[:, 200:] = torch.randint(0, 16, (1, 100))
        y2 = model(x2)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y2[:, :200], y[:, :200], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({"positions": "xpos", "num_heads": 16}, "even head dim"),              # d_h = 1
    ({"positions": "xpos", "xpos_gamma": 0.0}, "xpos_gamma"),
    ({"positions": "xpos", "xpos_scale_base": -1.0}, "xpos_scale_base"),
])
def test_xpos_bad_hparams_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attention(16, layer_idx=0, **kwargs)
