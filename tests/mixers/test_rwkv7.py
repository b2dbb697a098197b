"""RWKV-7: the chunked generalised delta rule against its token loop (forward, final state and every
gradient), the reduction to the gated delta rule, the whole mixer in both modes, causality, the
state size (zoology #34/#37's corrected formula) and the parameterisation's bounds.

Tolerance: max |chunked − loop| / max |loop| <= TOL[dtype] for every output and gradient.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mixer_grads import assert_rel, fn_grads

from zoo.mixers._delta_rule import naive_delta_rule
from zoo.mixers.rwkv7 import RWKV7, rwkv7_chunked, rwkv7_recurrent

TOL = {torch.float32: 1e-4, torch.float64: 1e-10}
W_MIN = -math.exp(-0.5)  # RWKV-7's smallest log decay


def wkv_inputs(B, T, H, K, V, decay, dtype):
    """Inputs as the mixer makes them: a = −κ̂, b = κ̂ ⊙ a_t, log w in [−e^−0.5, 0)."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    kk = F.normalize(r(B, T, H, K), dim=-1)
    icl = torch.rand(B, T, H, K, generator=g, dtype=dtype)
    u = torch.rand(B, T, H, K, generator=g, dtype=dtype)
    log_w = W_MIN * (u if decay == "any" else 0.9 + 0.1 * u)  # "strong": every step near the bound
    return {"r": r(B, T, H, K), "log_w": log_w, "k": r(B, T, H, K), "v": r(B, T, H, V), "a": -kk,
            "b": kk * icl, "initial_state": r(B, H, K, V)}


@pytest.mark.parametrize("decay", ["any", "strong"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T,C", [(1, 8), (8, 8), (21, 8), (40, 16), (70, 64)])
def test_rwkv7_chunked_matches_loop(T, C, dtype, decay):
    inputs = wkv_inputs(2, T, 2, 5, 7, decay, dtype)  # odd head dims on purpose
    ref = fn_grads(rwkv7_recurrent, inputs)
    out = fn_grads(lambda **a: rwkv7_chunked(**a, chunk_size=C), inputs)
    assert set(ref) == set(out)
    for name in ref:  # o, S_T, dr, dlog_w, dk, dv, da, db, dinitial_state
        assert_rel(name, out[name].to(ref[name].dtype), ref[name], TOL[dtype])


def test_rwkv7_rule_generalises_the_gated_delta_rule():
    """w = α, a = −αβk, b = k and write key βk give S_t = α(I − βkkᵀ)S_{t−1} + βkvᵀ."""
    g = torch.Generator().manual_seed(0)
    B, T, H, K, V = 2, 19, 2, 4, 3
    q, v = torch.randn(B, T, H, K, generator=g), torch.randn(B, T, H, V, generator=g)
    k = F.normalize(torch.randn(B, T, H, K, generator=g), dim=-1)
    beta, log_alpha = torch.rand(B, T, H, generator=g), -0.5 * torch.rand(B, T, H, generator=g)
    ref, _ = naive_delta_rule(q, k, v, beta, log_alpha)
    alpha = log_alpha.exp()[..., None]
    o, _ = rwkv7_chunked(q, log_alpha[..., None].expand(B, T, H, K), beta[..., None] * k, v,
                         -alpha * beta[..., None] * k, k, chunk_size=8)
    torch.testing.assert_close(o, ref, rtol=1e-5, atol=1e-5)


def test_rwkv7_mixer_chunk_mode_matches_recurrent_mode():
    torch.manual_seed(0)
    chunk = RWKV7(32, layer_idx=1, head_dim=16, chunk_size=8)
    with torch.no_grad():  # move off the init (W_o = 0, zero LoRA factors would hide gradients)
        for p in chunk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loop = RWKV7(32, layer_idx=1, head_dim=16, chunk_size=8, mode="recurrent")
    loop.load_state_dict(chunk.state_dict())
    x = torch.randn(2, 21, 32)
    results = []
    for mixer in (loop, chunk):
        res = fn_grads(lambda x, mixer=mixer: (mixer(x),), {"x": x})
        res.update({n: p.grad for n, p in mixer.named_parameters()})
        results.append(res)
    ref, out = results
    assert set(ref) == set(out) and len(ref) > 10
    for key in ref:  # output, dx, every parameter gradient
        assert ref[key] is not None, f"no gradient reaches {key}"
        assert_rel(key, out[key], ref[key], TOL[torch.float32])


def test_rwkv7_mixer_is_causal():
    torch.manual_seed(0)
    mixer = RWKV7(32, layer_idx=1, head_dim=16, chunk_size=8).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, 30, 32)
        y = mixer(x)
        for t in (0, 7, 8, 20):
            x2 = x.clone()
            x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
            torch.testing.assert_close(mixer(x2)[:, : t + 1], y[:, : t + 1], rtol=1e-5, atol=1e-6)


def test_rwkv7_state_size_corrected_formula():
    """H·N·N (zoology #34/#37: num_heads·head_dim·head_dim) + d_model for the token shift."""
    assert RWKV7(64, layer_idx=0).state_size(100) == 1 * 64 * 64 + 64       # one head of 64
    assert RWKV7(128, layer_idx=0).state_size(100) == 2 * 64 * 64 + 128
    assert RWKV7(256, layer_idx=0).state_size(100) == 4 * 64 * 64 + 256     # not 256·256 (#34)
    assert RWKV7(32, layer_idx=0).state_size(100) == 32 * 32 + 32           # head_dim capped at d_model
    assert RWKV7(64, layer_idx=0).state_size(10) == RWKV7(64, layer_idx=0).state_size(10_000)


def test_rwkv7_parameter_count_by_hand():
    d = 64
    # μ: 6d; W_r, W_k, W_v, W_o: 4d²; decay λ + LoRA: d + 2·16d; a: d + 2·16d; gate LoRA: 2·64d;
    # ξ, α, ρ: 3d; GroupNorm affine: 2d
    expected = 6 * d + 4 * d * d + d + 32 * d + d + 32 * d + 128 * d + 3 * d + 2 * d
    assert sum(p.numel() for p in RWKV7(d, layer_idx=0).parameters()) == expected


def test_rwkv7_decay_and_learning_rate_bounds():
    torch.manual_seed(0)
    mixer = RWKV7(64, layer_idx=1)
    d = mixer.w_bias + 10 * torch.randn(1000, 64)
    w = torch.exp(-math.exp(-0.5) * torch.sigmoid(d))
    assert ((w > math.exp(W_MIN) - 1e-6) & (w <= 1)).all()
    assert mixer.mu._no_weight_decay and mixer.r_k._no_weight_decay and mixer.w_A._no_weight_decay


@pytest.mark.parametrize("kwargs,match", [
    ({"head_dim": 48}, "head_dim"),
    ({"chunk_size": 128}, "chunk_size"),
    ({"mode": "fused"}, "mode"),
    ({"gate_rank": 0}, "gate_rank"),
])
def test_rwkv7_bad_hparams_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RWKV7(64 if "head_dim" not in kwargs else 128, layer_idx=0, **kwargs)
