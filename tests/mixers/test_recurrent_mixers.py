"""Mamba, Mamba-2, RWKV-4, MLGRU (+ BitLinear) and LSTM: the parallel/chunked forward equals a
plain step loop over t (forward and every gradient, fp32), state sizes and parameter counts by
hand, Mamba's paper initialisation surviving `zoo.build_model`, BitLinear's ternary forward and
straight-through backward."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.mixers.bitlinear import BitLinear, quantize_activations, ternary_weight
from zoo.mixers.lstm import LSTM
from zoo.mixers.mamba import Mamba
from zoo.mixers.mamba2 import Mamba2
from zoo.mixers.mlgru import MLGRU
from zoo.mixers.rwkv import RWKV, wkv

TOL = dict(rtol=1e-4, atol=1e-5)  # fp32, step loop vs parallel form (outputs and gradients)


def causal_conv_step(conv: torch.nn.Conv1d, xs: list[torch.Tensor], t: int) -> torch.Tensor:
    """Depthwise causal conv output at t from the inputs xs[0..t] ([B, C] each), one window."""
    K = conv.kernel_size[0]
    out = conv.bias.expand_as(xs[t]) if conv.bias is not None else torch.zeros_like(xs[t])
    for j in range(K):  # tap j multiplies x_{t-(K-1)+j}
        s = t - (K - 1) + j
        if s >= 0:
            out = out + conv.weight[:, 0, j] * xs[s]
    return out


def mamba_step(m: Mamba, u: torch.Tensor) -> torch.Tensor:
    """Mamba by its recurrence, one token at a time (eq. 2a-2b with Ā = exp(ΔA), B̄ = ΔB)."""
    Bsz, T, _ = u.shape
    A = -torch.exp(m.A_log)
    h = u.new_zeros(Bsz, m.d_inner, m.d_state)
    xs, outs = [], []
    for t in range(T):
        x, z = m.in_proj(u[:, t]).chunk(2, dim=-1)  # [B, E]
        xs.append(x)
        x = F.silu(causal_conv_step(m.conv1d, xs, t))
        delta, Bt, Ct = m.x_proj(x).split([m.dt_rank, m.d_state, m.d_state], dim=-1)
        delta = F.softplus(m.dt_proj(delta))  # [B, E]
        h = torch.exp(delta[..., None] * A) * h + (delta * x)[..., None] * Bt[:, None, :]
        y = (h * Ct[:, None, :]).sum(-1) + m.D * x
        outs.append(m.out_proj(y * F.silu(z)))
    return torch.stack(outs, 1)


def mamba2_step(m: Mamba2, u: torch.Tensor) -> torch.Tensor:
    """Mamba-2 by its SSM recurrence h_t = exp(Δ_t A) h_{t-1} + B_t (Δ_t x_t)ᵀ, one token at a time."""
    Bsz, T, _ = u.shape
    E, G, N, H, P = m.d_inner, m.ngroups, m.d_state, m.nheads, m.headdim
    A = -torch.exp(m.A_log)
    h = u.new_zeros(Bsz, H, N, P)
    xs, outs = [], []
    for t in range(T):
        z, xBC, dt = m.in_proj(u[:, t]).split([E, m.conv_dim, H], dim=-1)
        xs.append(xBC)
        xBC = F.silu(causal_conv_step(m.conv1d, xs, t))
        x, Bt, Ct = xBC.split([E, G * N, G * N], dim=-1)
        x = x.view(Bsz, H, P)
        Bt = Bt.view(Bsz, G, 1, N).expand(Bsz, G, H // G, N).reshape(Bsz, H, N)
        Ct = Ct.view(Bsz, G, 1, N).expand(Bsz, G, H // G, N).reshape(Bsz, H, N)
        dt = F.softplus(dt + m.dt_bias)  # [B, H]
        h = torch.exp(dt * A)[..., None, None] * h + Bt[..., None] * (dt[..., None] * x)[:, :, None, :]
        y = (h * Ct[..., None]).sum(2) + m.D[:, None] * x  # [B, H, P]
        outs.append(m.out_proj(m.norm(y.reshape(Bsz, E) * F.silu(z))))
    return torch.stack(outs, 1)


def rwkv_step(m: RWKV, x: torch.Tensor) -> torch.Tensor:
    """RWKV-4 in its stable recurrent form: state (a, b, p) = numerator, denominator, exponent."""
    Bsz, T, d = x.shape
    w, u = torch.exp(m.time_decay), m.time_first
    a, b = x.new_zeros(Bsz, d), x.new_zeros(Bsz, d)
    p = x.new_full((Bsz, d), -1e38)
    prev, prev_cm = x.new_zeros(Bsz, d), x.new_zeros(Bsz, d)
    outs = []
    for t in range(T):
        xt = x[:, t]
        r = m.receptance(m._mix(xt, prev, m.mu_r))
        k = m.key(m._mix(xt, prev, m.mu_k))
        v = m.value(m._mix(xt, prev, m.mu_v))
        q = torch.maximum(p, u + k)  # wkv_t: old state plus the bonus term
        e1, e2 = torch.exp(p - q), torch.exp(u + k - q)
        y = (e1 * a + e2 * v) / (e1 * b + e2)
        q = torch.maximum(p - w, k)  # state update: decay by e^{-w}, add e^{k} [v, 1]
        e1, e2 = torch.exp(p - w - q), torch.exp(k - q)
        a, b, p = e1 * a + e2 * v, e1 * b + e2, q
        o = m.output(torch.sigmoid(r) * y)
        prev = xt
        if m.channel_mix:
            hn = m.norm(xt + o)
            r2 = m.cm_receptance(m._mix(hn, prev_cm, m.cm_mu_r))
            k2 = m.cm_key(m._mix(hn, prev_cm, m.cm_mu_k))
            o = o + torch.sigmoid(r2) * m.cm_value(torch.relu(k2).square())
            prev_cm = hn
        outs.append(o)
    return torch.stack(outs, 1)


def mlgru_step(m: MLGRU, x: torch.Tensor) -> torch.Tensor:
    h = x.new_zeros(x.shape[0], m.d_model)
    outs = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        f, c = torch.sigmoid(m.f_proj(xt)), F.silu(m.c_proj(xt))
        h = f * h + (1 - f) * c
        outs.append(m.o_proj(torch.sigmoid(m.g_proj(xt)) * h))
    return torch.stack(outs, 1)


def fwd_bwd(module: torch.nn.Module, fn, x: torch.Tensor, cot: torch.Tensor) -> dict[str, torch.Tensor]:
    """Output and the gradients of <output, cot> w.r.t. x and every parameter."""
    module.zero_grad()
    x = x.clone().requires_grad_(True)
    y = fn(x)
    (y * cot).sum().backward()
    out = {"y": y.detach(), "dx": x.grad}
    out.update({f"d{n}": p.grad.clone() for n, p in module.named_parameters()})
    return out


def assert_matches_step_loop(module, step_fn, B=2, T=21, seed=0, x_scale=1.0):
    torch.manual_seed(seed)
    x = torch.randn(B, T, module.d_model) * x_scale
    cot = torch.randn(B, T, module.d_model)
    par = fwd_bwd(module, module, x, cot)
    rec = fwd_bwd(module, lambda x: step_fn(module, x), x, cot)
    for name in rec:
        torch.testing.assert_close(par[name], rec[name], **TOL, msg=lambda m: f"{name}: {m}")


# ---- step loop == parallel form, forward and backward ------------------------------------------

def test_mamba_matches_step_loop():
    torch.manual_seed(0)
    assert_matches_step_loop(Mamba(16, layer_idx=0, d_state=4, d_conv=3, expand=2), mamba_step, T=37)


@pytest.mark.parametrize("ngroups", [1, 2])
def test_mamba2_matches_step_loop(ngroups):
    torch.manual_seed(0)
    m = Mamba2(16, layer_idx=0, d_state=8, d_conv=4, expand=2, headdim=8, ngroups=ngroups)
    assert_matches_step_loop(m, mamba2_step, T=37)


@pytest.mark.parametrize("channel_mix", [True, False])
def test_rwkv_matches_step_loop(channel_mix):
    torch.manual_seed(0)
    m = RWKV(16, layer_idx=0, channel_mix=channel_mix)
    with torch.no_grad():  # larger keys than at init, so the log-space stabilisers matter
        m.key.weight.mul_(8.0)
    assert_matches_step_loop(m, rwkv_step, T=37)


def test_rwkv_wkv_no_overflow_large_keys():
    """k ~ ±80: e^{k} overflows fp32 (max e^{88.7}); the chunked log-space WKV still matches the
    defining sum (eq. 14) evaluated in fp64."""
    torch.manual_seed(0)
    B, T, D = 2, 41, 6
    w, u = torch.exp(2 * torch.randn(D)), torch.randn(D)
    k, v = 80 * torch.randn(B, T, D), torch.randn(B, T, D)
    w64, u64, k64, v64 = w.double(), u.double(), k.double(), v.double()
    ref = torch.empty(B, T, D, dtype=torch.float64)
    for t in range(T):
        logits = torch.cat([k64[:, :t] - (t - 1 - torch.arange(t))[:, None] * w64, (u64 + k64[:, t])[:, None]], 1)
        ref[:, t] = (torch.softmax(logits, dim=1) * torch.cat([v64[:, :t], v64[:, t:t + 1]], 1)).sum(1)
    out = wkv(w, u, k, v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ternary", [True, False])
def test_mlgru_matches_step_loop(ternary):
    torch.manual_seed(0)
    assert_matches_step_loop(MLGRU(16, layer_idx=0, ternary=ternary), mlgru_step, T=37)


# ---- BitLinear ---------------------------------------------------------------------------------

def test_bitlinear_forward_is_ternary():
    torch.manual_seed(0)
    layer = BitLinear(24, 16)
    w_t, gamma = ternary_weight(layer.weight)
    assert set(w_t.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(layer.quantized_weight(), w_t * gamma)  # one scale for the whole matrix
    x = torch.randn(3, 5, 24)
    x_q = quantize_activations(layer.norm(x))
    levels = x_q / x_q.abs().amax(-1, keepdim=True) * 127  # integers in [-127, 127] per token
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-4)
    torch.testing.assert_close(layer(x), F.linear(x_q, w_t * gamma, layer.bias), rtol=1e-6, atol=1e-6)


def test_bitlinear_straight_through_gradient():
    """With y = Q_a(n(x)) Q_w(W)ᵀ + b and g = ∂L/∂y, the STE gradients are
    ∂L/∂W = gᵀ Q_a(n(x)),  ∂L/∂b = Σ g,  ∂L/∂x = J_n(x)ᵀ (g Q_w(W))
    (quantisers replaced by the identity in the backward; n = RMSNorm)."""
    torch.manual_seed(0)
    layer = BitLinear(24, 16)
    x = torch.randn(3, 5, 24, requires_grad=True)
    g = torch.randn(3, 5, 16)
    (layer(x) * g).sum().backward()
    xn = layer.norm(x)
    x_q = quantize_activations(xn).detach()
    torch.testing.assert_close(layer.weight.grad, g.reshape(-1, 16).t() @ x_q.reshape(-1, 24), **TOL)
    torch.testing.assert_close(layer.bias.grad, g.sum((0, 1)), **TOL)
    (dx,) = torch.autograd.grad(xn, x, g @ layer.quantized_weight().detach())
    torch.testing.assert_close(x.grad, dx, **TOL)


# ---- state sizes, parameter counts --------------------------------------------------------------

def test_state_sizes_by_hand():
    # Mamba: E = 128, N = 16, d_conv = 4 -> 128·16 + 128·3
    assert Mamba(64, layer_idx=0, d_state=16, d_conv=4, expand=2).state_size(100) == 2048 + 384
    # Mamba-2: E = 128, P = 32 -> H = 4; N = 64, G = 1 -> 4·32·64 + 3·(128 + 2·64)
    assert Mamba2(64, layer_idx=0, d_state=64, headdim=32).state_size(100) == 8192 + 768
    assert RWKV(64, layer_idx=0).state_size(100) == 5 * 64  # a, b, p, x_{t-1}, x'_{t-1}
    assert RWKV(64, layer_idx=0, channel_mix=False).state_size(100) == 4 * 64
    assert MLGRU(64, layer_idx=0).state_size(100) == 64
    assert LSTM(64, layer_idx=0, hidden_size=96, num_layers=2).state_size(100) == 2 * 96 * 2


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_param_counts_by_hand():
    # Mamba d=64: E=128, N=16, R=ceil(64/16)=4, d_conv=4
    mamba = 64 * 256 + (128 * 4 + 128) + 128 * (4 + 32) + (4 * 128 + 128) + 128 * 16 + 128 + 128 * 64
    assert n_params(Mamba(64, layer_idx=0)) == mamba == 32640
    # Mamba-2 d=64: E=128, N=64, G=1, P=32 -> H=4; in_proj to 2E + 2GN + H = 388; conv over 256
    mamba2 = 64 * 388 + (256 * 4 + 256) + 3 * 4 + 128 + 128 * 64
    assert n_params(Mamba2(64, layer_idx=0, headdim=32)) == mamba2 == 34444
    # RWKV d=64: time mix 5 vectors + 4 d×d; channel mix LayerNorm, 2 μ, d×4d, 4d×d, d×d
    time_mix = 5 * 64 + 4 * 64 * 64
    assert n_params(RWKV(64, layer_idx=0, channel_mix=False)) == time_mix
    assert n_params(RWKV(64, layer_idx=0)) == time_mix + 2 * 64 + 2 * 64 + 2 * 64 * 256 + 64 * 64 == 53824
    # MLGRU d=64: four d×d projections with bias (+ an RMSNorm weight each when ternary)
    assert n_params(MLGRU(64, layer_idx=0, ternary=False)) == 4 * (64 * 64 + 64)
    assert n_params(MLGRU(64, layer_idx=0, ternary=True)) == 4 * (64 * 64 + 64 + 64)
    # LSTM d=64, hidden 96: 4 gates × hidden × (d + hidden) + 2 biases of 4·hidden, + projection
    assert n_params(LSTM(64, layer_idx=0, hidden_size=96)) == 4 * 96 * (64 + 96) + 8 * 96 + 96 * 64 + 64


# ---- initialisation survives the backbone ----------------------------------------------------------

def test_mamba_init_survives_build_model():
    model = zoo.build_model("mamba", vocab_size=32, d_model=64, n_layers=2, max_seq_len=64)
    for block in model.blocks:
        m = block.mixer
        A = torch.arange(1, m.d_state + 1, dtype=torch.float32).expand(m.d_inner, -1)
        torch.testing.assert_close(m.A_log.detach(), torch.log(A))  # S4D-real: A_n = -(n+1)
        assert torch.equal(m.D.detach(), torch.ones(m.d_inner))
        dt = F.softplus(m.dt_proj.bias.detach())
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        log_dt = dt.log()  # log-uniform on [log 1e-3, log 0.1]: mean -4.61, sd 1.33 (n = 128)
        assert abs(log_dt.mean().item() - 0.5 * math.log(1e-4)) < 0.5
        assert log_dt.min() < math.log(2e-3) and log_dt.max() > math.log(5e-2)
        bound = m.dt_rank ** -0.5
        assert m.dt_proj.weight.abs().max() <= bound and m.dt_proj.weight.abs().max() > 0.8 * bound
        assert m.A_log._no_weight_decay and m.D._no_weight_decay


def test_mamba2_init_survives_build_model():
    model = zoo.build_model("mamba2", vocab_size=32, d_model=64, n_layers=2, max_seq_len=64)
    for block in model.blocks:
        m = block.mixer
        A = torch.exp(m.A_log.detach())
        assert A.min() >= 1.0 and A.max() <= 16.0
        dt = F.softplus(m.dt_bias.detach())
        assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
        assert torch.equal(m.D.detach(), torch.ones(m.nheads))
        assert all(p._no_weight_decay for p in (m.A_log, m.D, m.dt_bias))


# ---- validation, LSTM ----------------------------------------------------------------------------

def test_invalid_hparams_name_the_value():
    with pytest.raises(ValueError, match="headdim=48"):
        Mamba2(64, layer_idx=0, headdim=48)
    with pytest.raises(ValueError, match="ngroups=3"):
        Mamba2(64, layer_idx=0, headdim=32, ngroups=3)
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(64, layer_idx=0, dt_rank=0)


def test_lstm_projection_and_causality():
    torch.manual_seed(0)
    m = LSTM(16, layer_idx=0, hidden_size=24, num_layers=2).eval()
    x = torch.randn(2, 10, 16)
    y = m(x)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 6:] = torch.randn(2, 4, 16)
    torch.testing.assert_close(m(x2)[:, :6], y[:, :6])
