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
a backward will follow, the state entering every tile of the backward ([B, D, L/BLOCK_T, N] fp32);
the backward walks those tiles from the end and recomputes h inside each from its checkpoint.

Roofline (H100 SXM: 132 SMs at ~1.75 GHz; exp2 on the SFU at 16/clk/SM = 3.7 T/s; fp32 FMA at
128/clk/SM = 30 T/s; ~3.0 TB/s copy bandwidth), per element (b, d, t) with N states:
  - forward: N exp2 + ~3N FMA (step, readout), plus softplus/silu per (b, d, t).
    B=8 D=2048 L=4096 N=16 is 1.07 G state updates: exp2 0.29 ms, FMA ~0.1 ms; bytes (u, δ, z, B, C
    read, y written, bf16) 0.54 GB = 0.18 ms. So the forward is bound by the exp unit, ~0.3 ms,
    about 2x the copy time: "% of copy bandwidth" cannot exceed ~60% for the forward in bf16.
  - backward: 2N exp2 (recompute + reverse step), ~10N FMA, N-wide reductions over d for dB and dC
    (one atomic add per (program, n, t)); bytes (11 [B,D,L] + 6 [B,N,L] tensors) 1.5 GB = 0.5 ms;
    exp2 0.6 ms. Roofline fwd+bwd ~1 ms (target: 50% of copy bandwidth = 1 ms fwd+bwd).
  - measured (H100, bf16, `python -m kernels.tune_scans`, results/bench/tune_scans.md runs 6-7) with
    the "time" variant: fwd 1.07 ms, fwd+bwd 5.15 ms at that shape, 10% of copy bandwidth; the
    backward (~4.1 ms) is ~4x its exp2 bound. Session 7 (loads one step ahead for 16-bit inputs,
    `_prefetch`; `python -m kernels.bench`): fwd 1.00 ms, fwd+bwd 4.96 ms. Session 9: the lane
    forward below, fwd 0.90 ms, fwd+bwd 4.87 ms; then softplus by a polynomial (`_delta_of`; libdevice's
    logf had cost ~31 instructions with branches per (d, t), in the forward and twice per backward
    tile): fwd 0.82 ms, fwd+bwd 4.66 ms; then the backward's carries through memory (CARRY_MEM):
    fwd+bwd 4.46 ms, its state loop 741 instructions per 512 updates. Session 10: softplus's exp and
    the forwards' gate by exp2 (one MUFU.EX2; tl.exp and tl.sigmoid wrap ex2.approx in a range test
    and predicated multiplies): fwd 0.78 ms, fwd+bwd 4.41 ms; without the atomic adds of dB and dC
    (a timing probe with wrong gradients) fwd+bwd read 4.08 ms, with plain stores instead 4.39 ms.
    Session 14: the backward's state loop without sums across lanes for dA (`_da_parts`), g at the
    tile's first step by a lane gather instead of a masked sum, dy reversed once per tile rather than
    C dy per state: 742 -> 648 instructions per 512 updates offline (`python -m kernels.sass_stats`,
    triton 3.6; floor 1.68 -> 1.47 ms at that shape); on the H100 (session 15, bf16, from a CUDA graph)
    fwd+bwd 4.41 -> 4.12 ms (the backward 3.60 -> 3.31); the gather and reversal part slowed fp32 and
    one-tile programs, so it now applies to 16-bit inputs whose programs walk several tiles only
    (`_rev_lean`; fp32 7.21 -> 6.97 ms, Zoology bf16 0.92 ms; tune_scans.md run 15).
  - why (`python -m kernels.sass_stats`, an offline sm_90 compile; triton 3.6 on the GPU host): the
    backward uses 255 registers per thread, so only 8 one-warp programs fit on an SM, and its state
    loop issued ~820 warp instructions per 512 updates (FMUL/FFMA of the two scans' combines, ~110
    lane shuffles, ~110 selects, the masked sums that pick one state or the tile's last column):
    >= 1.85 ms at that shape, the rest being latency that 8 warps per SM do not hide (now 648: the two
    scans, 85 shuffles, 62 selects; the masked sums are gone). Register caps
    trade that for spills and lose (tune runs 4-5). A backward over all states at once ([BLOCK_D, N,
    BLOCK_T] tiles, as the forward) lost: 7.2-14 ms (session 5, scripts/experiments/ss_bwd_states.py).
    In such tiles triton replicates the per-(d, t) work (softplus, sigmoids) over the lanes of the N
    axis, and a reverse scan adds lane shuffles (session 7's variant of it, not committed, compiled to
    more instructions per update than this backward). The forward, over all states at once, needs
    124 registers and ~640 instructions per 1024 updates (>= 0.72 ms; measured 1.07 ms): it was
    1.91 ms as a loop over states with 168 registers and spills.

Variants (`VARIANT` picks the shipped one; `kernels.tune_scans` times both):
  - "time" (shipped). Its forward (TILES["time"]["fwd"] = "lane", shipped) runs one channel per lane,
    sequential in time, with every state of the channel in the lane's registers
    (`_ss_fwd_lane_kernel`): no scan and no sum across lanes, one exp2, two FMUL and two FFMA per
    state update (12.3 instructions per update in all at 32 channels per program, 15.7 at 16, against
    19.5 for the "states" forward below; 12.5 / 16.1 / 19.6 before exp by exp2 in softplus and the
    gate, 13.5 / 18.0 / 20.6 before the polynomial softplus;
    `kernels.sass_stats`). A lane loads its BLOCK_T steps of u, δ, z as one vector and every lane the
    same B, C tile; `_lane_steps` walks the steps by halving the tile (register renaming). Where a
    lane per channel gives too few programs to hide the step loop's latency, two lanes share a
    channel (`_lane_block_d`). The "states" forward (TILES["time"]["fwd"] = "states") and the backward
    put time along the lanes, as in mamba_ssm's CUDA kernel. The "states" forward holds
    [BLOCK_D, N, BLOCK_T] tiles of a = exp(ΔA) and x = ΔuB (u, δ, z, y as [BLOCK_D, 1, BLOCK_T],
    B, C as [1, N, BLOCK_T], contiguous in t: coalesced) and scans them along time with
    `tl.associative_scan` under (a1, x1) ∘ (a2, x2) = (a1 a2, a2 x1 + x2) (Blelloch 1990; Martin &
    Cundy 2018, arXiv 1709.04057), all states at once, the carried state entering through the first
    step (x_0 += a_0 h); y = Σ_n C_n h_n is a sum over the state axis. One exp2 per (d, n, t). The
    backward holds [BLOCK_D, BLOCK_T] tiles (BLOCK_T = the checkpoint spacing, longer than the
    forward's tiles) and loops over the states; B_n, C_n are [BLOCK_T] rows shared by the tile's
    channels. It walks the tiles from the end and,
    per state, recomputes h from the tile's checkpoint (a forward scan) and g by a reverse scan of
    (a_{t+1}, C_t dy_t), whose last step carries g from the tile to the right; Σ_n terms (du, dΔ,
    the recomputed y for dz) accumulate over the state loop, Σ_d terms (dB, dC) are atomic adds.
    a_{t+1} comes from Δ loaded one step ahead (a second exp2; the scan cannot shift a tensor).
  - "seq": sequential in time. The state is [BLOCK_D, N] in registers and takes one step per
    iteration; the backward recomputes the tile's states into a per-program scratch buffer
    ([BLOCK_T, BLOCK_D, N] fp32, a few KiB, L1/L2-resident), then steps back through the tile
    with g in registers. Also usable after the "time" forward (TILES["time"]["bwd"] = "seq"),
    which then checkpoints every TIME_SEQ_CK steps.
exp(ΔA) is computed as exp2(Δ (A log2 e)). dB, dC (summed over the channels of a group), dA, dD and
dδ_bias are accumulated in fp32 with atomic adds (relaxed in the sequential backward).

Long sequences with few (batch, channel) programs are cut into chunks in the forward (as in
`kernels.linear_recurrence`): a state-only pass per chunk, a carry across chunks (a linear
recurrence over chunks on [B, n_chunks, D·N]), and the final pass from each chunk's true state.
The "time" backward can be chunked the same way (TILES["time"]["bwd_chunks"]): a pass of the g
recurrence alone per chunk, the carries across chunks by a reverse linear recurrence over chunks,
then the gradient pass from each chunk's true carry. On (since session 4's H100 run): 18% faster
fwd+bwd at B=2 D=256 L=8192, no change where B·D/BLOCK_D already fills the GPU.
"""
from __future__ import annotations

import functools
import logging
from typing import Literal

import torch
import triton
import triton.language as tl

from .._host import cdiv, next_power_of_2
from ..linear_recurrence.triton_scan import (
    INTERPRETED,
    _sm_count,
    affine_combine,
    chunk_carries,
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
def _sigmoid(x):
    """1 / (1 + exp(-x)) through exp2, which triton lowers to one MUFU.EX2 (ex2.approx.ftz); tl.sigmoid
    and tl.exp use ex2.approx without ftz, which ptxas wraps in a range test and two predicated
    multiplies for subnormal results (8 float instructions per sigmoid instead of 12 on sm_90 with triton
    3.6, `python -m kernels.sass_stats --ops exp`). The forwards'
    gate uses it; the time backward keeps tl.sigmoid: with this one it took 1.03 ms fwd+bwd instead
    of 0.92 at B=256 D=256 L=256 N=16 (H100, bf16, from a CUDA graph; the forward alone 0.165 vs 0.171;
    scripts/experiments/ab_kernels.py)."""
    return 1.0 / (1.0 + tl.exp2(x * -1.4426950408889634))


@triton.jit
def _delta(dl_ptr, off, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Load δ and return `_delta_of` it; bias broadcasts against δ (e.g. [BLOCK_D, 1] for
    [BLOCK_D, BLOCK_T] tiles)."""
    return _delta_of(tl.load(dl_ptr + off, mask=mask, other=0.0).to(tl.float32), mask, bias, HAS_BIAS, SOFTPLUS)


@triton.jit
def _log1p_unit(y):
    """log(1 + y) for y in [0, 1] as y P(y), P the degree-8 Chebyshev fit of log1p(y)/y on [0, 1]
    (power basis, fp32), nine FMAs and no branch: softplus through it errs by <= 2.5e-7 relative from
    x = -80 to 100 (test_kernels_softplus_is_fp32_accurate, interpreted). log(1 + y) in fp32 loses y's
    low bits when it rounds 1 + y: relative error up to ~2^-24 / y, all of it below y ~ 6e-8."""
    p = 0.005186003632843494 * y - 0.029210267588496208
    p = p * y + 0.07754038274288177
    p = p * y - 0.13583941757678986
    p = p * y + 0.19055955111980438
    p = p * y - 0.24825648963451385
    p = p * y + 0.3331601023674011
    p = p * y - 0.4999925494194031
    p = p * y + 0.9999999403953552
    return p * y


@triton.jit
def _exp_neg(x):
    """exp(-x) for x >= 0 as exp2(y) (1 + r ln 2), y = fl(-x log2 e) and r the product's rounding error
    (one FMA, plus x times log2 e's own fp32 rounding): one MUFU.EX2 (triton lowers tl.exp2 to
    ex2.approx.ftz) and six FMUL/FFMA (sm_90, triton 3.6, `python -m kernels.sass_stats --ops exp`; tl.exp
    takes five instructions in all). exp2 of the rounded product alone, which is how tl.exp computes,
    errs by up to |x| 6e-8 relative (3.6e-6 at x = 60); results below 2^-126 (x > 87) flush to 0."""
    y = x * -1.4426950216293335                         # log2 e rounded to fp32
    r = tl.fma(x, -1.4426950216293335, -y) - x * 1.9259629889091e-08   # -x log2 e - y, to ~2^-48 x
    p = tl.exp2(y)
    return tl.fma(p, r * 0.6931471805599453, p)


@triton.jit
def _delta_of(raw, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """From loaded δ (fp32): (Δ = softplus(δ + bias) or δ + bias, 0 where masked; δ + bias).
    softplus(x) = max(x, 0) + log1p(exp(-|x|)): exact in exact arithmetic, and for x > 20 it is x
    in fp32, as torch's threshold; Δ below 2^-126 (x < -87) flushes to 0 (`_exp_neg`)."""
    if HAS_BIAS:
        raw = raw + bias
    dt = raw
    if SOFTPLUS:
        dt = tl.maximum(raw, 0.0) + _log1p_unit(_exp_neg(tl.abs(raw)))
    return tl.where(mask, dt, 0.0), raw


@triton.jit
def _ss_fwd_tile_loads(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, t0, t_end, cols, row, L, mask_d, bc_base, offs_n,
                       mask_n, HAS_Z: tl.constexpr, STATE_ONLY: tl.constexpr):
    """The forward's inputs of the tile starting at t0, in their dtype: u, δ as [BLOCK_D, 1, BLOCK_T],
    B, C as [1, BLOCK_N, BLOCK_T], z (0 where absent or masked; C and z only when y is written)."""
    offs_t = t0 + cols
    mask_t = offs_t < t_end
    m_dt = mask_d[:, None, None] & mask_t[None, None, :]
    off_dt = row[:, None, None] * L + offs_t[None, None, :]
    off_nt = bc_base + offs_n[None, :, None] * L + offs_t[None, None, :]
    m_nt = mask_n[None, :, None] & mask_t[None, None, :]
    u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0)
    dl = tl.load(dl_ptr + off_dt, mask=m_dt, other=0.0)
    b = tl.load(B_ptr + off_nt, mask=m_nt, other=0.0)
    c = tl.zeros_like(b)
    z = tl.zeros_like(u)
    if not STATE_ONLY:
        c = tl.load(C_ptr + off_nt, mask=m_nt, other=0.0)
        if HAS_Z:
            z = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0)
    return u, dl, b, c, z


