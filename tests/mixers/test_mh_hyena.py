"""MH-Hyena (multi-head Hyena): the FFT path against the direct convolution and against a token loop
that keeps only a cache of k and v (the right-hand side of (4) in mh_hyena.py, which is also what
its state_size counts), forward and backward; hand-computed state size and parameter count."""
from __future__ import annotations

import pytest
import torch
from mixer_grads import fwd_bwd

import zoo
from zoo.mixers._fftconv import causal_conv_direct
from zoo.mixers.mh_hyena import MHHyena

TOL = 1e-4  # fp32, relative error ||a - b|| / ||b||
B, T, D = 2, 23, 16  # T odd and not a power of two: exercises the FFT padding


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_same(ref: dict, got: dict, tol: float = TOL) -> None:
    assert ref.keys() == got.keys()
    for name, want in ref.items():
        assert got[name] is not None and want is not None, f"{name}: no gradient"
        err = rel_err(got[name], want)
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


def kv_cache_loop(m: MHHyena, x: torch.Tensor) -> torch.Tensor:
    """(4) token by token: y^h_t = Σ_{s≤t} (h^h_{t-s} + b^h [s = t]) (q^h_t·k^h_s) v^h_s, keeping only
    the past k_s and v_s (no N×N outer product is ever formed)."""
    q, k, v = m.heads(x)                                            # [B, H, N, T]
    h = m.filter(x.shape[1])                                        # [H, T]
    keys, values, outs = [], [], []
    for t in range(x.shape[1]):
        keys.append(k[..., t]), values.append(v[..., t])            # cache: [B, H, N] each
        K, V = torch.stack(keys, -1), torch.stack(values, -1)       # [B, H, N, t+1]
        weight = h[:, : t + 1].flip(-1).clone()                     # h_{t-s}, s = 0..t: [H, t+1]
        weight[:, -1] = weight[:, -1] + m.bias                      # the skip b^h at s = t
        scores = torch.einsum("bhn,bhns->bhs", q[..., t], K) * weight  # (q_t·k_s) h_{t-s}
        outs.append(torch.einsum("bhs,bhns->bhn", scores, V).flatten(1))  # [B, D]
    return m.out_proj(torch.stack(outs, 1))


@pytest.mark.parametrize("num_heads", [1, 4, 16])  # N = 16, 4, 1
def test_mh_hyena_fft_matches_direct_convolution(num_heads):
    m = MHHyena(D, layer_idx=0, num_heads=num_heads, emb_dim=5, filter_order=8, l_max=32)
    x = torch.randn(B, T, D)
    direct = fwd_bwd(m, lambda z: m(z, long_conv=causal_conv_direct), x)
    assert_same(direct, fwd_bwd(m, m, x))


@pytest.mark.parametrize("num_heads,seq_len", [(2, 23), (4, 1), (8, 9)])
def test_mh_hyena_matches_kv_cache_loop(num_heads, seq_len):
    m = MHHyena(D, layer_idx=0, num_heads=num_heads, emb_dim=5, filter_order=8, l_max=16)
    x = torch.randn(B, seq_len, D)
    assert_same(fwd_bwd(m, lambda z: kv_cache_loop(m, z), x), fwd_bwd(m, m, x))


def test_mh_hyena_heads_are_independent():
    """Perturbing head 0's v leaves heads 1.. of the pre-projection output unchanged."""
    m = MHHyena(D, layer_idx=0, num_heads=4, emb_dim=5, filter_order=8)
    x = torch.randn(1, 10, D)
    q, k, v = m.heads(x)
    h = m.filter(10)

    def pre_out(v):
        kv = k[:, :, :, None, :] * v[:, :, None, :, :]
        z = causal_conv_direct(kv, h[:, None, None, :]) + m.bias[:, None, None, None] * kv
        return (z * q[:, :, :, None, :]).sum(2)                     # [1, H, N, T]

    v2 = v.clone()
    v2[:, 0] = torch.randn_like(v2[:, 0])
    with torch.no_grad():
        y, y2 = pre_out(v), pre_out(v2)
    torch.testing.assert_close(y2[:, 1:], y[:, 1:])
    assert not torch.allclose(y2[:, 0], y[:, 0])


def test_mh_hyena_state_size_and_params():
    m = MHHyena(16, layer_idx=0, num_heads=4, short_conv_size=3, emb_dim=5, filter_order=8, num_inner_mlps=1)
    # k, v history 2·T·D = 2·10·16 = 320; short conv (k-1)·3D = 2·48 = 96
    assert m.state_size(10) == 416
    # in 16·48+48, short conv 48·3+48, FFN 5·8+8, 8·8+8, 8·4 (no bias), ω 8, biases 4, out 16·16+16
    assert sum(p.numel() for p in m.parameters()) == 816 + 192 + 48 + 72 + 32 + 8 + 4 + 272
    model = zoo.build_model("mh_hyena", vocab_size=32, d_model=128, n_layers=2, max_seq_len=64, num_heads=8)
    assert model.state_size(100) == 2 * (2 * 100 * 128 + 2 * 3 * 128)


def test_mh_hyena_runs_past_l_max():
    m = MHHyena(D, layer_idx=0, num_heads=4, emb_dim=5, filter_order=8, l_max=8)
    with torch.no_grad():
        assert torch.isfinite(m(torch.randn(1, 40, D))).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"num_heads": 3}, "num_heads=3"),
    ({"short_conv_size": 0}, "short_conv_size=0"),
    ({"emb_dim": 4}, "emb_dim=4"),
])
def test_mh_hyena_bad_hparams_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MHHyena(16, layer_idx=0, **kwargs)
