"""Triton kernels for chunked linear attention with scalar or per-channel decay, and their autograd Function.

Recurrence (GLA, Yang et al. 2023, arXiv 2312.06635, eq. 3; SSD, Dao & Gu 2024, arXiv 2405.21060, eq. 1):

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T,      o_t = scale * S_t^T q_t          S_t: [K, V]

Chunkwise-parallel form (GLA eqs. 4-6): with chunks of BT tokens, G_t = sum_{chunk start <= r <= t} g_r
(within-chunk cumulative log decay, <= 0 and non-increasing), S the state entering the chunk and
G_C = G at the chunk's last token,

    (1) A[t, s] = sum_k q_tk k_sk exp(G_tk - G_sk)  for s <= t, else 0                  [BT, BT]
    (2) o_t     = scale * ( (q_t * exp(G_t)) S + sum_s A[t, s] v_s )                     [BT, V]
    (3) S_next  = exp(G_C) * S + sum_s (k_s * exp(G_C - G_s)) v_s^T                      [K, V]

Every exponent is <= 0 (in (1) the s > t entries are set to -inf before exp), so log_decay = -20 per
step underflows to exact zeros rather than overflowing. For scalar decay (1) is a [BT, BT] matrix times
a tl.dot, with BT = 64; for per-channel decay it is formed exactly as a [BT, BT, BK] tensor, with BT = 16
(instead of GLA's secondary chunking, which factors exp(G_t - G_s) and needs care where it overflows).
One program per (batch*head, V block, K block) walks the chunks in order and keeps S in fp32 registers
("fused chunk"), so no per-chunk state is written to memory; K blocks produce partial outputs summed on
the host.

Backward (same chunking, recomputing A and S rather than storing them):
    dq_t = scale * S_t do_t                           forward sweep over chunks, S recomputed
    dS_t = scale * q_t do_t^T + diag(exp(g_{t+1})) dS_{t+1},  dk_s = dS_s v_s,  dv_s = dS_s^T k_s
                                                      reverse sweep, dS in fp32 registers, dS_0 = d initial_state
    dg_t = sum_{r >= t} (q_r * dq_r - k_r * dk_r) + rowsum(dS_T * S_T)
because o depends on G only through q_t exp(G_t) and k_s exp(-G_s) (GLA sec. 4.2), and S_T on G_T.
"""
from __future__ import annotations

import collections
import os

import torch
import triton
import triton.language as tl

