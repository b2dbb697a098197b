"""NSA: the dense-mask forward against a per-query loop written from the paper's equations
(forward, input gradient and every parameter gradient), causality, the state size by hand, and
the branch mechanics (compressed blocks only once complete, the own block always selected).
"""
from __future__ import annotations

import math

import pytest
import torch
from mixer_grads import fwd_bwd

from zoo.mixers.nsa import NSA

TOL = {"rtol": 1e-4, "atol": 1e-5}  # fp32, dense vs per-query loop


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q·kᵀ/√d) v for one query q [d] over keys k [n, d]; zeros when n = 0."""
    if k.shape[0] == 0:
        return torch.zeros_like(q)
    return torch.softmax(k @ q / math.sqrt(q.shape[-1]), dim=-1) @ v


def nsa_loop(m: NSA, x: torch.Tensor) -> torch.Tensor:
    """One query at a time (eqs. 5, 7-12): the compressed blocks complete at t, their attention
    p_cmp, block importances by overlap, top-n earlier blocks + the own block, the window."""
    B, T, D = x.shape
    H, l, d, ls, w = m.num_heads, m.block_size, m.block_stride, m.select_block_size, m.window
    q, q_rot, (k_c, v_c, k_s, v_s, k_w, v_w) = m.project(x)
    gates = torch.sigmoid(m.gate(x)).view(B, T, H, 3)
    n_all = m.num_blocks(T)
    kc, vc = m.compress(k_c, v_c) if n_all else (None, None)
    rows = []
    for b in range(B):
        for h in range(H):
            outs = []
            for t in range(T):
                # 1. compressed: blocks i with i·d + l − 1 <= t
                n = sum(1 for i in range(n_all) if i * d + l - 1 <= t)
                if n:
                    p = torch.softmax(kc[b, h, :n] @ q[b, h, t] / math.sqrt(m.head_dim), -1)
                    o_cmp = p @ vc[b, h, :n]
                else:
                    p, o_cmp = torch.zeros(0), torch.zeros(m.head_dim)
                # 2. selected: importance of each earlier selection block j, top-n, plus own block
                own = t // ls
                score = torch.zeros(own)
                for j in range(own):
                    for i in range(n):
                        if i * d <= (j + 1) * ls - 1 and i * d + l - 1 >= j * ls:
                            score[j] += p[i].detach()
                picked = score.topk(min(m.num_selected, own)).indices.tolist() if n and own else []
                keys = [s for s in range(t + 1) if s // ls in picked or s // ls == own]
                o_slc = attend(q_rot[b, h, t], k_s[b, h, keys], v_s[b, h, keys])
                # 3. sliding window
                o_win = attend(q_rot[b, h, t], k_w[b, h, max(0, t - w + 1): t + 1],
                               v_w[b, h, max(0, t - w + 1): t + 1])
                g = gates[b, t, h]
                outs.append(g[0] * o_cmp + g[1] * o_slc + g[2] * o_win)
            rows.append(torch.stack(outs))
    o = torch.stack(rows).view(B, H, T, m.head_dim)
    return m.out(o.transpose(1, 2).reshape(B, T, D))


CONFIGS = {  # name: (kwargs, T)
    "zoology": ({}, 50),                                                   # l = d = l' = 8, n = 4
    "overlap": ({"block_size": 8, "block_stride": 4, "select_block_size": 8, "num_selected": 2}, 30),
    "shared_norope": ({"shared_kv": True, "positions": "none", "block_size": 4, "block_stride": 2,
                       "select_block_size": 8, "num_selected": 1, "window": 5}, 27),
    "short": ({}, 6),                                                      # no complete block yet
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_nsa_dense_matches_loop(name):
    kwargs, T = CONFIGS[name]
    torch.manual_seed(0)
    m = NSA(16, layer_idx=0, num_heads=2, **kwargs)
    with torch.no_grad():  # gates away from 1/2 and differing per head and branch
        m.gate.weight.normal_(0, 0.3)
        m.gate.bias.normal_(0, 1.0)
    x = torch.randn(2, T, 16)
    ref = fwd_bwd(m, lambda z: nsa_loop(m, z), x)
    got = fwd_bwd(m, m, x)
    assert ref.keys() == got.keys(), f"gradients reach different parameters: {ref.keys() ^ got.keys()}"
    for key in ref:
        torch.testing.assert_close(got[key], ref[key], **TOL, msg=lambda msg, key=key: f"{key}: {msg}")


@pytest.mark.parametrize("kwargs", [{}, {"block_stride": 4}, {"shared_kv": True}])
def test_nsa_is_causal(kwargs):
    torch.manual_seed(0)
    m = NSA(32, layer_idx=0, **kwargs).eval()
    with torch.no_grad():
        m.gate.bias.normal_(0, 1.0)
        x = torch.randn(2, 64, 32)
        y = m(x)
        for t in (0, 7, 8, 15, 33, 62):
            x2 = x.clone()
            x2[:, t + 1:] = torch.randn_like(x2[:, t + 1:])
            torch.testing.assert_close(m(x2)[:, : t + 1], y[:, : t + 1], rtol=1e-5, atol=1e-6,
                                       msg=lambda msg, t=t: f"output at <= {t} depends on later inputs: {msg}")


def test_nsa_state_size_by_hand():
    D = 64
    m = NSA(D, layer_idx=0)  # l = d = 8, w = 16, independent k, v
    # T = 100: n_cmp = (100 − 8) // 8 + 1 = 12 blocks, 100 − 96 = 4 raw tokens pending
    assert m.num_blocks(100) == 12
    assert m.state_size(100) == 2 * 100 * D + 2 * 16 * D + 2 * 12 * D + 2 * 4 * D
    # T = 5 < l: nothing compressed, 5 tokens pending, window holds 5
    assert m.state_size(5) == 2 * 5 * D + 2 * 5 * D + 0 + 2 * 5 * D
    # overlapping blocks, l = 8, d = 4: T = 30 -> (30 − 8) // 4 + 1 = 6 blocks, 30 − 24 = 6 pending
    m = NSA(D, layer_idx=0, block_stride=4)
    assert m.state_size(30) == 2 * 30 * D + 2 * 16 * D + 2 * 6 * D + 2 * 6 * D
    # shared k, v: one raw cache + the compressed keys and values
    assert NSA(D, layer_idx=0, shared_kv=True).state_size(100) == 2 * 100 * D + 2 * 12 * D
    # grows with the sequence like attention's KV cache
    assert m.state_size(1024) > 2 * 1024 * D


def test_nsa_compressed_branch_sees_only_complete_blocks():
    """With only the compressed gate open, outputs before the first block completes are zero, and
    changing token 9 leaves every output up to the end of block [8, 16) (t = 15) unchanged."""
    torch.manual_seed(0)
    m = NSA(16, layer_idx=0).eval()
    with torch.no_grad():
        m.gate.bias.copy_(torch.tensor([30.0, -30.0, -30.0] * 2))  # g_cmp = 1, others ≈ 0
        x = torch.randn(1, 24, 16)
        y = m(x)
        assert y[:, :7].abs().max() < 1e-6
        assert y[:, 7:].abs().amax(-1).min() > 1e-4
        x2 = x.clone()
        x2[:, 9] += 1.0
        torch.testing.assert_close(m(x2)[:, :15], y[:, :15])


def test_nsa_parameter_count_by_hand():
    D, H, l = 32, 2, 8
    dh = D // H
    mlp = (l * dh) * (l * dh) + l * dh + (l * dh) * dh + dh
    # W_q, W_o: 2D²; k, v per branch: 6D²; E: 2·l·d_h; φ_K, φ_V; gate: D·3H + 3H
    expected = 2 * D * D + 6 * D * D + 2 * l * dh + 2 * mlp + D * 3 * H + 3 * H
    assert sum(p.numel() for p in NSA(D, layer_idx=0).parameters()) == expected


@pytest.mark.parametrize("kwargs,match", [
    ({"num_heads": 3}, "num_heads"),
    ({"block_stride": 16}, "block_stride"),
    ({"window": 0}, "window"),
    ({"positions": "alibi"}, "positions"),
])
def test_nsa_bad_hparams_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NSA(64, layer_idx=0, **kwargs)
