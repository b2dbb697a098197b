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
a tl.dot, with BT = 64; G itself comes from a pass of its own (`_chunk_log_decay_kernel`, fp32, every
token's G and so G_C), which the sweeps load in the layouts they use it in rather than summing g across
warps per chunk. For per-channel decay exp(G_tk - G_sk) differs per channel, so (1) is not one
matrix product; it is factored by halving the chunk: a pair s < t is first split into different halves
at one level of the binary tree of halves, and with r the last token of s's half
    exp(G_t - G_s) = exp(G_t - G_r) * exp(G_r - G_s),     both factors <= 1,
so each level is one tl.dot of (q_t exp(G_t - G_r)) on the upper halves' rows with (k_s exp(G_r - G_s))
on the lower halves' rows, kept where the halves pair up (log2(BT) levels; the diagonal is q_t . k_t).
Nothing overflows, unlike GLA's secondary chunking with one reference point per chunk (which needs
care where exp(-G) overflows). The within-half sums of g that the exponents need are one 0/1 [BT, BT]
tl.dot per level (exact for 16-bit g: products by 0 and 1, fp32 sums; full fp32 precision for fp32 g).
The sweeps form G, G at the chunk end (16-bit g) and dk/dv's suffix sums for dg the same way, by 0/1
tl.dots instead of scans and sums across warps (H100, bf16, B=8 T=4096 H=8 K=V=128, GPU kernel time
2.66 -> 2.16 ms with G and the suffix sums, -> 1.79 ms with G at the chunk end; dk/dv 0.92 -> 0.52 ->
0.40 ms; results/bench/profile.md).
Reference point (REF, `_ref_path`: bf16 or fp32 inputs, all of K in one block). Where a chunk's total log
decay G_C is >= -REF_RANGE = -30 in every channel, exp(G_t - G_s) = exp(G_t - G_C) exp(G_C - G_s) with the
first factor <= e^30, so A = (q e^(G - G_C)) (k e^(G_C - G))^T is one tl.dot whose second factor is (3)'s
own, and dq's and dk's intra-chunk parts are tl.dots of dA = do v^T with the same factors, all inside the
sweeps (GLA's secondary chunking with one reference point per chunk, used only where it cannot overflow).
The forward's sweep flags the other chunks (`flag`, int8 per forward chunk) and gives them no A v term; the
A pass, after it, forms A for them only and adds their A v to o. Every later kernel reads the flags, the
backward's sweeps select per chunk between the two forms (selects, not branches: a branch in the loop
multiplied its instructions) and the intra-gradient pass runs for flagged chunks only (both passes walk
REF_WALK chunks per program and stop where none is flagged).
Without it (fp16, several K blocks, TUNE ref = False):
A comes from a fully parallel pass over the forward's chunks of FWD_BT = 32 tokens (`_intra_a_kernel`,
[NK, B, T, H, FWD_BT]: partial sums over K blocks), which the forward's sweep loads and dk/dv loads
again (its chunks of 16 tokens read their diagonal blocks); with one K block of 64 the forward's
sweep forms A itself and stores it for dk/dv (`_a_in_sweep`: the pass's second reading of q, k, g
saved). dq's and dk's intra-chunk parts, dA = do v^T times the same factors, come from a second
parallel pass over the backward's chunks (`_intra_grad_kernel`), which the dq and dk/dv sweeps add.
16-bit inputs keep K, V <= 128 in one block. H100, bf16, fwd+bwd, B=8 T=4096 H=8 K=V=64: 2.65 (one
column at a time) -> 1.47 (session 6: the A pass, wide tiles) -> 1.09 ms (factored by halving; FLA's
chunk_gla: 1.76 ms) -> 1.06 ms (G and dg's suffix sums by tl.dots) -> 1.03 ms (and G at the chunk end;
0.80 ms from a CUDA graph) -> 0.90 ms (exp as exp2, `LOG2E`; 0.73 from a graph), K=V=128: 9.74 -> 3.88 -> 2.68 -> 2.15 -> 1.81 -> 1.71 ms (FLA
3.48 ms) (results/bench/kernels.md and its header; the steps in results/bench/tune_linear_attention.md
runs 1-8 and scripts/experiments/la_channel_columns.py).
A program per (batch*head, segment, V block, K block) walks its chunks in order and keeps S in fp32
registers ("fused chunk"), so no per-chunk state is written to memory; K blocks produce partial outputs
that one small kernel sums (`_sum_partials_kernel`).

Sequence segments. (3) is linear in S, so a run of chunks maps the state entering it to
exp(Gseg) * S + S_loc, where Gseg is the run's total log decay (a scalar, or a [K] vector) and S_loc the
state the run builds from zero. When B*H*(V blocks)*(K blocks) programs would leave the GPU idle, T is
split into NS segments of SC whole chunks each (the last one may be shorter), and the forward runs
    (a) per segment, from zero: S_loc[s] and Gseg[s]                                    (_local_state_kernel)
    (b) across segments: S_in[0] = S_0, S_in[s+1] = exp(Gseg[s]) * S_in[s] + S_loc[s]   (_scan_kernel)
    (c) per segment, (1)-(3) starting from S_in[s]; the last segment's sweep ends at S_T (_fwd_kernel)
