"""S4D, H3, Hyena, StripedHyena and M2: the long-convolution (FFT / Monarch) paths against their
definitions (step recurrences, direct convolution), forward and backward, in fp32; state sizes and
parameter counts against hand-computed values."""
from __future__ import annotations

import pytest
import torch
from mixer_grads import fwd_bwd

import zoo
from zoo.mixers._fftconv import causal_conv_direct, fft_causal_conv
from zoo.mixers.attention import Attention
from zoo.mixers.h3 import H3
from zoo.mixers.hyena import Hyena
from zoo.mixers.m2 import (
    M2,
    MonarchLinear,
    monarch_causal_conv,
    monarch_dft,
    monarch_size,
)
from zoo.mixers.s4d import S4D

TOL = 1e-4  # fp32, relative error ||a - b|| / ||b|| (FFT round-off is ~1e-6 at these sizes)
B, T, D = 2, 23, 16  # T odd and not a power of two: exercises the padding


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def assert_same(ref: dict, got: dict, tol: float = TOL) -> None:
    assert ref.keys() == got.keys()
    for name in ref:
        assert got[name] is not None, f"{name}: no gradient"
        err = rel_err(got[name], ref[name])
        assert err < tol, f"{name}: relative error {err:.2e} >= {tol:.0e}"


# --- the convolution helpers ---------------------------------------------------------------------

@pytest.mark.parametrize("seq_len", [1, 2, 23, 64])
@pytest.mark.parametrize("conv", [fft_causal_conv, monarch_causal_conv], ids=lambda f: f.__name__)
def test_causal_conv_matches_direct_fwd_bwd(conv, seq_len):
    u = torch.randn(B, 3, seq_len, requires_grad=True)
    k = torch.randn(3, seq_len + 5, requires_grad=True)  # longer kernels are truncated to T
    cot = torch.randn(B, 3, seq_len)
    grads = []
    for f in (causal_conv_direct, conv):
        y = f(u, k)
        grads.append((y, *torch.autograd.grad((y * cot).sum(), (u, k))))
    for name, ref, got in zip(("y", "du", "dk"), grads[0], grads[1]):
        assert rel_err(got, ref) < TOL, f"{conv.__name__} {name}: {rel_err(got, ref):.2e}"


def test_monarch_dft_matches_torch_fft():
    m = monarch_size(T)
    assert m * m >= 2 * T and (m - 1) ** 2 < 2 * T
    x = torch.randn(B, 3, m * m, dtype=torch.complex64)
    assert rel_err(monarch_dft(x, m), torch.fft.fft(x)) < TOL
    assert rel_err(monarch_dft(x, m, inverse=True), torch.fft.ifft(x)) < TOL


def test_monarch_linear_is_block_structured():
    layer = MonarchLinear(16, 32, nblocks=4)
    W = layer.dense()  # [32, 16]
    x = torch.randn(5, 16)
    torch.testing.assert_close(layer(x), x @ W.t() + layer.bias, rtol=1e-5, atol=1e-5)
    # params: R 4·(4·8) + L 4·(8·8) + bias 32 = 416 < dense 16·32 + 32 = 544, yet W has full rank
    assert sum(p.numel() for p in layer.parameters()) == 416
    assert torch.linalg.matrix_rank(W) == 16


# --- each mixer against its definition --------------------------------------------------------------

@pytest.mark.parametrize("output", ["glu", "linear"])
def test_s4d_fft_matches_recurrence(output):
    mixer = S4D(D, layer_idx=0, d_state=8, output=output)
    x = torch.randn(B, T, D)
    assert_same(fwd_bwd(mixer, mixer.recurrent_reference, x), fwd_bwd(mixer, mixer, x))


@pytest.mark.parametrize("head_dim", [1, 2])
def test_h3_fft_matches_recurrence(head_dim):
    mixer = H3(D, layer_idx=0, d_state=8, head_dim=head_dim)  # N = 8 < T: the shift SSM forgets
    x = torch.randn(B, T, D)
    assert_same(fwd_bwd(mixer, mixer.recurrent_reference, x), fwd_bwd(mixer, mixer, x))


@pytest.mark.parametrize("order", [1, 2, 3])
def test_hyena_fft_matches_direct(order):
    mixer = Hyena(D, layer_idx=0, order=order, emb_dim=5, filter_order=8, l_max=32)
    x = torch.randn(B, T, D)
    direct = fwd_bwd(mixer, lambda z: mixer(z, long_conv=causal_conv_direct), x)
    assert_same(direct, fwd_bwd(mixer, mixer, x))


