"""Attention and linear-attention mixers: attention, sliding_window, cope, linear_attention, based,
base_conv, and the hybrid presets.

Each mixer's parallel/chunked/FFT forward is checked against a plain loop over time written here
from the paper's equations (KV cache, running state S_t and z_t, convolution buffer), forward and
backward (input and every parameter gradient), in fp32 with TOL.
"""
from __future__ import annotations

import math

import pytest
import torch
from mixer_grads import fwd_bwd

import zoo
from zoo.mixers.attention import Attention, alibi_slopes
from zoo.mixers.base_conv import BaseConv
from zoo.mixers.based import Based
from zoo.mixers.cope import CoPE
from zoo.mixers.linear_attention import LinearAttention
from zoo.mixers.sliding_window import SlidingWindowAttention
from zoo.model import from_config

TOL = dict(rtol=1e-4, atol=1e-5)  # fp32, parallel vs step-by-step


# ---------------------------------------------------------------- helpers


def assert_parallel_matches_loop(module: torch.nn.Module, loop, x: torch.Tensor, tol=TOL) -> None:
    ref = fwd_bwd(module, lambda z: loop(module, z), x)
    got = fwd_bwd(module, module, x)
    assert ref.keys() == got.keys(), f"gradients reach different parameters: {ref.keys() ^ got.keys()}"
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], **tol, msg=lambda m: f"{name}: {m}")


def rotate(x: torch.Tensor, t: int, base: float) -> torch.Tensor:
    """RoPE of one position: x [..., d] with pairs (x_i, x_{i+d/2}) rotated by t·base^(-2i/d)."""
    d = x.shape[-1]
    theta = t * base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * theta.cos() - x2 * theta.sin(), x1 * theta.sin() + x2 * theta.cos()], -1)


def attention_loop(m: Attention, x: torch.Tensor) -> torch.Tensor:
    """Token loop with a KV cache (of the last `window` tokens): eqs. (1)-(3) of attention.py."""
    B, T, D = x.shape
    H, dh = m.num_heads, D // m.num_heads
    q, k, v = m.qkv(x).view(B, T, 3, H, dh).unbind(2)                # [B, T, H, dh]
    keys, values, pos, outs = [], [], [], []
    for t in range(T):
        qt, kt = q[:, t], k[:, t]
        if m.positions == "rope":
            qt, kt = rotate(qt, t, m.rope_base), rotate(kt, t, m.rope_base)
        keys.append(kt), values.append(v[:, t]), pos.append(t)
        if m.window is not None and len(keys) > m.window:
            keys.pop(0), values.pop(0), pos.pop(0)
        K, V = torch.stack(keys, 1), torch.stack(values, 1)          # [B, n, H, dh]
        s = torch.einsum("bhd,bnhd->bhn", qt, K) / math.sqrt(dh)
        if m.positions == "alibi":
            s = s - m.slopes[:, None] * (t - torch.tensor(pos, dtype=torch.float32))
        outs.append(torch.einsum("bhn,bnhd->bhd", s.softmax(-1), V).reshape(B, D))
    return m.out(torch.stack(outs, 1))


def cope_loop(m: CoPE, x: torch.Tensor) -> torch.Tensor:
    """Token loop, eqs. (3)-(6) of cope.py, interpolating the embeddings e[p] themselves."""
    B, T, D = x.shape
    H, dh = m.num_heads, D // m.num_heads
    q, k, v = m.qkv(x).view(B, T, 3, H, dh).unbind(2)
    outs = []
    for i in range(T):
        K, V = k[:, : i + 1], v[:, : i + 1]                             # [B, n, H, dh]
        logits = torch.einsum("bhd,bnhd->bhn", q[:, i], K) / math.sqrt(dh)
        g = torch.sigmoid(logits)
        p = torch.stack([g[..., j:].sum(-1) for j in range(i + 1)], -1).clamp(max=m.npos_max)
        lo, hi = p.detach().floor().long(), p.detach().ceil().long()
        frac = (p - lo)[..., None]
        e = (1 - frac) * m.pos_emb[lo] + frac * m.pos_emb[hi]           # [B, H, n, dh]
        logits = logits + torch.einsum("bhd,bhnd->bhn", q[:, i], e)
        outs.append(torch.einsum("bhn,bnhd->bhd", logits.softmax(-1), V).reshape(B, D))
    return m.out(torch.stack(outs, 1))


