"""Triton forward and backward for Mamba's selective scan (Gu & Dao 2023, arXiv 2312.00752).

Forward (eq. 2 with the ZOH simplification Ā = exp(ΔA), B̄u = ΔBu, Algorithm 2):
    Δ_t = softplus(δ_t + δ_bias)            a_t = exp(Δ_t A)           x_t = Δ_t u_t B_t
    h_t = a_t ⊙ h_{t-1} + x_t               y_t = C_t · h_t + D u_t    out_t = y_t silu(z_t)
Backward, with g_t = ∂L/∂h_t (total) and dy_t = ∂L/∂y_t:
    g_t = a_{t+1} g_{t+1} + C_t dy_t        (a reverse linear recurrence; g_L = ∂L/∂h_L)
    dB_t = Σ_d g_t Δ_t u_t   du_t = Σ_n g_t Δ_t B_t + D dy_t   dC_t = Σ_d dy_t h_t
    dΔ_t = Σ_n (g_t B_t u_t + A g_t a_t h_{t-1})     dA = Σ_t Δ_t g_t a_t h_{t-1}
using a_t h_{t-1} = h_t - x_t, so the previous state is never needed (and nothing divides by a).

The Mamba point (Section 3.3.2): the expanded state h [B, D, N, L] never reaches device memory.
Every program owns one batch row and BLOCK_D channels of one group; the forward writes y and, when
a backward will follow, the state entering every BLOCK_T-th step ([B, D, L/BLOCK_T, N] fp32); the
backward walks those tiles from the end and recomputes h inside each from its checkpoint.

Roofline (H100 SXM: 132 SMs at ~1.75 GHz; exp2 on the SFU at 16/clk/SM = 3.7 T/s; fp32 FMA at
128/clk/SM = 30 T/s; ~3.0 TB/s copy bandwidth), per element (b, d, t) with N states:
  - forward, sequential in time: N exp2 + ~3N FMA (step, readout), plus softplus/silu per (b, d, t).
    B=8 D=2048 L=4096 N=16 is 1.07 G state updates: exp2 0.29 ms, FMA ~0.1 ms; bytes (u, δ, z, B, C
    read, y written, bf16) 0.54 GB = 0.18 ms. So the forward is bound by the exp unit, ~0.3 ms,
    about 2x the copy time: "% of copy bandwidth" cannot exceed ~60% for the forward in bf16.
  - backward: 2N exp2 (recompute + reverse step), ~10N FMA, N-wide reductions over d for dB and dC
    (one atomic add per (program, n, t)); bytes (11 [B,D,L] + 6 [B,N,L] tensors) 1.5 GB = 0.5 ms;
    exp2 0.6 ms. Roofline fwd+bwd ~1 ms (target: 50% of copy bandwidth = 1 ms fwd+bwd).
  - a tree scan over BLOCK_T steps does ~log2(BLOCK_T) combines per element (3 mul each) plus
    lane shuffles of two fp32 values per level, a masked reduction to extract the last column, and a
    [BLOCK_D, N, BLOCK_T] register tile; measured (variant "tree", H100, bf16): fwd 4.5 ms, fwd+bwd
    18.5 ms at that shape, i.e. ~15x above the exp2 bound.

Variants (`VARIANT` picks the shipped one; `kernels.tune_scans` times all of them):
  - "chan" (shipped): forward with one channel per thread. The state is [N, BLOCK_D] with
    BLOCK_D = 32 x num_warps, so each thread holds the N states of its channel and C·h is a sum in
    registers (no shuffles); u, δ, z, y move as [BLOCK_D, TT] tiles (TT adjacent steps: one vector
    load per thread), B and C as [N, BLOCK_D, TT] broadcast loads; softplus/silu are computed once
    per (d, t), not once per lane. A is passed transposed ([N, D]) so that its load has the
    state's layout (checked in the TTGIR: no layout conversion inside the step loop). Backward:
    the "seq" kernel, or (TILES["chan"]["bwd"] = "chan") its own one-channel-per-thread kernel, whose
    sums over channels for dB, dC cross all 32 lanes every step.
  - "seq": the state is [BLOCK_D, N] in registers and takes one step per iteration; the backward
    recomputes the tile's states into a per-program scratch buffer ([BLOCK_T, BLOCK_D, N] fp32, a
    few KiB, L1/L2-resident), then steps back through the tile with g in registers.
  - "tree": tiles of BLOCK_T steps composed with `tl.associative_scan` (Blelloch 1990; Martin &
    Cundy 2018, arXiv 1709.04057) on a [BLOCK_D, BLOCK_N, BLOCK_T] register tile; the backward runs
    the reverse scan per tile.
exp(ΔA) is computed as exp2(Δ (A log2 e)). dB, dC (summed over the channels of a group), dA, dD and
dδ_bias are accumulated in fp32 with atomic adds (relaxed in the sequential backward).

Long sequences with few (batch, channel) programs are cut into chunks in the forward (as in
`kernels.linear_recurrence`): a state-only pass per chunk, a carry across chunks (a linear
recurrence over chunks on [B, n_chunks, D·N]), and the final pass from each chunk's true state.
The backward is not chunked over time: at B=8 D=2048 it has B·D/BLOCK_D = 2048 programs.
"""
from __future__ import annotations

from typing import Literal

import torch
import triton
import triton.language as tl

from .._host import cdiv, next_power_of_2
from ..linear_recurrence.triton_scan import (
    INTERPRETED,
    _sm_count,
    affine_combine,
    lr_scan,
)


@triton.jit
def _suffix_combine(a1, c1, i1, a2, c2, i2):
    """Compose two segments of g_t = a'_t g_{t+1} + c_t (a suffix scan), whatever the order in
    which the scan passes them: the index i (first time step of a segment) says which is left.
    left ∘ right: g -> aL (aR g + cR) + cL."""
    first = i1 < i2
    aL = tl.where(first, a1, a2)
    cL = tl.where(first, c1, c2)
    cR = tl.where(first, c2, c1)
    return a1 * a2, aL * cR + cL, tl.minimum(i1, i2)