# Launch counts by mode ("interpret" / "compiled"); tests assert that the interpreter really ran.
LAUNCHES: collections.Counter = collections.Counter()


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _fwd_kernel(
    q, k, v, g, h0, o, ht, T, scale,
    H, K, V,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_H0: tl.constexpr, PREC: tl.constexpr,
):
    """Forward, eqs. (1)-(3). Grid (B*H, V blocks, K blocks); o: [NK, B, T, H, V] partial outputs
    (or o itself when NK == 1); ht: [B*H, K, V] fp32 final state. DECAY: 0 none, 1 scalar, 2 per channel."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    B = tl.num_programs(0) // H
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    # row t of q lives at q + (i_b*T + t)*H*K + i_h*K: move each pointer to (b, t=0, h)
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    o += ((i_k * B + i_b) * T * H + i_h) * V
    if DECAY == 1:
        g += i_b * T * H + i_h
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    m_kv = m_k[:, None] & m_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S += tl.load(h0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :], mask=m_kv, other=0.0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    for i_t in range(0, tl.cdiv(T, BT)):
        o_t = i_t * BT + o_i
        m_t = o_t < T
        # out-of-range rows load as k = v = 0, g = 0: they add nothing and decay nothing
        b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        if DECAY == 1:
            b_g = tl.load(g + o_t * H, mask=m_t, other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)                                   # [BT]
            b_GC = tl.sum(b_g, axis=0)                                     # G at the chunk end
            b_qd = (b_q * tl.exp(b_G)[:, None]).to(b_q.dtype)
            b_kd = (b_k * tl.exp(b_GC - b_G)[:, None]).to(b_k.dtype)
            b_E = tl.exp(tl.where(causal, b_G[:, None] - b_G[None, :], float("-inf")))
            b_A = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_E  # (1), [BT, BT]
            b_decay = tl.exp(b_GC)
        elif DECAY == 2:
            b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :],
                          other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)                                   # [BT, BK]
            b_GC = tl.sum(b_g, axis=0)                                     # [BK]
            b_qd = (b_q * tl.exp(b_G)).to(b_q.dtype)
            b_kd = (b_k * tl.exp(b_GC[None, :] - b_G)).to(b_k.dtype)
            # exact exp(G_tk - G_sk) for s <= t: [BT, BT, BK], every exponent <= 0
            b_E = tl.exp(tl.where(causal[:, :, None], b_G[:, None, :] - b_G[None, :, :], float("-inf")))
            b_A = tl.sum(b_q.to(tl.float32)[:, None, :] * b_k.to(tl.float32)[None, :, :] * b_E, axis=2)
            b_decay = tl.exp(b_GC)[:, None]
        else:
            b_qd = b_q
            b_kd = b_k
            b_A = tl.where(causal, tl.dot(b_q, tl.trans(b_k), input_precision=PREC), 0.0)
            b_decay = 1.0
        # (2): inter-chunk part from S plus intra-chunk part from A
        b_o = tl.dot(b_qd, b_S.to(b_q.dtype), input_precision=PREC)
        b_o += tl.dot(b_A.to(b_v.dtype), b_v, input_precision=PREC)
        tl.store(o + o_t[:, None] * (H * V) + o_v[None, :], (b_o * scale).to(o.dtype.element_ty),
                 mask=m_t[:, None] & m_v[None, :])
        # (3): carry the state to the next chunk
        b_S = b_S * b_decay + tl.dot(tl.trans(b_kd), b_v, input_precision=PREC)
    tl.store(ht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)


def _bwd_dq_kernel(
    k, v, g, h0, do, dq, T, scale,
    H, K, V,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_H0: tl.constexpr, PREC: tl.constexpr,
):
    """dq_t = scale * S_t do_t, forward sweep recomputing S. Grid (B*H, V blocks, K blocks);
    dq: [NV, B, T, H, K] fp32 partial sums over V blocks."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    B = tl.num_programs(0) // H
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    k += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    do += (i_b * T * H + i_h) * V
    dq += ((i_v * B + i_b) * T * H + i_h) * K
    if DECAY == 1:
        g += i_b * T * H + i_h
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        b_S += tl.load(h0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :],
                       mask=m_k[:, None] & m_v[None, :], other=0.0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    for i_t in range(0, tl.cdiv(T, BT)):
        o_t = i_t * BT + o_i
        m_t = o_t < T
        b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_do = tl.load(do + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        # dA[t, s] = do_t . v_s (s <= t), the gradient of A in (2) without the scale
        b_dA = tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0)
        b_dq = tl.dot(b_do, tl.trans(b_S.to(b_do.dtype)), input_precision=PREC)  # [BT, BK], from S
        if DECAY == 1:
            b_g = tl.load(g + o_t * H, mask=m_t, other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)
            b_E = tl.exp(tl.where(causal, b_G[:, None] - b_G[None, :], float("-inf")))
            b_dq = b_dq * tl.exp(b_G)[:, None] + tl.dot((b_dA * b_E).to(b_k.dtype), b_k, input_precision=PREC)
            b_kd = (b_k * tl.exp(b_GC - b_G)[:, None]).to(b_k.dtype)
            b_decay = tl.exp(b_GC)
        elif DECAY == 2:
            b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :],
                          other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)
            b_E = tl.exp(tl.where(causal[:, :, None], b_G[:, None, :] - b_G[None, :, :], float("-inf")))
            # dq_tk += sum_s dA[t, s] k_sk exp(G_tk - G_sk)
            b_dq = b_dq * tl.exp(b_G) + tl.sum(b_dA[:, :, None] * b_k.to(tl.float32)[None, :, :] * b_E, axis=1)
            b_kd = (b_k * tl.exp(b_GC[None, :] - b_G)).to(b_k.dtype)
            b_decay = tl.exp(b_GC)[:, None]
        else:
            b_dq += tl.dot(b_dA.to(b_k.dtype), b_k, input_precision=PREC)
            b_kd = b_k
            b_decay = 1.0
        tl.store(dq + o_t[:, None] * (H * K) + o_k[None, :], b_dq * scale, mask=m_t[:, None] & m_k[None, :])
        b_S = b_S * b_decay + tl.dot(tl.trans(b_kd), b_v, input_precision=PREC)