and keeps S_in (fp32 [B*H, NS, K, V]) for the backward. NS = 1 (one launch) when the grid is already
full, e.g. the Zoology shapes B=256, T=256. No S_loc is read for the last segment, so (a) covers the
others only, split into pieces of whole chunks that fill the GPU (`_pieces`; (b) then runs over the
pieces and keeps the states at the segments' boundaries): at B*H = 64 and K=V=128, NS = 2, the pass is
one segment in two pieces of T/4 instead of two segments of T/2. Up to FUSED_SCAN_PIECES pieces (`_fused_scan`)
(b) is no launch of its own: each sweep's program combines the pieces before its segment itself (FSCAN) and
the forward's stores the S_in it formed.

Backward (same chunking, recomputing S from S_in rather than storing it; A too, except the per-channel A
that the A pass stored):
    dq_t = scale * S_t do_t                           forward sweep over each segment, from S_in[s]
    dS_t = scale * q_t do_t^T + diag(exp(g_{t+1})) dS_{t+1},  dk_s = dS_s v_s,  dv_s = dS_s^T k_s
                                                      reverse sweep, dS in fp32 registers, dS_0 = d initial_state
The reverse sweep is segmented like the forward: (a) per segment the gradient its outputs send to the
state entering it, from dS = 0 at its end, dS_loc[s] = scale * sum_t (q_t exp(G_t)) do_t^T (G from the
segment start; formed by the dq sweep, which reads q and do anyway, with Gseg[s], except where its
registers are full, `_fused_dsl`; there a pass over pieces as in the forward, of segments 1 .. NS-1);
(b) a reverse scan dS_end[NS-1] = d S_T, dS_end[s-1] = exp(Gseg[s]) * dS_end[s] + dS_loc[s] (in the dk/dv
sweep, FSCAN, where the pieces are few); (c) the dk, dv sweep of segment s starting from dS_end[s]; that
of segment 0 ends at d initial_state.
    dg_t = sum_{r >= t} (q_r * dq_r - k_r * dk_r) + rowsum(dS_T * S_T)
because o depends on G only through q_t exp(G_t) and k_s exp(-G_s) (GLA sec. 4.2), and S_T on G_T.
By the chain rule the same sum from a segment's end on is dg at the next segment's first token t1:
    sum_{r >= t1} (...) + rowsum(dS_T * S_T) = rowsum(dS_end[s] * S_in[s+1]),
so with one V block the reverse sweep finishes dg itself: a reverse cumulative sum per segment, started
from rowsum(dS_end[s] * S_in[s+1]) (summed over K as well for scalar decay, which then also needs one K
block), of q_t * dq_t (scalar decay: written fp32 by the dq sweep; per channel formed from dq and its
rounding residual) minus k_t * dk_t; dq, dk (and dv with one K block)
are written once in the input dtype. Otherwise dq, dk go through fp32 partials over V blocks and an
epilogue kernel sums them and computes dg.
"""
from __future__ import annotations

import collections
import functools
import inspect
import os

import torch
import triton
import triton.language as tl

from .._host import cdiv, next_power_of_2

# Launch counts by mode ("interpret" / "compiled"); tests assert that the interpreter really ran.
LAUNCHES: collections.Counter = collections.Counter()

# Overrides for tests and tune.py (empty = the defaults below): "ns" (segments, forced), "seg_target"
# (programs wanted per SM), "BT" (scalar/no decay chunk), "max_tile" (BK, BV cap), "BK", "BV" (the caps
# themselves), "seg_bk" (per channel: the segment passes' BK, `_seg_config`), "pieces" (per segment in
# the segment-state passes, `_pieces`), "seg_maxnreg" (their register cap), "sweep_maxnreg" (the forward,
# dq and dk/dv sweeps' register cap, `_reg_cap`), "dsl" (the local dS from
# the dq sweep, `_fused_dsl`), "dg_split" (`_dg_split`), "xq_parts", "xk_parts" (`_x_parts`), "wide_bk"
# (per channel: the largest K the A pass and the sweeps keep in one block), "wide_warps" (their num_warps then),
# "intra_warps" (the per-channel A pass's), "dkv_bk", "dkv_warps" (per channel: dk/dv's BK and
# num_warps), "dq_bk", "dq_warps" (dq's), "fwd_bt" (per channel: the forward's chunk), "channel_bt"
# (per channel: the backward's chunk), "intra_grad_warps", "intra_grad_maxnreg", "a_in_sweep" (per channel:
# A formed by the forward's sweep, `_a_in_sweep`), "ref" (per channel: the reference point, `_ref_path`),
# "fwd_bv", "fwd_warps" (per channel: the forward's V block and num_warps, `_fwd_config`), "res8" (per channel:
# dq's rounding residual as int8, `_res8`), "res_chunk" (its sums over chunks, `_res_chunk`), "pdl"
# (programmatic dependent launch, `_pdl`), "fwd_span" (per channel: backward segments per forward one, `_fwd_span`),
# "fused_bwd" (per channel: the dq sweep inside dk/dv's program, `_fused_bwd`), "blocked_bwd" (per channel:
# the same block by block, tokens per block, `_blocked_bwd`),
# "num_warps", "num_stages".
TUNE: dict = {}
SEG_TARGET = 4           # per-channel decay: programs per SM to aim for when splitting T into segments
MIN_SEG_CHUNKS = 4       # never split below this many chunks per segment
SEG_BK = 64              # per-channel decay: the forward's segment-state pass's K block (`_seg_config`)
SCAN_BLOCK = 1024        # state elements per program in the scan across segments
FWD_BT = 32              # per-channel decay: the forward's chunk (the backward's is 16; `_fwd_config`)
A_PASS_WARPS = 2         # per-channel decay: `_intra_a_kernel`'s num_warps (TUNE "intra_warps")
INTRA_GRAD_WARPS = 2     # per-channel decay: `_intra_grad_kernel`'s num_warps at K blocks <= 64 (`_intra_grad_warps`)
INTRA_GRAD_MAXNREG = 168  # per-channel decay: `_intra_grad_kernel`'s register cap (`_intra_grad_cap`)
# exp(x) is written exp2(x * LOG2E): triton lowers tl.exp2 to one MUFU.EX2 (ex2.approx.ftz), but tl.exp
# to ex2.approx without ftz, which ptxas wraps in a range test and two predicated multiplies for
# subnormal results (5 float instructions per exp instead of 2: `python -m kernels.sass_stats --ops exp`, sm_90,
# triton 3.6); results below 2^-126 flush to 0
LOG2E = tl.constexpr(1.4426950408889634)
# Per channel, 16-bit g: G at the chunk's end per channel, [BK] along the rows of the [BK, BV] state, is the
# max over the columns of the 0/1 tl.dot g^T 1, whose GC_COLS columns all hold the chunk's sum of g (exact:
# fp32 sums of 16-bit values times 0 and 1) - no sum across warps. GC_COLS = 16, tl.dot's narrowest N;
# with BV columns the max took 66 FMNMX per chunk at K=V=128 in each sweep, now 10 (`python -m
# kernels.sass_stats --ops linear_attention --la-k 128`, triton 3.6: loop instructions forward 670 -> 591
# (its 7 spill loads gone), dq 475 -> 415 (250 -> 206 registers), dk/dv 669 -> 606; K=V=64: 526 -> 498,
# 414 -> 391, 542 -> 527, dk/dv 250 -> 175 registers)
GC_COLS = tl.constexpr(16)
# Per channel: a chunk whose total log decay is >= -REF_RANGE in every channel takes the reference-point
# form of (1) (`_ref_path`): exp(G_t - G_s) = exp(G_t - G_C) exp(G_C - G_s), so that A = (q e^(G - G_C))
# (k e^(G_C - G))^T is one tl.dot whose second factor is (3)'s own k e^(G_C - G); the first is at most
# e^REF_RANGE |q|, in fp32's range (bf16's too). The forward's sweep flags the other chunks, which keep the
# halving (A and its A v from the A pass, dq's and dk's intra-chunk parts from the intra-gradient pass); every
# later kernel reads the flags, so that all take the same decision.
REF_RANGE = tl.constexpr(30.0)
REF_EXP2_CAP = tl.constexpr(100.0)   # the reference point's exponents are capped: no inf where it is not taken
# With the reference point the flagged chunks' passes (`_intra_a_kernel`, `_intra_grad_kernel`) walk
# REF_WALK forward chunks per program, stopping after one load where none is flagged (one program per
# chunk had cost the A pass 0.026 ms and the intra-gradient pass 0.013 ms at B=8 T=4096 H=8 K=V=64 on an
# H200 while mostly reading one flag each: results/bench/profile.md, session 17).
REF_WALK = 16
FUSED_SCAN_PIECES = 4   # step (b) inside the sweeps up to this many pieces per program (`_fused_scan`)
RES8_MAX_K = 0   # per channel: dq's rounding residual as int8 up to this K (`_res8`)
RES_CHUNK_MAX_K = 0   # per channel: only dq's residual summed over each chunk, up to this K (`_res_chunk`)
DQ_BK = 64   # per channel: dq's widest K block (`_dq_config`)
CHUNK_LOG_DECAY_TILE = 2048   # scalar decay: tokens per program of `_chunk_log_decay_kernel`


def _pdl(args: tuple) -> bool:
    """Whether the kernels launch with programmatic dependent launch (TUNE "pdl"; off by default): on Hopper
    and later each kernel may be scheduled while the one before it drains, and waits in `_grid_dependency`
    until that one has finished and its writes are visible (args: the launch's, whose first tensor gives the
    device). Never in the interpreter. It changed nothing
    beyond noise (H100, bf16, fwd+bwd from a CUDA graph, B=8 T=4096 H=8 K=V=64: per channel 0.369 -> 0.373
    ms, no decay 0.218 -> 0.215, scalar 0.237 -> 0.241; results/bench/tune_linear_attention.md, session 22)."""
    if not TUNE.get("pdl", False) or _interpret():
        return False
    device = next(a.device for a in args if isinstance(a, torch.Tensor))
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _grid_dependency(PDL: tl.constexpr):
    """With programmatic dependent launch (`_pdl`): wait until the kernel launched before this one has
    finished and its writes are visible (every kernel here reads or overwrites what an earlier one wrote),
    then let the next kernel's programs be scheduled as this one's leave the SMs."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def _channel_G(b_g, BT: tl.constexpr):
    """Per channel, one chunk's log decays b_g [BT, BK] -> (G [BT, BK], the cumulative sums within the chunk;
    G_C in every row, [BT, BK]; G_C along the rows of the state, [BK]). For 16-bit g by 0/1 tl.dots (exact:
    fp32 sums of 16-bit values), with no scans or sums across warps; G_C along the state's rows as the max
    over GC_COLS equal columns of g^T 1 (`GC_COLS`)."""
    if b_g.dtype == tl.float32:
        b_G = tl.cumsum(b_g, axis=0)
        b_GCs = tl.sum(b_g, axis=0)
        b_GC2 = b_GCs[None, :]
    else:
        o_i = tl.arange(0, BT)
        b_G = tl.dot((o_i[:, None] >= o_i[None, :]).to(b_g.dtype), b_g)
        b_GC2 = tl.dot(tl.full([BT, BT], 1, b_g.dtype), b_g)
        b_GCs = tl.max(tl.dot(tl.trans(b_g), tl.full([BT, GC_COLS], 1, b_g.dtype)), axis=1)
    return b_G, b_GC2, b_GCs


def _fwd_kernel(
    q, k, v, g, s0, o, ht, a, msum, flag, x, gx, s_out, T, scale,
    B, H, K, V, NS, SC, P, SUB,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_S0: tl.constexpr, NA: tl.constexpr, PREC: tl.constexpr, UNCHAIN: tl.constexpr,
    A_IN: tl.constexpr = False, STORE_A: tl.constexpr = False, REF: tl.constexpr = False,
    FSCAN: tl.constexpr = False, SPAN: tl.constexpr = 1, NSB=1,
    PDL: tl.constexpr = False, s_blk=None, CPBF: tl.constexpr = 0,
):
    """Forward, eqs. (1)-(3), over the chunks of one segment. Grid (B*H*NS, V blocks, K blocks);
    s0: [B*H*NS, K, V] fp32 state entering each segment (S_in, or S_0 when NS == 1); o: [NK, B, T, H, V]
    partial outputs (or o itself when NK == 1); ht: [B*H, K, V] fp32 final state, written by the last
    segment's programs;
    per-channel decay: a: [NA, B, T, H, BT], the intra-chunk A of (1) as `_intra_a_kernel` stored it
    (NA partial sums over K blocks), whose A v term the first K block adds; or (A_IN, one K block) formed
    here from the chunk's q, k, g (`_chunk_a`, msum: `_level_sums`) and, with STORE_A, stored to a
    ([1, B, T, H, BT], the input dtype) for dk/dv, so that no A pass re-reads q, k, g.
    REF (per channel, one K block): A by the chunk end's reference point, and flag (int8 [B*H, chunks]) set
    where the chunk's decay rules it out; such a chunk gets no A v term here (the A pass adds it afterwards).
    DECAY: 0 none, 1 scalar, 2 per channel. UNCHAIN (`_unchain`): o's two tl.dots are scaled and then
    summed, rather than the second accumulating into the first.
    FSCAN (`_fused_scan`): step (b) here instead of `_scan_kernel`: s0 is S_0 ([B*H, K, V], if USE_S0), and
    the state entering segment i_s is formed from it and the P local states x ([B*H*P, K, V] fp32, SUB per
    segment; gx their log decays, [B*H*P] or [B*H*P, K]) of the segments before it, and stored to s_out
    ([B*H*NS, K, V]) for the backward.
    SPAN (`_fwd_span`): each segment spans SPAN of the backward's NSB segments (SC / SPAN chunks each), and
    the sweep stores the state entering each of them to s_out ([B*H*NSB, K, V]) for the backward.
    CPBF > 0 (`_blocked_bwd`): also the state entering every block of CPBF chunks, to s_blk ([B*H*blocks, K,
    V] fp32), where the blocked backward's dq sweeps start."""
    _grid_dependency(PDL)
    i_p = tl.program_id(0)
    i_s = i_p % NS
    i_bh = (i_p // NS).to(tl.int64)
    i_p = i_p.to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    # row t of q lives at q + (i_b*T + t)*H*K + i_h*K: move each pointer to (b, t=0, h)
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    o += ((i_k * B + i_b) * T * H + i_h) * V
    if DECAY == 1:   # G, chunk-local cumulative log decay (`_chunk_log_decay_kernel`)
        g += i_bh * (tl.cdiv(T, BT) * BT)
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    if NA > 0 or STORE_A:
        a += (i_b * T * H + i_h) * BT
    m_kv = m_k[:, None] & m_v[None, :]
    o_kv = o_k[:, None] * V + o_v[None, :]
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if FSCAN:
        if USE_S0:
            b_S += tl.load(s0 + i_bh * K * V + o_kv, mask=m_kv, other=0.0)
        b_S = _scan_pieces(b_S, x, gx, i_bh * P, 0, i_s * SUB, o_k, o_kv, m_k, m_kv, K, V, DECAY)
    elif USE_S0:
        b_S += tl.load(s0 + i_p * K * V + o_kv, mask=m_kv, other=0.0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    log2_scale = tl.log2(scale)   # scale folded into exp2's exponents (scalar decay)
    NT = tl.cdiv(T, BT)
    SCB = SC // SPAN                  # chunks per backward segment
    for r in tl.static_range(SPAN):
        if FSCAN or SPAN > 1:         # the state entering backward segment i_s * SPAN + r, for the backward
            tl.store(s_out + (i_bh * NSB + i_s * SPAN + r) * K * V + o_kv, b_S,
                     mask=m_kv & (o_k * 0 + i_s * SPAN + r < NSB)[:, None])
        for i_t in range(i_s * SC + r * SCB, tl.minimum(i_s * SC + r * SCB + SCB, NT)):
            if CPBF > 0:
                tl.store(s_blk + (i_bh * tl.cdiv(NT, CPBF) + i_t // CPBF) * K * V + o_kv, b_S,
                         mask=m_kv & (o_k * 0 + i_t % CPBF == 0)[:, None])
            o_t = i_t * BT + o_i
            m_t = o_t < T
            # out-of-range rows load as k = v = 0, g = 0: they add nothing and decay nothing
            b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
            b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
            b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
            if DECAY == 1:
                b_G = tl.load(g + o_t)                                         # [BT]
                b_GC = tl.load(g + i_t * BT + BT - 1)                          # G at the chunk end
                b_qd = b_q                                       # exp(G_t) scales o's rows instead: (2)
                # scale is folded into o's row factors and (unless UNCHAIN) into E's exponent
                b_orow = (tl.exp2(b_G * LOG2E) * scale)[:, None]
                b_kd = (b_k * tl.exp2((b_GC - b_G) * LOG2E)[:, None]).to(b_k.dtype)
                b_Ex = (b_G[:, None] - b_G[None, :]) * LOG2E
                if not UNCHAIN:
                    b_Ex += log2_scale
                b_E = tl.exp2(tl.where(causal, b_Ex, float("-inf")))
                b_A = tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_E  # (1), [BT, BT]
                b_decay = tl.exp2(b_GC * LOG2E)
            elif DECAY == 2:
                b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
                b_G, b_GC2, b_GCs = _channel_G(b_g, BT)
                b_qd = (b_q * tl.exp2(b_G * LOG2E)).to(b_q.dtype)
                b_orow = scale
                b_kd = (b_k * tl.exp2((b_GC2 - b_G) * LOG2E)).to(b_k.dtype)
                if REF:   # (one K block) A of (1) by the chunk end's reference point, unless the chunk's total log
                    # decay is below -REF_RANGE in some channel: then it is flagged here (int8, for the A pass, which
                    # adds its A v to o after this sweep, and for the backward) and takes no intra-chunk term here.
                    # Selected, not branched on (a branch in the loop to the halving took it from 650 to 2133
                    # instructions and 31 spills, `python -m kernels.sass_stats`)
                    need = tl.min(b_GCs, axis=0) < -REF_RANGE
                    tl.store(flag + i_bh * NT + i_t + tl.arange(0, 1), need.to(tl.int8) + tl.zeros([1], tl.int8))
                    b_qh = (b_q * tl.exp2(tl.minimum((b_G - b_GC2) * LOG2E, REF_EXP2_CAP))).to(b_q.dtype)
                    b_A = tl.where(causal, tl.dot(b_qh, tl.trans(b_kd), input_precision=PREC), 0.0)
                    b_A = tl.where(need, 0.0, b_A)
                else:
                    b_A = _fwd_a_halved(b_q, b_k, b_g, msum, a, o_t, m_t, i_k, B * T * H * BT, H, A_IN, NA, BT, PREC)
                if STORE_A:   # (A_IN) for dk/dv
                    tl.store(a + o_t[:, None] * (H * BT) + o_i[None, :], b_A.to(a.dtype.element_ty),
                             mask=m_t[:, None] & (o_i * 0 + i_v == 0)[None, :])
                b_decay = tl.exp2(b_GCs * LOG2E)[:, None]
            else:
                b_qd = b_q
                b_orow = scale
                b_kd = b_k
                b_A = tl.where(causal, tl.dot(b_q, tl.trans(b_k), input_precision=PREC), 0.0)
                b_decay = 1.0
            # (2): inter-chunk part from S plus intra-chunk part from A
            if UNCHAIN:
                b_o = tl.dot(b_qd, b_S.to(b_q.dtype), input_precision=PREC) * b_orow \
                    + tl.dot(b_A.to(b_v.dtype), b_v, input_precision=PREC) * scale
            elif DECAY == 1:
                b_o = tl.dot(b_qd, b_S.to(b_q.dtype), input_precision=PREC) * b_orow
                b_o += tl.dot(b_A.to(b_v.dtype), b_v, input_precision=PREC)
            else:
                b_o = tl.dot(b_qd, b_S.to(b_q.dtype), input_precision=PREC)
                b_o += tl.dot(b_A.to(b_v.dtype), b_v, input_precision=PREC)
                b_o = b_o * scale
            tl.store(o + o_t[:, None] * (H * V) + o_v[None, :], b_o.to(o.dtype.element_ty),
                     mask=m_t[:, None] & m_v[None, :])
            # (3): carry the state to the next chunk
            b_S = b_S * b_decay + tl.dot(tl.trans(b_kd), b_v, input_precision=PREC)
    if i_s == NS - 1:
        tl.store(ht + i_bh * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_kv)


@triton.jit
def _fwd_a_halved(b_q, b_k, b_g, msum, a, o_t, m_t, i_k, a_part, H, A_IN: tl.constexpr, NA: tl.constexpr,
                  BT: tl.constexpr, PREC: tl.constexpr):
    """The forward sweep's A of (1) by halving: formed from this K block, which is all of K (A_IN,
    `_chunk_a`), or the sum of the A pass's NA partials over K blocks (a: [NA, B, T, H, BT], a_part
    elements apart), whose A v term the first K block adds (zero in the others)."""
    if A_IN:
        b_A = _chunk_a(b_q, b_k, b_g, msum, BT, PREC)
    else:
        o_i = tl.arange(0, BT)
        b_A = _sum_a(a + o_t[:, None] * (H * BT) + o_i[None, :], m_t[:, None] & (o_i * 0 + i_k == 0)[None, :],
                     a_part, NA, BT)
    return b_A


def _chunk_log_decay_kernel(g, G, T, H, BT: tl.constexpr, W: tl.constexpr, PDL: tl.constexpr = False):
    """Scalar decay: G[bh, t] = sum of g over chunk t // BT up to t, the chunk-local cumulative log decay
    of (1)-(3), fp32 [B*H, cdiv(T, BT) * BT] (head-major; past T it stays at the last token's value), for
    W chunks of one (b, h) per program (grid (B*H, cdiv(chunks, W))). The sweeps load G_t and G_C
    (the chunk's last) in the layouts they use them in, instead of a cumulative sum and a sum of g
    across warps per chunk, which with their broadcasts into E's rows and columns cost the scalar
    K=V=128 dk/dv loop 11 of its 21 barriers (`scripts/experiments/sass_line_map.py bwd_dkv_kernel --k 128
    --decay scalar`, triton 3.6; forward 18 -> 7, dq 25 -> 14). H100, bf16, B=8 H=8, fwd+bwd from a CUDA graph
    (`scripts/experiments/ab_kernels.py`, medians of three): K=V=128 T=4096 0.566 -> 0.549 ms, T=16384 1.99 ->
    1.92; K=V=64 0.245 -> 0.243; Zoology B=256 T=256 H=4 K=V=64 0.215 -> 0.218 (one launch more). Triton
    pipelines the sweeps' loads of G through shared memory; G loaded one chunk ahead into registers instead
    was slower (K=V=128 T=4096 0.555 -> 0.595 ms in dk/dv alone, 0.553 -> 0.603 in all three sweeps: its
    values held across the loop took dk/dv's spills from 28 to 65 per chunk)."""
    _grid_dependency(PDL)
    i_bh = tl.program_id(0).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_t = (tl.program_id(1) * W + tl.arange(0, W))[:, None] * BT + tl.arange(0, BT)[None, :]   # [W, BT]
    b_g = tl.load(g + (i_b * T + o_t) * H + i_h, mask=o_t < T, other=0.0).to(tl.float32)
    tl.store(G + i_bh * (tl.cdiv(T, BT) * BT) + o_t, tl.cumsum(b_g, axis=1), mask=o_t < tl.cdiv(T, BT) * BT)


def _chunk_log_decay(g: torch.Tensor, BT: int) -> torch.Tensor:
    """G of `_chunk_log_decay_kernel` for g: [B, T, H]."""
    B, T, H = g.shape
    nc = cdiv(T, BT)
    w = _log_decay_chunks_per_program(nc, BT)
    G = torch.empty(B * H, nc * BT, device=g.device, dtype=torch.float32)
    _launch(_chunk_log_decay_kernel, (B * H, cdiv(nc, w)), g, G, T, H, BT=BT, W=w, num_warps=4)
    return G


def _log_decay_chunks_per_program(nc: int, BT: int) -> int:
    """`_chunk_log_decay_kernel`'s W for nc chunks of BT tokens: about CHUNK_LOG_DECAY_TILE tokens."""
    return max(1, min(next_power_of_2(nc), CHUNK_LOG_DECAY_TILE // BT))


def _intra_a_kernel(q, k, g, a, msum, flag, v, o, T, scale, B, H, K, V, BT: tl.constexpr, BK: tl.constexpr,
                    PREC: tl.constexpr, REF: tl.constexpr = False, W: tl.constexpr = 1, BV: tl.constexpr = 16,
                    PDL: tl.constexpr = False):
    """Per-channel decay: A of (1) for one chunk of BT tokens and one K block, a fully parallel pass
    (grid (B*H*chunks, K blocks)) ahead of the forward's sequential sweep. a: [NA, B, T, H, BT], this K
    block's partial sum (the input dtype when NA == 1). REF (one K block; grid (B*H*cdiv(chunks, W), 1)):
    after the forward's sweep, A only for the chunks that the sweep flagged, which it stores and whose
    scale * A v it adds to o ([B, T, H, V], where the sweep left the chunk's inter-chunk part alone; V in
    blocks of BV); W chunks per program, which reads their W flags at once and, where none is set (every
    chunk of a mild decay), stops.

    exp(G_t - G_s) is factored by halving: split the chunk into halves, those into halves, ..., down to
    single tokens. A pair s < t is first separated at one level, where s lies in the lower half and t in
    the upper half of one block; with r the last token of s's half,
        exp(G_t - G_s) = exp(G_t - G_r) exp(G_r - G_s),    both factors <= 1 (G is non-increasing),
    where G_t - G_r sums g over t's half up to t and G_r - G_s over s's half after s. So each level
    takes one exp of a [BT, BK] tile E (those sums: E = M g with M a 0/1 [BT, BT] matrix, a tl.dot that
    is exact for 16-bit g, fp32 accumulation) and one tl.dot (q exp(E) on the upper halves' rows) (k
    exp(E) on the lower halves')^T, kept where the two halves pair up; the diagonal is q_t . k_t.
    Nothing can overflow (as GLA's secondary chunking, Yang et al. 2023 sec. 4.2, with one reference
    point per pair of halves instead of one per chunk; M g in full fp32 precision for fp32 g)."""
    _grid_dependency(PDL)
    NT = tl.cdiv(T, BT)
    if REF:
        i_bh, i_w, flagged = _flag_walk(flag, NT, W)
        if flagged:
            for w in range(W):
                i_t = i_w * W + w
                if i_t < NT:
                    if tl.load(flag + i_bh * NT + i_t) != 0:
                        _intra_a_chunk(q, k, g, a, msum, v, o, i_bh, i_t, 0, T, scale, B, H, K, V, BT, BK, PREC,
                                       True, BV)
    else:
        _intra_a_chunk(q, k, g, a, msum, v, o, (tl.program_id(0) // NT).to(tl.int64), tl.program_id(0) % NT,
                       tl.program_id(1).to(tl.int64), T, scale, B, H, K, V, BT, BK, PREC, False, BV)


@triton.jit
def _flag_walk(flag, NF, W: tl.constexpr):
    """The reference point's walk (`_intra_a_kernel`, `_intra_grad_kernel`; grid (B*H*cdiv(NF, W),)): this
    program's batch*head, its group of W of the NF forward chunks' flags, and whether any of them is set
    (one vector load; where none is, the program stops)."""
    i_bh = (tl.program_id(0) // tl.cdiv(NF, W)).to(tl.int64)
    i_w = tl.program_id(0) % tl.cdiv(NF, W)
    o_w = i_w * W + tl.arange(0, W)
    return i_bh, i_w, tl.max(tl.load(flag + i_bh * NF + o_w, mask=o_w < NF, other=0), axis=0) != 0


@triton.jit
def _intra_a_chunk(q, k, g, a, msum, v, o, i_bh, i_t, i_k, T, scale, B, H, K, V, BT: tl.constexpr,
                   BK: tl.constexpr, PREC: tl.constexpr, ADD_O: tl.constexpr, BV: tl.constexpr):
    """`_intra_a_kernel`'s chunk i_t of batch*head i_bh, K block i_k: A from its q, k and g tiles, stored;
    with ADD_O (one K block) also o += scale * A v, A rounded to the input dtype as the sweeps' tl.dots
    round it."""
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    g += (i_b * T * H + i_h) * K
    a += (i_k * B * T * H + i_b * T * H + i_h) * BT
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < T
    m_tk = m_t[:, None] & m_k[None, :]
    b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_A = _chunk_a(b_q, b_k, b_g, msum, BT, PREC)
    tl.store(a + o_t[:, None] * (H * BT) + o_i[None, :], b_A.to(a.dtype.element_ty), mask=m_t[:, None])
    if ADD_O:
        b_A = b_A.to(v.dtype.element_ty)
        v += (i_b * T * H + i_h) * V
        o += (i_b * T * H + i_h) * V
        for i_v in range(tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_tv = m_t[:, None] & (o_v < V)[None, :]
            b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
            p_o = o + o_t[:, None] * (H * V) + o_v[None, :]
            b_o = tl.load(p_o, mask=m_tv, other=0.0).to(tl.float32) \
                + tl.dot(b_A, b_v, input_precision=PREC) * scale
            tl.store(p_o, b_o.to(o.dtype.element_ty), mask=m_tv)


@triton.jit
def _chunk_a(b_q, b_k, b_g, msum, BT: tl.constexpr, PREC: tl.constexpr):
    """A of (1) for one chunk, [BT, BT] fp32, from its q, k, g tiles [BT, BK] (one K block's share), by
    halving the chunk as `_intra_a_kernel` describes; msum: the levels' 0/1 sum matrices (`_level_sums`)."""
    o_i = tl.arange(0, BT)
    b_A = tl.where(o_i[:, None] == o_i[None, :],
                   tl.sum(b_q.to(tl.float32) * b_k.to(tl.float32), axis=1)[:, None], 0.0)
    for lvl in tl.static_range(7):                  # BT <= 128: log2(BT) levels
        if 2 ** (lvl + 1) <= BT:
            b_x, b_qs, b_ks, pair = _level(b_q, b_k, b_g, msum, lvl, BT)
            b_A += tl.where(pair, tl.dot(b_qs, tl.trans(b_ks), input_precision=PREC), 0.0)
    return b_A


@triton.jit
def _level(b_q, b_k, b_g, msum, lvl: tl.constexpr, BT: tl.constexpr):
    """One level of the halving (`_intra_a_kernel`): the chunk cut into 2^(lvl+1) halves, b_x = exp of
    the sums of g over t's half up to t (upper halves) or after t (lower halves), M g with M from msum
    (`_level_sums`); q and k scaled by it, and the [BT, BT] mask `pair` of (upper t, lower s) in the same
    pair of halves. Rows outside the upper (q) or lower (k) halves are not zeroed: `pair` drops their
    products."""
    o_i = tl.arange(0, BT)
    half = o_i // (BT // 2 ** (lvl + 1))
    upper = half % 2 == 1
    m_sum = tl.load(msum + lvl * BT * BT + o_i[:, None] * BT + o_i[None, :])
    if b_g.dtype == tl.float32:
        b_x = tl.exp2(tl.dot(m_sum, b_g, input_precision="ieee") * LOG2E)
    else:
        b_x = tl.exp2(tl.dot(m_sum, b_g) * LOG2E)
    b_qs = (b_q * b_x).to(b_q.dtype)
    b_ks = (b_k * b_x).to(b_k.dtype)
    pair = (half[:, None] // 2 == half[None, :] // 2) & upper[:, None] & ~upper[None, :]
    return b_x, b_qs, b_ks, pair


def _local_state_kernel(
    a, b, g, out, gseg, T, scale,
    H, K, V, NS, SC, C0,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, REVERSE: tl.constexpr, PREC: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Step (a) of the segmented sweeps, from a zero state, over pieces of SC chunks from chunk C0 on
    (pieces past the last chunk are empty: a zero state, no decay; `_pieces`). Grid (B*H*NS, V blocks,
    K blocks), NS here the number of pieces; out: [B*H*NS, K, V] fp32; gseg: each piece's total log
    decay, [B*H*NS] (scalar) or [B*H*NS, K] (per channel).
    Forward (a = k, b = v): S_loc = sum_s (k_s exp(G_end - G_s)) v_s^T over the piece, chunk by chunk
      with (3).
    Reverse (a = q, b = do): dS_loc = the gradient the segment's outputs send to the state entering it,
      dS = exp(G_C) dS + scale * sum_t (q_t exp(G_t)) do_t^T, chunks walked from the segment's end; only
      where the dq sweep does not form it (`_fused_dsl`)."""
    _grid_dependency(PDL)
    i_p = tl.program_id(0)
    i_s = i_p % NS
    i_bh = (i_p // NS).to(tl.int64)
    i_p = i_p.to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    a += (i_b * T * H + i_h) * K
    b += (i_b * T * H + i_h) * V
    if DECAY == 1:   # G, chunk-local cumulative log decay (`_chunk_log_decay_kernel`)
        g += i_bh * (tl.cdiv(T, BT) * BT)
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if DECAY == 2:
        b_gsum = tl.zeros([BK], dtype=tl.float32)
    else:
        b_gsum = tl.sum(tl.zeros([BT], dtype=tl.float32), axis=0)
    o_i = tl.arange(0, BT)
    NT = tl.cdiv(T, BT)
    c0 = C0 + i_s * SC
    c1 = tl.minimum(c0 + SC, NT)
    for j in range(c1 - c0):
        if REVERSE:
            i_t = c1 - 1 - j
        else:
            i_t = c0 + j
        o_t = i_t * BT + o_i
        m_t = o_t < T
        b_a = tl.load(a + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        b_b = tl.load(b + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        if DECAY == 1:
            b_G = tl.load(g + o_t)
            b_GC = tl.load(g + i_t * BT + BT - 1)
            if REVERSE:
                b_ad = (b_a * (tl.exp2(b_G * LOG2E) * scale)[:, None]).to(b_a.dtype)
            else:
                b_ad = (b_a * tl.exp2((b_GC - b_G) * LOG2E)[:, None]).to(b_a.dtype)
            b_S = b_S * tl.exp2(b_GC * LOG2E)
            b_gsum += b_GC
        elif DECAY == 2:
            b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
            b_G, b_GC2, b_GCs = _channel_G(b_g, BT)
            if REVERSE:
                b_ad = (b_a * tl.exp2(b_G * LOG2E + tl.log2(scale))).to(b_a.dtype)
            else:
                b_ad = (b_a * tl.exp2((b_GC2 - b_G) * LOG2E)).to(b_a.dtype)
            b_S = b_S * tl.exp2(b_GCs * LOG2E)[:, None]
            b_gsum += b_GCs
        else:
            if REVERSE:
                b_ad = (b_a * scale).to(b_a.dtype)
            else:
                b_ad = b_a
        b_S += tl.dot(tl.trans(b_ad), b_b, input_precision=PREC)
    tl.store(out + i_p * K * V + o_k[:, None] * V + o_v[None, :], b_S, mask=m_k[:, None] & m_v[None, :])
    # every V block (and, for scalar decay, every K block) writes the same values
    if DECAY == 1:
        tl.store(gseg + i_p, b_gsum)
    if DECAY == 2:
        tl.store(gseg + i_p * K + o_k, b_gsum, mask=m_k)


@triton.jit
def _scan_pieces(b_S, x, gx, base, j0, n, o_k, o_kv, m_k, m_kv, K, V, DECAY: tl.constexpr,
                 REVERSE: tl.constexpr = False):
    """Step (b) for one state block inside a sweep (FSCAN): S = exp(Gpiece) * S + x[piece] over the n pieces
    base + j0, base + j0 + 1, ... (REVERSE: base + j0, base + j0 - 1, ...) of x ([., K, V] fp32), whose log
    decays gx are [.] (scalar) or [., K] (per channel; a row of the state per channel)."""
    for j in range(n):
        if REVERSE:
            i_x = base + j0 - j
        else:
            i_x = base + j0 + j
        if DECAY == 1:
            b_S = b_S * tl.exp2(tl.load(gx + i_x) * LOG2E)
        if DECAY == 2:
            b_S = b_S * tl.exp2(tl.load(gx + i_x * K + o_k, mask=m_k, other=0.0) * LOG2E)[:, None]
        b_S += tl.load(x + i_x * K * V + o_kv, mask=m_kv, other=0.0)
    return b_S


def _scan_kernel(
    x, gseg, s0, out, P, SUB, NS, FIRST, K, V,
    BLOCK: tl.constexpr, DECAY: tl.constexpr, USE_S0: tl.constexpr, REVERSE: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Step (b): the scan across the pieces of step (a), SUB pieces per segment, giving the state at each
    segment's boundary. Grid (B*H, cdiv(K*V, BLOCK)); x: [B*H, P, K, V] fp32 the pieces' local states,
    gseg: [B*H, P] (or [B*H, P, K] per channel) their total log decays; out: [B*H, NS, K, V].
    S_next = exp(Gpiece) * S + x[piece] in both directions (per channel: row k of the [K, V] state).
    Forward: the pieces cover segments 0 .. NS-2 (P = (NS-1) SUB); out[s] = S_in[s], the state entering
      segment s, from S_in[0] = s0 (or 0).
    Reverse: the pieces cover segments FIRST .. NS-1 (P = (NS-FIRST) SUB), walked from the last; out[s] =
      dS_end[s], the gradient at segment s's end, from dS_end[NS-1] = s0 (d S_T, or 0); with FIRST = 1,
      out[0] too (with FIRST = 0 the last step, to d S_0, is left to the dk/dv sweep of segment 0)."""
    _grid_dependency(PDL)
    i_bh = tl.program_id(0).to(tl.int64)
    o_e = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    m_e = o_e < K * V
    b_S = tl.zeros([BLOCK], dtype=tl.float32)
    if USE_S0:
        b_S += tl.load(s0 + i_bh * K * V + o_e, mask=m_e, other=0.0)
    # x of the next piece is loaded one step ahead, so that its latency overlaps this step's store
    # instead of stalling every step of the chain: two calls at B=8 T=4096 H=8 K=V=128 took 0.102 ms
    # (no decay) / 0.145 ms (scalar) before, 0.038 / 0.039 ms after (H100; results/bench/profile.md)
    if REVERSE:
        b_x = tl.load(x + (i_bh * P + P - 1) * K * V + o_e, mask=m_e, other=0.0)
    else:
        b_x = tl.load(x + i_bh * P * K * V + o_e, mask=m_e, other=0.0)
    for j in range(P):
        if REVERSE:
            i_s = P - 1 - j
            i_n = i_s - 1
            # the last piece of its segment: the state here is the gradient at the segment's end
            at = (o_e * 0 + i_s + 1) % SUB == 0
            i_o = FIRST + i_s // SUB
        else:
            i_s = j
            i_n = i_s + 1
            at = (o_e * 0 + i_s) % SUB == 0     # the first piece of its segment: the state entering it
            i_o = i_s // SUB
        b_xn = tl.load(x + (i_bh * P + i_n) * K * V + o_e, mask=m_e & (o_e * 0 + j + 1 < P), other=0.0)
        tl.store(out + (i_bh * NS + i_o) * K * V + o_e, b_S, mask=m_e & at)
        if DECAY == 1:
            b_S = b_S * tl.exp2(tl.load(gseg + i_bh * P + i_s) * LOG2E)
        if DECAY == 2:
            b_S = b_S * tl.exp2(tl.load(gseg + (i_bh * P + i_s) * K + o_e // V, mask=m_e, other=0.0) * LOG2E)
        b_S += b_x
        b_x = b_xn
    if REVERSE:
        tl.store(out + i_bh * NS * K * V + o_e, b_S, mask=m_e & (o_e * 0 + FIRST == 1))
    else:
        tl.store(out + (i_bh * NS + NS - 1) * K * V + o_e, b_S, mask=m_e)


def _intra_grad_kernel(q, k, v, g, do, qi, ki, msum, flag, T, scale, B, H, K, V, BT: tl.constexpr, BK: tl.constexpr,
                       BV: tl.constexpr, PREC: tl.constexpr, REF: tl.constexpr = False, FR: tl.constexpr = 1,
                       W: tl.constexpr = 1, PDL: tl.constexpr = False):
    """Per-channel decay: the intra-chunk parts of dq and dk for one chunk of the backward's BT tokens
    and one K block, a fully parallel pass (grid (B*H*chunks, K blocks)) ahead of the dq and dk/dv
    sweeps, which then only add them. With dA[t, s] = do_t . v_s (s <= t, summed over V blocks here),
        qi_t = scale * sum_s dA[t, s] k_s exp(G_t - G_s),   ki_s = scale * sum_t dA[t, s] q_t exp(G_t - G_s),
    exp(G_t - G_s) factored by halving the chunk as in `_intra_a_kernel` (the two share each level's
    exp). qi, ki: [B, T, H, K] in the input dtype. REF (one K block; grid (B*H*cdiv(forward chunks, W), 1)):
    only for the chunks flagged (flag: one per forward chunk of FR * BT tokens), W forward chunks per
    program, which reads their W flags at once and, where none is set, stops; the sweeps take the other
    chunks by the reference point."""
    _grid_dependency(PDL)
    if REF:
        NF = tl.cdiv(T, BT * FR)
        i_bh, i_w, flagged = _flag_walk(flag, NF, W)
        if flagged:
            for w in range(W * FR):
                i_t = i_w * (W * FR) + w
                if i_t * BT < T:
                    if tl.load(flag + i_bh * NF + i_t // FR) != 0:
                        _intra_grad_store(q, k, v, g, do, qi, ki, msum, i_bh, i_t, 0, T, scale, H, K, V,
                                          BT, BK, BV, PREC)
    else:
        NT = tl.cdiv(T, BT)
        _intra_grad_store(q, k, v, g, do, qi, ki, msum, (tl.program_id(0) // NT).to(tl.int64),
                          tl.program_id(0) % NT, tl.program_id(1).to(tl.int64), T, scale, H, K, V, BT, BK, BV,
                          PREC)


@triton.jit
def _intra_grad_store(q, k, v, g, do, qi, ki, msum, i_bh, i_t, i_k, T, scale, H, K, V, BT: tl.constexpr,
                      BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """`_intra_grad_kernel`'s chunk i_t of batch*head i_bh, K block i_k: qi and ki from its q, k, g, v and
    do tiles, stored."""
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    g += (i_b * T * H + i_h) * K
    qi += (i_b * T * H + i_h) * K
    ki += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    do += (i_b * T * H + i_h) * V
    o_i = tl.arange(0, BT)
    o_t = i_t * BT + o_i
    m_t = o_t < T
    m_tk = m_t[:, None] & m_k[None, :]
    b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_tv = m_t[:, None] & (o_v < V)[None, :]
        b_do = tl.load(do + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
        b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
    b_diag = tl.where(o_i[:, None] == o_i[None, :], b_dA, 0.0)
    b_qi = tl.sum(b_diag, axis=1)[:, None] * b_k.to(tl.float32)
    b_ki = tl.sum(b_diag, axis=0)[:, None] * b_q.to(tl.float32)
    for lvl in tl.static_range(7):                  # BT <= 128: log2(BT) levels
        if 2 ** (lvl + 1) <= BT:
            b_x, b_qs, b_ks, pair = _level(b_q, b_k, b_g, msum, lvl, BT)   # dA_pair's zeros drop the other rows
            b_dAp = tl.where(pair, b_dA, 0.0).to(b_q.dtype)
            b_qi += b_x * tl.dot(b_dAp, b_ks, input_precision=PREC)
            b_ki += b_x * tl.dot(tl.trans(b_dAp), b_qs, input_precision=PREC)
    tl.store(qi + o_t[:, None] * (H * K) + o_k[None, :], (b_qi * scale).to(qi.dtype.element_ty), mask=m_tk)
    tl.store(ki + o_t[:, None] * (H * K) + o_k[None, :], (b_ki * scale).to(ki.dtype.element_ty), mask=m_tk)


@triton.jit
def _residual_code(x, y, SHIFT: tl.constexpr):
    """x (fp32) less y (x converted to 16 bits, as stored), as an int8 count of 2^SHIFT fp32 ulps: the two
    share their sign and, but for a carry into the exponent, their exponent, so the difference of their bit
    patterns as integers is what x's low mantissa bits add to y's: within +-2^15 for bf16 rounded to
    nearest (the GPU), [0, 2^16) if truncated (triton's interpreter); for fp16 eight times less. SHIFT = 10
    (bf16) or 7 (fp16) fits either, rounded, in [-64, 64] (no saturation needed); `_residual_decode` adds it
    back within 2^(SHIFT-1) fp32 ulps of x (2^-14 of |x| for bf16, 2^-17 for fp16's normal range; dq alone is
    2^-9 (bf16) off), in half the bytes of a 16-bit residual."""
    d = x.to(tl.int32, bitcast=True) - y.to(tl.float32).to(tl.int32, bitcast=True)
    return ((d + (1 << (SHIFT - 1))) >> SHIFT).to(tl.int8)


@triton.jit
def _residual_decode(y, code, SHIFT: tl.constexpr):
    """x, within 2^(SHIFT-1) fp32 ulps, from y (16-bit) and its `_residual_code`."""
    return (y.to(tl.float32).to(tl.int32, bitcast=True) + (code.to(tl.int32) << SHIFT)).to(tl.float32, bitcast=True)


def _bwd_dq_kernel(
    q, k, v, g, s0, do, dq, xq, qi, dsl, gsl, flag, T, scale,
    B, H, K, V, NS, SC,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_S0: tl.constexpr, DG: tl.constexpr, DSL: tl.constexpr, PREC: tl.constexpr,
    UNCHAIN: tl.constexpr, XP: tl.constexpr, REF: tl.constexpr = False, FR: tl.constexpr = 1,
    LO: tl.constexpr = False, LO8: tl.constexpr = 0, LOC: tl.constexpr = False,
    PDL: tl.constexpr = False,
):
    """The dq sweep (`_dq_phase`) over one segment, as a kernel of its own."""
    _grid_dependency(PDL)
    i_p = tl.program_id(0)
    c0 = (i_p % NS) * SC
    _dq_phase(q, k, v, g, s0, do, dq, xq, qi, dsl, gsl, flag, T, scale, B, H, K, V, NS, SC, BT, BK, BV, DECAY,
              USE_S0, DG, DSL, PREC, UNCHAIN, XP, REF, FR, LO, LO8, LOC, i_p, c0, tl.minimum(c0 + SC, tl.cdiv(T, BT)))


@triton.jit
def _dq_phase(
    q, k, v, g, s0, do, dq, xq, qi, dsl, gsl, flag, T, scale,
    B, H, K, V, NS, SC,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_S0: tl.constexpr, DG: tl.constexpr, DSL: tl.constexpr, PREC: tl.constexpr,
    UNCHAIN: tl.constexpr, XP: tl.constexpr, REF: tl.constexpr, FR: tl.constexpr,
    LO: tl.constexpr, LO8: tl.constexpr, LOC: tl.constexpr, P0, C0, C1,
):
    """dq_t = scale * S_t do_t, forward sweep over chunks C0 .. C1-1 (a segment, or a block of one)
    recomputing S from s0[P0] (as _fwd_kernel).
    Grid (B*H*NS, V blocks, K blocks); dq: [NV, B, T, H, K] fp32 partial sums over V blocks, or dq itself
    (input dtype) when NV == 1. DG (one V block; for scalar decay also one K block): also
    xq_t = q_t . dq_t, fp32 [B, T, H] (scalar decay); per channel, where dq is 16-bit (LO), dq's rounding
    residual dq - dq.to(dq's dtype) in xq ([B, T, H, K] bf16), so that dk/dv forms q_t * dq_t from q, dq
    and it to about fp32's accuracy (2^-17 relative): 2 bytes per element written here and read there
    instead of an fp32 product's 4, and without DSL this sweep does not read q at all; with LO8 (`_res8`)
    as an int8 count of 2^LO8 fp32 ulps (`_residual_code`: 1 byte, 2^-14 relative); with LOC (`_res_chunk`)
    only each chunk's sum of q_t * (dq_t - dq.to(dq's dtype)_t) (xq: fp32 [B*H, chunks, K]), which dk/dv adds
    to dlog_decay's carry across chunks, so that only the chunk's own tokens see dq's rounding.
    Per channel the intra-chunk part comes from `_intra_grad_kernel` (qi), factored by halving the
    chunk (module docstring); as a column loop inside this sweep dq took 1.22 ms at K=V=128, factored
    inside it 0.72 ms, and the separate pass (shared with dk's part) won a further 4-5% at the long
    shapes and lost 2% at the Zoology shape (H100, bf16; results/bench/tune_linear_attention.md run
    8i). (A parallel pass lost when it was a column loop: 0.41 ms alone vs 0.50 ms for all of dq at
    K=V=64; la_channel_columns.py.) qi: [B, T, H, K], the first V block adds it.
    DSL (segments, NS > 1): also step (a) of the reverse sweep, the gradient the segment's outputs send
    to the state entering it, dS_loc = scale * sum_t (q_t exp(G_t)) do_t^T (G from the segment's
    start), summed in forward order (every exponent <= 0 either way) into dsl: [B*H*NS, K, V] fp32,
    instead of `_local_state_kernel` re-reading q and do, and the segment's total log decay into gsl:
    [B*H*NS] (scalar) or [B*H*NS, K] (per channel) fp32."""
    i_p = tl.program_id(0)
    i_bh = (i_p // NS).to(tl.int64)
    i_p = i_p.to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
    i_b, i_h = i_bh // H, i_bh % H
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k, m_v = o_k < K, o_v < V
    q += (i_b * T * H + i_h) * K
    k += (i_b * T * H + i_h) * K
    v += (i_b * T * H + i_h) * V
    do += (i_b * T * H + i_h) * V
    dq += ((i_v * B + i_b) * T * H + i_h) * K
    if LOC:
        xq += i_bh * tl.cdiv(T, BT) * K
    elif DECAY == 2:
        xq += (i_b * T * H + i_h) * K
    else:
        xq += (i_b * T * H + i_h) * XP
    if DECAY == 1:   # G, chunk-local cumulative log decay (`_chunk_log_decay_kernel`)
        g += i_bh * (tl.cdiv(T, BT) * BT)
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    b_S = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_S0:
        b_S += tl.load(s0 + P0 * K * V + o_k[:, None] * V + o_v[None, :],
                       mask=m_k[:, None] & m_v[None, :], other=0.0)
    if DSL:
        b_dSl = tl.zeros([BK, BV], dtype=tl.float32)
        if DECAY == 2:
            b_Gp = tl.zeros([BK], dtype=tl.float32)                       # G before the chunk, per channel
        else:
            b_Gp = tl.sum(tl.zeros([BT], dtype=tl.float32), axis=0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    log2_scale = tl.log2(scale)   # scale folded into exp2's exponents (scalar and per-channel decay)
    NT = tl.cdiv(T, BT)
    if (DG or DSL) and DECAY != 2:   # q (for q . dq) one chunk ahead too: no tl.dot of dq reads it, so
        o_tn = C0 * BT + o_i                                          # triton does not pipeline its load
        b_qn = tl.load(q + o_tn[:, None] * (H * K) + o_k[None, :], mask=(o_tn < T)[:, None] & m_k[None, :], other=0.0)
    for i_t in range(C0, C1):
        o_t = i_t * BT + o_i
        m_t = o_t < T
        b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_do = tl.load(do + o_t[:, None] * (H * V) + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        # dA[t, s] = do_t . v_s (s <= t), the gradient of A in (2) without the scale (per channel its part
        # of dq comes from _intra_grad_kernel)
        if DECAY != 2:
            b_dA = tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0)
        b_dq = tl.dot(b_do, tl.trans(b_S.to(b_do.dtype)), input_precision=PREC)  # [BT, BK], from S
        if DECAY == 1:
            b_G = tl.load(g + o_t)
            b_GC = tl.load(g + i_t * BT + BT - 1)
            b_Ex = (b_G[:, None] - b_G[None, :]) * LOG2E
            if not UNCHAIN:
                b_Ex += log2_scale
            b_E = tl.exp2(tl.where(causal, b_Ex, float("-inf")))
            b_dqi = tl.dot((b_dA * b_E).to(b_k.dtype), b_k, input_precision=PREC)
            if UNCHAIN:
                b_dqi = b_dqi * scale
            b_dq = b_dq * (tl.exp2(b_G * LOG2E) * scale)[:, None] + b_dqi
            b_kd = (b_k * tl.exp2((b_GC - b_G) * LOG2E)[:, None]).to(b_k.dtype)
            b_decay = tl.exp2(b_GC * LOG2E)
        elif DECAY == 2:
            b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
            b_G, b_GC2, b_GCs = _channel_G(b_g, BT)
            b_kd = (b_k * tl.exp2((b_GC2 - b_G) * LOG2E)).to(b_k.dtype)
            # dq_tk += sum_s dA[t, s] k_sk exp(G_tk - G_sk): by the chunk end's reference point where the
            # decay allows (REF: exp(G_t - G_C) (dA k e^(G_C - G)), this V block's share), else from
            # _intra_grad_kernel (over all of V, so added by the first V block only)
            p_qi = qi + (i_b * T * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
            m_qi = m_t[:, None] & (m_k & (o_k * 0 + i_v == 0))[None, :]
            if REF:   # selected by the chunk's flag (one per forward chunk of FR * BT tokens), not branched on
                need = tl.load(flag + i_bh * tl.cdiv(T, BT * FR) + i_t // FR + o_i * 0) != 0      # [BT], all equal
                b_dA = tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0)
                b_intra = tl.dot(b_dA.to(b_k.dtype), b_kd, input_precision=PREC) \
                    * tl.exp2(tl.minimum((b_G - b_GC2) * LOG2E, REF_EXP2_CAP) + log2_scale)
                b_intra = tl.where(need[:, None], tl.load(p_qi, mask=m_qi & need[:, None], other=0.0).to(tl.float32),
                                   b_intra)
            else:
                b_intra = tl.load(p_qi, mask=m_qi, other=0.0).to(tl.float32)
            b_dq = b_dq * tl.exp2(b_G * LOG2E + log2_scale) + b_intra
            b_decay = tl.exp2(b_GCs * LOG2E)[:, None]
        else:
            if UNCHAIN:
                b_dq = b_dq * scale + tl.dot(b_dA.to(b_k.dtype), b_k, input_precision=PREC) * scale
            else:
                b_dq += tl.dot(b_dA.to(b_k.dtype), b_k, input_precision=PREC)
                b_dq = b_dq * scale
            b_kd = b_k
            b_decay = 1.0
        b_dqo = b_dq.to(dq.dtype.element_ty)
        tl.store(dq + o_t[:, None] * (H * K) + o_k[None, :], b_dqo, mask=m_t[:, None] & m_k[None, :])
        if (DG and DECAY != 2) or DSL or LOC:
            if LOC:
                b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
            elif DECAY == 2:   # (for DSL only: segment 0's local dS is never read, so neither is its q)
                b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :],
                              mask=m_t[:, None] & (m_k & (o_k * 0 + C0 > 0))[None, :], other=0.0)
            else:
                b_q = b_qn
                b_qn = tl.load(q + (o_t + BT)[:, None] * (H * K) + o_k[None, :],
                               mask=(o_t + BT < T)[:, None] & m_k[None, :], other=0.0)
        if DG:
            if DECAY == 2:
                if LOC:   # the chunk's sum as a 0/1 tl.dot (every row; row 0 stored): no sum across warps
                    b_res = b_q.to(tl.float32) * (b_dq - b_dqo.to(tl.float32))
                    b_sum = tl.dot(tl.full([GC_COLS, BT], 1.0, tl.float32), b_res, input_precision="tf32")
                    o_r = tl.arange(0, GC_COLS)
                    tl.store(xq + i_t * K + o_r[:, None] * 0 + o_k[None, :], b_sum,
                             mask=(o_r == 0)[:, None] & m_k[None, :])
                elif LO8:
                    tl.store(xq + o_t[:, None] * (H * K) + o_k[None, :], _residual_code(b_dq, b_dqo, LO8),
                             mask=m_t[:, None] & m_k[None, :])
                elif LO:
                    tl.store(xq + o_t[:, None] * (H * K) + o_k[None, :],
                             (b_dq - b_dqo.to(tl.float32)).to(xq.dtype.element_ty), mask=m_t[:, None] & m_k[None, :])
            else:
                if XP == 1:
                    tl.store(xq + o_t[:, None] * H, tl.sum(b_q.to(tl.float32) * b_dq, axis=1, keep_dims=True),
                             mask=m_t[:, None])
                else:   # XP partial sums, each inside the warpgroup that holds its columns
                    b_x = tl.reshape(b_q.to(tl.float32) * b_dq, [BT, XP, BK // XP])
                    tl.store(xq + o_t[:, None] * (H * XP) + tl.arange(0, XP)[None, :], tl.sum(b_x, axis=2),
                             mask=m_t[:, None])
        if DSL:   # dS_loc += scale * (q_t exp(G_t)) do_t^T, G from the segment's start
            if DECAY == 1:
                b_qs = (b_q * (tl.exp2((b_G + b_Gp) * LOG2E) * scale)[:, None]).to(b_q.dtype)
                b_Gp += b_GC
            elif DECAY == 2:
                b_qs = (b_q * tl.exp2((b_G + b_Gp[None, :]) * LOG2E + log2_scale)).to(b_q.dtype)
                b_Gp += b_GCs
            else:
                b_qs = (b_q * scale).to(b_q.dtype)
            b_dSl += tl.dot(tl.trans(b_qs), b_do, input_precision=PREC)
        b_S = b_S * b_decay + tl.dot(tl.trans(b_kd), b_v, input_precision=PREC)
    if DSL:
        tl.store(dsl + P0 * K * V + o_k[:, None] * V + o_v[None, :], b_dSl, mask=m_k[:, None] & m_v[None, :])
        if DECAY == 1:
            tl.store(gsl + P0, b_Gp)
        if DECAY == 2:
            tl.store(gsl + P0 * K + o_k, b_Gp, mask=m_k)


def _bwd_dkv_kernel(
    q, k, v, g, do, ds0, dk, dv, dh0, xq, dqo, s_in, ht, dg, dgc, a, ki, flag, x, gx, T, scale,
    B, H, K, V, NS, SC, P, SUB, FIRST,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DECAY: tl.constexpr, USE_DS0: tl.constexpr, STORE_DH0: tl.constexpr, DG: tl.constexpr, DGS: tl.constexpr,
    NA: tl.constexpr, AW: tl.constexpr, PREC: tl.constexpr, UNCHAIN: tl.constexpr, XP: tl.constexpr,
    AT: tl.constexpr, REF: tl.constexpr = False, FR: tl.constexpr = 1, LO: tl.constexpr = False,
    LO8: tl.constexpr = 0, FSCAN: tl.constexpr = False, LOC: tl.constexpr = False,
    PDL: tl.constexpr = False, qi=None, FUSED_DQ: tl.constexpr = False, S0_IN: tl.constexpr = False,
    s_blk=None, CPB: tl.constexpr = 0,
):
    """dk, dv (and d initial_state, STORE_DH0, from segment 0), reverse sweep over one segment carrying dS
    (the gradient of the state leaving the chunk), starting from ds0: [B*H*NS, K, V] fp32 (dS_end, or d S_T
    when NS == 1); FSCAN (`_fused_scan`): from d S_T (ds0: [B*H, K, V], if USE_DS0) and the P local dS of
    the reverse step (a) (x, gx as `_fwd_kernel`'s; SUB per segment, segments FIRST .. NS-1) after this one.
    Grid (B*H*NS, V blocks, K blocks); dk: [NV, B, T, H, K], dv: [NK, B, T, H, V] fp32 partial sums, or
    dk, dv themselves (input dtype) with one V block, one K block; dh0: [B*H, K, V] fp32.
    DG (one V block; scalar decay also one K block): dg_t = sum_{t <= r in segment} (xq_r - k_r . dk_r) + carry,
    carry = sum(ds0 * state at the segment end) with s_in: [B*H*NS, K, V] (S_in) and ht: [B*H, K, V];
    per channel the products are elementwise, q_t * dq_t formed here from q, dq (dqo: [B, T, H, K]) and,
    where dq is 16-bit (LO), the dq sweep's rounding residual (xq: bf16, or with LO8 int8, `_residual_decode`;
    with LOC its sum over each chunk, fp32 [B*H, chunks, K], added to the carry past the chunk),
    and the carry sums over V only (dg:
    [B, T, H, K]); DGS
    (scalar decay, `_dg_split`): k_t . dk_t into dg (fp32 [B, T, H]) and the carry into dgc ([B*H*NS]
    fp32), the sums by `_dg_scalar_kernel`; per
    channel dk's intra-chunk part comes from `_intra_grad_kernel` (ki: [B, T, H, K], added by the first
    V block) and dv's A^T do from the A pass (a, rows AW wide).
    FUSED_DQ (per channel, one K and one V block, `_fused_bwd`): first the dq sweep over the same segment
    (`_dq_phase`, from s_in if S0_IN, qi its intra-chunk part), writing dq (dqo) and xq, which this sweep
    then reads back, as it reads q, k, v, g, do a second time, soon enough after the first to find them
    in L2; with CPB > 0 (`_blocked_bwd`) block by block, CPB chunks each from the segment's end, dq's sweep
    over a block starting from the forward's state at the block's start (s_blk: [B*H*blocks, K, V] fp32)."""
    _grid_dependency(PDL)
    dq_args = (q, k, v, g)   # (the dq sweep offsets its own pointers)
    dq_out = (dqo, xq)
    do0 = do
    i_p = tl.program_id(0)
    i_s = i_p % NS
    i_bh = (i_p // NS).to(tl.int64)
    i_p = i_p.to(tl.int64)
    i_v = tl.program_id(1).to(tl.int64)
    i_k = tl.program_id(2).to(tl.int64)
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
    if LOC:
        xq += i_bh * tl.cdiv(T, BT) * K
        dqo += (i_b * T * H + i_h) * K
        dg += (i_b * T * H + i_h) * K
    elif DECAY == 2:
        xq += (i_b * T * H + i_h) * K
        dqo += (i_b * T * H + i_h) * K
        dg += (i_b * T * H + i_h) * K
    else:   # (XP > 1 only with DGS, where xq is not read here and dg holds k . dk)
        xq += i_b * T * H + i_h
        dg += (i_b * T * H + i_h) * XP
    if NA > 0:
        a += (i_b * T * H + i_h) * AW
    if DECAY == 1:   # G, chunk-local cumulative log decay (`_chunk_log_decay_kernel`)
        g += i_bh * (tl.cdiv(T, BT) * BT)
    if DECAY == 2:
        g += (i_b * T * H + i_h) * K
    m_kv = m_k[:, None] & m_v[None, :]
    o_kv = o_k[:, None] * V + o_v[None, :]
    b_dS = tl.zeros([BK, BV], dtype=tl.float32)
    if FSCAN:
        if USE_DS0:
            b_dS += tl.load(ds0 + i_bh * K * V + o_kv, mask=m_kv, other=0.0)
        b_dS = _scan_pieces(b_dS, x, gx, i_bh * P, P - 1, P - (i_s + 1 - FIRST) * SUB, o_k, o_kv, m_k, m_kv, K, V,
                            DECAY, REVERSE=True)
    elif USE_DS0:
        b_dS += tl.load(ds0 + i_p * K * V + o_kv, mask=m_kv, other=0.0)
    if DG:
        # dg at the next segment's first token (or rowsum(dS_T * S_T) for the last segment)
        if i_s < NS - 1:
            b_Se = tl.load(s_in + (i_p + 1) * K * V + o_kv, mask=m_kv, other=0.0).to(tl.float32)
        else:   # (s_in may be a placeholder of the input dtype when NS == 1: both branches fp32)
            b_Se = tl.load(ht + i_bh * K * V + o_kv, mask=m_kv, other=0.0).to(tl.float32)
        if DECAY == 2:
            b_carry = tl.sum(b_dS * b_Se, axis=1)                        # [BK]
        elif DGS:
            tl.store(dgc + i_p, tl.sum(tl.sum(b_dS * b_Se, axis=1), axis=0))
        else:
            b_carry = tl.sum(tl.sum(b_dS * b_Se, axis=1), axis=0)
    o_i = tl.arange(0, BT)
    causal = o_i[:, None] >= o_i[None, :]
    if AT:   # (no or scalar decay) A and dA formed transposed, [s, t], so that they enter their tl.dots from registers
        causal = o_i[:, None] <= o_i[None, :]
    log2_scale = tl.log2(scale)   # scale folded into exp2's exponents (scalar decay)
    if DG and DECAY == 2:
        suffix = (o_i[:, None] <= o_i[None, :]).to(tl.float32)      # row t sums rows r >= t
        ones = tl.full([BT, BT], 1.0, dtype=tl.float32)
        b_carry2 = tl.zeros([BT, BK], dtype=tl.float32) + b_carry[None, :]     # the carry in every row
    NT = tl.cdiv(T, BT)
    c0 = i_s * SC
    c1 = tl.minimum(c0 + SC, NT)
    if DG and DECAY != 2 and not DGS:   # xq too
        b_xqn = tl.load(xq + ((c1 - 1) * BT + o_i) * H, mask=(c1 - 1) * BT + o_i < T, other=0.0)
    if CPB > 0:   # blocks of CPB chunks from the segment's end; else the segment as one block
        NBLK = tl.cdiv(c1 - c0, CPB)
    else:
        NBLK = 1
    for jb in range(NBLK):
        if CPB > 0:
            b0 = c0 + (NBLK - 1 - jb) * CPB
            b1 = tl.minimum(b0 + CPB, c1)
        else:
            b0 = c0
            b1 = c1
        if FUSED_DQ:   # dq's sweep over the block first, from the state entering it
            if CPB > 0:
                _dq_phase(*dq_args, s_blk, do0, *dq_out, qi, q, q, flag, T, scale, B, H, K, V, NS, SC, BT, BK, BV,
                          DECAY, True, DG, False, PREC, UNCHAIN, 1, REF, FR, LO, LO8, LOC,
                          i_bh * tl.cdiv(NT, CPB) + b0 // CPB, b0, b1)
            else:
                _dq_phase(*dq_args, s_in, do0, *dq_out, qi, q, q, flag, T, scale, B, H, K, V, NS, SC, BT, BK, BV,
                          DECAY, S0_IN, DG, False, PREC, UNCHAIN, 1, REF, FR, LO, LO8, LOC, i_p, b0, b1)
            tl.debug_barrier()   # dq and xq as stored, for every thread of the program
        for j in range(b1 - b0):
            i_t = b1 - 1 - j
            o_t = i_t * BT + o_i
            m_t = o_t < T
            m_tk = m_t[:, None] & m_k[None, :]
            m_tv = m_t[:, None] & m_v[None, :]
            b_q = tl.load(q + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
            b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
            b_v = tl.load(v + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
            b_do = tl.load(do + o_t[:, None] * (H * V) + o_v[None, :], mask=m_tv, other=0.0)
            if DECAY == 2:
                b_dk = tl.dot(b_v, tl.trans(b_dS.to(b_v.dtype)), input_precision=PREC)   # [BT, BK]: dS_C v_s
            if DECAY == 0:
                # dk formed and stored before dv: fewer [BT, 128] tiles live at once (K=V=128: 83 spill
                # loads/stores per chunk before, 17 after, `kernels.sass_stats`; H100 0.295 -> 0.221 ms at
                # B=8 T=4096 H=8, results/bench/profile.md)
                if AT:
                    b_dAt = tl.where(causal, tl.dot(b_v, tl.trans(b_do), input_precision=PREC), 0.0)
                else:
                    b_dAt = tl.trans(tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0))
                b_dk = tl.dot(b_v, tl.trans(b_dS.to(b_v.dtype)), input_precision=PREC)   # [BT, BK]: dS_C v_s
                if UNCHAIN:   # (the select on dS_C v_s keeps triton from adding the other dot into it)
                    b_dk = tl.where(m_t[:, None], b_dk, 0.0) \
                        + tl.dot(b_dAt.to(b_q.dtype), b_q, input_precision=PREC) * scale
                else:
                    b_dk += tl.dot((b_dAt * scale).to(b_q.dtype), b_q, input_precision=PREC)
                tl.store(dk + o_t[:, None] * (H * K) + o_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
            if DECAY == 1:
                # dv formed and stored before dk, so that fewer [BT, 128] tiles are live at once (K=V=128
                # spilled registers); exp(G_C - G_s) scales the rows of k dS rather than k
                b_G = tl.load(g + o_t)
                b_GC = tl.load(g + i_t * BT + BT - 1)
                # E[t, s] = exp(G_t - G_s) for s <= t, 0 above the diagonal (AT: E^T)
                if AT:
                    b_Ex = (b_G[None, :] - b_G[:, None]) * LOG2E
                else:
                    b_Ex = (b_G[:, None] - b_G[None, :]) * LOG2E
                if not UNCHAIN:
                    b_Ex += log2_scale
                b_E = tl.exp2(tl.where(causal, b_Ex, float("-inf")))
                b_kdec = tl.exp2((b_GC - b_G) * LOG2E)[:, None]
                if AT:
                    b_At = tl.dot(b_k, tl.trans(b_q), input_precision=PREC) * b_E
                else:
                    b_At = tl.trans(tl.dot(b_q, tl.trans(b_k), input_precision=PREC) * b_E)
                b_dvi = tl.dot(b_At.to(b_do.dtype), b_do, input_precision=PREC)
                if UNCHAIN:
                    b_dvi = b_dvi * scale
                b_dv = tl.dot(b_k, b_dS.to(b_k.dtype), input_precision=PREC) * b_kdec + b_dvi
                tl.store(dv + o_t[:, None] * (H * V) + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
                if AT:
                    b_dAt = tl.dot(b_v, tl.trans(b_do), input_precision=PREC) * b_E
                else:
                    b_dAt = tl.trans(tl.dot(b_do, tl.trans(b_v), input_precision=PREC) * b_E)
                b_dki = tl.dot(b_dAt.to(b_q.dtype), b_q, input_precision=PREC)
                if UNCHAIN:
                    b_dki = b_dki * scale
                b_dk = tl.dot(b_v, tl.trans(b_dS.to(b_v.dtype)), input_precision=PREC) * b_kdec + b_dki
                # scale in the exponent: as a [BT, 1] factor, triton hoisted its splat out of the loop in a blocked
                # layout, and q e^G went to the tl.dot through shared memory (K=V=128: 0.567 -> 0.564 ms, run 25)
                b_qd = (b_q * tl.exp2(b_G * LOG2E + log2_scale)[:, None]).to(b_q.dtype)
                b_decay = tl.exp2(b_GC * LOG2E)
            elif DECAY == 2:
                b_g = tl.load(g + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
                b_G, b_GC2, b_GCs = _channel_G(b_g, BT)
                b_qf = b_q.to(tl.float32)
                # A of (1) as the A pass stored it, NA partial sums over K blocks: dv's A^T do from the first
                # K block only; its rows are AW wide (the forward's chunks), this chunk's [BT, BT] block on
                # their diagonal
                p_a = a + o_t[:, None] * (H * AW) + (i_t % (AW // BT)) * BT + o_i[None, :]
                m_a = m_t[:, None] & (o_i * 0 + i_k == 0)[None, :]
                b_kdec = tl.exp2((b_GC2 - b_G) * LOG2E)
                b_kd = (b_k * b_kdec).to(b_k.dtype)                        # k e^(G_C - G): dv's and A^T's
                # dk_sk += sum_t dA[t, s] q_tk exp(G_tk - G_sk): by the chunk end's reference point where the
                # decay allows (REF: e^(G_C - G_s) (dA^T q e^(G - G_C)), this V block's share, and A^T of
                # (k e^(G_C - G)) (q e^(G - G_C))^T), else from _intra_grad_kernel (over all of V, so added by
                # the first V block only) and A from the A pass
                p_ki = ki + (i_b * T * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
                m_ki = m_tk & (o_k * 0 + i_v == 0)[None, :]
                if REF:   # selected by the chunk's flag (one per forward chunk of FR * BT tokens), not branched on
                    need = tl.load(flag + i_bh * tl.cdiv(T, BT * FR) + i_t // FR + o_i * 0) != 0      # [BT], all equal
                    upper = o_i[:, None] <= o_i[None, :]                     # [s, t]: s <= t
                    b_qh = (b_qf * tl.exp2(tl.minimum((b_G - b_GC2) * LOG2E, REF_EXP2_CAP))).to(b_q.dtype)
                    b_At = tl.where(upper, tl.dot(b_kd, tl.trans(b_qh), input_precision=PREC), 0.0) * scale
                    b_dAt = tl.where(upper, tl.dot(b_v, tl.trans(b_do), input_precision=PREC), 0.0) * scale
                    b_intra = tl.dot(b_dAt.to(b_q.dtype), b_qh, input_precision=PREC) * b_kdec
                    b_Ap = _sum_a(p_a, m_a & need[:, None], B * T * H * AW, NA, BT)
                    b_At = tl.where(need[None, :], tl.trans(b_Ap * scale), b_At)
                    b_intra = tl.where(need[:, None], tl.load(p_ki, mask=m_ki & need[:, None], other=0.0).to(tl.float32),
                                       b_intra)
                else:
                    b_At = tl.trans(_sum_a(p_a, m_a, B * T * H * AW, NA, BT) * scale)
                    b_intra = tl.load(p_ki, mask=m_ki, other=0.0).to(tl.float32)
                b_dk = b_dk * b_kdec + b_intra
                # scale after the exp2, not in its exponent: folded in, this sweep took 10% longer at K=V=128
                # (H100, bf16; scripts/experiments/ab_kernels.py), though it compiled to fewer instructions offline
                b_qd = (b_qf * tl.exp2(b_G * LOG2E) * scale).to(b_q.dtype)
                b_decay = tl.exp2(b_GCs * LOG2E)[:, None]
            else:
                if AT:
                    b_At = tl.where(causal, tl.dot(b_k, tl.trans(b_q), input_precision=PREC), 0.0)
                else:
                    b_At = tl.trans(tl.where(causal, tl.dot(b_q, tl.trans(b_k), input_precision=PREC), 0.0))
                if not UNCHAIN:
                    b_At = b_At * scale
                b_kd = b_k
                b_qd = (b_q * scale).to(b_q.dtype)
                b_decay = 1.0
            if DECAY != 1:
                # dv_s = (k_s exp(G_C - G_s)) dS_C + sum_t A[t, s] do_t
                b_dv = tl.dot(b_kd, b_dS.to(b_k.dtype), input_precision=PREC)
                if UNCHAIN and DECAY == 0:
                    b_dv = tl.where(m_t[:, None], b_dv, 0.0) \
                        + tl.dot(b_At.to(b_do.dtype), b_do, input_precision=PREC) * scale
                else:
                    b_dv += tl.dot(b_At.to(b_do.dtype), b_do, input_precision=PREC)
                tl.store(dv + o_t[:, None] * (H * V) + o_v[None, :], b_dv.to(dv.dtype.element_ty), mask=m_tv)
            if DECAY != 0:
                tl.store(dk + o_t[:, None] * (H * K) + o_k[None, :], b_dk.to(dk.dtype.element_ty), mask=m_tk)
            # x_t = q_t . dq_t - k_t . dk_t (per channel: elementwise); dg_t = its suffix sum within the
            # chunk + the later tokens' carry
            if DG and DECAY == 2:
                b_dqf = tl.load(dqo + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0.0)
                if LO and not LOC:   # dq's rounding residual: int8 (LO8) or bf16
                    b_res = tl.load(xq + o_t[:, None] * (H * K) + o_k[None, :], mask=m_tk, other=0)
                    if LO8:
                        b_dqf = _residual_decode(b_dqf, b_res, LO8)
                    else:
                        b_dqf = b_dqf.to(tl.float32) + b_res.to(tl.float32)
                else:
                    b_dqf = b_dqf.to(tl.float32)
                b_x = b_qf * b_dqf - b_k.to(tl.float32) * b_dk
                # suffix sums and the chunk's total as 0/1 tl.dots rather than a cumsum across warps (dk/dv
                # loop: 1327 -> 1050 instructions per chunk at K=V=128, `kernels.sass_stats`); x = x_h + x_l,
                # x_h = x with its 13 low mantissa bits cleared (exact in tf32), x_l rounded to tf32 errs by
                # <= 2^-22 |x|: about fp32 accuracy
                b_xh = (b_x.to(tl.int32, bitcast=True) & -8192).to(tl.float32, bitcast=True)
                b_xl = b_x - b_xh
                b_sfx = tl.dot(suffix, b_xh, input_precision="tf32") + tl.dot(suffix, b_xl, input_precision="tf32")
                b_dg = b_sfx + b_carry2
                b_carry2 += tl.dot(ones, b_xh, input_precision="tf32") + tl.dot(ones, b_xl, input_precision="tf32")
                if LOC:   # the chunk's sum of q * (dq - its 16-bit value)
                    b_carry2 += tl.load(xq + i_t * K + o_k, mask=m_k, other=0.0)[None, :]
                tl.store(dg + o_t[:, None] * (H * K) + o_k[None, :], b_dg.to(dg.dtype.element_ty), mask=m_tk)
            elif DGS:   # k_t . dk_t as a [BT, 1] column in the layout of the tl.dot's rows
                b_x = b_k.to(tl.float32) * b_dk
                if XP == 1:
                    tl.store(dg + o_t[:, None] * H, tl.sum(b_x, axis=1, keep_dims=True), mask=m_t[:, None])
                else:   # XP partial sums, each inside the warpgroup that holds its columns
                    tl.store(dg + o_t[:, None] * (H * XP) + tl.arange(0, XP)[None, :],
                             tl.sum(tl.reshape(b_x, [BT, XP, BK // XP]), axis=2), mask=m_t[:, None])
            elif DG:
                b_x = b_xqn - tl.sum(b_k.to(tl.float32) * b_dk, axis=1)
                b_xqn = tl.load(xq + (o_t - BT) * H, mask=o_t >= BT, other=0.0)
                b_tot = tl.sum(b_x, axis=0)
                b_dg = b_tot - tl.cumsum(b_x, axis=0) + b_x + b_carry
                b_carry += b_tot
                tl.store(dg + o_t * H, b_dg.to(dg.dtype.element_ty), mask=m_t)
            # dS entering the chunk: exp(G_C) dS_C + scale * sum_t (q_t exp(G_t)) do_t^T
            b_dS = b_dS * b_decay + tl.dot(tl.trans(b_qd), b_do, input_precision=PREC)
    if STORE_DH0:
        if i_s == 0:
            tl.store(dh0 + i_bh * K * V + o_kv, b_dS, mask=m_kv)


@triton.jit
def _sum_a(p_a, m_a, a_part, NA: tl.constexpr, BT: tl.constexpr):
    """The A pass's NA partial sums over K blocks (a_part elements apart) of one [BT, BT] block, fp32."""
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    for i_a in tl.static_range(NA):
        b_A += tl.load(p_a + i_a * a_part, mask=m_a, other=0.0).to(tl.float32)
    return b_A


def _dg_scalar_kernel(xq, xk, dgc, dg, T, H, NS, SCT, BLOCK: tl.constexpr, XPQ: tl.constexpr, XPK: tl.constexpr,
                      PDL: tl.constexpr = False):
    """Scalar decay's dlog_decay: dg_t = dgc[s] + sum_{t <= r < the end of segment s} (xq_r - xk_r), with
    xq_r = q_r . dq_r (the dq sweep), xk_r = k_r . dk_r and dgc[s] the carry into the segment's end (the
    dk/dv sweep). One program per (batch*head, segment) walks the segment's SCT tokens from its end,
    BLOCK at a time (all of them at once where they fit: the loads then overlap). xq, xk: fp32 [B, T, H,
    XPQ] and [B, T, H, XPK], partial sums of each dot product over slices of K (`_x_parts`); dgc:
    [B*H*NS]; dg: [B, T, H]."""
    _grid_dependency(PDL)
    i_p = tl.program_id(0)
    i_s = i_p % NS
    i_bh = (i_p // NS).to(tl.int64)
    base = (i_bh // H) * T * H + i_bh % H
    t0 = i_s * SCT
    t1 = tl.minimum(t0 + SCT, T)
    b_c = tl.load(dgc + i_p)
    o_i = tl.arange(0, BLOCK)
    for j in range(tl.cdiv(t1 - t0, BLOCK)):
        o_t = t1 - (j + 1) * BLOCK + o_i
        m_t = o_t >= t0
        b_x = tl.zeros([BLOCK], dtype=tl.float32)
        for i_x in tl.static_range(XPQ):
            b_x += tl.load(xq + (base + o_t * H) * XPQ + i_x, mask=m_t, other=0.0)
        for i_x in tl.static_range(XPK):
            b_x -= tl.load(xk + (base + o_t * H) * XPK + i_x, mask=m_t, other=0.0)
        b_tot = tl.sum(b_x, axis=0)
        tl.store(dg + base + o_t * H, (b_tot - tl.cumsum(b_x, axis=0) + b_x + b_c).to(dg.dtype.element_ty), mask=m_t)
        b_c += b_tot


def _bwd_dg_kernel(
    q, k, dq_p, dk_p, dg_last, dq, dk, dg, T, NV,
    H, K, BT: tl.constexpr, BK: tl.constexpr, DECAY: tl.constexpr,
    PDL: tl.constexpr = False,
):
    """Epilogue, one program per batch*head covering all of K: sums the fp32 dq, dk partials over V
    blocks, writes dq, dk in the input dtype and dg_t = sum_{r >= t} (q_r dq_r - k_r dk_r) + dg_last,
    a reverse cumulative sum carried across chunks (summed over K for scalar decay).
    dq_p, dk_p: [NV, B, T, H, K] fp32; dg_last: [B*H, K] fp32 = rowsum(dS_T * S_T)."""
    _grid_dependency(PDL)
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
    for j in range(NT):
        o_t = (NT - 1 - j) * BT + o_i
        m_tk = (o_t < T)[:, None] & m_k[None, :]
        offs = base + o_t[:, None] * (H * K) + o_k[None, :]
        b_dq = tl.zeros([BT, BK], dtype=tl.float32)
        b_dk = tl.zeros([BT, BK], dtype=tl.float32)
        for i_v in range(NV):
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


def _sum_partials_kernel(x, out, numel, NP: tl.constexpr, BLOCK: tl.constexpr, PDL: tl.constexpr = False):
    """out = sum over the leading axis of x ([NP, numel] fp32 partials), in out's dtype: one read of
    the partials, one write (torch's sum over the leading axis then a cast took 0.12 ms for dv's two
    [8, 4096, 8, 64] partials on an H100, ~10x the bytes' time)."""
    _grid_dependency(PDL)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for i in tl.static_range(NP):
        acc += tl.load(x + i * numel + offs, mask=mask, other=0.0)
    tl.store(out + offs, acc.to(out.dtype.element_ty), mask=mask)


def _sum_partials(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """x: [NP, ...] fp32 partial sums -> their sum [...] in dtype."""
    out = torch.empty(x.shape[1:], device=x.device, dtype=dtype)
    block = 1024 if not _interpret() else 256
    _launch(_sum_partials_kernel, (cdiv(out.numel(), block),), x, out, out.numel(), NP=x.shape[0], BLOCK=block,
            num_warps=4)
    return out


_JITTED: dict = {}
_ONE_STAGE: set = set()   # (kernel, mode, meta) whose software pipelining ran out of shared memory


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
        # batch size and segment counts only offset pointers / bound loops: one compilation for all values
        params = inspect.signature(fn).parameters
        _JITTED[key] = triton.jit(fn, do_not_specialize=[n for n in ("B", "NS", "SC", "P", "SUB", "FIRST")
                                                         if n in params])
    LAUNCHES[mode] += 1
    if _pdl(args):
        meta = {**meta, "PDL": True, "launch_pdl": True}
    # 128-wide tiles: the loads pipelined over num_stages buffers can exceed the shared memory; retry
    # (and remember) without pipelining rather than fail
    if _ONE_STAGE and _stage_key(key, args, meta) in _ONE_STAGE:
        meta = {**meta, "num_stages": 1}
    try:
        _JITTED[key][grid](*args, **meta)
    except triton.runtime.errors.OutOfResources:
        if meta.get("num_stages") == 1:
            raise
        _ONE_STAGE.add(_stage_key(key, args, meta))
        _JITTED[key][grid](*args, **{**meta, "num_stages": 1})


def _stage_key(key, args, meta) -> tuple:
    return key, tuple(sorted(meta.items())), tuple(a.dtype for a in args if isinstance(a, torch.Tensor))


def _config(K: int, V: int, decay: int, dtype: torch.dtype) -> dict:
    """Chunk and tile sizes. tl.dot needs every dim >= 16. 16-bit inputs: tiles up to 128 wide (K,
    V <= 128 in one block); fp32 inputs (twice the registers and shared memory per tile) stay at 64.
    Scalar / no decay: 8 warps for a 128-wide tile. Per-channel decay: BT = 16 for the backward (TUNE
    "channel_bt"; 32 was slower at K=V=128 and less accurate in dlog_decay, run 8f), BK <= 32 for the
    segment passes (the sweeps widen K, `_wide_k`, `_fwd_config`, `_dkv_config`); V <= 128 in one block
    spares the recomputation of A per V block and the epilogue over V blocks (H100, bf16, B=8 T=4096
    H=8 K=V=128, fwd+bwd: 5.98 ms with BV=64, 5.56 with BV=128, 3.99 with the forward and dq at BK=128
    and 8 warps; `python -m kernels.linear_attention.tune`, results/bench/tune_linear_attention.md).
    Cached per (shape, TUNE) (host overhead): the caller gets its own copy."""
    return dict(_config_cached(K, V, decay, dtype, tuple(sorted(TUNE.items()))))


@functools.lru_cache(maxsize=512)
def _config_cached(K: int, V: int, decay: int, dtype: torch.dtype, tune: tuple) -> dict:
    TUNE = dict(tune)  # noqa: N806 - the snapshot of the module's TUNE this entry was computed for
    max_tile = TUNE.get("max_tile", 128 if dtype in (torch.float16, torch.bfloat16) else 64)
    BT = TUNE.get("channel_bt", 16) if decay == 2 else TUNE.get("BT", 64)
    BK = min(max(16, next_power_of_2(K)), TUNE.get("BK", min(32, max_tile) if decay == 2 else max_tile))
    BV = min(max(16, next_power_of_2(V)), TUNE.get("BV", max_tile))
    prec = "ieee" if dtype == torch.float32 else "tf32"   # fp32 inputs: no silent tf32 rounding
    cfg = dict(BT=BT, BK=BK, BV=BV, DECAY=decay, PREC=prec,
               num_warps=TUNE.get("num_warps", 8 if max(BK, BV) >= 128 and decay != 2 else 4))
    if "num_stages" in TUNE:
        cfg["num_stages"] = TUNE["num_stages"]
    return cfg


def _seg_config(cfg: dict, K: int) -> dict:
    """The segment-state passes' config (`_local_state_kernel`): cfg, or with per-channel decay K blocks
    of SEG_BK (TUNE "seg_bk"), the segment count still computed from cfg's 32-wide blocks. H100, bf16,
    B=8 H=8, fwd+bwd from a CUDA graph, 32 -> 64 wide (with the local dS from the dq sweep, `_fused_dsl`):
    K=V=64 T=4096 0.621 -> 0.602 ms, T=16384 2.375 -> 2.323; K=V=128 1.641 -> 1.587, 6.204 -> 6.076;
    Zoology (one segment) unchanged (results/bench/tune_linear_attention.md run 15). With the segment
    count also from 64-wide blocks, the Zoology shape B=256 T=256 H=1 K=V=64 split into two segments,
    0.146 -> 0.202 ms (run 14)."""
    if cfg["DECAY"] != 2:
        return cfg
    return {**cfg, "BK": min(max(16, next_power_of_2(K)), TUNE.get("seg_bk", SEG_BK))}


def _fused_dsl(cfg: dict, K: int) -> bool:
    """Whether the dq sweep (config `_dq_config(cfg, K)`) also forms each segment's local dS, step (a) of the reverse
    sweep (`_bwd_dq_kernel`'s DSL), instead of `_local_state_kernel` re-reading q and do (TUNE "dsl"
    overrides): yes, unless its tile of the state is [128, 128], where a second fp32 one makes dq spill
    (K=V=128, 8 warps: 44 / 109 / 21 spill loads and stores per chunk with no / scalar / per-channel
    decay, `python -m kernels.sass_stats --ops linear_attention --la-k 128`). H100, bf16, B=8 H=8,
    fwd+bwd from a CUDA graph, without -> with: scalar K=V=64 T=4096 0.272 -> 0.250 ms, T=16384 0.989 ->
    0.906; no decay K=V=64 0.245 -> 0.234, 0.907 -> 0.866; per channel K=V=64 0.722 -> 0.621, 2.741 ->
    2.375; at K=V=128 no decay 0.468 -> 0.477, T=16384 1.693 -> 1.710, scalar 0.641 -> 0.718, 2.343 ->
    2.677 (results/bench/tune_linear_attention.md run 15); per channel at K=V=128 dq 0.353 -> 0.486 ms
    against the pass's 0.080 at 64-wide K blocks (`python -m kernels.profile --ops la`, run 16). Nor where
    per channel dq's K is split by default (`_dq_config`): with the local dS in its two [64, 128] programs,
    B=8 H=8 K=V=128, T=4096 0.946 ms against 0.931 without, T=16384 3.587 against 3.500 (session 22)."""
    if "dsl" in TUNE:
        return bool(TUNE["dsl"])
    cfg_q = _dq_config(cfg, K)
    split = cfg["DECAY"] == 2 and "dq_bk" not in TUNE and cfg_q["BK"] < _wide_k(cfg, K)["BK"]
    return cfg_q["BK"] * cfg_q["BV"] < 128 * 128 and not split


def _res8(K: int) -> bool:
    """Whether per channel the dq sweep hands dk/dv dq's rounding residual as an int8 count of fp32 ulps
    (`_residual_code`) rather than in bf16 (TUNE "res8" overrides): both keep q * dq, and so dlog_decay's
    sums, to 2^-14 of |q * dq| or better (dq alone: 2^-9), and the int8 form moves 1 byte per element each
    way instead of 2 (K=V=64: 1 U of the op's 24, written and read) for a few integer instructions per
    element in both sweeps: offline (`python -m kernels.sass_stats --ops linear_attention --la-variant
    res8=1`, triton 3.6) dq's loop 482 -> 517 instructions per 16 tokens at K=V=64 (the int8 store goes
    through shared memory: 2 barriers), dk/dv's 689 -> 703 (4 spill accesses). H100, bf16, B=8 H=8 K=V=64,
    fwd+bwd from a CUDA graph: T=4096 0.369 -> 0.373 ms, T=16384 1.358 -> 1.381, Zoology B=256 T=256 H=4
    0.330 -> 0.323 (results/bench/tune_linear_attention.md, session 22): off, RES8_MAX_K = 0."""
    return bool(TUNE.get("res8", K <= RES8_MAX_K)) and not _res_chunk(K)   # (sums over chunks replace it)


def _blocked_bwd() -> int:
    """Tokens per block of the blocked backward (TUNE "blocked_bwd"; 0, the default: none). Per channel the
    dk/dv sweep's program walks its segment in blocks from the end, each first by dq's sweep (`_dq_phase`,
    from the state the forward stored at the block's start: fp32 [K, V] per block) and then in reverse by
    dk/dv's, so that the second reading of the block's q, k, v, g, do and dq comes from L2:
    `scripts/experiments/l2_reread.py` moved that access pattern at 113% of copy bandwidth with 64-token
    blocks against 76% for two separate sweeps (H100, session 22). A multiple of the forward's 32-token
    chunks dividing a segment; needs dq's K in one block (`_dq_config`), so K <= 64 unless TUNE dq_bk.
    Untimed (session 22)."""
    return int(TUNE.get("blocked_bwd", 0))


def _fused_bwd() -> bool:
    """Whether per channel the dq sweep runs inside the dk/dv sweep's program, over the same segment just
    before it (TUNE "fused_bwd"; FUSED_DQ), so that the reverse sweep reads q, k, v, g, do (and dq) again
    while they are in L2: with short segments (TUNE "seg_target", e.g. 16 per SM: 256 tokens at B=8 T=4096
    H=8) a resident program's segment is about 200 KB, some 50 MB across two programs per SM. The
    segments' local dS then come from their own reverse pass (`_local_state_kernel`), and the forward can
    keep longer segments (TUNE "fwd_span"). Slower as tried (H100, bf16, B=8 H=8 K=V=64, fwd+bwd from a CUDA
    graph, 16 segments of 256 tokens, the forward's 4: T=4096 0.369 -> 0.470 ms, T=16384 1.358 -> 1.545):
    at 256 tokens little of a segment is left in L2 (`scripts/experiments/l2_reread.py`: blocks of 64 tokens
    re-read from L2, of 256 mostly not), and the reverse segment pass and 16 segments' scans come on top.
    Off by default (results/bench/tune_linear_attention.md, session 22)."""
    return bool(TUNE.get("fused_bwd", False))


def _res_chunk(K: int) -> bool:
    """Whether per channel the dq sweep hands dk/dv only each chunk's sum of q * (dq - dq's 16-bit value),
    fp32 (TUNE "res_chunk"; LOC), instead of the residual per element (`_res8`): dk/dv then forms q * dq
    from the 16-bit dq within the chunk and adds the chunk's exact sum to dlog_decay's carry, so dq's
    rounding (2^-9) reaches dg_t only through the tokens of t's own chunk at or after t, never the sum over
    the rest of the sequence. It moves 4 bytes per channel per chunk each way (K=V=64 T=4096, 16-token
    chunks: 1/8 U) instead of the residual's 1 U (int8) or 2 (bf16), and the dq sweep then reads q in
    every segment (1/4 U more at NS = 4). Slower for the bytes it saves (H100, bf16, B=8 H=8, fwd+bwd from a
    CUDA graph: K=V=64 T=4096 0.369 -> 0.375 ms, T=16384 1.358 -> 1.367; K=V=128 T=4096 0.963 -> 1.019;
    results/bench/tune_linear_attention.md, session 22): off, RES_CHUNK_MAX_K = 0."""
    return bool(TUNE.get("res_chunk", K <= RES_CHUNK_MAX_K))


def _dg_split(cfg_kv: dict) -> bool:
    """Whether scalar decay's dk/dv sweep (config cfg_kv) leaves dlog_decay's sums over the tokens to
    `_dg_scalar_kernel` (TUNE "dg_split" overrides): at 8 warps, where its sum and cumulative sum of
    x_t across the warps per chunk cost more than that kernel. H100, bf16, B=8 H=8, fwd+bwd from a
    CUDA graph: K=V=128 T=16384 2.169 -> 2.120 ms, T=4096 0.601 -> 0.594; at K=V=64 (4 warps) T=4096
    0.244 -> 0.251, Zoology H=4 unchanged (`scripts/experiments/ab_kernels.py la <77f59e8's chunk.py>
    --decays scalar`, results/bench/tune_linear_attention.md run 19)."""
    return TUNE.get("dg_split", cfg_kv["num_warps"] >= 8)


def _x_parts(cfg_kv: dict, which: str) -> int:
    """Partial sums per token of scalar decay's q_t . dq_t (which="xq") or k_t . dk_t ("xk"), over that
    many slices of K, where `_dg_split` holds (TUNE "xq_parts", "xk_parts" override). k . dk: 2 where
    the dk/dv sweep's [BT, BK] tiles at 8 warps put half of the columns in each warpgroup, so that each
    part is summed inside one warpgroup (a reshape of the tl.dot's layout, no data moved) and
    `_dg_scalar_kernel` adds the parts, rather than every row sum crossing warpgroups through shared
    memory per chunk. q . dq stays one sum: there triton 3.6 lays the reshape out from q's load and
    converts the fp32 dq tile through shared memory first. H100, bf16, B=8 H=8 K=V=128, fwd+bwd from a
    CUDA graph (results/bench/tune_linear_attention.md runs 21, 23): one sum each -> k . dk in two
    parts, T=4096 0.595 -> 0.585 ms, T=16384 2.111 -> 2.067 (`scripts/experiments/ab_kernels.py`, three
    readings each); q . dq in two parts too read 0.595 / 2.160 against 0.585 / 2.100 (run 21). With q first
    put in dq's layout by a tl.dot with the identity (exact), two parts took the dq loop from 14 to 9 barriers
    offline, but the H100 read the same, T=4096 0.551 ms without and 0.552 with, T=16384 1.94 either way
    (session 19), so it was not kept."""
    xp = TUNE.get(f"{which}_parts", 2 if which == "xk" and cfg_kv["num_warps"] >= 8 else 1)
    assert cfg_kv["BK"] % xp == 0
    return xp


def _a_transposed(cfg_kv: dict) -> bool:
    """Whether the dk/dv sweep forms A and dA transposed, as A^T = (k q^T) * E^T and dA^T = (v do^T) * E^T
    (AT; no or scalar decay), so that they enter dv's and dk's tl.dots from registers rather than
    through a transpose in shared memory (TUNE "a_t" overrides): with scalar decay at 8 warps. There
    triton lays out a [BT, BT] tl.dot whose result feeds another with all 8 warps along its 64 rows, each
    warpgroup computing the whole tile (`_unchain`), and the transpose was a store to shared memory per
    chunk. Offline (`kernels.sass_stats --la-k 128`): scalar dk/dv loop 1406 -> 1325 instructions,
    barriers 27 -> 23, spill loads/stores 32 -> 25. H100, bf16, B=8 H=8 K=V=128, fwd+bwd from a CUDA
    graph (`scripts/experiments/ab_kernels.py`, three readings each; results/bench/tune_linear_attention.md
    run 24): scalar T=4096 0.587 -> 0.567 ms, T=16384 2.088 -> 2.028; no decay unchanged (0.429 vs 0.431,
    1.525 vs 1.532: its loop went 1196 -> 1111 but its spills 1 -> 18); at 4 warps (K=V=64) slower:
    scalar 0.250 -> 0.270."""
    return cfg_kv["DECAY"] != 2 and TUNE.get("a_t", cfg_kv["DECAY"] == 1 and cfg_kv["num_warps"] >= 8)


def _unchain(cfg: dict) -> bool:
    """Whether the sweeps sum the intra- and inter-chunk tl.dots of an output (o; dq; dk, dv) after
    scaling each (UNCHAIN) rather than accumulating one into the other. Triton lays out a tl.dot whose
    result feeds another tl.dot (its acc included: it turns `x + tl.dot(...)` into one) with all warps
    along the rows; with no or scalar decay at 8 warps and 64-token chunks (K or V = 128) that is 128
    rows of warps for 64 rows, so each warpgroup computed the whole [64, 128] product, held it in
    twice the registers and converted it through shared memory (two barriers per 1/8 of the tile) to
    the other dot's layout. Unchained (f59dc1a), offline (`kernels.sass_stats --la-k 128`, triton 3.6):
    loop instructions per chunk, spill loads/stores and barriers, no decay forward 571 -> 504 (spills
    0, barriers 21 -> 5), dk/dv 1234 -> 1196 (spills 17 -> 1, barriers 40 -> 12); scalar decay forward
    1068 -> 880 (spills 58 -> 0, barriers 34 -> 18), dq 1259 -> 1085 (35 -> 0), dk/dv 1807 -> 1507
    (138 -> 49). At 4 warps (K = V = 64) the rows fit one warpgroup and the extra multiplies only add
    instructions (no decay dk/dv 752 -> 906), so the chained form stays there. Per channel the chunks
    of 16 or 32 tokens use mma.sync, where this does not arise. H100, bf16, B=8 H=8 K=V=128, fwd+bwd
    from a CUDA graph: scalar decay T=4096 1.01 -> 0.67 ms, T=16384 3.81 -> 2.49; no decay 0.529 ->
    0.470, 1.92 -> 1.69 (scripts/experiments/ab_kernels.py)."""
    return cfg["DECAY"] != 2 and cfg["BT"] < 16 * cfg["num_warps"]


def _wide_k(cfg: dict, K: int) -> dict:
    """The sweeps' config with per-channel decay (forward, dq, dk/dv): they hold no [BT, BT, BK]
    tensor (the intra-chunk parts are tl.dots), so K <= 128 (16-bit inputs; 64 for fp32) stays in one
    block, with 8 warps at 128: no partial outputs over K blocks to sum. H100, bf16, B=8 T=4096 H=8,
    fwd+bwd: K=V=64 1.90 vs 1.97 ms with BK=32 (scripts/experiments/la_channel_columns.py); K=V=128
    (with V in one block) 3.99 ms vs 5.56 with BK=32, and 5.99 with BK=128 at 4 warps
    (results/bench/tune_linear_attention.md)."""
    BK = max(16, next_power_of_2(K))
    if cfg["DECAY"] != 2 or BK > TUNE.get("wide_bk", min(128 if cfg["PREC"] == "tf32" else 64,
                                                         TUNE.get("max_tile", 128))):
        return cfg
    return {**cfg, "BK": BK, "num_warps": TUNE.get("wide_warps", 8 if BK >= 128 else cfg["num_warps"])}


A_IN_SWEEP_BK = 64   # per-channel decay: the forward's sweep forms A itself at this K block (`_a_in_sweep`)


def _a_in_sweep(nk: int, bk: int, ref: bool) -> bool:
    """Whether the per-channel forward's sweep forms each chunk's A itself (and stores it for dk/dv)
    instead of loading it from the A pass, which reads q, k and g a second time: with one K block (A sums
    over all of K) of A_IN_SWEEP_BK, where it was measured to win, and never with the reference point
    (`_ref_path`), whose sweeps take the halving's A from the pass for flagged chunks only. TUNE "a_in_sweep"
    overrides (still one K block only, without the reference point). H100, bf16, fwd+bwd from a CUDA graph,
    B=8 H=8 (results/bench/tune_linear_attention.md, session 16): K=V=64 T=4096 0.574 -> 0.567 ms, Zoology
    B=256 T=256 H=4 K=V=64 0.540 -> 0.532; at K=V=128 the sweep, at 8 warps, then runs slower than the pass
    it replaces (T=4096 1.413 -> 1.515, T=16384 5.35 -> 5.77). Smaller blocks keep the pass until timed:
    with it in the sweep at every K <= 64, the benchmark's B=256 T=256 H=4 K=V=16 row read 0.289 ms against
    0.269 two commits before (kernels.md, session 16 note). With the reference point as first written (a
    branch per chunk in the sweeps), the sweep's own halving for the other chunks cost more than the pass:
    K=V=64 T=4096 0.461 vs 0.414 ms, Zoology K=V=16 0.231 vs 0.219 (session 17)."""
    if nk != 1 or ref:
        return False
    return bool(TUNE["a_in_sweep"]) if "a_in_sweep" in TUNE else bk == A_IN_SWEEP_BK


def _ref_path(cfg: dict, K: int, dtype: torch.dtype) -> bool:
    """Whether per-channel decay takes the reference point (REF_RANGE) in chunks whose decay allows it: where
    the forward and dk/dv each hold all of K in one block (A sums over K; dq's intra-chunk part needs only
    dA = do v^T, so its K blocks may be narrower, TUNE "dq_bk") and the input is bf16 or fp32
    (fp16 overflows at e^11); TUNE "ref" = False turns it off. Decided once in the forward, since the
    forward then keeps A only for the chunks that need the halving."""
    if cfg["DECAY"] != 2 or dtype == torch.float16 or not TUNE.get("ref", True):
        return False
    fwd = _fwd_config(cfg, K)   # (its chunks whole multiples of the backward's: one flag each)
    return min(fwd["BK"], _dkv_config(cfg, K)["BK"]) >= K and fwd["BT"] % cfg["BT"] == 0


def _fwd_span(NS: int, decay: int) -> int:
    """How many of the backward's NS segments each of the forward's spans (TUNE "fwd_span"; 1 by default):
    per channel the forward's segment-state pass reads k, v and g over all segments but the last ((NS-1)/NS
    of 3 U), so fewer forward segments read less (NS = 4 -> 2: 2.25 -> 1.5 U), the sweep storing the state
    entering each backward segment on its way; paired with the forward's V in blocks (TUNE "fwd_bv") the
    forward keeps its program count, each program forming the whole of A. Offline the 32-wide V blocks cost
    940 instructions per 32 tokens against 643, so it is timed only with `_fused_bwd` (session 22)."""
    span = int(TUNE.get("fwd_span", 1)) if decay == 2 else 1
    return max(1, min(span, NS))


def _fwd_config(cfg: dict, K: int) -> dict:
    """The forward's config (and its A pass's): `_wide_k`, and with per-channel decay chunks of
    FWD_BT = 32 tokens, the A pass at 2 warps (TUNE "fwd_bt", "intra_warps"; "fwd_bv", "fwd_warps" split the
    forward's V into blocks, each program forming the whole of A, untimed as of session 21); the backward keeps its
    16-token chunks and reads A's diagonal blocks. H100, bf16, B=8 T=4096 H=8 K=V=128, forward: 0.81 ms
    (32 tokens, 2 warps) vs 1.16 (32 tokens, 4 warps), 0.84 (16 tokens, 2 warps), 2.26 (64 tokens, 4
    warps; its A pass then needs 255 registers per thread, `python -m kernels.sass_stats`)
    (results/bench/tune_linear_attention.md runs 8c-8d)."""
    cfg = _wide_k(cfg, K)
    if cfg["DECAY"] != 2:
        return cfg
    return {**cfg, "BT": TUNE.get("fwd_bt", FWD_BT), "BV": TUNE.get("fwd_bv", cfg["BV"]),
            "num_warps": TUNE.get("fwd_warps", cfg["num_warps"])}


def _dq_config(cfg: dict, K: int) -> dict:
    """dq's config: `_wide_k`, or per channel K blocks of TUNE "dq_bk" at "dq_warps" (cfg's num_warps by
    default), and by default DQ_BK-wide blocks where the wide tile would be wider: dq's intra-chunk part
    needs only dA = do v^T, so its K blocks are independent. At K=V=128 (16-bit) that is two 4-warp
    programs of [64, 128] states per (batch*head, segment), two per SM, where one 8-warp [128, 128]
    program was one per SM. H100, bf16, B=8 H=8 K=V=128, fwd+bwd from a CUDA graph, three calls: T=4096
    0.963 / 0.971 / 0.975 -> 0.931 / 0.931 / 0.940 ms, T=16384 3.577 -> 3.500 (the local dS in its own
    pass, `_fused_dsl`; dq's K in 64-wide blocks at 8 warps: 1.072, 3.984; at K=V=64, 32-wide blocks lost:
    0.368 -> 0.501 ms at T=4096; results/bench/tune_linear_attention.md, session 22)."""
    wide = _wide_k(cfg, K)
    if cfg["DECAY"] != 2:
        return wide
    bk = TUNE.get("dq_bk", min(wide["BK"], DQ_BK))
    if bk == wide["BK"] and "dq_warps" not in TUNE:
        return wide
    return {**wide, "BK": bk, "num_warps": TUNE.get("dq_warps", cfg["num_warps"])}


def _dkv_config(cfg: dict, K: int) -> dict:
    """dk/dv's config. Per-channel decay: as the forward's and dq's tiles (`_wide_k`; K <= 128 in one
    block for 16-bit inputs, so dv is written once, with no partials over K blocks to sum), since dk's
    intra-chunk part is factored by halving the chunk (tl.dots) rather than formed as a [BT, BT, BK]
    product, which had bounded BK to 32 at K = 128. TUNE "dkv_bk", "dkv_warps" override."""
    if cfg["DECAY"] != 2:
        return cfg
    wide = _wide_k(cfg, K)
    return {**wide, "BK": TUNE.get("dkv_bk", wide["BK"]), "num_warps": TUNE.get("dkv_warps", wide["num_warps"])}


def _intra_grad_warps(bk: int) -> int:
    """`_intra_grad_kernel`'s num_warps for K blocks of bk (TUNE "intra_grad_warps" overrides):
    INTRA_GRAD_WARPS up to 64, 4 above. H100, bf16, B=8 T=4096 H=8, fwd+bwd from a CUDA graph, 2 -> 4
    warps: K=V=128 1.692 -> 1.641 ms; K=V=64 0.729 -> 0.751, Zoology H=4 K=64 0.555 -> 0.585
    (results/bench/tune_linear_attention.md run 13)."""
    return TUNE.get("intra_grad_warps", INTRA_GRAD_WARPS if bk <= 64 else 4)


def _intra_grad_cap() -> dict:
    """`_intra_grad_kernel`'s register cap, INTRA_GRAD_MAXNREG (TUNE "intra_grad_maxnreg" overrides; 0: none):
    the occupancy it had before its products stopped zeroing rows (168 registers: 6 programs of 2 warps
    or 3 of 4 per SM). Uncapped it now takes 192 (K=V=64) or 175 (K=V=128) registers, one program per
    SM fewer; capped, offline (`python -m kernels.sass_stats --ops linear_attention`, triton 3.6),
    1760 -> 1520 instructions at K=V=64 (23 spilled registers) and 1832 -> 1568 at K=V=128 (8). H100, bf16,
    fwd+bwd from a CUDA graph, uncapped -> capped: B=8 T=4096 H=8 K=V=64 0.597 -> 0.584 ms, K=V=128 1.470 ->
    1.422, Zoology H=4 K=64 0.565 -> 0.547 (results/bench/tune_linear_attention.md run 33)."""
    return _reg_cap("intra_grad_maxnreg", INTRA_GRAD_MAXNREG)


@functools.lru_cache(maxsize=32)
def _level_sums(BT: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The 0/1 matrices M of the intra-chunk passes' levels (`_intra_a_kernel`), [log2(BT), BT, BT] in g's
    dtype: at level l the chunk is cut into 2^(l+1) halves, and M[t, r] = 1 where r lies in t's half and
    r <= t (t in an upper half) or r > t (a lower half), so that M g sums g over t's half up to t or
    after t. Loaded by the passes rather than formed from comparisons in every program (offline,
    `kernels.sass_stats`, triton 3.6: A pass 2256 -> 1880 instructions at K=V=64, 4024 -> 3552 at 128)."""
    i = torch.arange(BT)
    out = []
    for lvl in range(BT.bit_length() - 1):
        half = i // (BT // 2 ** (lvl + 1))
        upper = (half % 2 == 1)[:, None]
        same = half[:, None] == half[None, :]
        out.append(same & torch.where(upper, i[None, :] <= i[:, None], i[None, :] > i[:, None]))
    return torch.stack(out).to(device=device, dtype=dtype).contiguous()


@functools.cache
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _seg_target(decay: int, num_warps: int) -> int:
    """Programs per SM that the segments aim for (TUNE "seg_target" overrides). No or scalar decay: as
    many as fit at once, one 8-warp program (a [128, 128] fp32 state and [64, 128] tiles in 255
    registers per thread fill an SM's 64K) or two 4-warp ones, since programs beyond those only add
    segments, each re-reading its inputs in the segment-state pass, and waves; per channel,
    SEG_TARGET. H100, bf16, B=8 H=8, fwd+bwd from a CUDA graph, 4 per SM -> this: no decay K=V=128
    T=4096 0.632 -> 0.536 ms, T=16384 2.055 -> 1.945, K=V=64 T=4096 0.256 -> 0.245; scalar K=V=128
    T=4096 1.094 -> 0.998, K=V=64 T=4096 0.308 -> 0.295; per channel 1 or 2 per SM lost everywhere
    (K=V=64 T=4096 0.721 -> 1.045 / 0.920 ms) (results/bench/tune_linear_attention.md run 11)."""
    if "seg_target" in TUNE:
        return TUNE["seg_target"]
    return SEG_TARGET if decay == 2 else max(1, 8 // num_warps)


def _segments(programs: int, T: int, BT: int, device: torch.device, target: int) -> tuple[int, int]:
    """(NS, SC): NS segments of SC chunks each, so that programs * NS fills the GPU (about `target`
    programs per SM, `_seg_target`), with at least MIN_SEG_CHUNKS chunks per segment; NS = 1 on the CPU
    unless forced."""
    NT = cdiv(T, BT)
    ns = TUNE.get("ns")
    if ns is None:
        if device.type != "cuda":
            return 1, NT
        index = device.index if device.index is not None else torch.cuda.current_device()
        want = target * _sm_count(index)
        ns = min(want // programs, NT // MIN_SEG_CHUNKS)
    sc = cdiv(NT, max(1, min(int(ns), NT)))
    return cdiv(NT, sc), sc


def _pieces(programs: int, segments: int, SC: int, device: torch.device, target: int) -> int:
    """Pieces per segment for the segment-state pass, step (a). Its states are read at `segments`
    segments only (the forward's not at the last segment, whose sweep writes S_T; the reverse's not at
    the first unless d initial_state is wanted), and their chunks are split into as many pieces as fill
    the GPU (`programs` per piece, about `target` per SM, as `_segments`), a divisor of SC chunks each
    (TUNE "pieces" forces a count, still a divisor): the pass then takes one piece's time rather than
    one segment's. E.g. K=V=128, B*H = 64, NS = 2: one segment in two pieces of T/4, where it had been
    both segments of T/2 each. H100, bf16, B=8 H=8, fwd+bwd from a CUDA graph, whole segments (pieces=1,
    which already skips the unread segments) -> pieces: scalar K=V=128 T=4096 0.627 -> 0.596 ms, T=16384
    2.278 -> 2.164; no decay 0.431 -> 0.426, 1.547 -> 1.535; K=V=64 unchanged; forcing 4 or 8 pieces
    or capping the pass's registers at 128 (two programs per SM) did not gain
    (results/bench/tune_linear_attention.md runs 17-18)."""
    m = TUNE.get("pieces")
    if m is None:
        if device.type != "cuda":
            return 1
        index = device.index if device.index is not None else torch.cuda.current_device()
        m = target * _sm_count(index) // max(1, programs * segments)
    m = max(1, min(int(m), SC))
    while SC % m:
        m -= 1
    return m


def _scan(x, gp, s0, P: int, SUB: int, NS: int, first: int, reverse: bool, decay: int,
          K: int, V: int, BH: int, dummy) -> torch.Tensor:
    """Step (b) over P pieces' local states x (gp: their log decays), SUB per segment: the states at the
    segments' boundaries, [BH*NS, K, V] fp32 (`_scan_kernel`)."""
    out = torch.empty(BH * NS, K, V, device=x.device, dtype=torch.float32)
    _launch(_scan_kernel, (BH, cdiv(K * V, SCAN_BLOCK)), x, gp if gp is not None else dummy,
            s0 if s0 is not None else dummy, out, P, SUB, NS, first, K, V,
            BLOCK=SCAN_BLOCK, DECAY=decay, USE_S0=s0 is not None, REVERSE=reverse, num_warps=4)
    return out


def _reg_cap(key: str, default: int = 0) -> dict:
    """{"maxnreg": cap} for a compiled launch, cap = TUNE[key] or else default (0: no cap), else {}."""
    cap = TUNE.get(key, default)
    return {"maxnreg": cap} if cap and not _interpret() else {}


def _local_states(a, b, g, T: int, scale: float, NS: int, SC: int, reverse: bool, cfg_s: dict, B: int, H: int,
                  K: int, V: int, target: int, dummy) -> tuple:
    """Step (a) over the segments whose boundary states are read, in pieces (`_pieces`): forward (a, b = k,
    v) segments 0 .. NS-2, reverse (q, do) segments 1 .. NS-1 (d S_0 comes from the dk/dv sweep of segment
    0). Returns (x [B*H*P, K, V] fp32, their log decays gx [B*H*P(, K)] fp32 or None, P, pieces per segment);
    SC: chunks (of cfg_s's BT) per segment."""
    decay, NV, NKS = cfg_s["DECAY"], cdiv(V, cfg_s["BV"]), cdiv(K, cfg_s["BK"])
    m = _pieces(B * H * NV * NKS, NS - 1, SC, a.device, target)
    P = (NS - 1) * m
    x = torch.empty(B * H * P, K, V, device=a.device, dtype=torch.float32)
    gp = torch.empty(B * H * P * (K if decay == 2 else 1), device=a.device, dtype=torch.float32) if decay else None
    cap = _reg_cap("seg_maxnreg")
    _launch(_local_state_kernel, (B * H * P, NV, NKS), a, b, g, x, gp if gp is not None else dummy, T, scale,
            H=H, K=K, V=V, NS=P, SC=SC // m, C0=SC if reverse else 0, REVERSE=reverse, **cfg_s, **cap)
    return x, gp, P, m


def _fused_scan(P: int, decay: int) -> bool:
    """Whether the sweeps do step (b) themselves (FSCAN), over P pieces (the most one program combines),
    rather than `_scan_kernel` (TUNE "fused_scan" overrides): with no or scalar decay up to
    FUSED_SCAN_PIECES, where the pieces a sweep's program loads before its first chunk cost less than a
    launch that reads them all and writes the boundary states for the sweep to read again (a program of
    segment s loads the pieces of the segments before it: the total grows with NS^2). H100, bf16, B=8 H=8,
    fwd+bwd from a CUDA graph (`scripts/experiments/ab_kernels.py`, medians of three): scalar K=V=128
    T=4096 0.545 -> 0.519 ms, T=16384 1.913 -> 1.868, K=V=64 0.243 -> 0.237; no decay K=V=64 0.224 ->
    0.216, K=V=128 0.422 -> 0.416; Zoology (one segment) unchanged. Per channel it lost at K=V=128 (4
    pieces of [128, 128] with a decay per row: T=4096 0.943 -> 0.979, T=16384 3.58 -> 3.77) and was even
    at K=V=64 (results/bench/runs/s20_ab_fused_scan_h100.log)."""
    return bool(TUNE.get("fused_scan", decay != 2 and 0 < P <= FUSED_SCAN_PIECES))


def _no_scan(s0, dummy, reverse: bool) -> tuple:
    """`_boundary_states`'s answer for one segment: the sweep starts from s0 (S_0 or d S_T), no pieces."""
    return s0, s0, (dummy, dummy), {"P": 0, "SUB": 1, "FSCAN": False, **({"FIRST": 0} if reverse else {})}


def _boundary_states(x, gx, s0, P: int, SUB: int, NS: int, first: int, reverse: bool, decay: int, K: int, V: int,
                     BH: int, dummy) -> tuple:
    """Step (b) for a sweep: (states, start, (x, gx), meta). With `_fused_scan` the sweep combines the pieces
    x itself, starting from s0 (S_0 or d S_T): states is the buffer the forward's sweep stores them to (S_in,
    for the backward; None in reverse) and meta sets FSCAN, P, SUB (and FIRST in reverse). Else
    `_scan_kernel` forms the states here, and the sweep starts from them."""
    meta = {"FIRST": first} if reverse else {}
    if _fused_scan(P, decay):
        out = None if reverse else torch.empty(BH * NS, K, V, device=x.device, dtype=torch.float32)
        return out, s0, (x, gx if gx is not None else dummy), {**meta, "P": P, "SUB": SUB, "FSCAN": True}
    out = _scan(x, gx, s0, P, SUB, NS, first, reverse, decay, K, V, BH, dummy)
    return out, out, (dummy, dummy), {**meta, "P": 0, "SUB": 1, "FSCAN": False}


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
        NK, NV = cdiv(K, cfg["BK"]), cdiv(V, cfg["BV"])
        # the forward's chunks (per channel FWD_BT = 32 tokens, `_fwd_config`) and the backward's (cfg) split T
        # into the same segments: SC forward chunks, SC * BT_f / BT backward chunks each
        cfg_f = _fwd_config(cfg, K)
        target = _seg_target(decay, cfg["num_warps"])             # programs per SM, for segments and pieces
        NS, SC = _segments(B * H * NV * NK, T, cfg_f["BT"], q.device, target)
        # the blocked backward (`_blocked_bwd`): the state entering every block of blk tokens; segments of
        # whole blocks
        blk = _blocked_bwd() if decay == 2 and any(ctx.needs_input_grad[:4]) else 0
        if blk and (blk % cfg_f["BT"] or blk % cfg["BT"]):
            raise ValueError(f"TUNE blocked_bwd={blk}: a block must be a whole number of the forward's "
                             f"{cfg_f['BT']}-token chunks")
        if blk:
            SC = cdiv(SC, blk // cfg_f["BT"]) * (blk // cfg_f["BT"])
            NS = cdiv(cdiv(T, cfg_f["BT"]), SC)
        dev = q.device
        # with one K block the kernel writes o directly, else fp32 partials that _sum_partials adds
        NKF = cdiv(K, cfg_f["BK"])
        o = torch.empty(NKF, B, T, H, V, device=dev, dtype=v.dtype if NKF == 1 else torch.float32)
        ht = torch.empty(B, H, K, V, device=dev, dtype=torch.float32)
        dummy = q  # placeholder pointer for absent optional tensors (never read: constexpr flags)
        # scalar decay: the kernels read G, the chunk-local cumulative sums of g
        gc = _chunk_log_decay(g, cfg_f["BT"]) if decay == 1 else None
        gp = gc if decay == 1 else g if g is not None else dummy
        # the forward's own segments: SPAN of the backward's each (`_fwd_span`)
        span = _fwd_span(NS, decay)
        NSF = cdiv(NS, span)
        seg = {"H": H, "K": K, "V": V, "NS": NSF, "SC": SC * span, "SPAN": span, "NSB": NS}
        # s_in: the state entering each segment (kept for the backward); s0: the sweep's start
        s_in, s0, pieces, scan = _no_scan(h0f, dummy, False)
        if NSF > 1:
            x, gx, P, m = _local_states(k, v, gp, T, scale, NSF, SC * span, False,
                                        {**_seg_config(cfg, K), "BT": cfg_f["BT"]}, B, H, K, V, target, dummy)
            s_in, s0, pieces, scan = _boundary_states(x, gx, h0f, P, m, NSF, 0, False, decay, K, V, B * H, dummy)
        if span > 1:   # every backward segment's entering state, stored by the sweep
            s_in = torch.empty(B * H * NS, K, V, device=dev, dtype=torch.float32)
        # per-channel decay: A of (1) by a parallel pass over the forward's chunks, for its sweep and
        # kept for dk/dv's A^T do: [NKF, B, T, H, BT_f], partial sums over the K blocks (fp32), or with
        # one K block in the input dtype (the tl.dots round A to it)
        a, msum = None, dummy
        grads = any(ctx.needs_input_grad[:4])
        ref = _ref_path(cfg, K, q.dtype)   # chunks whose decay allows it: A and its gradients by tl.dots
        a_in = decay == 2 and _a_in_sweep(NKF, cfg_f["BK"], ref)  # A formed by the sweep itself
        # REF: the flags of the forward's chunks that need the halving (int8 [B*H, chunks]), set by the
        # forward's sweep and read by every later kernel
        flag = torch.empty(B * H, cdiv(T, cfg_f["BT"]), device=dev, dtype=torch.int8) if ref else dummy
        s_blk = torch.empty(B * H * cdiv(T, blk), K, V, device=dev, dtype=torch.float32) if blk else None
        nc = cdiv(T, cfg_f["BT"])
        if decay == 2:
            msum = _level_sums(cfg_f["BT"], g.dtype, dev)
            if grads or not a_in:
                a = torch.empty(NKF, B, T, H, cfg_f["BT"], device=dev, dtype=q.dtype if NKF == 1 else torch.float32)
            if not ref and not a_in:
                _launch(_intra_a_kernel, (B * H * nc, NKF), q, k, g, a, msum, flag, dummy, dummy, T, scale, B, H, K, V,
                        BT=cfg_f["BT"], BK=cfg_f["BK"], PREC=cfg_f["PREC"],
                        num_warps=TUNE.get("intra_warps", A_PASS_WARPS))
        _launch(_fwd_kernel, (B * H * NSF, cdiv(V, cfg_f["BV"]), NKF), q, k, v, gp,
                s0 if s0 is not None else dummy, o, ht,
                a if a is not None else dummy, msum, flag, *pieces, s_in if s_in is not None else dummy, T, scale,
                B=B, USE_S0=s0 is not None, NA=0 if a is None or a_in or ref else NKF, A_IN=a_in,
                s_blk=s_blk if blk else dummy, CPBF=blk // cfg_f["BT"] if blk else 0,
                STORE_A=a_in and a is not None, REF=ref, UNCHAIN=_unchain(cfg_f), **seg, **scan, **cfg_f,
                **_reg_cap("sweep_maxnreg"))
        if ref:   # A for the chunks the sweep flagged, and their A v into o (REF_WALK chunks per program)
            _launch(_intra_a_kernel, (B * H * cdiv(nc, REF_WALK), 1), q, k, g, a, msum, flag, v, o, T, scale, B, H,
                    K, V, BT=cfg_f["BT"], BK=cfg_f["BK"], PREC=cfg_f["PREC"], REF=True, W=REF_WALK, BV=cfg_f["BV"],
                    num_warps=TUNE.get("intra_warps", A_PASS_WARPS))
        o = o[0] if NKF == 1 else _sum_partials(o, v.dtype)
        a = a if grads or ref else None                             # (REF: A only where flagged, all kept)
        ctx.save_for_backward(q, k, v, g, gc, s_in, ht, s_blk, flag if ref else None, a)
        ctx.cpb = blk // cfg["BT"] if blk else 0                  # the backward's chunks per block
        ctx.scale, ctx.decay, ctx.has_h0, ctx.ns, ctx.ref = scale, decay, h0 is not None, NS, ref
        ctx.sc = SC * cfg_f["BT"] // cfg["BT"]                     # the backward's chunks per segment
        ctx.fr = max(1, cfg_f["BT"] // cfg["BT"])                  # backward chunks per forward chunk (flags)
        ctx.set_materialize_grads(False)
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        q, k, v, g, gc, s_in, ht, s_blk, flag, a = ctx.saved_tensors
        B, T, H, K = q.shape
        V = v.shape[-1]
        decay, NS, dev = ctx.decay, ctx.ns, q.device
        do = torch.zeros_like(v) if do is None else do.to(v.dtype).contiguous()
        cfg = _config(K, V, decay, q.dtype)
        NK, NV = cdiv(K, cfg["BK"]), cdiv(V, cfg["BV"])
        seg = {"B": B, "H": H, "K": K, "V": V, "NS": NS, "SC": ctx.sc}
        dummy = q
        flag = dummy if flag is None else flag
        assert decay != 1 or gc.shape[1] == cdiv(T, cfg["BT"]) * cfg["BT"], "TUNE changed since the forward"
        gp = gc if decay == 1 else g if g is not None else dummy
        # one V block: dq, dk written once in the input dtype and the kernels finish dg (scalar decay
        # also needs one K block: dg sums over K). Otherwise fp32 partials over V blocks and the epilogue.
        direct = NV == 1 and (decay != 1 or NK == 1)
        dg_in_kernel = direct and decay > 0
        if direct:
            dq, dk = torch.empty_like(q), torch.empty_like(k)
        else:
            dq = torch.empty(NV, B, T, H, K, device=dev, dtype=torch.float32)
            dk = torch.empty(NV, B, T, H, K, device=dev, dtype=torch.float32)
        cfg_kv = _dkv_config(cfg, K)
        # dgs: dk/dv writes k . dk (xk) and the segments' carries (dgc), and _dg_scalar_kernel forms dg
        dgs = dg_in_kernel and decay == 1 and _dg_split(cfg_kv)
        xpq, xpk = _x_parts(cfg_kv, "xq") if dgs else 1, _x_parts(cfg_kv, "xk") if dgs else 1
        # per channel dk/dv forms q * dq from dq and, for 16-bit dq, the dq sweep's rounding residual (lo)
        lo = dg_in_kernel and decay == 2 and dq.dtype != torch.float32
        loc = lo and _res_chunk(K)                       # the residual summed over each chunk
        lo8 = (10 if dq.dtype == torch.bfloat16 else 7) if lo and _res8(K) else 0   # int8 residual: its shift
        if dg_in_kernel and decay != 2:
            xq = torch.empty(*g.shape, xpq, device=dev, dtype=torch.float32)
        elif loc:
            xq = torch.empty(B * H, cdiv(T, cfg["BT"]), K, device=dev, dtype=torch.float32)
        else:
            xq = torch.empty(q.shape, device=dev, dtype=torch.int8 if lo8 else torch.bfloat16) if lo else dummy
        cfg_q = _dq_config(cfg, K)
        NKQ = cdiv(K, cfg_q["BK"])
        assert not ctx.ref or cdiv(K, _dkv_config(cfg, K)["BK"]) == 1, "TUNE changed since the forward"
        # per channel: the intra-chunk parts of dq and dk by a parallel pass, which the sweeps add
        qi = ki = dummy
        if decay == 2:
            qi, ki = torch.empty_like(q), torch.empty_like(k)
            grid = (B * H * cdiv(cdiv(T, cfg["BT"] * ctx.fr), REF_WALK), 1) if ctx.ref else (B * H * cdiv(T, cfg["BT"]), NKQ)
            bki = cfg_kv["BK"] if ctx.ref else cfg_q["BK"]   # (REF: all of K, whatever dq's blocks)
            _launch(_intra_grad_kernel, grid, q, k, v, g, do, qi, ki,
                    _level_sums(cfg["BT"], g.dtype, dev), flag, T, ctx.scale,
                    B, H, K, V, BT=cfg["BT"], BK=bki, BV=cfg["BV"], PREC=cfg["PREC"], REF=ctx.ref, FR=ctx.fr,
                    W=REF_WALK if ctx.ref else 1, num_warps=_intra_grad_warps(bki), **_intra_grad_cap())
        dht_c = None if dht is None else dht.float().contiguous()
        dh0 = torch.empty(B, H, K, V, device=dev, dtype=torch.float32) if ctx.has_h0 else None
        fused = decay == 2 and dg_in_kernel and (_fused_bwd() or ctx.cpb > 0) and NV == 1 and NKQ == 1 \
            and cfg_kv["BK"] >= K and cfg_q["num_warps"] == cfg_kv["num_warps"]   # dq inside dk/dv (`_fused_bwd`)
        cpb = ctx.cpb if fused else 0                                 # block by block (`_blocked_bwd`)
        dsl = NS > 1 and _fused_dsl(cfg, K) and not fused   # the segments' local dS (step (a)) from dq
        dsl_x = torch.empty(B * H * NS, K, V, device=dev, dtype=torch.float32) if dsl else None
        dsl_g = torch.empty(B * H * NS * (K if decay == 2 else 1), device=dev, dtype=torch.float32) \
            if dsl and decay else None
        if not fused:
            _launch(_bwd_dq_kernel, (B * H * NS, NV, NKQ), q, k, v, gp,
                    s_in if s_in is not None else dummy, do, dq, xq, qi, dsl_x if dsl else dummy,
                    dsl_g if dsl_g is not None else dummy, flag, T, ctx.scale,
                    USE_S0=s_in is not None, DG=dg_in_kernel, DSL=dsl, UNCHAIN=_unchain(cfg_q), XP=xpq,
                    REF=ctx.ref, FR=ctx.fr, LO=lo, LO8=lo8, LOC=loc,
                    **seg, **cfg_q, **_reg_cap("sweep_maxnreg"))
        # ds0: the dk/dv sweep's start (dS at its segment's end, or d S_T with the pieces after it)
        _, ds0, pieces, scan = _no_scan(dht_c, dummy, True)
        if dsl:   # every segment's local dS: the scan over them, one piece per segment (that of segment 0 unread)
            _, ds0, pieces, scan = _boundary_states(dsl_x, dsl_g, dht_c, NS, 1, NS, 0, True, decay, K, V, B * H, dummy)
        elif NS > 1:
            x, gx, P, m = _local_states(q, do, gp, T, ctx.scale, NS, ctx.sc, True, _seg_config(cfg, K), B, H, K, V,
                                        _seg_target(decay, cfg["num_warps"]), dummy)
            _, ds0, pieces, scan = _boundary_states(x, gx, dht_c, P, m, NS, 1, True, decay, K, V, B * H, dummy)
        NKV = cdiv(K, cfg_kv["BK"])
        if decay == 2 and a is None:
            # only d initial_state follows, so the forward kept no A: dk/dv's chunks' A by the A pass
            bka = _wide_k(cfg, K)["BK"]
            NKA = cdiv(K, bka)
            a = torch.empty(NKA, B, T, H, cfg["BT"], device=dev, dtype=q.dtype if NKA == 1 else torch.float32)
            _launch(_intra_a_kernel, (B * H * cdiv(T, cfg["BT"]), NKA), q, k, g, a,
                    _level_sums(cfg["BT"], g.dtype, dev), dummy, dummy, dummy, T, ctx.scale, B, H, K, V, BT=cfg["BT"],
                    BK=bka, PREC=cfg["PREC"], num_warps=TUNE.get("intra_warps", A_PASS_WARPS))
        dv = torch.empty_like(v) if NKV == 1 else torch.empty(NKV, B, T, H, V, device=dev, dtype=torch.float32)
        dg = torch.empty_like(g) if dg_in_kernel else dummy
        xk = torch.empty(*g.shape, xpk, device=dev, dtype=torch.float32) if dgs else None
        dgc = torch.empty(B * H * NS, device=dev, dtype=torch.float32) if dgs else dummy
        _launch(_bwd_dkv_kernel, (B * H * NS, NV, NKV), q, k, v, gp, do, ds0 if ds0 is not None else dummy, dk, dv,
                dh0 if dh0 is not None else dummy, xq, dq, s_in if s_in is not None else dummy, ht,
                xk if dgs else dg, dgc,
                a if a is not None else dummy, ki, flag, *pieces, T, ctx.scale,
                USE_DS0=ds0 is not None, STORE_DH0=ctx.has_h0, DG=dg_in_kernel, DGS=dgs,
                NA=0 if a is None else a.shape[0], AW=cfg_kv["BT"] if a is None else a.shape[-1],
                UNCHAIN=_unchain(cfg_kv), XP=xpk, AT=_a_transposed(cfg_kv), REF=ctx.ref, FR=ctx.fr, LO=lo,
                LO8=lo8, LOC=loc, qi=qi, FUSED_DQ=fused, S0_IN=s_in is not None, s_blk=s_blk if cpb else dummy,
                CPB=cpb, **seg, **scan, **cfg_kv,
                **_reg_cap("sweep_maxnreg"))
        if NKV > 1:
            dv = _sum_partials(dv, v.dtype)
        if dgs:
            sct = ctx.sc * cfg["BT"]                                # a segment's tokens: one block if they fit
            block = min(256 if _interpret() else 16384, next_power_of_2(sct))
            _launch(_dg_scalar_kernel, (B * H * NS,), xq, xk, dgc, dg, T, H, NS, sct, BLOCK=block, XPQ=xpq, XPK=xpk,
                    num_warps=8 if block >= 4096 else 4)
        if not direct:
            # epilogue: dq, dk in the input dtype and dg (G_T also scales S_T: dg_last = rowsum(dS_T * S_T))
            dq_p, dk_p = dq, dk
            dq, dk = torch.empty_like(q), torch.empty_like(k)
            dg = torch.empty_like(g) if g is not None else dummy
            dg_last = (dht_c * ht).sum(-1) if dht is not None and g is not None else torch.zeros(
                B, H, K, device=dev, dtype=torch.float32)
            _launch(_bwd_dg_kernel, (B * H,), q, k, dq_p, dk_p, dg_last, dq, dk, dg, T, NV, H=H, K=K,
                    BT=32, BK=max(16, next_power_of_2(K)), DECAY=decay, num_warps=4)
        return (dq, dk, dv, dg if g is not None else None, dh0 if ctx.has_h0 else None, None)


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