@triton.jit
def _delta(dl_ptr, off, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Load δ and return (Δ = softplus(δ + bias) or δ + bias, 0 where masked; δ + bias)."""
    raw = tl.load(dl_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[:, None]
    dt = raw
    if SOFTPLUS:
        # torch's softplus threshold: x for x > 20
        dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))), raw)
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _ss_fwd_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                   y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                   Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                   SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_T: tl.constexpr):
    # u, delta, z, y: [B, D, L]; A: [D, N]; B, C: [B, G, N, L]; ckpt: [B, D, n_tiles, N];
    # init, pend, hend: [B, n_chunks, D, N]; last: [B, D, N]
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    chunk = (pid // (n_dblk * G)) % n_chunks
    bidx = pid // (n_dblk * G * n_chunks)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl                                   # channels of this program
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    row = bidx.to(tl.int64) * Dm + offs_d                          # [BLOCK_D] rows of [B*D, ...]
    bc_base = (bidx.to(tl.int64) * G + grp) * N * L
    state_off = ((bidx.to(tl.int64) * n_chunks + chunk) * Dm + offs_d)[:, None] * N + offs_n[None, :]
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    p = tl.full([BLOCK_D, BLOCK_N], 1.0, dtype=tl.float32)       # ∏ a over the chunk
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    cols = tl.arange(0, BLOCK_T)
    last_col = (cols == BLOCK_T - 1)[None, None, :]
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    for t0 in range(t_start, t_end, BLOCK_T):
        offs_t = t0 + cols
        mask_t = offs_t < t_end
        m_dt = mask_d[:, None] & mask_t[None, :]                  # [BLOCK_D, BLOCK_T]
        m_nt = mask_n[:, None] & mask_t[None, :]                  # [BLOCK_N, BLOCK_T]
        off_dt = row[:, None] * L + offs_t[None, :]
        off_nt = bc_base + offs_n[:, None] * L + offs_t[None, :]
        u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        dt, _ = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
        if SAVE:   # state entering this tile, for the backward's recompute
            ck = (row[:, None] * n_tiles + t0 // BLOCK_T) * N + offs_n[None, :]
            tl.store(ckpt_ptr + ck, h, mask=mask_dn)
        # 1. discretise: a = exp(ΔA), x = Δ u B                     [BLOCK_D, BLOCK_N, BLOCK_T]
        a = tl.exp(dt[:, None, :] * A[:, :, None])
        x = (dt * u)[:, None, :] * Bt[None, :, :]
        # 2. scan the tile, then add the carried state: h_t = (∏a) h_carry + scan(x)
        pa, px = tl.associative_scan((a, x), 2, affine_combine)
        hs = pa * h[:, :, None] + px
        h = tl.sum(tl.where(last_col, hs, 0.0), axis=2)            # masked steps are identities
        if STATE_ONLY:
            p = p * tl.sum(tl.where(last_col, pa, 0.0), axis=2)
        else:
            # 3. read out: y = C·h + D u, gated by silu(z)
            Ct = tl.load(C_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[None, :, :], axis=1)                 # [BLOCK_D, BLOCK_T]
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(y_ptr + off_dt, y.to(y_ptr.dtype.element_ty), mask=m_dt)
    if STATE_ONLY:
        tl.store(pend_ptr + state_off, p, mask=mask_dn)
        tl.store(hend_ptr + state_off, h, mask=mask_dn)
    else:
        is_last = (offs_n[None, :] * 0 + chunk) == n_chunks - 1      # only the last chunk writes h_L
        tl.store(last_ptr + row[:, None] * N + offs_n[None, :], h, mask=mask_dn & is_last)


@triton.jit
def _ss_bwd_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                   ckpt_ptr, dlast_ptr,
                   du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                   Dm, L, N, G, Dg, n_dblk, n_tiles,
                   HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    # shapes as in the forward; dB, dC: [B, G, N, L] fp32; dA: [D, N]; dD, dbias: [D] fp32
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    bidx = pid // (n_dblk * G)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    row = bidx.to(tl.int64) * Dm + offs_d
    bc_base = (bidx.to(tl.int64) * G + grp) * N * L
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    # gc = ∂L/∂h at the first step right of the current tile (∂L/∂h_L for the last tile)
    if HAS_DLAST:
        gc = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    else:
        gc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    cols = tl.arange(0, BLOCK_T)
    first_col = (cols == 0)[None, None, :]
    for k in range(0, n_tiles):
        tile = n_tiles - 1 - k
        offs_t = tile * BLOCK_T + cols
        mask_t = offs_t < L
        m_dt = mask_d[:, None] & mask_t[None, :]
        m_nt = mask_n[:, None] & mask_t[None, :]
        off_dt = row[:, None] * L + offs_t[None, :]
        off_nt = bc_base + offs_n[:, None] * L + offs_t[None, :]
        u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        dt, raw = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
        # Δ_{t+1}: the decay a_{t+1} that carries g_{t+1} back to g_t (1 past the end)
        m_next = mask_d[:, None] & (offs_t + 1 < L)[None, :]
        dt_next, _ = _delta(dl_ptr, off_dt + 1, m_next, bias, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
        Ct = tl.load(C_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
        # 1. recompute h inside the tile from the checkpointed entering state
        h0 = tl.load(ckpt_ptr + (row[:, None] * n_tiles + tile) * N + offs_n[None, :], mask=mask_dn, other=0.0)
        a = tl.exp(dt[:, None, :] * A[:, :, None])                  # [BLOCK_D, BLOCK_N, BLOCK_T]
        x = (dt * u)[:, None, :] * Bt[None, :, :]
        pa, px = tl.associative_scan((a, x), 2, affine_combine)
        hs = pa * h0[:, :, None] + px
        # 2. output gate: out = y silu(z)
        dout = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        if HAS_Z:
            y = tl.sum(hs * Ct[None, :, :], axis=1) + Dv[:, None] * u
            zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            tl.store(dz_ptr + off_dt, (dout * y * sg * (1.0 + zz * (1.0 - sg))).to(dz_ptr.dtype.element_ty),
                     mask=m_dt)
            dy = dout * zz * sg
        else:
            dy = dout
        dy = tl.where(m_dt, dy, 0.0)
        # 3. reverse scan g_t = a_{t+1} g_{t+1} + C_t dy_t, then add the carry from the right
        a_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        c = Ct[None, :, :] * dy[:, None, :]
        idx = tl.broadcast_to(offs_t[None, None, :], [BLOCK_D, BLOCK_N, BLOCK_T])
        pg, gl, _ = tl.associative_scan((a_next, c, idx), 2, _suffix_combine, reverse=True)
        g = gl + pg * gc[:, :, None]
        gc = tl.sum(tl.where(first_col, g, 0.0), axis=2)
        # 4. gradients; s = g_t a_t h_{t-1} = g_t (h_t - x_t)
        s = g * (hs - x)
        gB = tl.sum(g * Bt[None, :, :], axis=1)                     # Σ_n g B: [BLOCK_D, BLOCK_T]
        dB_part = tl.sum(g * (dt * u)[:, None, :], axis=0)          # Σ_d: [BLOCK_N, BLOCK_T]
        dC_part = tl.sum(hs * dy[:, None, :], axis=0)
        tl.atomic_add(dB_ptr + off_nt, dB_part, mask=m_nt)
        tl.atomic_add(dC_ptr + off_nt, dC_part, mask=m_nt)
        du = gB * dt + dy * Dv[:, None]
        ddt = gB * u + tl.sum(s * A[:, :, None], axis=1)
        dA_acc += tl.sum(s * dt[:, None, :], axis=2)
        dD_acc += tl.sum(dy * u, axis=1)
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m_dt, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + off_dt, du.to(du_ptr.dtype.element_ty), mask=m_dt)
        tl.store(ddl_ptr + off_dt, ddt.to(ddl_ptr.dtype.element_ty), mask=m_dt)
    tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn)
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d)
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d)


@triton.jit
def _delta_row(dl_ptr, off, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """One time step of δ for BLOCK_D channels: (Δ, 0 where masked; δ + bias)."""
    raw = tl.load(dl_ptr + off, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        # torch's softplus threshold: x for x > 20
        dt = tl.where(raw <= 20.0, tl.log(1.0 + tl.exp(tl.minimum(raw, 20.0))), raw)
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _ss_fwd_seq_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                       y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                       Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                       HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                       SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                       SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                       BLOCK_T: tl.constexpr):
    # Sequential in time: the [BLOCK_D, BLOCK_N] state stays in registers and takes one step per
    # time index (one exp2 and two FMAs per state element, one reduction over N for y).
    # u, delta, z, y: [B, D, L]; A: [D, N]; B, C: [B, G, N, L]; ckpt: [B, D, n_tiles, N] (the state
    # entering every BLOCK_T-th step); init, pend, hend: [B, n_chunks, D, N]; last: [B, D, N]
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    chunk = (pid // (n_dblk * G)) % n_chunks
    bidx = pid // (n_dblk * G * n_chunks)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    # exp(ΔA) = exp2(Δ (A log2 e)): one MUFU op per state element and step
    A2 = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32) * 1.4426950408889634
    row = (bidx.to(tl.int64) * Dm + offs_d) * L                    # [BLOCK_D] row starts in [B*D, L]
    bc_row = (bidx.to(tl.int64) * G + grp) * N * L + offs_n * L     # [BLOCK_N] row starts of B, C
    # B_t, C_t loaded as [BLOCK_D, BLOCK_N] with stride 0 along D: they arrive in the state's layout
    bc_2d = bc_row[None, :] + tl.zeros([BLOCK_D, 1], dtype=tl.int64)
    state_off = ((bidx.to(tl.int64) * n_chunks + chunk) * Dm + offs_d)[:, None] * N + offs_n[None, :]
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    p = tl.full([BLOCK_D, BLOCK_N], 1.0, dtype=tl.float32)       # ∏ a over the chunk
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    ck_row = ((bidx.to(tl.int64) * Dm + offs_d) * n_tiles)[:, None] * N + offs_n[None, :]
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    for t0 in range(t_start, t_end, BLOCK_T):
        if SAVE:   # state entering this tile, for the backward's recompute
            tl.store(ckpt_ptr + ck_row + (t0 // BLOCK_T) * N, h, mask=mask_dn)
        for t in range(t0, tl.minimum(t0 + BLOCK_T, t_end)):
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt, _ = _delta_row(dl_ptr, row + t, mask_d, bias, HAS_BIAS, SOFTPLUS)
            Bt = tl.load(B_ptr + bc_2d + t, mask=mask_dn, other=0.0).to(tl.float32)
            # 1. discretise and step: h = exp(ΔA) h + Δ u B
            a = tl.exp2(dt[:, None] * A2)
            h = a * h + (dt * u)[:, None] * Bt
            if STATE_ONLY:
                p = p * a
            else:
                # 2. read out: y = C·h + D u, gated by silu(z)
                Ct = tl.load(C_ptr + bc_2d + t, mask=mask_dn, other=0.0).to(tl.float32)
                y = tl.sum(h * Ct, axis=1) + Dv * u
                if HAS_Z:
                    zz = tl.load(z_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
                    y = y * zz * tl.sigmoid(zz)
                tl.store(y_ptr + row + t, y.to(y_ptr.dtype.element_ty), mask=mask_d)
    if STATE_ONLY:
        tl.store(pend_ptr + state_off, p, mask=mask_dn)
        tl.store(hend_ptr + state_off, h, mask=mask_dn)
    else:
        is_last = (offs_n[None, :] * 0 + chunk) == n_chunks - 1      # only the last chunk writes h_L
        tl.store(last_ptr + ((bidx.to(tl.int64) * Dm + offs_d) * N)[:, None] + offs_n[None, :], h,
                 mask=mask_dn & is_last)


@triton.jit
def _ss_fwd_chan_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                        y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                        SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_T: tl.constexpr, TT: tl.constexpr):
    # Sequential in time with one channel per thread: the state is [BLOCK_N, BLOCK_D] (BLOCK_D = 32
    # x num_warps), so each thread holds all N states of its channel and the readout C·h is a sum
    # in registers. u, δ, z and y move as [BLOCK_D, TT] tiles (TT consecutive steps of a channel are
    # adjacent: one vector load per thread), B and C as [BLOCK_N, BLOCK_D, TT] (the same addresses
    # in every lane: broadcast loads); step j of a tile is picked with a compile-time mask, which
    # folds to a register choice. Shapes as in `_ss_fwd_seq_kernel`.
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    chunk = (pid // (n_dblk * G)) % n_chunks
    bidx = pid // (n_dblk * G * n_chunks)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_nd = mask_n[:, None] & mask_d[None, :]
    # A_ptr holds A transposed, [N, D]: contiguous along D, so the load's layout is the state's
    # (channels across lanes) and no per-step layout conversion is needed
    A2 = tl.load(A_ptr + offs_n[:, None] * Dm + offs_d[None, :], mask=mask_nd, other=0.0).to(tl.float32) \
        * 1.4426950408889634                                         # [BLOCK_N, BLOCK_D], A log2 e
    row = (bidx.to(tl.int64) * Dm + offs_d) * L                      # [BLOCK_D]
    bc_row = (bidx.to(tl.int64) * G + grp) * N * L + offs_n * L      # [BLOCK_N]
    state_off = ((bidx.to(tl.int64) * n_chunks + chunk) * Dm + offs_d)[None, :] * N + offs_n[:, None]
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_nd, other=0.0)
    else:
        h = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    p = tl.full([BLOCK_N, BLOCK_D], 1.0, dtype=tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    ck_row = ((bidx.to(tl.int64) * Dm + offs_d) * n_tiles)[None, :] * N + offs_n[:, None]
    cols = tl.arange(0, TT)
    zero_d = tl.zeros([BLOCK_D], dtype=tl.int32)
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    for t0 in range(t_start, t_end, BLOCK_T):
        if SAVE:
            tl.store(ckpt_ptr + ck_row + (t0 // BLOCK_T) * N, h, mask=mask_nd)
        for s0 in range(t0, tl.minimum(t0 + BLOCK_T, t_end), TT):
            offs_t = s0 + cols
            mask_t = offs_t < t_end
            m_dt = mask_d[:, None] & mask_t[None, :]                    # [BLOCK_D, TT]
            off_dt = row[:, None] + offs_t[None, :]
            U = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            DT, _ = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
            DU = DT * U
            # [BLOCK_N, BLOCK_D, TT]: B_t for every lane (stride 0 along D)
            off_b = bc_row[:, None, None] + zero_d[None, :, None] + offs_t[None, None, :]
            m_b = mask_n[:, None, None] & (zero_d == 0)[None, :, None] & mask_t[None, None, :]
            Bt = tl.load(B_ptr + off_b, mask=m_b, other=0.0).to(tl.float32)
            if not STATE_ONLY:
                Ct = tl.load(C_ptr + off_b, mask=m_b, other=0.0).to(tl.float32)
                Y = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            for j in tl.static_range(TT):
                pick = (cols == j)[None, :]                              # [1, TT], a constant
                dt_j = tl.sum(tl.where(pick, DT, 0.0), axis=1)           # [BLOCK_D]
                du_j = tl.sum(tl.where(pick, DU, 0.0), axis=1)
                b_j = tl.sum(tl.where(pick[None, :, :], Bt, 0.0), axis=2)   # [BLOCK_N, BLOCK_D]
                a = tl.exp2(dt_j[None, :] * A2)                          # padded steps: dt = 0, a = 1
                h = a * h + du_j[None, :] * b_j
                if STATE_ONLY:
                    p = p * a
                else:
                    c_j = tl.sum(tl.where(pick[None, :, :], Ct, 0.0), axis=2)
                    y_j = tl.sum(h * c_j, axis=0)                        # [BLOCK_D], in registers
                    Y = tl.where(pick, y_j[:, None], Y)
            if not STATE_ONLY:
                Y += Dv[:, None] * U
                if HAS_Z:
                    zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
                    Y = Y * zz * tl.sigmoid(zz)
                tl.store(y_ptr + off_dt, Y.to(y_ptr.dtype.element_ty), mask=m_dt)
    if STATE_ONLY:
        tl.store(pend_ptr + state_off, p, mask=mask_nd)
        tl.store(hend_ptr + state_off, h, mask=mask_nd)
    else:
        is_last = (offs_n[:, None] * 0 + chunk) == n_chunks - 1
        tl.store(last_ptr + ((bidx.to(tl.int64) * Dm + offs_d) * N)[None, :] + offs_n[:, None], h,
                 mask=mask_nd & is_last)


@triton.jit
def _ss_bwd_seq_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                       ckpt_ptr, dlast_ptr, hbuf_ptr,
                       du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                       Dm, L, N, G, Dg, n_dblk, n_tiles,
                       HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                       SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                       BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    # Sequential in time, tiles of BLOCK_T steps from the end. Per tile: (0) Δ, sigmoid(δ + bias) and
    # sigmoid(z) for the whole [BLOCK_D, BLOCK_T] tile, once per element, into this program's scratch
    # (in the [BLOCK_D, BLOCK_N] state layout a per-channel value is held by the BLOCK_N lanes of its
    # row, so computing them per step would cost every lane the exp/log/rcp); (1) step forward from
    # the checkpoint, writing h_t to the scratch; (2) step backward through the tile with g in
    # registers. Scratch per program: [BLOCK_T, BLOCK_D, BLOCK_N] h, then [3, BLOCK_T, BLOCK_D], fp32
    # (a few KiB: stays in L1/L2).
    # shapes as in the forward; dB, dC: [B, G, N, L] fp32; dA: [D, N]; dD, dbias: [D] fp32
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    bidx = pid // (n_dblk * G)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_dn = mask_d[:, None] & mask_n[None, :]
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    row = (bidx.to(tl.int64) * Dm + offs_d) * L
    bc_row = (bidx.to(tl.int64) * G + grp) * N * L + offs_n * L
    # B_t, C_t are loaded as [BLOCK_D, BLOCK_N] (stride 0 along D: the same address in the lanes
    # of one n), so they arrive in the state's layout instead of being converted every step
    bc_2d = bc_row[None, :] + tl.zeros([BLOCK_D, 1], dtype=tl.int64)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    # gn = a_{t+1} g_{t+1}: the part of ∂L/∂h_t carried from the right (∂L/∂h_L at the end)
    state_row = ((bidx.to(tl.int64) * Dm + offs_d) * N)[:, None] + offs_n[None, :]
    if HAS_DLAST:
        gn = tl.load(dlast_ptr + state_row, mask=mask_dn, other=0.0).to(tl.float32)
    else:
        gn = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    ck_row = ((bidx.to(tl.int64) * Dm + offs_d) * n_tiles)[:, None] * N + offs_n[None, :]
    scr = hbuf_ptr + pid.to(tl.int64) * (BLOCK_T * BLOCK_D * BLOCK_N + 3 * BLOCK_T * BLOCK_D)
    hb = scr + tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]     # [BLOCK_D, BLOCK_N] slot 0
    pre = scr + BLOCK_T * BLOCK_D * BLOCK_N + tl.arange(0, BLOCK_D)           # [BLOCK_D] at step 0
    cols_t = tl.arange(0, BLOCK_T)
    pre_tile = scr + BLOCK_T * BLOCK_D * BLOCK_N + cols_t[None, :] * BLOCK_D + tl.arange(0, BLOCK_D)[:, None]
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k in range(0, n_tiles):
        tile = n_tiles - 1 - k
        t0 = tile * BLOCK_T
        t1 = tl.minimum(t0 + BLOCK_T, L)
        # 1. recompute h_t inside the tile from the checkpointed entering state
        h = tl.load(ckpt_ptr + ck_row + tile * N, mask=mask_dn, other=0.0)
        tl.debug_barrier()   # the previous tile's reads of the scratch are done before it is rewritten
        # 0. per-(d, t) terms of the tile, once per element
        m_dt = mask_d[:, None] & (t0 + cols_t < t1)[None, :]
        off_dt = row[:, None] + (t0 + cols_t)[None, :]
        DT, RAW = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
        tl.store(pre_tile, DT)
        if SOFTPLUS:
            tl.store(pre_tile + BLOCK_T * BLOCK_D, tl.sigmoid(RAW))
        if HAS_Z:
            tl.store(pre_tile + 2 * BLOCK_T * BLOCK_D,
                     tl.sigmoid(tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)))
        tl.debug_barrier()
        for t in range(t0, t1):
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt = tl.load(pre + (t - t0) * BLOCK_D)
            Bt = tl.load(B_ptr + bc_2d + t, mask=mask_dn, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A2) * h + (dt * u)[:, None] * Bt
            tl.store(hb + (t - t0) * BLOCK_D * BLOCK_N, h)
        tl.debug_barrier()   # hbuf written by all threads before any reads it
        # 2. reverse steps: g_t = a_{t+1} g_{t+1} + C_t dy_t
        for j in range(0, t1 - t0):
            t = t1 - 1 - j
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt = tl.load(pre + (t - t0) * BLOCK_D)
            Bt = tl.load(B_ptr + bc_2d + t, mask=mask_dn, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + bc_2d + t, mask=mask_dn, other=0.0).to(tl.float32)
            h = tl.load(hb + (t - t0) * BLOCK_D * BLOCK_N)
            a = tl.exp2(dt[:, None] * A2)
            dtu = dt * u
            x = dtu[:, None] * Bt
            # output gate: out = y silu(z)
            dout = tl.load(dout_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            if HAS_Z:
                y = tl.sum(h * Ct, axis=1) + Dv * u
                zz = tl.load(z_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
                sg = tl.load(pre + 2 * BLOCK_T * BLOCK_D + (t - t0) * BLOCK_D)
                tl.store(dz_ptr + row + t, (dout * y * sg * (1.0 + zz * (1.0 - sg))).to(dz_ptr.dtype.element_ty),
                         mask=mask_d)
                dy = dout * zz * sg
            else:
                dy = dout
            g = gn + Ct * dy[:, None]
            # gradients; s = g_t a_t h_{t-1} = g_t (h_t - x_t)
            s = g * (h - x)
            gB = tl.sum(g * Bt, axis=1)                        # Σ_n g B: [BLOCK_D]
            tl.atomic_add(dB_ptr + bc_row + t, tl.sum(g * dtu[:, None], axis=0), mask=mask_n, sem="relaxed")
            tl.atomic_add(dC_ptr + bc_row + t, tl.sum(h * dy[:, None], axis=0), mask=mask_n, sem="relaxed")
            ddt = gB * u + tl.sum(s * A, axis=1)
            dA_acc += s * dt[:, None]
            dD_acc += dy * u
            if SOFTPLUS:
                ddt = ddt * tl.load(pre + BLOCK_T * BLOCK_D + (t - t0) * BLOCK_D)
            ddt = tl.where(mask_d, ddt, 0.0)
            dbias_acc += ddt
            tl.store(du_ptr + row + t, (gB * dt + dy * Dv).to(du_ptr.dtype.element_ty), mask=mask_d)
            tl.store(ddl_ptr + row + t, ddt.to(ddl_ptr.dtype.element_ty), mask=mask_d)
            gn = a * g
    tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")


@triton.jit
def _ss_bwd_chan_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                        ckpt_ptr, dlast_ptr, hbuf_ptr,
                        du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, TT: tl.constexpr):
    # The backward of "chan": one channel per thread, state and g as [BLOCK_N, BLOCK_D] (A_ptr holds
    # A transposed, [N, D]); [BLOCK_D, TT] tiles for the per-(d, t) tensors as in the forward.
    # Per tile of BLOCK_T steps (from the end): (1) recompute h_t from the checkpoint into this
    # program's scratch hbuf [n_prog, BLOCK_T, BLOCK_N, BLOCK_D] (each thread reads back what it
    # wrote); (2) step backward through the tile. The sums over channels (dB, dC) cross lanes.
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    bidx = pid // (n_dblk * G)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    mask_nd = mask_n[:, None] & mask_d[None, :]
    A = tl.load(A_ptr + offs_n[:, None] * Dm + offs_d[None, :], mask=mask_nd, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    row = (bidx.to(tl.int64) * Dm + offs_d) * L
    bc_row = (bidx.to(tl.int64) * G + grp) * N * L + offs_n * L
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    state_row = ((bidx.to(tl.int64) * Dm + offs_d) * N)[None, :] + offs_n[:, None]   # [N, D] in [B, D, N]
    if HAS_DLAST:
        gn = tl.load(dlast_ptr + state_row, mask=mask_nd, other=0.0).to(tl.float32)
    else:
        gn = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    ck_row = ((bidx.to(tl.int64) * Dm + offs_d) * n_tiles)[None, :] * N + offs_n[:, None]
    hb = hbuf_ptr + pid.to(tl.int64) * BLOCK_T * BLOCK_N * BLOCK_D \
        + offs_n[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
    cols = tl.arange(0, TT)
    zero_d = tl.zeros([BLOCK_D], dtype=tl.int32)
    dA_acc = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for k in range(0, n_tiles):
        tile = n_tiles - 1 - k
        t0 = tile * BLOCK_T
        t1 = tl.minimum(t0 + BLOCK_T, L)
        h = tl.load(ckpt_ptr + ck_row + tile * N, mask=mask_nd, other=0.0)
        tl.debug_barrier()
        # 1. recompute h_t inside the tile (padded steps have Δ = 0: h unchanged, never read)
        for s0 in range(t0, t1, TT):
            offs_t = s0 + cols
            m_dt = mask_d[:, None] & (offs_t < t1)[None, :]
            off_dt = row[:, None] + offs_t[None, :]
            U = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            DT, _ = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
            DU = DT * U
            off_b = bc_row[:, None, None] + zero_d[None, :, None] + offs_t[None, None, :]
            m_b = mask_n[:, None, None] & (zero_d == 0)[None, :, None] & (offs_t < t1)[None, None, :]
            Bt = tl.load(B_ptr + off_b, mask=m_b, other=0.0).to(tl.float32)
            for j in tl.static_range(TT):
                pick = (cols == j)[None, :]
                dt_j = tl.sum(tl.where(pick, DT, 0.0), axis=1)
                du_j = tl.sum(tl.where(pick, DU, 0.0), axis=1)
                b_j = tl.sum(tl.where(pick[None, :, :], Bt, 0.0), axis=2)
                h = tl.exp2(dt_j[None, :] * A2) * h + du_j[None, :] * b_j
                tl.store(hb + (s0 + j - t0) * (BLOCK_N * BLOCK_D), h)
        tl.debug_barrier()
        # 2. reverse steps: g_t = a_{t+1} g_{t+1} + C_t dy_t; gn = a_{t+1} g_{t+1}
        n_sub = tl.cdiv(t1 - t0, TT)
        for q in range(0, n_sub):
            s0 = t0 + (n_sub - 1 - q) * TT
            offs_t = s0 + cols
            m_dt = mask_d[:, None] & (offs_t < t1)[None, :]
            off_dt = row[:, None] + offs_t[None, :]
            U = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            DT, RAW = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
            DU = DT * U
            DOUT = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            if HAS_Z:
                Z = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
                SG = tl.sigmoid(Z)
                DY = DOUT * Z * SG
            else:
                DY = DOUT
            off_b = bc_row[:, None, None] + zero_d[None, :, None] + offs_t[None, None, :]
            m_b = mask_n[:, None, None] & (zero_d == 0)[None, :, None] & (offs_t < t1)[None, None, :]
            Bt = tl.load(B_ptr + off_b, mask=m_b, other=0.0).to(tl.float32)
            Ct = tl.load(C_ptr + off_b, mask=m_b, other=0.0).to(tl.float32)
            DUo = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            DDT = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            Yt = tl.zeros([BLOCK_D, TT], dtype=tl.float32)
            for jj in tl.static_range(TT):
                j = TT - 1 - jj
                pick = (cols == j)[None, :]
                valid = (offs_n * 0 + s0 + j) < t1                        # padded steps add nothing
                u_j = tl.sum(tl.where(pick, U, 0.0), axis=1)
                dt_j = tl.sum(tl.where(pick, DT, 0.0), axis=1)
                du_j = tl.sum(tl.where(pick, DU, 0.0), axis=1)
                dy_j = tl.sum(tl.where(pick, DY, 0.0), axis=1)
                b_j = tl.sum(tl.where(pick[None, :, :], Bt, 0.0), axis=2)
                c_j = tl.sum(tl.where(pick[None, :, :], Ct, 0.0), axis=2)
                h = tl.load(hb + (s0 + j - t0) * (BLOCK_N * BLOCK_D))
                a = tl.exp2(dt_j[None, :] * A2)
                if HAS_Z:
                    Yt = tl.where(pick, tl.sum(h * c_j, axis=0)[:, None], Yt)
                g = gn + c_j * dy_j[None, :]
                s = tl.where(valid[:, None], g * (h - du_j[None, :] * b_j), 0.0)  # g_t a_t h_{t-1}
                gB = tl.sum(g * b_j, axis=0)                               # [BLOCK_D]
                m_bc = mask_n & valid
                tl.atomic_add(dB_ptr + bc_row + s0 + j, tl.sum(g * du_j[None, :], axis=1), mask=m_bc,
                              sem="relaxed")
                tl.atomic_add(dC_ptr + bc_row + s0 + j, tl.sum(h * dy_j[None, :], axis=1), mask=m_bc,
                              sem="relaxed")
                dA_acc += s * dt_j[None, :]
                DUo = tl.where(pick, (gB * dt_j)[:, None], DUo)
                DDT = tl.where(pick, (gB * u_j + tl.sum(s * A, axis=0))[:, None], DDT)
                gn = a * g
            DUo += DY * Dv[:, None]
            dD_acc += tl.sum(DY * U, axis=1)
            if HAS_Z:
                Yt += Dv[:, None] * U
                tl.store(dz_ptr + off_dt, (DOUT * Yt * SG * (1.0 + Z * (1.0 - SG))).to(dz_ptr.dtype.element_ty),
                         mask=m_dt)
            if SOFTPLUS:
                DDT = DDT * tl.sigmoid(RAW)
            DDT = tl.where(m_dt, DDT, 0.0)
            dbias_acc += tl.sum(DDT, axis=1)
            tl.store(du_ptr + off_dt, DUo.to(du_ptr.dtype.element_ty), mask=m_dt)
            tl.store(ddl_ptr + off_dt, DDT.to(ddl_ptr.dtype.element_ty), mask=m_dt)
    tl.atomic_add(dA_ptr + offs_d[None, :] * N + offs_n[:, None], dA_acc, mask=mask_nd, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")


@triton.jit
def _ss_fwd_time_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                        y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                        SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_T: tl.constexpr, CK: tl.constexpr):
    # Time along the lanes: u, δ, z, y move as [BLOCK_D, BLOCK_T] tiles (contiguous in t: coalesced),
    # and a loop over the N states scans each state's [BLOCK_D, BLOCK_T] slice with
    # `tl.associative_scan`, B_n and C_n being [BLOCK_T] rows shared by the BLOCK_D channels. The
    # carried state enters the scan through its first step (x_0 += a_0 h_carry), so the scan yields
    # h_t itself, and y accumulates C_n h_n over the loop. One exp2 per (d, n, t); softplus and the
    # gate once per (d, t). Shapes as in `_ss_fwd_seq_kernel`, except that checkpoints are CK steps
    # apart (CK divides BLOCK_T): the state after every CK-th step is a masked store of the scan.
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    chunk = (pid // (n_dblk * G)) % n_chunks
    bidx = pid // (n_dblk * G * n_chunks)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    row = bidx.to(tl.int64) * Dm + offs_d                            # [BLOCK_D] rows of [B*D, L]
    bc_base = (bidx.to(tl.int64) * G + grp) * N * L
    state_off = ((bidx.to(tl.int64) * n_chunks + chunk) * Dm + offs_d)[:, None] * N + offs_n[None, :]
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    cols = tl.arange(0, BLOCK_T)
    first = (cols == 0)[None, :]
    last = (cols == BLOCK_T - 1)[None, :]
    sum_dt = tl.zeros([BLOCK_D], dtype=tl.float32)                  # Σ Δ over the chunk (STATE_ONLY)
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    for t0 in range(t_start, t_end, BLOCK_T):
        offs_t = t0 + cols
        mask_t = offs_t < t_end
        m_dt = mask_d[:, None] & mask_t[None, :]
        off_dt = row[:, None] * L + offs_t[None, :]
        u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        dt, _ = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)   # masked steps: Δ = 0, a = 1
        du = dt * u
        if SAVE:   # state entering this tile, for the backward's recompute
            tl.store(ckpt_ptr + (row[:, None] * n_tiles + t0 // CK) * N + offs_n[None, :], h, mask=mask_dn)
            # states entering the checkpoints inside the tile: after steps CK-1, 2CK-1, ...
            m_ck = mask_d[:, None] & ((cols + 1) % CK == 0)[None, :] & (cols < BLOCK_T - 1)[None, :] \
                & (offs_t + 1 < t_end)[None, :]
            off_ck = (row[:, None] * n_tiles + (offs_t[None, :] + 1) // CK) * N
        if STATE_ONLY:
            sum_dt += tl.sum(dt, axis=1)
        y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)
        h_out = h
        for n in range(0, N):
            pick = offs_n[None, :] == n
            a2 = tl.load(A_ptr + offs_d * N + n, mask=mask_d, other=0.0).to(tl.float32) * 1.4426950408889634
            b = tl.load(B_ptr + bc_base + n * L + offs_t, mask=mask_t, other=0.0).to(tl.float32)
            a = tl.exp2(dt * a2[:, None])
            x = du * b[None, :]
            x = tl.where(first, x + a * tl.sum(tl.where(pick, h, 0.0), axis=1)[:, None], x)
            _pa, hs = tl.associative_scan((a, x), 1, affine_combine)
            h_out = tl.where(pick, tl.sum(tl.where(last, hs, 0.0), axis=1)[:, None], h_out)
            if SAVE and CK < BLOCK_T:
                tl.store(ckpt_ptr + off_ck + n, hs, mask=m_ck)
            if not STATE_ONLY:
                c = tl.load(C_ptr + bc_base + n * L + offs_t, mask=mask_t, other=0.0).to(tl.float32)
                y += hs * c[None, :]
        h = h_out
        if not STATE_ONLY:
            if HAS_D:
                y += Dv[:, None] * u
            if HAS_Z:
                zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
                y = y * zz * tl.sigmoid(zz)
            tl.store(y_ptr + off_dt, y.to(y_ptr.dtype.element_ty), mask=m_dt)
    if STATE_ONLY:
        # ∏ exp(Δ_t A) over the chunk = exp(A Σ Δ_t)
        A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
        tl.store(pend_ptr + state_off, tl.exp(A * sum_dt[:, None]), mask=mask_dn)
        tl.store(hend_ptr + state_off, h, mask=mask_dn)
    else:
        is_last = (offs_n[None, :] * 0 + chunk) == n_chunks - 1      # only the last chunk writes h_L
        tl.store(last_ptr + row[:, None] * N + offs_n[None, :], h, mask=mask_dn & is_last)


@triton.jit
def _ss_bwd_time_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                        ckpt_ptr, dlast_ptr,
                        du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, REV_INDEX: tl.constexpr):
    # Time along the lanes, tiles from the last: per state n, recompute h over the tile from its
    # checkpoint (a forward scan), then g_t = a_{t+1} g_{t+1} + C_t dy_t by a reverse scan whose last
    # step carries the gradient from the tile to the right (c_last += a_{t1} g_{t1}); Σ_n terms (du,
    # dΔ, the recomputed y for dz) accumulate over the loop, Σ_d terms (dB, dC) are atomic adds.
    # REV_INDEX: the reverse scan carries the time index so that its combine cannot depend on the
    # argument order triton uses for reverse scans; else `affine_combine` with reverse=True (first
    # argument = the earlier one in scan order, i.e. the later time step; tested against the
    # reference on both the interpreter and the GPU). Shapes as in `_ss_bwd_kernel`.
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    bidx = pid // (n_dblk * G)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    row = bidx.to(tl.int64) * Dm + offs_d
    bc_base = (bidx.to(tl.int64) * G + grp) * N * L
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    # gc = ∂L/∂h at the first step right of the current tile (∂L/∂h_L for the last tile)
    if HAS_DLAST:
        gc = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    else:
        gc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    cols = tl.arange(0, BLOCK_T)
    first = (cols == 0)[None, :]
    last = (cols == BLOCK_T - 1)[None, :]
    for k in range(0, n_tiles):
        tile = n_tiles - 1 - k
        offs_t = tile * BLOCK_T + cols
        mask_t = offs_t < L
        m_dt = mask_d[:, None] & mask_t[None, :]
        off_dt = row[:, None] * L + offs_t[None, :]
        u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        dt, raw = _delta(dl_ptr, off_dt, m_dt, bias, HAS_BIAS, SOFTPLUS)
        # Δ_{t+1}: the decay a_{t+1} that carries g_{t+1} back to g_t (0 past the end: a = 1)
        dt_next, _ = _delta(dl_ptr, off_dt + 1, mask_d[:, None] & (offs_t + 1 < L)[None, :], bias,
                            HAS_BIAS, SOFTPLUS)
        du = dt * u
        dout = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            dy = dout * zz * sg
        else:
            dy = dout
        dy = tl.where(m_dt, dy, 0.0)
        idx = tl.broadcast_to(offs_t[None, :], [BLOCK_D, BLOCK_T])
        gB = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)     # Σ_n g B
        sA = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)     # Σ_n A g a h_{t-1}
        y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)      # Σ_n C h (for dz)
        gc_out = gc
        ck = (row * n_tiles + tile) * N
        for n in range(0, N):
            pick = offs_n[None, :] == n
            A_n = tl.load(A_ptr + offs_d * N + n, mask=mask_d, other=0.0).to(tl.float32)
            a2 = A_n * 1.4426950408889634
            h0 = tl.load(ckpt_ptr + ck + n, mask=mask_d, other=0.0)
            b = tl.load(B_ptr + bc_base + n * L + offs_t, mask=mask_t, other=0.0).to(tl.float32)
            c = tl.load(C_ptr + bc_base + n * L + offs_t, mask=mask_t, other=0.0).to(tl.float32)
            # 1. h_t inside the tile
            a = tl.exp2(dt * a2[:, None])
            x = du * b[None, :]
            _pa, hs = tl.associative_scan((a, tl.where(first, x + a * h0[:, None], x)), 1, affine_combine)
            # 2. g_t, the gradient reaching h_t
            a_next = tl.exp2(dt_next * a2[:, None])
            cg = dy * c[None, :]
            cg = tl.where(last, cg + a_next * tl.sum(tl.where(pick, gc, 0.0), axis=1)[:, None], cg)
            if REV_INDEX:
                _pg, g, _i = tl.associative_scan((a_next, cg, idx), 1, _suffix_combine, reverse=True)
            else:
                _pg, g = tl.associative_scan((a_next, cg), 1, affine_combine, reverse=True)
            gc_out = tl.where(pick, tl.sum(tl.where(first, g, 0.0), axis=1)[:, None], gc_out)
            # 3. gradients; s = g_t a_t h_{t-1} = g_t (h_t - x_t)
            s = g * (hs - x)
            gB += g * b[None, :]
            sA += s * A_n[:, None]
            dA_acc += tl.where(pick, tl.sum(s * dt, axis=1)[:, None], 0.0)
            tl.atomic_add(dB_ptr + bc_base + n * L + offs_t, tl.sum(g * du, axis=0), mask=mask_t, sem="relaxed")
            tl.atomic_add(dC_ptr + bc_base + n * L + offs_t, tl.sum(hs * dy, axis=0), mask=mask_t, sem="relaxed")
            if HAS_Z:
                y += hs * c[None, :]
        gc = gc_out
        if HAS_Z:
            y += Dv[:, None] * u
            tl.store(dz_ptr + off_dt, (dout * y * sg * (1.0 + zz * (1.0 - sg))).to(dz_ptr.dtype.element_ty),
                     mask=m_dt)
        ddt = gB * u + sA
        if SOFTPLUS:
            ddt = ddt * tl.sigmoid(raw)
        ddt = tl.where(m_dt, ddt, 0.0)
        dD_acc += tl.sum(dy * u, axis=1)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(du_ptr + off_dt, (gB * dt + dy * Dv[:, None]).to(du_ptr.dtype.element_ty), mask=m_dt)
        tl.store(ddl_ptr + off_dt, ddt.to(ddl_ptr.dtype.element_ty), mask=m_dt)
    tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")


# Tiles per variant (see the module docstring; "tree" is kept for `kernels.tune_scans`, which times
# all of them). BLOCK_T (block_t) is the checkpoint spacing = the backward's recompute tile.
# "chan": forward BLOCK_D = 32 x fwd_warps, tt steps per vector load; backward "seq" (BLOCK_D
# bwd_block_d, bwd_warps) or "chan" (BLOCK_D = 32 x bwd_warps; compiles to 255 registers with
# spills on sm_90 at tt=2, hence not the default until measured). "seq": (BLOCK_D, num_warps) per
# direction; bwd_block_d=8 with 1 warp keeps the sums over D inside the warp (no barriers in the
# step loop, checked in the PTX). "tree": BLOCK_T and BLOCK_D·BLOCK_N·BLOCK_T register elements per
# direction (tuned on an H100: B=8 D=2048 L=4096 N=16 bf16 fwd 4.5 ms, fwd+bwd 18.5 ms).
# `python -m kernels.tune_scans` on the H100 (torch 2.11, triton 3.6), bf16 fwd+bwd: "chan" with the
# "seq" backward at bwd_block_d=16 is the fastest correct config, 15.9 ms at B=8 D=2048 L=4096 N=16
# (tree 18.4) and 3.8 ms at B=256 D=256 L=256 (tree 4.6); its forward alone (5.5 ms) is slower than
# the tree's (4.4 ms); unprofiled guess: the per-step loads of B_t, C_t (N broadcast loads per thread).
VARIANT = "time"
TILES = dict(chan=dict(block_t=32, fwd_warps=1, tt=2, bwd="seq", bwd_block_d=16, bwd_warps=1),
             seq=dict(block_t=32, fwd_block_d=8, fwd_warps=4, bwd_block_d=8, bwd_warps=1),
             tree=dict(block_t=32, fwd_elems=2048, bwd_elems=1024, fwd_warps=4, bwd_warps=4),
             time=dict(block_t=256, fwd_block_d=4, fwd_warps=1, bwd="time", bwd_block_d=2, bwd_warps=1,
                       rev="plain"))


def _fwd_kernel_name(variant: str, N: int) -> str:
    """The forward kernel a variant runs: "chan" keeps all N states of a channel in one thread's
    registers, which spills beyond N = 32 (sm_90: 255 registers); there the "seq" forward runs
    (same checkpoints, so the backward is unchanged)."""
    return "seq" if variant == "chan" and next_power_of_2(N) > 32 else variant


TIME_SEQ_CK = 32    # "time" forward + "seq" backward: checkpoint spacing = the seq backward's tile


def _time_bwd_seq(variant: str) -> bool:
    """True when the "time" forward is followed by the sequential ("seq") backward."""
    return variant == "time" and TILES["time"]["bwd"] == "seq"


def _blocks(variant: str, N: int, Dg: int, backward: bool) -> tuple[int, int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_T, num_warps) for a variant."""
    block_n = next_power_of_2(N)
    cfg = TILES[variant]
    if INTERPRETED:   # the interpreter runs element by element: small tiles, several of them
        # "time" with the "seq" backward: checkpoints every 4 steps inside tiles of 8
        return 2, block_n, 4 if backward and _time_bwd_seq(variant) else 8, 4
    block_t = cfg["block_t"]
    if backward and _time_bwd_seq(variant):
        block_t = TIME_SEQ_CK
        return min(cfg["bwd_block_d"], next_power_of_2(Dg)), block_n, block_t, cfg["bwd_warps"]
    if not backward and _fwd_kernel_name(variant, N) != variant:     # "chan" with N > 32
        seq = TILES["seq"]
        return min(seq["fwd_block_d"], next_power_of_2(Dg)), block_n, block_t, seq["fwd_warps"]
    warps = cfg["bwd_warps" if backward else "fwd_warps"]
    if variant == "chan" and (not backward or (cfg["bwd"] == "chan" and block_n <= 32)):
        block_d = 32 * warps                      # one channel per thread
    elif variant in ("seq", "chan", "time"):
        block_d = cfg["bwd_block_d" if backward else "fwd_block_d"]
    else:
        budget = cfg["bwd_elems" if backward else "fwd_elems"]
        block_d = max(1, min(16, budget // (block_n * block_t)))
    return min(block_d, next_power_of_2(Dg)), block_n, block_t, warps


# variant -> (forward, backward) kernels; all write/read the same checkpoints [B, D, L/BLOCK_T, N]
_KERNELS = {"chan": (_ss_fwd_chan_kernel, _ss_bwd_seq_kernel), "seq": (_ss_fwd_seq_kernel, _ss_bwd_seq_kernel),
            "tree": (_ss_fwd_kernel, _ss_bwd_kernel), "time": (_ss_fwd_time_kernel, _ss_bwd_time_kernel)}


class SelectiveScanFn(torch.autograd.Function):
    """Saves inputs and the per-tile entering states; the backward recomputes h per tile."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, variant):
        grouped = B.dim() == 4
        u, delta, A = u.contiguous(), delta.contiguous(), A.contiguous()
        B4 = (B if grouped else B[:, None]).contiguous()               # [B, G, N, L]
        C4 = (C if grouped else C[:, None]).contiguous()
        D = D.contiguous() if D is not None else None
        z = z.contiguous() if z is not None else None
        delta_bias = delta_bias.contiguous() if delta_bias is not None else None
        Bsz, Dm, L = u.shape
        N, G = A.shape[1], B4.shape[1]
        Dg = Dm // G
        save = any(ctx.needs_input_grad)
        # forward and backward must agree on the checkpoint spacing: the backward's BLOCK_T (which is
        # the forward's, except for "time" with the "seq" backward)
        block_d, block_n, block_t, warps = _blocks(variant, N, Dg, backward=False)
        ck = _blocks(variant, N, Dg, backward=True)[2]
        fwd_name = _fwd_kernel_name(variant, N)
        n_dblk, n_tiles = cdiv(Dg, block_d), cdiv(L, block_t)
        n_prog = Bsz * G * n_dblk
        if chunk_len is None:
            # "seq": about one wave of 48 warps per SM (~75% occupancy: the step loop hides its
            # latency with other programs); "tree": ~4 programs per SM. Chunks of >= 4 tiles.
            # "chan": its step is bound by the exp2 unit, and a chunked forward runs the state pass
            # twice, so chunk only when there is less than one warp per SM sub-partition.
            sm = _sm_count(u.device)
            if fwd_name == "chan":
                n_chunks = max(1, min(4 * sm // (warps * n_prog), n_tiles // 4))
            else:
                target = 48 * sm // warps if fwd_name == "seq" else 4 * sm
                n_chunks = max(1, min(cdiv(target, n_prog), cdiv(n_tiles, 4)))
            chunk_len = cdiv(n_tiles, n_chunks) * block_t
        chunk_len = cdiv(max(1, min(chunk_len, L)), block_t) * block_t
        n_chunks = cdiv(L, chunk_len)
        n_tiles = cdiv(L, ck)                                           # checkpoints
        y = torch.empty_like(u)
        last = torch.empty(Bsz, Dm, N, dtype=torch.float32, device=u.device)
        ckpt = torch.empty(Bsz, Dm, n_tiles, N, dtype=torch.float32, device=u.device) if save else last
        dummy = last
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
                     num_warps=warps)
        if fwd_name == "chan":   # A transposed, [N, D]; TT time steps per vector load
            flags["TT"] = min(TILES["chan"]["tt"], block_t)
        if fwd_name == "time":
            flags["CK"] = ck
        A_fwd = A.t().contiguous() if fwd_name == "chan" else A
        args = (u, delta, A_fwd, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
                delta_bias if delta_bias is not None else dummy)
        grid = (Bsz * G * n_dblk * n_chunks,)
        fwd_kernel = _KERNELS[fwd_name][0]
        init = None
        if n_chunks > 1:
            # 1. state-only pass per chunk; 2. carry across chunks (a linear recurrence over chunks)
            pend = torch.empty(Bsz, n_chunks, Dm, N, dtype=torch.float32, device=u.device)
            hend = torch.empty_like(pend)
            fwd_kernel[grid](*args, dummy, dummy, dummy, dummy, pend, hend,
                             Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                             HAS_INIT=False, STATE_ONLY=True, SAVE=False, **flags)
            carried = lr_scan(pend.view(Bsz, n_chunks, Dm * N), hend.view(Bsz, n_chunks, Dm * N), None)
            init = torch.cat([torch.zeros_like(carried[:, :1]), carried[:, :-1]], dim=1).contiguous()
        # 3. final pass: y, per-tile checkpoints, last state
        fwd_kernel[grid](*args, y, init if init is not None else dummy, ckpt, last, dummy, dummy,
                         Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                         HAS_INIT=init is not None, STATE_ONLY=False, SAVE=save, **flags)
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, ckpt if save else None)
        ctx.softplus, ctx.grouped, ctx.block_t = bool(delta_softplus), grouped, ck
        ctx.variant = variant
        ctx.set_materialize_grads(False)   # an unused h_L brings dlast=None, not zeros
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B4, C4, D, z, delta_bias, ckpt = ctx.saved_tensors
        Bsz, Dm, L = u.shape
        N, G = A.shape[1], B4.shape[1]
        Dg = Dm // G
        block_d, block_n, block_t, warps = _blocks(ctx.variant, N, Dg, backward=True)
        assert block_t == ctx.block_t, "forward and backward tiles must match the checkpoints"
        n_dblk, n_tiles = cdiv(Dg, block_d), cdiv(L, block_t)
        n_prog = Bsz * G * n_dblk
        f32 = dict(dtype=torch.float32, device=u.device)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        dA, dB, dC = torch.zeros(Dm, N, **f32), torch.zeros(B4.shape, **f32), torch.zeros(C4.shape, **f32)
        dD, dbias = torch.zeros(Dm, **f32), torch.zeros(Dm, **f32)
        dummy = dA
        if dy is None:
            dy = torch.zeros_like(u)
        # "seq"/"chan": each program's recomputed states of one tile, [n_prog, BLOCK_T, BLOCK_D, BLOCK_N]
        # (+ [3, BLOCK_T, BLOCK_D] per-(d, t) terms for "seq"; "chan" uses less)
        seq_bwd = ctx.variant in ("seq", "chan") or _time_bwd_seq(ctx.variant)
        scratch = (torch.empty(n_prog * block_t * block_d * (block_n + 3), **f32),) if seq_bwd else ()
        kernel, A_bwd, extra = _KERNELS[ctx.variant][1], A, {}
        if ctx.variant == "time":
            if seq_bwd:
                kernel = _ss_bwd_seq_kernel
            else:
                extra = dict(REV_INDEX=TILES["time"]["rev"] == "index")
        if ctx.variant == "chan" and TILES["chan"]["bwd"] == "chan" and block_n <= 32:
            kernel, A_bwd, extra = _ss_bwd_chan_kernel, A.t().contiguous(), dict(TT=min(TILES["chan"]["tt"], block_t))
        kernel[(n_prog,)](
            u, delta, A_bwd, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, dy.contiguous(), ckpt,
            dlast.contiguous() if dlast is not None else dummy, *scratch,
            du, ddelta, dA, dB, dC, dD, dz if dz is not None else dummy, dbias,
            Dm, L, N, G, Dg, n_dblk, n_tiles,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.softplus, HAS_DLAST=dlast is not None,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t, num_warps=warps, **extra)
        dB, dC = dB.to(B4.dtype), dC.to(C4.dtype)
        if not ctx.grouped:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddelta, dA.to(A.dtype), dB, dC,
                dD.to(D.dtype) if D is not None else None, dz,
                dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None, None)


def triton_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                          delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                          return_last_state: bool = False, chunk_len: int | None = None,
                          variant: Literal["chan", "seq", "tree", "time"] | None = None):
    """Triton selective scan; signature and shapes of `naive_selective_scan`.

    chunk_len: time steps per forward program (None = choose to fill the GPU); for tests.
    variant: "chan" (sequential in time, one channel per thread), "seq" (sequential in time,
    [BLOCK_D, N] per program), "tree" (associative scan over a [BLOCK_D, N, BLOCK_T] tile) or "time"
    (associative scan over a [BLOCK_D, BLOCK_T] tile per state); None = `VARIANT`."""
    variant = variant or VARIANT
    if variant not in _KERNELS:
        raise ValueError(f"triton_selective_scan(variant={variant!r}): expected one of {sorted(_KERNELS)}")
    y, last = SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, variant)
    return (y, last) if return_last_state else y