@triton.jit
def _program_channels(pid, n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr):
    """A program's place: programs run over (batch, chunk of time, group, block of BLOCK_D channels),
    the channel block fastest. Returns its chunk, channels offs_d (global index) and mask_d, states
    offs_n, the [BLOCK_D, BLOCK_N] mask, row = b*D + d (the row of [B*D, L] and of [B*D, N]), the
    start of its group's B, C rows in [B, G, N, L] and its offsets in [B, n_chunks, D, N]."""
    dblk = pid % n_dblk
    grp = (pid // n_dblk) % G
    chunk = (pid // (n_dblk * G)) % n_chunks
    bidx = pid // (n_dblk * G * n_chunks)
    offs_dl = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_dl < Dg
    offs_d = grp * Dg + offs_dl
    offs_n = tl.arange(0, BLOCK_N)
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    row = bidx.to(tl.int64) * Dm + offs_d
    bc_base = (bidx.to(tl.int64) * G + grp) * N * L
    state_off = ((bidx.to(tl.int64) * n_chunks + chunk) * Dm + offs_d)[:, None] * N + offs_n[None, :]
    return chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off


@triton.jit
def _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS: tl.constexpr, HAS_D: tl.constexpr,
                    BLOCK_D: tl.constexpr):
    """(δ bias, D skip) of the channels, fp32, zeros where absent."""
    bias = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    Dv = tl.zeros([BLOCK_D], dtype=tl.float32)
    if HAS_D:
        Dv = tl.load(D_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return bias, Dv


@triton.jit
def _store_chunk_summary(A_ptr, pend_ptr, end_ptr, state_off, offs_d, offs_n, mask_dn, N, sum_dt, state):
    """A chunk's state-only pass ends by storing its map s -> pend s + end for the carry across
    chunks: pend = ∏ exp(Δ_t A) over the chunk = exp(A Σ Δ_t), end = the state it reached from 0."""
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    tl.store(pend_ptr + state_off, tl.exp2(A * sum_dt[:, None] * 1.4426950408889634), mask=mask_dn)
    tl.store(end_ptr + state_off, state, mask=mask_dn)


@triton.jit
def _store_last_state(last_ptr, row, offs_n, mask_dn, N, chunk, n_chunks, h):
    """h_L into [B, D, N] (row = b*D + d): only the sequence's last chunk writes it."""
    is_last = (offs_n[None, :] * 0 + chunk) == n_chunks - 1
    tl.store(last_ptr + row[:, None] * N + offs_n[None, :], h, mask=mask_dn & is_last)


@triton.jit
def _gated_y(y, u, z, Dv, HAS_D: tl.constexpr, HAS_Z: tl.constexpr):
    """The forward's output from y = C·h: y + D u, times silu(z) (Dv and z broadcast against u)."""
    if HAS_D:
        y += Dv * u
    if HAS_Z:
        zz = z.to(tl.float32)
        y = y * zz * _sigmoid(zz)
    return y


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
    chunk, offs_d, mask_d, offs_n, mask_dn, drow, bc_base, state_off = _program_channels(
        tl.program_id(0), n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    # exp(ΔA) = exp2(Δ (A log2 e)): one MUFU op per state element and step
    A2 = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32) \
        * 1.4426950408889634
    row = drow * L                                                  # [BLOCK_D] row starts in [B*D, L]
    bc_row = bc_base + offs_n * L                                   # [BLOCK_N] row starts of B, C
    # B_t, C_t loaded as [BLOCK_D, BLOCK_N] with stride 0 along D: they arrive in the state's layout
    bc_2d = bc_row[None, :] + tl.zeros([BLOCK_D, 1], dtype=tl.int64)
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    p = tl.full([BLOCK_D, BLOCK_N], 1.0, dtype=tl.float32)       # ∏ a over the chunk
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    ck_row = (drow * n_tiles)[:, None] * N + offs_n[None, :]
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    for t0 in range(t_start, t_end, BLOCK_T):
        if SAVE:   # state entering this tile, for the backward's recompute
            tl.store(ckpt_ptr + ck_row + (t0 // BLOCK_T) * N, h, mask=mask_dn)
        for t in range(t0, tl.minimum(t0 + BLOCK_T, t_end)):
            u = tl.load(u_ptr + row + t, mask=mask_d, other=0.0).to(tl.float32)
            dt, _ = _delta(dl_ptr, row + t, mask_d, bias, HAS_BIAS, SOFTPLUS)
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
                    y = y * zz * _sigmoid(zz)
                tl.store(y_ptr + row + t, y.to(y_ptr.dtype.element_ty), mask=mask_d)
    if STATE_ONLY:
        tl.store(pend_ptr + state_off, p, mask=mask_dn)
        tl.store(hend_ptr + state_off, h, mask=mask_dn)
    else:
        _store_last_state(last_ptr, drow, offs_n, mask_dn, N, chunk, n_chunks, h)


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
    _chunk, offs_d, mask_d, offs_n, mask_dn, drow, bc_base, _so = _program_channels(
        pid, n_dblk, G, 1, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    mask_n = offs_n < N
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    A2 = A * 1.4426950408889634
    row = drow * L
    bc_row = bc_base + offs_n * L
    # B_t, C_t are loaded as [BLOCK_D, BLOCK_N] (stride 0 along D: the same address in the lanes
    # of one n), so they arrive in the state's layout instead of being converted every step
    bc_2d = bc_row[None, :] + tl.zeros([BLOCK_D, 1], dtype=tl.int64)
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    # gn = a_{t+1} g_{t+1}: the part of ∂L/∂h_t carried from the right (∂L/∂h_L at the end)
    if HAS_DLAST:
        gn = tl.load(dlast_ptr + (drow * N)[:, None] + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    else:
        gn = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    ck_row = (drow * n_tiles)[:, None] * N + offs_n[None, :]
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
        DT, RAW = _delta(dl_ptr, off_dt, m_dt, bias[:, None], HAS_BIAS, SOFTPLUS)
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
def _ss_fwd_time_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                          y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                          Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                          HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                          SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                          SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_T: tl.constexpr, CK: tl.constexpr, PREFETCH: tl.constexpr):
    # Time along the lanes, all states at once: u, δ, z, y move as [BLOCK_D, 1, BLOCK_T] tiles and B, C
    # as [1, BLOCK_N, BLOCK_T] tiles (contiguous in t: coalesced), a = exp(ΔA) and x = ΔuB are
    # [BLOCK_D, BLOCK_N, BLOCK_T], and one `tl.associative_scan` along time covers every (channel,
    # state). The carried state enters through the first step (x_0 += a_0 h_carry), so the scan yields
    # h_t itself; the carry to the next tile is its last column, and y = Σ_n C_n h_n a sum over the
    # state axis. One exp2 per (d, n, t); softplus and the gate once per (d, t). Shapes as in
    # `_ss_fwd_seq_kernel`, except that checkpoints are CK steps apart: the state entering a tile is
    # stored where a checkpoint starts (tiles shorter than CK) and, for tiles longer than CK, the
    # states after every CK-th step inside it are masked stores of the scan.
    chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off = _program_channels(
        tl.program_id(0), n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0)
    else:
        h = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    # exp(ΔA) = exp2(Δ (A log2 e)); padded states have A = 0, B = 0: they stay 0
    A2 = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32) \
        * 1.4426950408889634
    mask_n = offs_n < N
    cols = tl.arange(0, BLOCK_T)
    first = (cols == 0)[None, None, :]
    last = (cols == BLOCK_T - 1)[None, None, :]
    sum_dt = tl.zeros([BLOCK_D], dtype=tl.float32)                  # Σ Δ over the chunk (STATE_ONLY)
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    bias3 = bias[:, None, None]
    # 3-d loads ([BLOCK_D, 1, BLOCK_T] and [1, BLOCK_N, BLOCK_T]): their coalesced layout, time
    # contiguous in each thread, is the one the scan over time wants. PREFETCH: each tile's u, δ, B
    # (and C, z) are loaded one tile ahead, in the input dtype, so that their latency overlaps the
    # previous tile's scan (see `_prefetch`).
    if PREFETCH:
        u_n, dl_n, b_n, c_n, z_n = _ss_fwd_tile_loads(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, t_start, t_end, cols, row,
                                                      L, mask_d, bc_base, offs_n, mask_n, HAS_Z, STATE_ONLY)
    for t0 in range(t_start, t_end, BLOCK_T):
        if PREFETCH:
            u_c, dl_c, b_c, c_c, z_c = u_n, dl_n, b_n, c_n, z_n
            u_n, dl_n, b_n, c_n, z_n = _ss_fwd_tile_loads(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, t0 + BLOCK_T, t_end,
                                                          cols, row, L, mask_d, bc_base, offs_n, mask_n, HAS_Z,
                                                          STATE_ONLY)
        else:
            u_c, dl_c, b_c, c_c, z_c = _ss_fwd_tile_loads(u_ptr, dl_ptr, B_ptr, C_ptr, z_ptr, t0, t_end, cols, row,
                                                          L, mask_d, bc_base, offs_n, mask_n, HAS_Z, STATE_ONLY)
        offs_t = t0 + cols
        mask_t = offs_t < t_end
        m_dt = mask_d[:, None, None] & mask_t[None, None, :]
        off_dt = row[:, None, None] * L + offs_t[None, None, :]
        u = u_c.to(tl.float32)
        dt, _ = _delta_of(dl_c.to(tl.float32), m_dt, bias3, HAS_BIAS, SOFTPLUS)   # masked steps: Δ = 0, a = 1
        b = b_c.to(tl.float32)
        a = tl.exp2(dt * A2[:, :, None])
        x = (dt * u) * b
        x = tl.where(first, x + a * h[:, :, None], x)
        _pa, hs = tl.associative_scan((a, x), 2, affine_combine)
        if SAVE:   # state entering this tile (if a checkpoint starts here), those entering checkpoints inside it
            tl.store(ckpt_ptr + (row[:, None] * n_tiles + t0 // CK) * N + offs_n[None, :], h,
                     mask=mask_dn & (t0 % CK == 0))
            if CK < BLOCK_T:
                m_ck = mask_dn[:, :, None] & (((cols + 1) % CK == 0) & (cols < BLOCK_T - 1)
                                              & (offs_t + 1 < t_end))[None, None, :]
                off_ck = (row[:, None, None] * n_tiles + ((offs_t + 1) // CK)[None, None, :]) * N \
                    + offs_n[None, :, None]
                tl.store(ckpt_ptr + off_ck, hs, mask=m_ck)
        h = tl.sum(tl.where(last, hs, 0.0), axis=2)
        if STATE_ONLY:
            sum_dt += tl.sum(tl.sum(dt, axis=2), axis=1)
        else:
            y = _gated_y(tl.sum(hs * c_c.to(tl.float32), axis=1, keep_dims=True), u, z_c, Dv[:, None, None],
                         HAS_D, HAS_Z)
            tl.store(y_ptr + off_dt, y.to(y_ptr.dtype.element_ty), mask=m_dt)
    if STATE_ONLY:
        _store_chunk_summary(A_ptr, pend_ptr, hend_ptr, state_off, offs_d, offs_n, mask_dn, N, sum_dt, h)
    else:
        _store_last_state(last_ptr, row, offs_n, mask_dn, N, chunk, n_chunks, h)


@triton.jit
def _halves(x):
    """x [..., T] (T >= 2, the last axis inside one thread) -> (x[..., :T/2], x[..., T/2:]), by register
    renaming (reshape, permute, split: no data moves). 2-d and 3-d."""
    T: tl.constexpr = x.shape[-1]
    if len(x.shape) == 2:
        y = tl.permute(tl.reshape(x, [x.shape[0], 2, T // 2]), (0, 2, 1))
    else:
        y = tl.permute(tl.reshape(x, [x.shape[0], x.shape[1], 2, T // 2]), (0, 1, 3, 2))
    return tl.split(y)


@triton.jit
def _concat(x1, x2):
    """[R, T], [R, T] -> [R, 2T] along the last axis (the inverse of `_halves`)."""
    T: tl.constexpr = x1.shape[-1]
    return tl.reshape(tl.permute(tl.join(x1, x2), (0, 2, 1)), [x1.shape[0], 2 * T])


@triton.jit
def _thread_rows(p, mask_d, N, BLOCK_N: tl.constexpr):
    """[BLOCK_D, BLOCK_N] fp32 with row d = p[d][0:BLOCK_N] (0 from column N on and where d is masked),
    each row inside one thread: BLOCK_N loads of [BLOCK_D] concatenated (a 2-d load would spread a
    row over lanes, its coalesced layout)."""
    if BLOCK_N == 1:
        has_n = (mask_d.to(tl.int32) * 0 + N) > 0
        return tl.reshape(tl.load(p, mask=mask_d & has_n, other=0.0).to(tl.float32), [p.shape[0], 1])
    else:
        return _concat(_thread_rows(p, mask_d, N, BLOCK_N // 2),
                       _thread_rows(p + BLOCK_N // 2, mask_d, N - BLOCK_N // 2, BLOCK_N // 2))


@triton.jit
def _lane_steps(h, dt, du, b, c, A2, STATE_ONLY: tl.constexpr):
    """The recurrence over one tile's steps, in order, in registers: h [BLOCK_D, BLOCK_N] fp32; dt = Δ,
    du = Δu [BLOCK_D, T] fp32; b, c [BLOCK_D, BLOCK_N, T] (any float dtype); A2 = A log2 e. Returns h
    after the tile and y = Σ_n c h per step, [BLOCK_D, T] (dt itself when STATE_ONLY). Halves the tile
    until one step is left (T is a power of 2)."""
    if dt.shape[1] == 1:
        BD: tl.constexpr = dt.shape[0]
        BN: tl.constexpr = b.shape[1]
        a = tl.exp2(tl.reshape(dt, [BD])[:, None] * A2)
        h = a * h + tl.reshape(du, [BD])[:, None] * tl.reshape(b, [BD, BN]).to(tl.float32)
        if STATE_ONLY:
            y = dt
        else:
            y = tl.reshape(tl.sum(h * tl.reshape(c, [BD, BN]).to(tl.float32), axis=1), [BD, 1])
        return h, y
    else:
        dt1, dt2 = _halves(dt)
        du1, du2 = _halves(du)
        b1, b2 = _halves(b)
        c1, c2 = _halves(c)
        h, y1 = _lane_steps(h, dt1, du1, b1, c1, A2, STATE_ONLY)
        h, y2 = _lane_steps(h, dt2, du2, b2, c2, A2, STATE_ONLY)
        return h, _concat(y1, y2)


@triton.jit
def _ss_fwd_lane_loads(u_ptr, dl_ptr, z_ptr, t0, t_end, cols, row, L, mask_d, HAS_Z: tl.constexpr,
                       STATE_ONLY: tl.constexpr):
    """u, δ, z of the tile starting at t0 as [BLOCK_D, BLOCK_T] in their dtype (z: 0 where absent)."""
    offs_t = t0 + cols
    m_dt = mask_d[:, None] & (offs_t < t_end)[None, :]
    off_dt = row[:, None] * L + offs_t[None, :]
    u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0)
    dl = tl.load(dl_ptr + off_dt, mask=m_dt, other=0.0)
    z = tl.zeros_like(u)
    if HAS_Z and not STATE_ONLY:
        z = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0)
    return u, dl, z


@triton.jit
def _ss_fwd_lane_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
                        y_ptr, init_ptr, ckpt_ptr, last_ptr, pend_ptr, hend_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr,
                        SAVE: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_T: tl.constexpr, CK: tl.constexpr, PREFETCH: tl.constexpr):
    # One warp; BLOCK_D = 32 channels (a lane each) or 16 (two lanes each, half the states), sequential
    # in time, every state of a channel in its lane(s)' registers: h and A [BLOCK_D, BLOCK_N]. u, δ, z, y
    # move as [BLOCK_D, BLOCK_T] tiles (a lane's BLOCK_T steps are one vector load); B and C as
    # [BLOCK_D, BLOCK_N, BLOCK_T] tiles broadcast over the channels (every lane loads the same
    # addresses: one L1 wavefront), so each lane holds the steps' B_t, C_t. `_lane_steps` walks the
    # tile's steps in registers: per (d, n, t) one exp2, two FMUL and two FFMA, and nothing crosses
    # lanes (y = Σ_n C h is a sum inside the lane). Shapes and chunks as `_ss_fwd_time_kernel`;
    # checkpoints (SAVE) every CK steps, CK a multiple of BLOCK_T.
    chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off = _program_channels(
        tl.program_id(0), n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    A2 = _thread_rows(A_ptr + offs_d * N, mask_d, N, BLOCK_N) * 1.4426950408889634   # padded states: A = 0
    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_dn, other=0.0) + tl.zeros_like(A2)   # A2's layout, once
    else:
        h = tl.zeros_like(A2)
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    cols = tl.arange(0, BLOCK_T)
    mask_n = offs_n < N
    off_bc = tl.broadcast_to(offs_n[None, :, None] * L + cols[None, None, :], [BLOCK_D, BLOCK_N, BLOCK_T])
    sum_dt = tl.zeros([BLOCK_D], dtype=tl.float32)                  # Σ Δ over the chunk (STATE_ONLY)
    t_start = chunk * chunk_len
    t_end = tl.minimum(t_start + chunk_len, L)
    if PREFETCH:
        u_n, dl_n, z_n = _ss_fwd_lane_loads(u_ptr, dl_ptr, z_ptr, t_start, t_end, cols, row, L, mask_d, HAS_Z,
                                            STATE_ONLY)
    for t0 in range(t_start, t_end, BLOCK_T):
        if SAVE:
            if t0 % CK == 0:
                tl.store(ckpt_ptr + (row[:, None] * n_tiles + t0 // CK) * N + offs_n[None, :], h, mask=mask_dn)
        if PREFETCH:
            u_c, dl_c, z_c = u_n, dl_n, z_n
            u_n, dl_n, z_n = _ss_fwd_lane_loads(u_ptr, dl_ptr, z_ptr, t0 + BLOCK_T, t_end, cols, row, L, mask_d,
                                                HAS_Z, STATE_ONLY)
        else:
            u_c, dl_c, z_c = _ss_fwd_lane_loads(u_ptr, dl_ptr, z_ptr, t0, t_end, cols, row, L, mask_d, HAS_Z,
                                                STATE_ONLY)
        offs_t = t0 + cols
        mask_t = offs_t < t_end
        m_dt = mask_d[:, None] & mask_t[None, :]
        m_bc = mask_n[None, :, None] & mask_t[None, None, :]
        u = u_c.to(tl.float32)
        dt, _ = _delta_of(dl_c.to(tl.float32), m_dt, bias[:, None], HAS_BIAS, SOFTPLUS)   # masked: Δ = 0, a = 1
        b = tl.load(B_ptr + bc_base + t0 + off_bc, mask=m_bc, other=0.0)
        c = tl.zeros_like(b)
        if not STATE_ONLY:
            c = tl.load(C_ptr + bc_base + t0 + off_bc, mask=m_bc, other=0.0)
        h, y = _lane_steps(h, dt, dt * u, b, c, A2, STATE_ONLY)
        if STATE_ONLY:
            sum_dt += tl.sum(dt, axis=1)
        else:
            y = _gated_y(y, u, z_c, Dv[:, None], HAS_D, HAS_Z)
            tl.store(y_ptr + row[:, None] * L + offs_t[None, :], y.to(y_ptr.dtype.element_ty), mask=m_dt)
    if STATE_ONLY:
        _store_chunk_summary(A_ptr, pend_ptr, hend_ptr, state_off, offs_d, offs_n, mask_dn, N, sum_dt, h)
    else:
        _store_last_state(last_ptr, row, offs_n, mask_dn, N, chunk, n_chunks, h)


@triton.jit
def _ss_bwd_state_loads(A_ptr, B_ptr, C_ptr, ckpt_ptr, g_src, g_step, g_on, n, N, L, offs_d, mask_d, offs_t, mask_t,
                        bc_base, ck, STATE_ONLY: tl.constexpr):
    """State n's inputs to the backward's state loop over one tile (nothing when n = N): A[:, n] fp32,
    the C and B rows over the tile in their dtype, the checkpointed h entering the tile (B and h only
    when the gradients are formed) and the carry g right of the tile (at g_src + n * g_step; 0 where
    not g_on)."""
    m_dn = mask_d & (offs_d * 0 + n < N)
    m_tn = mask_t & (offs_t * 0 + n < N)
    A_n = tl.load(A_ptr + offs_d * N + n, mask=m_dn, other=0.0).to(tl.float32)
    c = tl.load(C_ptr + bc_base + n * L + offs_t, mask=m_tn, other=0.0)
    g_in = tl.load(g_src + n * g_step, mask=m_dn & g_on, other=0.0).to(tl.float32)
    b = tl.zeros_like(c)
    h0 = tl.zeros_like(A_n)
    if not STATE_ONLY:
        b = tl.load(B_ptr + bc_base + n * L + offs_t, mask=m_tn, other=0.0)
        h0 = tl.load(ckpt_ptr + ck + n, mask=m_dn, other=0.0)
    return A_n, c, b, h0, g_in


@triton.jit
def _ss_bwd_time_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                        ckpt_ptr, dlast_ptr,
                        du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                        ginit_ptr, pend_ptr, gend_ptr, gbuf_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_tiles, n_chunks, chunk_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, HAS_GINIT: tl.constexpr,
                        STATE_ONLY: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_T: tl.constexpr, REV_INDEX: tl.constexpr, REV_GATHER: tl.constexpr,
                        PREFETCH: tl.constexpr, CARRY_MEM: tl.constexpr, DA_P: tl.constexpr,
                        DA_MEM: tl.constexpr, REV_LEAN: tl.constexpr):
    # Time along the lanes, tiles from the last: per state n, recompute h over the tile from its
    # checkpoint (a forward scan), then g_t = a_{t+1} g_{t+1} + C_t dy_t by a reverse scan whose last
    # step carries the gradient from the tile to the right (c_last += a_{t1} g_{t1}); Σ_n terms (du,
    # dΔ, the recomputed y for dz) accumulate over the loop, Σ_d terms (dB, dC) are atomic adds.
    # REV_INDEX: the reverse scan carries the time index so that its combine cannot depend on the
    # argument order triton uses for reverse scans; else `affine_combine` with reverse=True (first
    # argument = the earlier one in scan order, i.e. the later time step). REV_GATHER: no reverse scan
    # at all: the scan's inputs are taken in reversed time order (Δ_{t+1} once per tile, C_n dy per
    # state, by a lane gather), scanned forward, and g gathered back;
    # triton 3.6 lowers a reverse scan as flip + scan + flip (~6x the lane shuffles of a forward scan).
    # Chunks over time (n_chunks > 1, chunk_tiles tiles each): STATE_ONLY runs only the g recurrence
    # of its chunk from a zero carry and stores gend = g at the chunk's first step and pend =
    # ∏ a_{t+1} over the chunk = exp(A Σ Δ_{t+1}); the carries across chunks (a reverse linear
    # recurrence) come back as ginit = g at the first step after each chunk (∂L/∂h_L for the last).
    # u, delta, z, dout, du, ddelta, dz: [B, D, L]; A: [D, N]; B, C, dB, dC: [B, G, N, L] (dB, dC
    # fp32); ckpt: [B, D, n_tiles, N]; dlast: [B, D, N]; ginit, pend, gend: [B, n_chunks, D, N];
    # dA: [D, N], dD, dbias: [D] fp32; gbuf: [programs, N, BLOCK_D] fp32.
    # The carried g of each state is loaded per state, with the state's other inputs: at the chunk's
    # last tile from ginit, ∂L/∂h_L or 0, at the tiles before it from the program's gbuf, where each
    # tile stores it (CARRY_MEM: the program walks several tiles; STATE_ONLY: the chunk's summary).
    # Session 9 (results/bench/tune_scans.md run 12): before, g lived in a [BLOCK_D, BLOCK_N] register
    # tile from which the state loop picked state n and into which it put it back (~80 of the loop's
    # ~820 instructions per iteration, `kernels.sass_stats`); through gbuf, H100 bf16 fwd+bwd 4.62 ->
    # 4.44 ms at B=8 D=2048 L=4096 N=16 (same call). dA by an atomic add per (tile, state) instead of
    # its register tile was slower everywhere (+2-35%).
    # dB, dC: triton converts each [BLOCK_T] sum (8 steps per lane) to 4 steps per lane for the 4-wide
    # atomics, ~16 lane shuffles per state and tile. Splitting the sums instead into the first and last 4
    # of every 8 steps (two atomics, no shuffles; session 11, not kept) cut the loop from 742 to 683
    # instructions but left the lanes' addresses 32 bytes apart, so each atomic touched twice the memory:
    # H100 bf16 fwd+bwd 4.41 -> 4.72 ms at that shape, 0.92 -> 1.29 ms at B=256 D=256 L=256
    # (`python scripts/experiments/kernel_variants.py ss-atomics`).
    chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off = _program_channels(
        tl.program_id(0), n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    # the program's scratch (gbuf): the carries [N, BLOCK_D], then (DA_MEM, only with CARRY_MEM) dA's
    # partial sums [N, BLOCK_D, DA_P]
    gbuf = gbuf_ptr + tl.program_id(0).to(tl.int64) * N * BLOCK_D * (1 + DA_P * DA_MEM)
    da_buf = gbuf + N * BLOCK_D + tl.arange(0, BLOCK_D)[:, None] * DA_P + tl.arange(0, DA_P)[None, :]
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    # the carry = ∂L/∂h at the first step right of the current tile (gbuf: state n at n * BLOCK_D)
    o_buf = gbuf + tl.arange(0, BLOCK_D)
    if HAS_GINIT:
        g_init = ginit_ptr + ((row - offs_d) * n_chunks + chunk * Dm + offs_d) * N     # [B, n_chunks, D, N]
    elif HAS_DLAST:
        g_init = dlast_ptr + row * N
    else:
        g_init = o_buf
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)   # dA where a program has one tile
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    sum_dtn = tl.zeros([BLOCK_D], dtype=tl.float32)             # Σ Δ_{t+1} over the chunk (STATE_ONLY)
    cols = tl.arange(0, BLOCK_T)
    first = (cols == 0)[None, :]
    last = (cols == BLOCK_T - 1)[None, :]
    tile_lo = chunk * chunk_tiles
    tile_hi = tl.minimum(tile_lo + chunk_tiles, n_tiles)
    for k in range(0, tile_hi - tile_lo):
        tile = tile_hi - 1 - k
        offs_t = tile * BLOCK_T + cols
        mask_t = offs_t < L
        m_dt = mask_d[:, None] & mask_t[None, :]
        off_dt = row[:, None] * L + offs_t[None, :]
        # Δ_{t+1}: the decay a_{t+1} that carries g_{t+1} back to g_t (0 past the end: a = 1)
        dt_next, _ = _delta(dl_ptr, off_dt + 1, mask_d[:, None] & (offs_t + 1 < L)[None, :], bias[:, None],
                            HAS_BIAS, SOFTPLUS)
        dout = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            dy = dout * zz * sg
        else:
            dy = dout
        dy = tl.where(m_dt, dy, 0.0)
        if STATE_ONLY:
            sum_dtn += tl.sum(dt_next, axis=1)
        else:
            u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            dt, raw = _delta(dl_ptr, off_dt, m_dt, bias[:, None], HAS_BIAS, SOFTPLUS)
            du = dt * u
        idx = tl.broadcast_to(offs_t[None, :], [BLOCK_D, BLOCK_T])
        if REV_GATHER:
            rev_t = BLOCK_T - 1 - cols                          # lane j: step t1 - j
            rev = tl.broadcast_to(rev_t[None, :], [BLOCK_D, BLOCK_T])
            dt_next_r = tl.gather(dt_next, rev, 1)
            if REV_LEAN:
                dy_r = tl.gather(dy, rev, 1)                    # once per tile; C's row reversed per state
        gB = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)     # Σ_n g B
        sA = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)     # Σ_n A g a h_{t-1}
        y = tl.zeros([BLOCK_D, BLOCK_T], dtype=tl.float32)      # Σ_n C h (for dz)
        ck = (row * n_tiles + tile) * N
        if DA_MEM:
            da_add = tl.full([BLOCK_D, DA_P], 0, tl.int32) + k > 0    # dA's partials hold earlier tiles
        g_src = tl.where(k == 0, g_init, o_buf)
        g_step = tl.where(k == 0, 1, BLOCK_D)
        g_on = (k > 0) | (HAS_GINIT or HAS_DLAST)
        # PREFETCH: state n's A, C, B rows, checkpoint and carry are loaded one state ahead
        if PREFETCH:
            A_nx, c_nx, b_nx, h0_nx, g_nx = _ss_bwd_state_loads(A_ptr, B_ptr, C_ptr, ckpt_ptr, g_src, g_step, g_on, 0,
                                                                N, L, offs_d, mask_d, offs_t, mask_t, bc_base, ck,
                                                                STATE_ONLY)
        for n in range(0, N):
            if PREFETCH:
                A_n, c, b, h0, g_in = A_nx, c_nx.to(tl.float32), b_nx.to(tl.float32), h0_nx, g_nx
                A_nx, c_nx, b_nx, h0_nx, g_nx = _ss_bwd_state_loads(A_ptr, B_ptr, C_ptr, ckpt_ptr, g_src, g_step, g_on,
                                                                    n + 1, N, L, offs_d, mask_d, offs_t, mask_t,
                                                                    bc_base, ck, STATE_ONLY)
            else:
                A_n, c, b, h0, g_in = _ss_bwd_state_loads(A_ptr, B_ptr, C_ptr, ckpt_ptr, g_src, g_step, g_on, n, N, L,
                                                          offs_d, mask_d, offs_t, mask_t, bc_base, ck, STATE_ONLY)
                c, b = c.to(tl.float32), b.to(tl.float32)
            a2 = A_n * 1.4426950408889634
            # 1. g_t, the gradient reaching h_t; g_in: g right of the tile
            g_in = g_in[:, None]
            if REV_GATHER:
                a_next_r = tl.exp2(dt_next_r * a2[:, None])
                if REV_LEAN:
                    cg_r = dy_r * tl.gather(c, rev_t, 0)[None, :]
                else:
                    cg_r = tl.gather(dy * c[None, :], rev, 1)
                cg_r = tl.where(first, cg_r + a_next_r * g_in, cg_r)
                _pg, g_r = tl.associative_scan((a_next_r, cg_r), 1, affine_combine)
                if REV_LEAN:   # g at the tile's first step: a gather of the last column, not a masked sum
                    g_first = tl.reshape(tl.gather(g_r, tl.full([BLOCK_D, 1], BLOCK_T - 1, tl.int32), 1), [BLOCK_D])
                else:
                    g_first = tl.sum(tl.where(last, g_r, 0.0), axis=1)
                if not STATE_ONLY:
                    g = tl.gather(g_r, rev, 1)
            else:
                a_next = tl.exp2(dt_next * a2[:, None])
                cg = dy * c[None, :]
                cg = tl.where(last, cg + a_next * g_in, cg)
                if REV_INDEX:
                    _pg, g, _i = tl.associative_scan((a_next, cg, idx), 1, _suffix_combine, reverse=True)
                else:
                    _pg, g = tl.associative_scan((a_next, cg), 1, affine_combine, reverse=True)
                g_first = tl.sum(tl.where(first, g, 0.0), axis=1)
            if CARRY_MEM or STATE_ONLY:
                tl.store(o_buf + n * BLOCK_D, g_first)   # read at the next tile (or as the chunk's summary)
            if not STATE_ONLY:
                # 2. h_t inside the tile, from its checkpoint
                a = tl.exp2(dt * a2[:, None])
                x = du * b[None, :]
                _pa, hs = tl.associative_scan((a, tl.where(first, x + a * h0[:, None], x)), 1, affine_combine)
                # 3. gradients; s = g_t a_t h_{t-1} = g_t (h_t - x_t)
                s = g * (hs - x)
                gB += g * b[None, :]
                sA += s * A_n[:, None]
                if DA_MEM:      # dA: Σ_t Δ s over each DA_P-th of the tile (in a lane), added to its partial
                    part = tl.sum(tl.reshape(s * dt, [BLOCK_D, DA_P, BLOCK_T // DA_P]), axis=2)
                    p_da = da_buf + n * BLOCK_D * DA_P
                    part += tl.load(p_da, mask=da_add, other=0.0)
                    tl.store(p_da, part)
                else:           # e.g. one tile per program: the register tile, no scratch (`_da_parts`)
                    dA_acc += tl.where(offs_n[None, :] == n, tl.sum(s * dt, axis=1)[:, None], 0.0)
                tl.atomic_add(dB_ptr + bc_base + n * L + offs_t, tl.sum(g * du, axis=0), mask=mask_t,
                              sem="relaxed")
                tl.atomic_add(dC_ptr + bc_base + n * L + offs_t, tl.sum(hs * dy, axis=0), mask=mask_t,
                              sem="relaxed")
                if HAS_Z:
                    y += hs * c[None, :]
        if CARRY_MEM:
            tl.debug_barrier()   # the carries stored by this tile's state loop, before the next tile loads them
        if not STATE_ONLY:
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
    if STATE_ONLY:
        tl.debug_barrier()
        gc = tl.load(gbuf + offs_n[None, :] * BLOCK_D + tl.arange(0, BLOCK_D)[:, None], mask=offs_n[None, :] < N,
                     other=0.0)
        _store_chunk_summary(A_ptr, pend_ptr, gend_ptr, state_off, offs_d, offs_n, mask_dn, N, sum_dtn, gc)
    else:
        if DA_MEM:
            tl.debug_barrier()   # the partials stored by every lane, before they are summed
            parts = tl.load(da_buf[:, None, :] + offs_n[None, :, None] * (BLOCK_D * DA_P),
                            mask=(offs_n < N)[None, :, None], other=0.0)                 # [BLOCK_D, N, DA_P]
            dA_acc = tl.sum(parts, axis=2)
        tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn, sem="relaxed")
        if HAS_D:
            tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")


# Tiles per variant. "time" (shipped): fwd_block_t = the forward's tile, block_t = the backward's
# tile = the checkpoint spacing (a multiple of fwd_block_t, or TIME_SEQ_CK with the "seq" backward),
# (fwd|bwd)_block_d channels per program, (fwd|bwd)_warps, (fwd|bwd)_maxnreg optional register caps;
# bwd "time" (its own backward; rev "plain": reverse scan in triton's
# argument order where `reverse_scan_in_order` confirms it for the tile, else and for "index" an
# order-proof combine carrying the time index; "gather": no reverse scan, see below) or "seq" (the sequential
# backward, with checkpoints every TIME_SEQ_CK steps); bwd_chunks: chunk the "time" backward over
# time when it has few programs (see `_bwd_chunks`). "seq": (BLOCK_D, num_warps) per direction,
# block_t = checkpoint spacing = the backward's recompute tile; bwd_block_d=8 with 1 warp keeps the
# sums over D inside the warp. `python -m kernels.tune_scans` on the H100 (torch 2.11, triton 3.6),
# bf16 fwd+bwd (results/bench/tune_scans.md), runs 1-3: "time" with the per-state forward 7.2 ms at
# B=8 D=2048 L=4096 N=16 and 1.6 ms at B=256 D=256 L=256 (one warp per program is fastest; rev
# "index" 10.9 ms, the "seq" backward 13.9 ms, 2 warps 13.2 ms), against 15.9 / 3.8 ms for the best
# earlier variant (a one-channel-per-thread sequential forward with the "seq" backward, since removed).
# Session 4 (run 4): capping the old per-state forward at 168 registers gained 9-13%; capping the
# backward (168 or 128) slows it (+1 / +5 ms). The chunked backward is on: 1.15 vs 1.41 ms fwd+bwd
# at B=2 D=256 L=8192, equal elsewhere.
# Session 5 (runs 5-6): rev "gather" (no reverse scan: lane gathers around a forward scan; triton
# 3.6 lowers a reverse scan as flip + scan + flip) makes the backward 13-14% faster: fwd+bwd 5.99
# vs 6.96 ms at B=8 D=2048 L=4096, 1.31 vs 1.53 ms at the Zoology shape. The forward over all
# states at once (fwd_block_t=32, fwd_block_d=2) replaces the loop over states: 1.07 vs 1.91 ms at
# B=8 D=2048 L=4096, 0.27 vs 0.46 ms Zoology, 0.24 vs 0.39 ms at B=2 D=256 L=8192.
# Session 9 (runs 8-10): the lane forward (fwd="lane"): bf16 forward 1.00 -> 0.90 ms at B=8 D=2048
# L=4096 N=16 (16 channels per program: two lanes per channel), 0.25 -> 0.19 ms at the Zoology shape.
# Run 11: a backward in the lane layout (scripts/experiments/ss_bwd_lane.py) is 2.4x slower or worse.
VARIANT = "time"
TILES = dict(seq=dict(block_t=32, fwd_block_d=8, fwd_warps=4, bwd_block_d=8, bwd_warps=1),
             time=dict(block_t=256, fwd_block_t=32, fwd_block_d=2, fwd_warps=1, bwd="time", bwd_block_d=2,
                       bwd_warps=1, rev="gather", bwd_chunks=True,
                       fwd="lane", lane_block_d=None, da_parts=True, rev_lean=None))
TIME_SEQ_CK = 32    # "time" forward + "seq" backward: checkpoint spacing = the seq backward's tile


def _time_bwd_seq(variant: str) -> bool:
    """True when the "time" forward is followed by the sequential ("seq") backward."""
    return variant == "time" and TILES["time"]["bwd"] == "seq"


PREFETCH_16BIT_ONLY = True   # tests switch it off to run the prefetching loops on fp32 inputs


def _prefetch(u: torch.Tensor) -> bool:
    """Whether the "time" kernels load one step ahead (PREFETCH): for 16-bit inputs only. H100, fwd+bwd
    (session 7, `python -m kernels.bench`, results/bench/scan_prefetch.md): bf16 4.97 vs 5.18 ms at
    B=8 D=2048 L=4096 N=16 and 1.05 vs 1.21 ms at the Zoology shape, but fp32 8.55 vs 7.61 ms (twice
    the registers per loaded row)."""
    return u.element_size() == 2 or not PREFETCH_16BIT_ONLY


def _maxnreg(variant: str, backward: bool) -> dict:
    """{"maxnreg": cap} where TILES caps the registers of a "time" kernel (fwd_maxnreg / bwd_maxnreg):
    at the default 255 registers only 8 one-warp programs fit on an SM, and these kernels are bound
    by latency (`python -m kernels.sass_stats`); a cap trades spills to L1 for occupancy."""
    cap = TILES[variant].get("bwd_maxnreg" if backward else "fwd_maxnreg") if variant == "time" else None
    return {} if cap is None or INTERPRETED else {"maxnreg": cap}


def _lane_fwd(variant: str) -> bool:
    """Whether the "time" variant's forward is the one-channel-per-lane kernel (TILES["time"]["fwd"] =
    "lane"), else the one over [BLOCK_D, N, BLOCK_T] tiles ("states")."""
    return variant == "time" and TILES["time"].get("fwd", "states") == "lane"


def _lane_block_d(rows: int, Dg: int, device) -> int:
    """Channels per program of the lane forward: 32 (a lane per channel, all its states in the lane)
    where that gives >= 8 programs per SM (two warps per scheduler hide the step loop's latency) or
    <= 1 per SM (the chunks over time then fill the GPU), else 16 (two lanes per channel, half the
    states each: twice the programs). TILES["time"]["lane_block_d"] overrides. H100, bf16 forward
    (results/bench/tune_scans.md runs 9-10): B=8 D=2048 L=4096 N=16 0.90 ms at 16 vs 1.13 at 32 (and
    1.01 for the "states" forward); B=256 D=256 L=256 0.19 at 32 vs 0.22 at 16 (0.25 "states")."""
    fixed = TILES["time"].get("lane_block_d")
    if fixed is not None:
        return fixed
    if INTERPRETED:
        return 2
    n_prog, sm = rows * cdiv(Dg, 32), _sm_count(device)
    return 32 if n_prog >= 8 * sm or n_prog <= sm else 16


def _blocks(variant: str, N: int, Dg: int, backward: bool, elem_size: int = 2,
            lane_block_d: int | None = None) -> tuple[int, int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_T, num_warps) for a variant; the backward's BLOCK_T is the checkpoint
    spacing. The lane forward (lane_block_d given): one warp, BLOCK_T one 16-byte vector of a lane's
    steps (8 16-bit, 4 fp32)."""
    block_n = next_power_of_2(N)
    cfg = TILES[variant]
    lane = lane_block_d is not None and not backward
    if INTERPRETED:   # the interpreter runs element by element: small tiles, several of them
        # "time": forward tiles of 4 inside the backward's tiles (checkpoints) of 8; with the "seq"
        # backward, checkpoints every 4 steps inside forward tiles of 8
        short = _time_bwd_seq(variant) == backward if variant == "time" else False
        return 2, block_n, 4 if short or lane else 8, 1 if lane else 4
    if lane:
        return lane_block_d, block_n, 16 // elem_size, 1
    block_t = TIME_SEQ_CK if backward and _time_bwd_seq(variant) else cfg["block_t"]
    if not backward and variant == "time":
        block_t = cfg["fwd_block_t"]
    block_d = cfg["bwd_block_d" if backward else "fwd_block_d"]
    warps = cfg["bwd_warps" if backward else "fwd_warps"]
    return min(block_d, next_power_of_2(Dg)), block_n, block_t, warps


@triton.jit
def _reverse_scan_probe_kernel(a_ptr, c_ptr, out_ptr, BLOCK_D: tl.constexpr, BLOCK_T: tl.constexpr):
    offs = tl.arange(0, BLOCK_D)[:, None] * BLOCK_T + tl.arange(0, BLOCK_T)[None, :]
    _p, g = tl.associative_scan((tl.load(a_ptr + offs), tl.load(c_ptr + offs)), 1, affine_combine, reverse=True)
    tl.store(out_ptr + offs, g)


@functools.cache
def reverse_scan_in_order(device: torch.device, block_d: int, block_t: int, warps: int) -> bool:
    """Whether this triton's `associative_scan(reverse=True)` passes a non-commutative combine its
    arguments in scan order (first = later time step) for a [block_d, block_t] fp32 tile on this
    device: the suffix recurrence g_t = c_t + a_t g_{t+1} is checked against PyTorch. Triton has had
    argument-order bugs here (triton-lang/triton#4362, #8412); the "time" backward relies on the
    order only when this holds, and otherwise uses the order-proof combine. Once per config and
    process; a probe that fails to compile or run counts as False."""
    gen = torch.Generator().manual_seed(0)
    a, c = torch.rand(block_d, block_t, generator=gen), torch.randn(block_d, block_t, generator=gen)
    ref, g = torch.zeros_like(c), torch.zeros(block_d)
    for t in reversed(range(block_t)):
        g = c[:, t] + a[:, t] * g
        ref[:, t] = g
    out = torch.full_like(c, float("nan"), device=device)
    try:
        _reverse_scan_probe_kernel[(1,)](a.to(device), c.to(device), out, BLOCK_D=block_d, BLOCK_T=block_t,
                                         num_warps=warps)
        ok = bool(torch.allclose(out.cpu(), ref, rtol=1e-4, atol=1e-5))
    except Exception as e:  # noqa: BLE001 - any failure means: do not rely on the order
        logging.getLogger(__name__).warning("reverse-scan probe failed (%s: %s)", type(e).__name__, e)
        ok = False
    if not ok:
        logging.getLogger(__name__).warning(
            "triton %s: associative_scan(reverse=True) does not keep the combine's argument order for a "
            "[%d, %d] tile with %d warps; the selective-scan backward uses the order-proof combine (slower)",
            triton.__version__, block_d, block_t, warps)
    return ok


def _da_parts(block_t: int) -> int:
    """DA_P of the "time" backward: dA's partial sums per (state, channel), one per lane at the shipped
    tile (BLOCK_T = 256 steps over one warp's 32 lanes, 8 in each), so that the state loop sums a state's
    Σ_t Δ s inside each lane and adds it to the lane's partial in memory, and nothing crosses lanes there.
    Before, a sum over the tile across lanes, then a select into a [BLOCK_D, N] register tile: replacing
    them took the loop from 742 to 708 instructions per iteration (`kernels.sass_stats`, triton 3.6). Only
    where a program walks several tiles (CARRY_MEM): the partials take 32x the carries' scratch, B D N
    x 132 bytes in all, which one-tile programs (e.g. B=256 D=256 L=256: 138 MB) keep the old way."""
    return min(32, block_t)


def _rev_lean(prefetch: bool, chunk_tiles: int) -> bool:
    """REV_LEAN of the "time" backward (rev="gather"): dy reversed once per tile and C's row per state,
    rather than the product C dy reversed per state, and g at the tile's first step by a gather of one
    column rather than a masked sum across the lanes (state loop 708 -> 648 instructions offline,
    `kernels.sass_stats`, triton 3.6). TILES["time"]["rev_lean"] overrides; by default where it was
    faster on the H100 (results/bench/tune_scans.md run 15, fwd+bwd from a CUDA graph, without -> with,
    both without dA's partials): 16-bit inputs (`_prefetch`) whose programs walk several tiles, bf16
    B=8 D=2048 L=4096 N=16 4.41 -> 4.29 ms; not fp32 (7.21 -> 7.77 ms at that shape, Zoology 1.62 ->
    1.67), nor one tile per program (bf16 Zoology shape B=256 D=256 L=256: 0.919 -> 0.932). With this
    choice against the lean form everywhere (medians of three): fp32 L=4096 7.51 -> 6.97 ms, Zoology
    1.69 -> 1.61, bf16 Zoology 0.935 -> 0.923, bf16 L=4096 unchanged (4.13)."""
    lean = TILES["time"].get("rev_lean")
    return (prefetch and chunk_tiles > 1) if lean is None else lean


def _bwd_chunks(n_prog: int, n_tiles: int, chunk_len: int | None, block_t: int,
                device: torch.device) -> tuple[int, int]:
    """(chunks, tiles per chunk) of the "time" backward: chunks over time when its n_prog programs
    would leave the GPU idle (about 4 per SM, >= 4 tiles per chunk), as in the forward; chunk_len
    (tests) forces the chunk length. Only while TILES["time"]["bwd_chunks"] is on."""
    if not TILES["time"].get("bwd_chunks", False):
        return 1, n_tiles
    if chunk_len is not None:
        chunk_tiles = cdiv(max(1, chunk_len), block_t)
    else:
        n_chunks = max(1, min(cdiv(4 * _sm_count(device), n_prog), cdiv(n_tiles, 4)))
        chunk_tiles = cdiv(n_tiles, n_chunks)
    return cdiv(n_tiles, chunk_tiles), chunk_tiles


# variant -> (forward, backward) kernels; checkpoints [B, D, L/(the backward's BLOCK_T), N]
_KERNELS = {"seq": (_ss_fwd_seq_kernel, _ss_bwd_seq_kernel), "time": (_ss_fwd_time_kernel, _ss_bwd_time_kernel)}


class SelectiveScanFn(torch.autograd.Function):
    """Saves inputs and the per-tile entering states; the backward recomputes h per tile."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, variant):
        chunk_len_arg = chunk_len
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
        lane = _lane_fwd(variant)
        block_d, block_n, block_t, warps = _blocks(variant, N, Dg, backward=False, elem_size=u.element_size(),
                                                   lane_block_d=_lane_block_d(Bsz * G, Dg, u.device) if lane else None)
        ck = _blocks(variant, N, Dg, backward=True)[2]
        n_dblk, n_tiles = cdiv(Dg, block_d), cdiv(L, block_t)
        n_prog = Bsz * G * n_dblk
        if chunk_len is None:
            # "seq": about one wave of 48 warps per SM (~75% occupancy: the step loop hides its
            # latency with other programs); "time": ~4 programs per SM. Chunks of >= 4 tiles.
            sm = _sm_count(u.device)
            target = 48 * sm // warps if variant == "seq" else 4 * sm
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
                     num_warps=warps, **_maxnreg(variant, backward=False))
        if variant == "time":
            flags.update(CK=ck, PREFETCH=_prefetch(u))
            assert ck % block_t == 0, "checkpoints must fall on the forward's tiles"
        args = (u, delta, A, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
                delta_bias if delta_bias is not None else dummy)
        grid = (Bsz * G * n_dblk * n_chunks,)
        fwd_kernel = _ss_fwd_lane_kernel if lane else _KERNELS[variant][0]
        init = None
        if n_chunks > 1:
            # 1. state-only pass per chunk; 2. carry across chunks (a linear recurrence over chunks)
            pend = torch.empty(Bsz, n_chunks, Dm, N, dtype=torch.float32, device=u.device)
            hend = torch.empty_like(pend)
            fwd_kernel[grid](*args, dummy, dummy, dummy, dummy, pend, hend,
                             Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                             HAS_INIT=False, STATE_ONLY=True, SAVE=False, **flags)
            init = chunk_carries(pend, hend, None)
        # 3. final pass: y, per-tile checkpoints, last state
        fwd_kernel[grid](*args, y, init if init is not None else dummy, ckpt, last, dummy, dummy,
                         Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                         HAS_INIT=init is not None, STATE_ONLY=False, SAVE=save, **flags)
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, ckpt if save else None)
        ctx.softplus, ctx.grouped, ctx.block_t = bool(delta_softplus), grouped, ck
        ctx.variant, ctx.chunk_len = variant, chunk_len_arg
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
        # the "seq" backward: each program's recomputed states of one tile, [n_prog, BLOCK_T, BLOCK_D,
        # BLOCK_N] (+ [3, BLOCK_T, BLOCK_D] per-(d, t) terms)
        seq_bwd = ctx.variant == "seq" or _time_bwd_seq(ctx.variant)
        scratch = (torch.empty(n_prog * block_t * block_d * (block_n + 3), **f32),) if seq_bwd else ()
        args = (u, delta, A, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
                delta_bias if delta_bias is not None else dummy, dy.contiguous(), ckpt,
                dlast.contiguous() if dlast is not None else dummy)
        grads = (du, ddelta, dA, dB, dC, dD, dz if dz is not None else dummy, dbias)
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=ctx.softplus, HAS_DLAST=dlast is not None,
                     BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t, num_warps=warps,
                     **({} if seq_bwd else _maxnreg(ctx.variant, backward=True)))
        if seq_bwd:
            _ss_bwd_seq_kernel[(n_prog,)](*args, *scratch, *grads, Dm, L, N, G, Dg, n_dblk, n_tiles, **flags)
        else:
            rev = TILES["time"]["rev"]
            flags["PREFETCH"] = _prefetch(u)
            flags["REV_GATHER"] = rev == "gather"
            flags["REV_INDEX"] = rev == "index" or (rev == "plain" and not reverse_scan_in_order(
                u.device, block_d, block_t, warps))
            n_chunks, chunk_tiles = _bwd_chunks(n_prog, n_tiles, ctx.chunk_len, block_t, u.device)
            grid, ginit = (n_prog * n_chunks,), None
            # the carry of g across tiles through memory where a program walks several tiles
            flags["CARRY_MEM"] = chunk_tiles > 1
            flags["DA_P"] = da_p = _da_parts(block_t)
            flags["DA_MEM"] = da_mem = chunk_tiles > 1 and TILES["time"].get("da_parts", True)
            flags["REV_LEAN"] = _rev_lean(flags["PREFETCH"], chunk_tiles)
            width = 1 + da_p if da_mem else 1                            # the carries (and dA's partials)
            gbuf = torch.empty(n_prog * n_chunks * N * block_d * width if chunk_tiles > 1 or n_chunks > 1 else 1,
                               **f32)
            if n_chunks > 1:
                # 1. per chunk, the g recurrence from a zero carry: (pend = ∏ a_{t+1}, gend = g at its
                # first step); 2. carries X_c = gend_c + pend_c X_{c+1} with X_{n_chunks} = ∂L/∂h_L,
                # a linear recurrence over the reversed chunks; chunk c starts from ginit_c = X_{c+1}
                pend = torch.empty(Bsz, n_chunks, Dm, N, **f32)
                gend = torch.empty_like(pend)
                _ss_bwd_time_kernel[grid](*args, *grads, dummy, pend, gend, gbuf, Dm, L, N, G, Dg, n_dblk,
                                          n_tiles, n_chunks, chunk_tiles, HAS_GINIT=False, STATE_ONLY=True,
                                          **{**flags, "HAS_DLAST": False})
                ginit = chunk_carries(pend, gend, dlast, reverse=True)
            # 3. every chunk from its true carry: the gradients
            _ss_bwd_time_kernel[grid](*args, *grads, ginit if ginit is not None else dummy, dummy, dummy, gbuf,
                                      Dm, L, N, G, Dg, n_dblk, n_tiles, n_chunks, chunk_tiles,
                                      HAS_GINIT=ginit is not None, STATE_ONLY=False, **flags)
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
                          variant: Literal["seq", "time"] | None = None):
    """Triton selective scan; signature and shapes of `naive_selective_scan`.

    chunk_len: time steps per forward program (None = choose to fill the GPU); for tests.
    variant: "time" (associative scans over a [BLOCK_D, BLOCK_T] tile per state) or "seq" (sequential
    in time, [BLOCK_D, N] per program); None = `VARIANT`."""
    variant = variant or VARIANT
    if variant not in _KERNELS:
        raise ValueError(f"triton_selective_scan(variant={variant!r}): expected one of {sorted(_KERNELS)}")
    y, last = SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len, variant)
    return (y, last) if return_last_state else y