def feature_loop_map(m: LinearAttention, x: torch.Tensor, t: int, is_query: bool) -> torch.Tensor:
    """φ of one token x [B, H, f] at position t, from the formulas in linear_attention.py."""
    f = x.shape[-1]
    kind = m.feature_map
    if kind == "identity":
        return x
    if kind == "elu1":
        return torch.where(x > 0, x + 1, torch.exp(x))
    if kind == "relu":
        return x.clamp(min=0)
    if kind == "taylor":
        outer = (x[..., :, None] * x[..., None, :]).flatten(-2)
        return torch.cat([torch.ones_like(x[..., :1]), x / f**0.25, outer / (math.sqrt(2) * math.sqrt(f))], -1)
    if kind == "cosformer":
        a = math.pi * t / (2 * m.cosformer_len)
        return torch.cat([x.clamp(min=0) * math.cos(a), x.clamp(min=0) * math.sin(a)], -1)
    xs = x / f**0.25                                                    # performer, unstabilised
    return torch.exp(xs @ m.projection.t() - 0.5 * (xs**2).sum(-1, keepdim=True)) / math.sqrt(m.num_random_features)


def linear_attention_loop(m: LinearAttention, x: torch.Tensor) -> torch.Tensor:
    """(LA2): S_t = S_{t-1} + φ(k_t) v_tᵀ, z_t = z_{t-1} + φ(k_t), o_t = S_tᵀφ(q_t) / (z_t·φ(q_t) + ε)."""
    B, T, D = x.shape
    H = m.num_heads
    q, k = m.qk(x).view(B, T, 2, H, m.feature_dim).unbind(2)
    v = m.v(x).view(B, T, H, D // H)
    S = z = 0
    outs = []
    for t in range(T):
        fq, fk = feature_loop_map(m, q[:, t], t, True), feature_loop_map(m, k[:, t], t, False)
        S = S + fk[..., :, None] * v[:, t, :, None, :]                  # [B, H, F, dh]
        z = z + fk                                                      # [B, H, F]
        o = torch.einsum("bhf,bhfd->bhd", fq, S)
        if m.normalize:
            o = o / ((fq * z).sum(-1, keepdim=True) + m.eps)
        outs.append(o.reshape(B, D))
    return m.out(torch.stack(outs, 1))


def short_conv_loop(conv, x: torch.Tensor) -> torch.Tensor:
    """y_t = b + Σ_i w_i x_{t-k+1+i} with a buffer of the last k inputs (zeros before t = 0)."""
    weight, bias = conv.conv.weight[:, 0], conv.conv.bias                # [D, k], [D]
    k = weight.shape[1]
    buffer = [torch.zeros_like(x[:, 0])] * k
    outs = []
    for t in range(x.shape[1]):
        buffer = buffer[1:] + [x[:, t]]
        outs.append(bias + sum(weight[:, i] * buffer[i] for i in range(k)))
    return torch.stack(outs, 1)


def based_loop(m: Based, x: torch.Tensor) -> torch.Tensor:
    """Steps 1-5 of based.py token by token (conv buffer, Taylor-feature state, window KV cache)."""
    B, T, D = x.shape
    u = x + m.conv_gate(x) * short_conv_loop(m.conv, x)
    la = LinearAttention(D, layer_idx=0, feature_map="taylor", feature_dim=m.feature_dim,
                         num_heads=m.num_heads, eps=m.eps)
    la.qk, la.out = m.qk, m.out
    la.v = m.v
    y = linear_attention_loop(la, u)
    return y if m.swa is None else y + attention_loop(m.swa, u)


def base_conv_loop(m: BaseConv, u: torch.Tensor) -> torch.Tensor:
    """Eq. (1) with the convolution as a sum over the history: Σ_{i≤t} h_i u_{t-i}."""
    if m.conv_kind == "short":
        c = short_conv_loop(m.conv, u)
    else:
        h = m.filter(u.shape[1])                                         # [T, D]
        c = torch.stack([sum(h[i] * u[:, t - i] for i in range(t + 1)) for t in range(u.shape[1])], 1)
    y = c * m.projection(u)
    return y + u if m.residual else y


# ---------------------------------------------------------------- attention

@pytest.mark.parametrize("positions", ["rope", "alibi", "none"])
@pytest.mark.parametrize("num_heads", [1, 2])
def test_attention_matches_kv_cache_loop(positions, num_heads):
    m = Attention(16, layer_idx=0, num_heads=num_heads, positions=positions)
    assert_parallel_matches_loop(m, attention_loop, torch.randn(2, 7, 16))


def test_attention_alibi_slopes_and_bias_values():
    assert alibi_slopes(4).tolist() == [2**-2, 2**-4, 2**-6, 2**-8]
    assert alibi_slopes(8).tolist() == [2.0**-h for h in range(1, 9)]
    assert alibi_slopes(3).tolist() == [2**-4, 2**-8, 2**-2]          # 2 heads' slopes + every other of 4
    m = Attention(8, layer_idx=0, num_heads=2, positions="alibi")
    bias = m._bias(4, "cpu", torch.float32)                            # [H, T, T]
    for h, slope in enumerate([2**-4, 2**-8]):
        for t in range(4):
            for s in range(4):
                want = -slope * (t - s) if s <= t else float("-inf")
                assert bias[h, t, s].item() == want, (h, t, s)


def test_attention_rope_scores_depend_only_on_offset():
    """With the same token at every position, q_t·k_s must be a Toeplitz matrix (RoPE eq. 16)."""
    m = Attention(16, layer_idx=0, num_heads=2, positions="rope")
    x = torch.randn(1, 1, 16).expand(1, 12, 16)
    q, k, _ = m.project(x)                                             # [1, H, T, dh]
    scores = q @ k.transpose(-1, -2)                                   # [1, H, T, T]
    torch.testing.assert_close(scores[..., 1:, 1:], scores[..., :-1, :-1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(scores[..., 5, 0], scores[..., 5, 4])    # but not constant in t - s


def test_attention_state_size_and_params():
    m = Attention(32, layer_idx=0, num_heads=2)
    assert m.state_size(10) == 2 * 10 * 32
    assert sum(p.numel() for p in m.parameters()) == 4 * 32 * 32 + 4 * 32
    assert Attention(32, layer_idx=0, window=4).state_size(10) == 2 * 4 * 32
    with pytest.raises(ValueError, match="num_heads=3"):
        Attention(32, layer_idx=0, num_heads=3)


# ---------------------------------------------------------------- sliding window

@pytest.mark.parametrize("positions,num_heads,T,w", [("rope", 2, 13, 3), ("alibi", 2, 12, 3),
                                                     ("none", 1, 9, 2), ("rope", 1, 5, 4)])
def test_sliding_window_matches_kv_cache_loop(positions, num_heads, T, w):
    m = SlidingWindowAttention(16, layer_idx=0, window=w, num_heads=num_heads, positions=positions)
    assert_parallel_matches_loop(m, attention_loop, torch.randn(2, T, 16))


def test_sliding_window_ignores_tokens_outside_the_window():
    m = SlidingWindowAttention(16, layer_idx=0, window=3)
    x = torch.randn(1, 12, 16)
    x2 = x.clone()
    x2[:, :6] = torch.randn(1, 6, 16)                                 # outputs t >= 8 see x[t-2..t] only
    with torch.no_grad():
        y, y2 = m(x), m(x2)
    torch.testing.assert_close(y2[:, 8:], y[:, 8:], **TOL)
    assert not torch.allclose(y2[:, 7], y[:, 7])


def test_sliding_window_state_size():
    m = SlidingWindowAttention(32, layer_idx=0, window=8)
    assert m.state_size(5) == 2 * 5 * 32 and m.state_size(100) == 2 * 8 * 32
    with pytest.raises(ValueError, match="window must be"):
        SlidingWindowAttention(32, layer_idx=0, window=0)


# ---------------------------------------------------------------- CoPE

@pytest.mark.parametrize("num_heads,npos_max", [(1, 3), (2, 64)])
def test_cope_matches_token_loop(num_heads, npos_max):
    m = CoPE(16, layer_idx=0, num_heads=num_heads, npos_max=npos_max)
    with torch.no_grad():
        m.pos_emb.normal_()                                            # zeros at init: make e matter
    assert_parallel_matches_loop(m, cope_loop, torch.randn(2, 9, 16))


def test_cope_positions_count_gates():
    """p_ij = Σ_{t=j..i} σ(logit_it), e.g. p_ii = σ(logit_ii) and p_i0 = Σ_t σ(logit_it)."""
    m = CoPE(8, layer_idx=0, npos_max=100)
    logits = torch.randn(5, 5)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    p = m.positions(logits, causal)
    g = torch.sigmoid(logits)
    torch.testing.assert_close(p.diagonal(), g.diagonal())
    torch.testing.assert_close(p[4, 0], g[4].sum())
    torch.testing.assert_close(p[3, 1], g[3, 1:4].sum())
    assert (p[causal.logical_not()] == 0).all()


def test_cope_with_zero_embeddings_is_plain_attention():
    m = CoPE(16, layer_idx=0, num_heads=2)
    a = Attention(16, layer_idx=0, num_heads=2, positions="none")
    a.load_state_dict({k: v for k, v in m.state_dict().items() if k != "pos_emb"})
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(m(x), a(x), **TOL)


def test_cope_state_size_and_params():
    m = CoPE(32, layer_idx=0, num_heads=2, npos_max=5)
    assert m.state_size(10) == 2 * 10 * 32
    assert sum(p.numel() for p in m.parameters()) == 4 * 32 * 32 + 4 * 32 + 6 * 16


# ---------------------------------------------------------------- linear attention

@pytest.mark.parametrize("feature_map", ["identity", "elu1", "relu", "taylor", "cosformer", "performer"])
def test_linear_attention_matches_recurrence(feature_map):
    m = LinearAttention(16, layer_idx=0, feature_map=feature_map, feature_dim=4, num_heads=2,
                        num_random_features=6, cosformer_len=10, normalize=feature_map != "identity",
                        eps=0.0 if feature_map == "performer" else 1e-6)
    assert_parallel_matches_loop(m, linear_attention_loop, torch.randn(2, 9, 16))


def test_linear_attention_feature_kernels():
    torch.manual_seed(0)
    q, k = torch.randn(1, 5, 1, 4), torch.randn(1, 5, 1, 4)            # [B, T, H, f]
    # Taylor: φ(q)·φ(k) = 1 + q·k/√f + (q·k)²/(2f)
    m = LinearAttention(8, layer_idx=0, feature_map="taylor", feature_dim=4)
    dot = (q * k).sum(-1)
    torch.testing.assert_close((m.features(q, True) * m.features(k, False)).sum(-1),
                               1 + dot / 2 + dot**2 / 8, **TOL)
    # cosFormer: φ(q_t)·φ(k_s) = relu(q)·relu(k) cos(π/2 (t - s)/M), t, s along dim 1
    m = LinearAttention(8, layer_idx=0, feature_map="cosformer", feature_dim=4, cosformer_len=7)
    fq, fk = m.features(q, True)[0, :, 0], m.features(k, False)[0, :, 0]   # [T=5, 2f]
    t = torch.arange(5.0)
    want = (q.clamp(min=0)[0, :, 0] @ k.clamp(min=0)[0, :, 0].t()) * torch.cos(math.pi / 14 * (t[:, None] - t))
    torch.testing.assert_close(fq @ fk.t(), want, **TOL)


def test_linear_attention_performer_features():
    """Positive, unbiased for exp(q·k/√f) (checked with many features), fixed by (seed, layer)."""
    m = LinearAttention(8, layer_idx=0, feature_map="performer", feature_dim=4, num_random_features=8192,
                        normalize=False)
    q, k = 0.5 * torch.randn(1, 3, 1, 4), 0.5 * torch.randn(1, 3, 1, 4)
    fq, fk = m.features(q, True), m.features(k, False)
    assert (fq > 0).all()
    est, want = (fq * fk).sum(-1), torch.exp((q * k).sum(-1) / 2)
    torch.testing.assert_close(est, want, rtol=0.1, atol=0)
    same = LinearAttention(8, layer_idx=0, feature_map="performer", feature_dim=4, num_random_features=8192)
    other = LinearAttention(8, layer_idx=1, feature_map="performer", feature_dim=4, num_random_features=8192)
    assert torch.equal(m.projection, same.projection) and not torch.equal(m.projection, other.projection)
    assert "projection" in m.state_dict() and "projection" not in dict(m.named_parameters())


def test_linear_attention_state_size_and_params():
    def la(**kw):
        return LinearAttention(32, layer_idx=0, feature_dim=4, num_heads=2, **kw)
    assert la(feature_map="elu1").state_size(10) == 2 * 4 * (16 + 1)
    assert la(feature_map="taylor").state_size(10) == 2 * 21 * 17
    assert la(feature_map="cosformer").state_size(10) == 2 * 8 * 17
    assert la(feature_map="performer", num_random_features=10).state_size(10) == 2 * 10 * 17
    assert la(feature_map="identity", normalize=False).state_size(10) == 2 * 4 * 16
    assert sum(p.numel() for p in la(feature_map="performer").parameters()) == 2 * 32 * 8 + 2 * 32 * 32 + 32
    with pytest.raises(ValueError, match="normalize=false"):
        la(feature_map="identity")
    with pytest.raises(ValueError, match="cosformer_len"):
        la(feature_map="cosformer", cosformer_len=4)(torch.randn(1, 5, 32))


# ---------------------------------------------------------------- Based

@pytest.mark.parametrize("window", [None, 3])
def test_based_matches_recurrence(window):
    m = Based(16, layer_idx=0, feature_dim=3, num_heads=2, window=window)
    assert_parallel_matches_loop(m, based_loop, torch.randn(2, 9, 16))


def test_based_state_size_and_params():
    m = Based(32, layer_idx=0, feature_dim=4, num_heads=1, conv_size=3)
    assert m.state_size(10) == 21 * 33 + 2 * 32
    assert sum(p.numel() for p in m.parameters()) == (3 * 32 + 32) + (32 * 32 + 32) + 2 * 32 * 4 + 32 * 32 + (32 * 32 + 32)
    w = Based(32, layer_idx=0, feature_dim=4, num_heads=1, conv_size=3, window=8)
    assert w.state_size(10) == 21 * 33 + 2 * 32 + 2 * 8 * 32
    assert sum(p.numel() for p in w.parameters()) - sum(p.numel() for p in m.parameters()) == 4 * 32 * 32 + 4 * 32
    assert Based(32, layer_idx=0, window=0).swa is None


# ---------------------------------------------------------------- BaseConv

@pytest.mark.parametrize("conv,residual", [("short", True), ("long", True), ("long", False)])
def test_base_conv_matches_direct_convolution(conv, residual):
    m = BaseConv(16, layer_idx=0, conv=conv, kernel_size=3, residual=residual)
    assert_parallel_matches_loop(m, base_conv_loop, torch.randn(2, 9, 16))


def test_base_conv_long_filter_is_prefix_consistent():
    m = BaseConv(8, layer_idx=0, conv="long")
    torch.testing.assert_close(m.filter(5), m.filter(12)[:5])


def test_base_conv_state_size_and_params():
    short = BaseConv(32, layer_idx=0, conv="short", kernel_size=3)
    long = BaseConv(32, layer_idx=0, conv="long", filter_features=16, filter_hidden=32)
    assert short.state_size(10) == 2 * 32 and long.state_size(10) == 10 * 32
    assert sum(p.numel() for p in short.parameters()) == (32 * 32 + 32) + (3 * 32 + 32)
    mlp = (16 * 32 + 32) + (32 * 32 + 32) + (32 * 32 + 32)
    assert sum(p.numel() for p in long.parameters()) == (32 * 32 + 32) + mlp


# ---------------------------------------------------------------- hybrids

@pytest.mark.parametrize("name,layers,n_layers", [
    ("hybrid", ["base_conv", "attention"], 2),
    ("hybrid", ["cope", "linear_attention", "sliding_window"], 5),
    ("based_zoology", ["base_conv", "based"], 4),
])
def test_hybrid_layer_pattern(name, layers, n_layers):
    cfg = zoo.mixers.model_config(name)
    cfg.layers, cfg.n_layers = layers, n_layers
    model = from_config(cfg, vocab_size=16, max_seq_len=32)
    classes = {"base_conv": BaseConv, "attention": Attention, "cope": CoPE, "based": Based,
               "linear_attention": LinearAttention, "sliding_window": SlidingWindowAttention}
    got = [type(block.mixer) for block in model.blocks]
    assert got == [classes[layers[i % len(layers)]] for i in range(n_layers)]
    assert model.state_size(20) == sum(block.mixer.state_size(20) for block in model.blocks)
