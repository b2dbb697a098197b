"""RetNet, GLA, DeltaNet, Gated DeltaNet, RWKV-6: chunked forms against step-by-step loops (forward
and every gradient), state sizes, parameter counts, and each mixer's own properties.

Tolerances: max |chunked − loop| / max |loop| <= TOL[dtype] for every output and gradient.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mixer_grads import assert_rel, fn_grads

from zoo.mixers._delta_rule import chunk_delta_rule, naive_delta_rule
from zoo.mixers.deltanet import DeltaNet
from zoo.mixers.gated_deltanet import GatedDeltaNet
from zoo.mixers.gla import GLA
from zoo.mixers.retnet import RetNet
from zoo.mixers.rwkv6 import RWKV6, rwkv6_chunked, rwkv6_recurrent

TOL = {torch.float32: 1e-4, torch.float64: 1e-10}
D = 64  # the yaml default width, for the hand-computed counts


# ---------------------------------------------------------------- the delta rule, chunked vs loop
def delta_inputs(B, T, H, K, V, decay, dtype, h0=True):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    inputs = dict(q=r(B, T, H, K), k=F.normalize(r(B, T, H, K), dim=-1), v=r(B, T, H, V),
                  beta=torch.rand(B, T, H, generator=g, dtype=dtype))
    if decay == "weak":
        inputs["log_alpha"] = -0.05 * torch.rand(B, T, H, generator=g, dtype=dtype)
    elif decay == "strong":  # per-step factors down to e^-30, beyond anything exp(+G) could hold
        inputs["log_alpha"] = -30 * torch.rand(B, T, H, generator=g, dtype=dtype)
    if h0:
        inputs["initial_state"] = r(B, H, K, V)
    return inputs


@pytest.mark.parametrize("decay", [None, "weak", "strong"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T,C", [(1, 8), (8, 8), (21, 8), (40, 16)])
def test_delta_rule_chunked_matches_loop(T, C, dtype, decay):
    inputs = delta_inputs(2, T, 2, 5, 7, decay, dtype)  # odd head dims on purpose
    ref = fn_grads(lambda **a: naive_delta_rule(**a, scale=0.7), inputs)
    out = fn_grads(lambda **a: chunk_delta_rule(**a, scale=0.7, chunk_size=C, output_final_state=True),
                  inputs)
    assert set(ref) == set(out)
    for name in ref:  # o, S_T, dq, dk, dv, dbeta, dlog_alpha, dinitial_state
        assert_rel(name, out[name].to(ref[name].dtype), ref[name], TOL[dtype])


def test_delta_rule_writes_then_reads_exactly():
    """β = 1 and ‖k‖ = 1: S_tᵀ k_t = v_t (the delta rule replaces what k_t maps to)."""
    inputs = delta_inputs(1, 12, 2, 8, 4, None, torch.float64, h0=False)
    k, v = inputs["k"], inputs["v"]
    o = chunk_delta_rule(k, k, v, torch.ones(1, 12, 2, dtype=torch.float64), chunk_size=5)
    torch.testing.assert_close(o, v)


def test_delta_rule_total_decay_forgets():
    """α_t → 0 erases the state: o_t = β_t (q_t·k_t) v_t, with finite gradients (log space)."""
    inputs = delta_inputs(2, 20, 2, 4, 3, None, torch.float32, h0=False)
    inputs["log_alpha"] = torch.full((2, 20, 2), -1e4)
    out = fn_grads(lambda **a: chunk_delta_rule(**a, chunk_size=8), inputs)
    q, k, v, beta = (inputs[n] for n in ("q", "k", "v", "beta"))
    expected = (beta * (q * k).sum(-1))[..., None] * v
    torch.testing.assert_close(out["out0"], expected, rtol=1e-5, atol=1e-6)
    assert all(torch.isfinite(g).all() for g in out.values())


# ---------------------------------------------------------------- RWKV-6's WKV, chunked vs loop
@pytest.mark.parametrize("decay", ["weak", "strong"])
@pytest.mark.parametrize("T", [1, 16, 37])
def test_rwkv6_wkv_chunked_matches_loop(T, decay):
    g = torch.Generator().manual_seed(0)
    B, H, K, V = 2, 2, 6, 5
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    d = r(B, T, H, K) + (-3.0 if decay == "weak" else 3.0)  # w = exp(-exp(d)): ~0.95 or ~e^-20
    inputs = dict(r=r(B, T, H, K), k=r(B, T, H, K), v=r(B, T, H, V), log_w=-d.exp(), u=r(H, K))
    ref = fn_grads(rwkv6_recurrent, inputs)
    out = fn_grads(rwkv6_chunked, inputs)
    for name in ref:  # o, dr, dk, dv, dlog_w, du
        assert_rel(name, out[name], ref[name], TOL[torch.float32])


# ---------------------------------------------------------------- whole mixers, chunk vs recurrent mode
MIXERS = {  # name: (class, test kwargs, T chosen to span several chunks of the chunked path)
    "retnet": (RetNet, {}, 70),                      # scalar decay: kernel chunks of 64
    "gla": (GLA, {}, 37),                            # per-channel decay: kernel chunks of 16
    "deltanet": (DeltaNet, {"chunk_size": 8}, 21),
    "gated_deltanet": (GatedDeltaNet, {"chunk_size": 8}, 21),
    "rwkv6": (RWKV6, {}, 37),
}


@pytest.mark.parametrize("name", list(MIXERS))
def test_mixer_chunk_mode_matches_recurrent_mode(name):
    cls, kwargs, T = MIXERS[name]
    torch.manual_seed(0)
    chunk = cls(32, layer_idx=1, mode="chunk", **kwargs)
    with torch.no_grad():  # move off the init (RWKV's W_o = 0 would hide every other gradient)
        for p in chunk.parameters():
            p.add_(0.1 * torch.randn_like(p))
    loop = cls(32, layer_idx=1, mode="recurrent", **kwargs)
    loop.load_state_dict(chunk.state_dict())
    x = torch.randn(2, T, 32)
    results = []
    for mixer in (loop, chunk):
        res = fn_grads(lambda x: mixer(x), {"x": x})
        res.update({n: p.grad for n, p in mixer.named_parameters()})
        results.append(res)
    ref, out = results
    assert set(ref) == set(out) and len(ref) > 3
    for key in ref:  # output, dx, every parameter gradient
        assert_rel(f"{name}.{key}", out[key], ref[key], TOL[torch.float32])


# ---------------------------------------------------------------- state sizes and parameter counts
def test_state_sizes_by_hand():
    H = 2
    assert RetNet(D, layer_idx=0).state_size(100) == H * (D // H) * (2 * D // H)       # 4096
    assert GLA(D, layer_idx=0).state_size(100) == H * (D // 2 // H) * (D // H)         # 1024
    # DeltaNet: H·32·32 + 3·(64 + 64 + 64) conv buffer
    assert DeltaNet(D, layer_idx=0).state_size(100) == 2048 + 3 * 192
    assert DeltaNet(D, layer_idx=0, conv_size=0).state_size(100) == 2048
    # Gated DeltaNet: d_k = 0.75·64/2 = 24, d_v = 1.5·64/2 = 48
    assert GatedDeltaNet(D, layer_idx=0).state_size(100) == 2 * 24 * 48 + 3 * (48 + 48 + 96)
    assert RWKV6(D, layer_idx=0).state_size(100) == 2 * 32 * 32 + 64                   # + x_{t-1}
    for cls in (RetNet, GLA, DeltaNet, GatedDeltaNet, RWKV6):  # recurrent: no growth with length
        assert cls(D, layer_idx=0).state_size(10) == cls(D, layer_idx=0).state_size(10_000)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_by_hand():
    d = D
    # W_Q, W_K: d×d; W_V, W_G: d×2d; W_O: 2d×d; GroupNorm affine on 2d channels
    assert n_params(RetNet(d, layer_idx=0)) == 2 * d * d + 3 * 2 * d * d + 2 * 2 * d
    # q, k: d×d/2; v, r, o: d×d (+ r's bias); gate d×16 + 16×d/2 + d/2; LayerNorm(32) affine
    assert n_params(GLA(d, layer_idx=0)) == 2 * d * d // 2 + 3 * d * d + d + d * 16 + 16 * d // 2 + d // 2 + 2 * 32
    # q, k, v, o: d×d; conv 3d×4; β: d×H; RMSNorm(32)
    assert n_params(DeltaNet(d, layer_idx=0)) == 4 * d * d + 3 * d * 4 + d * 2 + 32
    # q, k: d×48; v, g: d×96; o: 96×d; conv 192×4; α, β: d×2H; A_log, dt_bias; RMSNorm(48)
    assert n_params(GatedDeltaNet(d, layer_idx=0)) == 2 * d * 48 + 3 * d * 96 + 192 * 4 + d * 4 + 4 + 48
    # μ_x, λ_{w,k,v,r,g}: 6d; mix LoRA d×160 + 5×32×d; λ_d: d; decay LoRA d×64 + 64×d; u: d;
    # W_r, W_k, W_v, W_g, W_o: 5d²; GroupNorm affine 2d
    assert n_params(RWKV6(d, layer_idx=0)) == 6 * d + 2 * 160 * d + d + 2 * 64 * d + d + 5 * d * d + 2 * d


# ---------------------------------------------------------------- mixer-specific properties
def test_retnet_multiscale_decays():
    """γ_h = 1 − 2^(−5−h) (RetNet eq. 8): 31/32, 63/64, 127/128, 255/256 for 4 heads."""
    gamma = RetNet(64, layer_idx=0, num_heads=4).log_gamma.exp()
    torch.testing.assert_close(gamma, torch.tensor([31 / 32, 63 / 64, 127 / 128, 255 / 256]))


def test_gla_gate_is_sigmoid_to_the_one_over_tau():
    mixer = GLA(32, layer_idx=0)
    x = torch.randn(2, 5, 32)
    log_alpha = F.logsigmoid(mixer.gate(x)) / 16
    torch.testing.assert_close(log_alpha.exp(), torch.sigmoid(mixer.gate(x)) ** (1 / 16))
    assert (log_alpha < 0).all() and (log_alpha > -math.inf).all()  # α in (0, 1)


def test_gated_deltanet_mamba2_init_and_no_weight_decay():
    mixer = GatedDeltaNet(64, layer_idx=0, num_heads=4)
    A = mixer.A_log.exp()
    dt = F.softplus(mixer.dt_bias)
    assert ((A >= 1) & (A <= 16)).all() and ((dt >= 1e-3 * 0.999) & (dt <= 0.1 * 1.001)).all()
    assert mixer.A_log._no_weight_decay and mixer.dt_bias._no_weight_decay


def test_rwkv6_bonus_and_token_shift():
    """The first output sees only the current token, through the bonus u; the decay lies in (0, 1)."""
    torch.manual_seed(0)
    B, T, H, K = 1, 4, 2, 3
    r, k, v = torch.randn(B, T, H, K), torch.randn(B, T, H, K), torch.randn(B, T, H, K)
    u = torch.randn(H, K)
    o = rwkv6_chunked(r, k, v, -torch.rand(B, T, H, K), u)
    torch.testing.assert_close(o[:, 0], (r[:, 0] * u * k[:, 0]).sum(-1, keepdim=True) * v[:, 0])
    mixer = RWKV6(32, layer_idx=1, n_layers=2)
    w = torch.exp(-mixer.decay.exp())
    assert ((w > 0) & (w < 1)).all() and mixer.u._no_weight_decay and mixer.maa_A._no_weight_decay


@pytest.mark.parametrize("cls,kwargs,match", [
    (RetNet, {"num_heads": 3}, "divisible"),
    (GLA, {"expand_k": 0.3}, "expand_k"),
    (DeltaNet, {"conv_size": -1}, "conv_size"),
    (GatedDeltaNet, {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
    (RWKV6, {"mode": "fused"}, "mode"),
])
def test_bad_hparams_are_value_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(64, layer_idx=0, **kwargs)