def test_m2_monarch_matches_fft_and_direct():
    mixer = M2(D, layer_idx=0, nblocks=4, mlp_ratio=2, emb_dim=5, filter_order=8, l_max=32)
    x = torch.randn(B, T, D)
    monarch = fwd_bwd(mixer, mixer, x)
    for conv in (fft_causal_conv, causal_conv_direct):
        assert_same(fwd_bwd(mixer, lambda z: mixer(z, long_conv=conv), x), monarch)


def test_hyena_filter_decays_and_extends_past_l_max():
    mixer = Hyena(D, layer_idx=0, l_max=16)
    h_short, h_long = mixer.filter(16), mixer.filter(40)
    torch.testing.assert_close(h_long[:, :16], h_short)  # a lag's filter value does not depend on T
    assert torch.isfinite(h_long).all()


# --- state sizes and parameter counts (hand-computed) -----------------------------------------------

def test_state_sizes_by_hand():
    assert S4D(16, layer_idx=0, d_state=8).state_size(10) == 16 * 8  # d·N = 128
    # shift d·N = 128, diagonal H·d_h²·N = 8·4·8 = 256
    assert H3(16, layer_idx=0, d_state=8, head_dim=2).state_size(10) == 384
    # history N·T·d = 2·10·16 = 320, short conv (k-1)(N+1)d = 2·3·16 = 96
    assert Hyena(16, layer_idx=0, order=2, short_conv_size=3).state_size(10) == 416
    # history T·d = 160, short conv (k-1)·3d = 96
    assert M2(16, layer_idx=0, short_conv_size=3).state_size(10) == 256
    # striped_hyena: hyena, attention, hyena, attention; attention's KV cache 2·T·d = 320
    model = zoo.build_model("striped_hyena", vocab_size=32, d_model=16, max_seq_len=64)
    assert model.state_size(10) == 2 * 416 + 2 * 320


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_param_counts_by_hand():
    # log Δ 16, log(-Re A) 16·4, Im A 16·4, C 16·4·2, D 16, out Linear(16, 32) 16·32+32
    assert n_params(S4D(16, layer_idx=0, d_state=8, output="glu")) == 16 + 64 + 64 + 128 + 16 + 544
    # qkv 16·48+48, shift C 16·8, shift D 16, diagonal SSM over 8 heads (8 + 32 + 32 + 64), D 8,
    # out 16·16+16
    assert n_params(H3(16, layer_idx=0, d_state=8, head_dim=2)) == 816 + 128 + 16 + 136 + 8 + 272
    # in 16·48+48, short conv 48·3+48, FFN 5·8+8, 8·8+8, 8·32 (no bias), ω 8, biases 2·16, out 272
    hyena = Hyena(16, layer_idx=0, order=2, emb_dim=5, filter_order=8, num_inner_mlps=1)
    assert n_params(hyena) == 816 + 192 + 48 + 72 + 256 + 8 + 32 + 272
    # Monarch in (16->48, 4 blocks): 4·4·12 + 4·12·12 + 48; MLP 16->32: 4·4·8 + 4·8·8 + 32,
    # 32->16: 4·8·4 + 4·4·4 + 16; short conv 192; filter 48 + 72 + 8·16 + 8; bias 16
    m2 = M2(16, layer_idx=0, nblocks=4, mlp_ratio=2, emb_dim=5, filter_order=8, num_inner_mlps=1)
    assert n_params(m2) == 816 + 416 + 208 + 192 + 256 + 16


def test_striped_hyena_layer_pattern():
    model = zoo.build_model("striped_hyena", vocab_size=32, d_model=16, max_seq_len=64)
    assert [type(b.mixer) for b in model.blocks] == [Hyena, Attention, Hyena, Attention]


@pytest.mark.parametrize("make, match", [
    (lambda: S4D(16, layer_idx=0, d_state=7), "d_state=7"),
    (lambda: S4D(16, layer_idx=0, output="gelu"), "output='gelu'"),
    (lambda: H3(16, layer_idx=0, head_dim=3), "head_dim=3"),
    (lambda: Hyena(16, layer_idx=0, emb_dim=4), "emb_dim=4"),
    (lambda: M2(16, layer_idx=0, nblocks=3), "nblocks=3"),
])
def test_bad_hparams_are_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