def _bwd_dkv_kernel(
    q, k, v, g, do, dht, dk, dv, dh0, T, scale,
    H, K, V,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_DHT: tl.constexpr, PREC: tl.constexpr,
):
    """dk, dv and d initial_state, reverse sweep carrying dS (the gradient of the state leaving the chunk).
    Grid (B*H, V blocks, K blocks); dk: [NV, B, T, H, K], dv: [NK, B, T, H, V] fp32 partial sums;
    dh0: [B*H, K, V] fp32."""
    i_bh = tl.program_id(0).to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    B = tl.num_programs(0) // H
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    do += (i_b * T * H + i_h) * V
    dk += ((i_v * B + i_b) * T * H + i_h) * K
    dv += ((i_k * B + i_b) * T * H + i_h) * V
    if DECAY == 1:
        g += i_b * T * H + i_h
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    m_kv = m_k[:, None] & m_v[None, :]
    b_dS = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dS += tl.load(dht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], mask=m_kv, other=0.0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    NT = tl.cdiv(T, BT)
    for j in range(0, NT):
        o_t = (NT - 1 - j) * BT + o_i
        m_t = o_t < T
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
        b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
        b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
        b_do = tl.load(do + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
        b_dA = tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0) * scale
        b_dk = tl.dot(b_v, tl.trans(b_dS.to(b_v.dtype)), input_precision=PREC)   # [BT, BK]: dS_C v_s
        if DECAY == 1:
            b_g = tl.load(g + o_t * H, mask=m_t, other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)
            b_E = tl.exp(tl.where(causal, b_G[:, None] - b_G[None, :], float("-inf")))
            b_A = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_E * scale
            b_kdec = tl.exp(b_GC - b_G)[:, None]
            b_dk = b_dk * b_kdec + tl.dot(tl.trans(b_dA * b_E).to(b_q.dtype), b_q, input_precision=PREC)
            b_qd = (b_q * (tl.exp(b_G)[:, None] * scale)).to(b_q.dtype)
            b_decay = tl.exp(b_GC)
        elif DECAY == 2:
            b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0).to(tl.float32)
            b_G = tl.cumsum(b_g, axis=0)
            b_GC = tl.sum(b_g, axis=0)
            b_E = tl.exp(tl.where(causal[:, :, None], b_G[:, None, :] - b_G[None, :, :], float("-inf")))
            b_qf = b_q.to(tl.float32)
            b_A = tl.sum(b_qf[:, None, :] * b_k.to(tl.float32)[None, :, :] * b_E, axis=2) * scale
            b_kdec = tl.exp(b_GC[None, :] - b_G)
            # dk_sk += sum_t dA[t, s] q_tk exp(G_tk - G_sk)
            b_dk = b_dk * b_kdec + tl.sum(b_dA[:, :, None] * b_qf[:, None, :] * b_E, axis=0)
            b_qd = (b_qf * tl.exp(b_G) * scale).to(b_q.dtype)
            b_decay = tl.exp(b_GC)[:, None]
        else:
            b_A = tl.where(causal, tl.dot(b_q, tl.trans(b_k), input_precision=PREC), 0.0) * scale
            b_kdec = 1.0
            b_dk += tl.dot(tl.trans(b_dA).to(b_q.dtype), b_q, input_precision=PREC)
            b_qd = (b_q * scale).to(b_q.dtype)
            b_decay = 1.0
        b_kd = (b_k * b_kdec).to(b_k.dtype)
        # dv_s = (k_s exp(G_C - G_s)) dS_C + sum_t A[t, s] do_t
        b_dv = tl.dot(b_kd, b_dS.to(b_k.dtype), input_precision=PREC)
        b_dv += tl.dot(tl.trans(b_A).to(b_do.dtype), b_do, input_precision=PREC)
        tl.store(dk + o_t[:, None] * (H * K) + o_k[None, :], b_dk, mask=m_tk)
        tl.store(dv + o_t[:, None] * (H * V) + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
        # dS entering the chunk: exp(G_C) dS_C + scale * sum_t (q_t exp(G_t)) do_t^T
        b_dS = b_dS * b_decay + tl.dot(tl.trans(b_qd), b_do, input_precision=PREC)
    tl.store(dh0 + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_dS, mask=m_kv)


def _bwd_dg_kernel(
    q, k, dq_p, dk_p, dg_last, dq, dk, dg, T, NV,
    H, K, BT: tl.constexpr, BK: tl.constexpr, DECAY: tl.constexpr,
):
    """Epilogue, one program per batch*head covering all of K: sums the fp32 dq, dk partials over V
    blocks, writes dq, dk in the input dtype and dg_t = sum_{r >= t} (q_r dq_r - k_r dk_r) + dg_last,
    a reverse cumulative sum carried across chunks (summed over K for scalar decay).
    dq_p, dk_p: [NV, B, T, H, K] fp32; dg_last: [B*H, K] fp32 = rowsum(dS_T * S_T)."""
    i_bh = tl.program_id(0).to(tl.int64)
    B = tl.num_programs(0) // H
    i_b, i_h = i_bh // H, i_bh % H
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    base = (i_b * T * H + i_h) * K
    part = B * T * H * K                                         # stride between V-block partials
    b_carry = tl.load(dg_last + i_bh * K + o_k, mask=m_k, other=0.0)  # [BK], sum over later chunks
    o_i = tl.arange(0, BT)
    NT = tl.cdiv(T, BT)
    for j in range(0, NT):
        o_t = (NT - 1 - j) * BT + o_i
        m_tk = (o_t < T)[:, None] & m_k[None, :]
        offs = base + o_t[:, None] * (H * K) + o_k[None, :]
        b_dq = tl.zeros([BT, BK], dtype=tl.float32)
        b_dk = tl.zeros([BT, BK], dtype=tl.float32)
        for i_v in range(0, NV):
            b_dq += tl.load(dq_p + i_v * part + offs, mask=m_tk, other=0.0)
            b_dk += tl.load(dk_p + i_v * part + offs, mask=m_tk, other=0.0)
        tl.store(dq + offs, b_dq.to(dq.dtype.element_ty), mask=m_tk)
        tl.store(dk + offs, b_dk.to(dk.dtype.element_ty), mask=m_tk)
        if DECAY > 0:
            b_q = tl.load(q + offs, mask=m_tk, other=0.0).to(tl.float32)
            b_k = tl.load(k + offs, mask=m_tk, other=0.0).to(tl.float32)
            b_dG = b_q * b_dq - b_k * b_dk                        # [BT, BK]
            # suffix sum within the chunk: total - prefix + own term, plus the later chunks' carry
            b_tot = tl.sum(b_dG, axis=0)
            b_dg = b_tot[None, :] - tl.cumsum(b_dG, axis=0) + b_dG + b_carry[None, :]
            b_carry += b_tot
            if DECAY == 1:
                tl.store(dg + (i_b * T * H + i_h) + o_t * H, tl.sum(b_dg, axis=1).to(dg.dtype.element_ty),
                         mask=o_t < T)
            else:
                tl.store(dg + offs, b_dg.to(dg.dtype.element_ty), mask=m_tk)


_JITTED: dict = {}


def _launch(fn, grid, *args, **meta) -> None:
    """Decorate `fn` with triton.jit at first use, once per mode: triton picks the interpreter at
    decoration time, and the tests switch TRITON_INTERPRET on after other modules may have imported us."""
    mode = "interpret" if _interpret() else "compiled"
    if mode == "interpret" and isinstance(tl.cdiv, triton.runtime.JITFunction):
        # triton's own @jit helpers were decorated for compilation: the interpreter cannot call them
        raise RuntimeError("TRITON_INTERPRET=1 was set after triton was imported; set it before the "
                           "first `import triton` (in the environment, or first thing in the test module)")
    key = (fn.__name__, mode)
    if key not in _JITTED:
        _JITTED[key] = triton.jit(fn)
    LAUNCHES[mode] += 1
    _JITTED[key][grid](*args, **meta)


def _config(K: int, V: int, decay: int, dtype: torch.dtype) -> dict:
    """Chunk and tile sizes. tl.dot needs every dim >= 16; per-channel decay keeps BT*BT*BK small."""
    BT = 16 if decay == 2 else 64
    BK = min(max(16, triton.next_power_of_2(K)), 32 if decay == 2 else 64)
    BV = min(max(16, triton.next_power_of_2(V)), 64)
    prec = "ieee" if dtype == torch.float32 else "tf32"   # fp32 inputs: no silent tf32 rounding
    return dict(BT=BT, BK=BK, BV=BV, DECAY=decay, PREC=prec, num_warps=4)


class _ChunkLinearAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, h0, scale):
        B, T, H, K = q.shape
        V = v.shape[-1]
        decay = 0 if g is None else (1 if g.dim() == 3 else 2)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        g = None if g is None else g.contiguous()                  # loaded as fp32 in the kernels
        h0f = None if h0 is None else h0.float().contiguous()
        cfg = _config(K, V, decay, q.dtype)
        NK, NV = triton.cdiv(K, cfg["BK"]), triton.cdiv(V, cfg["BV"])
        # with one K block the kernel writes o directly, else fp32 partials summed here
        o = torch.empty(NK, B, T, H, V, device=q.device, dtype=v.dtype if NK == 1 else torch.float32)
        ht = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
        dummy = q  # placeholder pointer for absent optional tensors (never read: constexpr flags)
        _launch(_fwd_kernel, (B * H, NV, NK), q, k, v, g if g is not None else dummy,
                h0f if h0f is not None else dummy, o, ht, T, scale, H=H, K=K, V=V,
                USE_H0=h0 is not None, **cfg)
        o = o[0] if NK == 1 else o.sum(0).to(v.dtype)
        ctx.save_for_backward(q, k, v, g, h0f, ht)
        ctx.scale, ctx.decay = scale, decay
        ctx.set_materialize_grads(False)
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, h0f, ht = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        do = torch.zeros_like(v) if do is None else do.to(v.dtype).contiguous()
        cfg = _config(K, V, ctx.decay, q.dtype)
        NK, NV = triton.cdiv(K, cfg["BK"]), triton.cdiv(V, cfg["BV"])
        dummy = q
        gp = g if g is not None else dummy
        dq_p = torch.empty(NV, B, T, H, K, device=q.device, dtype=torch.float32)
        _launch(_bwd_dq_kernel, (B * H, NV, NK), k, v, gp, h0f if h0f is not None else dummy, do, dq_p,
                T, ctx.scale, H=H, K=K, V=V, USE_H0=h0f is not None, **cfg)
        dk_p = torch.empty(NV, B, T, H, K, device=q.device, dtype=torch.float32)
        dv_p = torch.empty(NK, B, T, H, V, device=q.device, dtype=v.dtype if NK == 1 else torch.float32)
        dh0 = torch.empty(B, H, K, V, device=q.device, dtype=torch.float32)
        dht_c = None if dht is None else dht.float().contiguous()
        _launch(_bwd_dkv_kernel, (B * H, NV, NK), q, k, v, gp, do, dht_c if dht_c is not None else dummy,
                dk_p, dv_p, dh0, T, ctx.scale, H=H, K=K, V=V, USE_DHT=dht is not None, **cfg)
        dv = dv_p[0] if NK == 1 else dv_p.sum(0).to(v.dtype)
        # epilogue: dq, dk in the input dtype and dg (G_T also scales S_T: dg_last = rowsum(dS_T * S_T))
        dq, dk = torch.empty_like(q), torch.empty_like(k)
        dg = torch.empty_like(g) if g is not None else dummy
        dg_last = (dht_c * ht).sum(-1) if dht is not None and g is not None else torch.zeros(
            B, H, K, device=q.device, dtype=torch.float32)
        _launch(_bwd_dg_kernel, (B * H,), q, k, dq_p, dk_p, dg_last, dq, dk, dg, T, NV, H=H, K=K,
                BT=32, BK=max(16, triton.next_power_of_2(K)), DECAY=ctx.decay, num_warps=4)
        return (dq, dk, dv, dg if g is not None else None, dh0 if h0f is not None else None, None)


def chunk_linear_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor | None = None,
    scale: float | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Triton path of `chunked_linear_attention`. q, k: [B, T, H, K]; v: [B, T, H, V];
    log_decay: None, [B, T, H] or [B, T, H, K]; initial_state: [B, H, K, V].
    Returns (o [B, T, H, V] in v's dtype, S_T [B, H, K, V] fp32 or None)."""
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    o, ht = _ChunkLinearAttention.apply(q, k, v, log_decay, initial_state, scale)
    return o, (ht if output_final_state else None)
