"""Triton forward and backward for the diagonal linear recurrence.

    forward:   h_t = a_t ⊙ h_{t-1} + b_t                    h_{-1} = h0        (HGRN eq. 3; MLGRU eq. 5)
    backward:  g_t = ∂L/∂h_t (total) = dh_t + a_{t+1} ⊙ g_{t+1}                 (the same recurrence,
               db_t = g_t,  da_t = g_t ⊙ h_{t-1},  dh0 = a_0 ⊙ g_0              run backwards in time)

Each program owns one batch row, BLOCK_D channels and one chunk of time. It walks its chunk in tiles
of BLOCK_T steps; inside a tile the pairs (a_t, b_t) are composed with `tl.associative_scan` under
(a1, b1) ∘ (a2, b2) = (a1 a2, a2 b1 + b2) (Blelloch 1990; Martin & Cundy 2018, arXiv 1709.04057),
then the carried state is added: h = (∏a) h_carry + scan(b). No division by products of a, so
a = 0 is exact. The backward walks time in reverse by reversing the *addresses* it loads
(t = T-1-τ), so only forward scans are used (`associative_scan(reverse=True)` has had
argument-order bugs for non-commutative combines across triton releases).

When B·D/BLOCK_D programs cannot fill the GPU (e.g. B=8), time is cut into chunks
(a scan across chunks, as in Blelloch's two-level scan):
    1. STATE_ONLY pass: each chunk scans from a zero state, keeps (∏a over the chunk, end state);
    2. carry: the chunk end states are themselves a linear recurrence over chunks, stepped through
       by a small kernel (`chunk_carries`) on [B, n_chunks, D];
    3. final pass: each chunk rescans from its true initial state and writes h (or db, da).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._host import cdiv, next_power_of_2


@triton.jit
def affine_combine(a1, b1, a2, b2):
    """(a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _lr_tile_loads(a_ptr, b_ptr, hsave_ptr, h0_ptr, base, bidx, tau0, tau_end, T, D, rows, offs_d, mask_d,
                   REVERSE: tl.constexpr, HAS_H0: tl.constexpr, STATE_ONLY: tl.constexpr):
    """The [BLOCK_T, BLOCK_D] inputs of the tile at scan position tau0 (fp32): a (the backward's
    a_{t+1}; 1 on padding rows: identity maps), b, and for the backward's da the previous state
    h_{t-1} (h_{-1} = the initial state, or 0; 0 unless REVERSE and not STATE_ONLY)."""
    tau = tau0 + rows
    valid = tau < tau_end
    if REVERSE:
        t = T - 1 - tau                                      # backward: walk time from the end
        ta = t + 1                                           # g_t = a_{t+1} g_{t+1} + dh_t
    else:
        t = tau
        ta = t
    m2 = valid[:, None] & mask_d[None, :]
    off = base + t.to(tl.int64)[:, None] * D + offs_d[None, :]
    off_a = base + ta.to(tl.int64)[:, None] * D + offs_d[None, :]
    a = tl.load(a_ptr + off_a, mask=m2 & (ta < T)[:, None], other=0.0).to(tl.float32)
    a = tl.where(m2, a, 1.0)
    b = tl.load(b_ptr + off, mask=m2, other=0.0).to(tl.float32)
    hp = tl.zeros_like(b)
    if REVERSE and not STATE_ONLY:
        hp = tl.load(hsave_ptr + off - D, mask=m2 & (t >= 1)[:, None], other=0.0).to(tl.float32)
        if HAS_H0:
            h0 = tl.load(h0_ptr + bidx.to(tl.int64) * D + offs_d, mask=mask_d, other=0.0)
            hp = tl.where((t == 0)[:, None], h0.to(tl.float32)[None, :], hp)
    return a, b, hp


@triton.jit
def _lr_scan_kernel(a_ptr, b_ptr, init_ptr, out_ptr, pend_ptr, hend_ptr,
                    hsave_ptr, h0_ptr, da_ptr, dh0_ptr,
                    T, D, chunk_len, n_dblk, n_chunks,
                    HAS_INIT: tl.constexpr, STATE_ONLY: tl.constexpr, REVERSE: tl.constexpr,
                    HAS_H0: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
                    PREFETCH: tl.constexpr):
    # a, b, out, hsave, da: [B, T, D]; init, pend, hend: [B, n_chunks, D]; h0, dh0: [B, D]
    pid = tl.program_id(0)
    dblk = pid % n_dblk
    chunk = (pid // n_dblk) % n_chunks
    bidx = pid // (n_dblk * n_chunks)
    offs_d = dblk * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    base = bidx.to(tl.int64) * T * D
    state_off = (bidx.to(tl.int64) * n_chunks + chunk) * D + offs_d   # [BLOCK_D]

    if HAS_INIT:
        h = tl.load(init_ptr + state_off, mask=mask_d, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D], dtype=tl.float32)
    p = tl.full([BLOCK_D], 1.0, dtype=tl.float32)          # ∏ a over the chunk (STATE_ONLY)
    rows = tl.arange(0, BLOCK_T)
    tau_start = chunk * chunk_len
    tau_end = tl.minimum(tau_start + chunk_len, T)
    # PREFETCH: each tile's loads are issued one tile ahead (they do not depend on the carried state),
    # so that their latency overlaps the previous tile's scan (see TILES_LONG)
    if PREFETCH:
        a_n, b_n, hp_n = _lr_tile_loads(a_ptr, b_ptr, hsave_ptr, h0_ptr, base, bidx, tau_start, tau_end, T, D,
                                        rows, offs_d, mask_d, REVERSE, HAS_H0, STATE_ONLY)
    for tau0 in range(tau_start, tau_end, BLOCK_T):
        if PREFETCH:
            a, b, hp = a_n, b_n, hp_n
            a_n, b_n, hp_n = _lr_tile_loads(a_ptr, b_ptr, hsave_ptr, h0_ptr, base, bidx, tau0 + BLOCK_T, tau_end,
                                            T, D, rows, offs_d, mask_d, REVERSE, HAS_H0, STATE_ONLY)
        else:
            a, b, hp = _lr_tile_loads(a_ptr, b_ptr, hsave_ptr, h0_ptr, base, bidx, tau0, tau_end, T, D, rows,
                                      offs_d, mask_d, REVERSE, HAS_H0, STATE_ONLY)
        tau = tau0 + rows                                    # position in scan order
        valid = tau < tau_end
        t = T - 1 - tau if REVERSE else tau                  # backward: walk time from the end
        m2 = valid[:, None] & mask_d[None, :]                # [BLOCK_T, BLOCK_D]
        off = base + t.to(tl.int64)[:, None] * D + offs_d[None, :]
        pa, pb = tl.associative_scan((a, b), 0, affine_combine)
        hs = pa * h[None, :] + pb                            # [BLOCK_T, BLOCK_D] states
        if not STATE_ONLY:
            tl.store(out_ptr + off, hs.to(out_ptr.dtype.element_ty), mask=m2)
            if REVERSE:   # da_t = g_t h_{t-1}
                tl.store(da_ptr + off, (hs * hp).to(da_ptr.dtype.element_ty), mask=m2)
        # padding rows are identity maps, so the last row holds the state after the tile
        last = (rows == BLOCK_T - 1)[:, None]
        h = tl.sum(tl.where(last, hs, 0.0), axis=0)
        if STATE_ONLY:
            p = p * tl.sum(tl.where(last, pa, 0.0), axis=0)
    if STATE_ONLY:
        tl.store(pend_ptr + state_off, p, mask=mask_d)
        tl.store(hend_ptr + state_off, h, mask=mask_d)
    elif REVERSE and HAS_H0:
        # the chunk holding t = 0 ends (in reverse order) with h = g_0: dh0 = a_0 g_0
        at_start = mask_d & ((offs_d * 0 + chunk) == n_chunks - 1)
        a0 = tl.load(a_ptr + base + offs_d, mask=at_start, other=0.0).to(tl.float32)
        tl.store(dh0_ptr + bidx.to(tl.int64) * D + offs_d, (a0 * h).to(dh0_ptr.dtype.element_ty), mask=at_start)


@triton.jit
def _chunk_carry_kernel(prod_ptr, end_ptr, first_ptr, out_ptr, n_chunks, W, n_blk,
                        HAS_FIRST: tl.constexpr, REVERSE: tl.constexpr, BLOCK: tl.constexpr):
    # prod, end, out: [B, n_chunks, W] fp32; first: [B, W]. Walking the chunks in order (from the
    # last if REVERSE): out[c] = s (the state entering chunk c), then s = prod[c] s + end[c].
    pid = tl.program_id(0)
    bidx = (pid // n_blk).to(tl.int64)
    offs = (pid % n_blk) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < W
    if HAS_FIRST:
        s = tl.load(first_ptr + bidx * W + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        s = tl.zeros([BLOCK], dtype=tl.float32)
    # chunk c's (prod, end) are loaded one step ahead: their latency overlaps the previous step
    c = n_chunks - 1 if REVERSE else 0
    off = (bidx * n_chunks + c) * W + offs
    pr, en = tl.load(prod_ptr + off, mask=mask, other=1.0), tl.load(end_ptr + off, mask=mask, other=0.0)
    for i in range(0, n_chunks):
        c = n_chunks - 1 - i if REVERSE else i
        off = (bidx * n_chunks + c) * W + offs
        nxt = off - W if REVERSE else off + W
        m_n = mask & (offs * 0 + i + 1 < n_chunks)
        pr_n, en_n = tl.load(prod_ptr + nxt, mask=m_n, other=1.0), tl.load(end_ptr + nxt, mask=m_n, other=0.0)
        tl.store(out_ptr + off, s, mask=mask)
        s = pr * s + en
        pr, en = pr_n, en_n


# True when TRITON_INTERPRET=1 was set at import: the kernels then run in Triton's interpreter
INTERPRETED = type(_lr_scan_kernel).__name__ == "InterpretedFunction"


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # interpreter: a small number, so that tests exercise the chunked path


def _plan(Bsz: int, T: int, D: int, device: torch.device, chunk_len: int | None,
          block_t: int, block_d: int, warps: int = 4) -> tuple[int, int]:
    """Chunk length and count: enough programs for ~16 warps per SM (4 programs of 4 warps),
    chunks >= 4 tiles."""
    n_prog = Bsz * cdiv(D, block_d)
    if chunk_len is None:
        target = 16 * _sm_count(device) // warps
        n_chunks = min(cdiv(target, n_prog), cdiv(T, 4 * block_t))
        n_chunks = max(n_chunks, 1)
        chunk_len = cdiv(cdiv(T, n_chunks), block_t) * block_t
    chunk_len = max(1, min(chunk_len, T))
    return chunk_len, cdiv(T, chunk_len)


# (BLOCK_T, BLOCK_D, num_warps) by element size of b. Why bf16 ran at half fp32's efficiency: both
# were bound by the per-element cost of the scan, not by bytes. Triton's load layout gives each
# thread one 16-byte vector along D (8 bf16 or 4 fp32 channels) and spreads the remaining lanes and
# warps along T, so `associative_scan` over T became lane shuffles plus a cross-warp pass through
# shared memory; the same per-element cost moves half the bytes in bf16. With BLOCK_D = 8 channels x
# 32 lanes x num_warps (bf16) every thread holds whole columns [BLOCK_T, 8] and the scan over T is
# sequential in registers (2 FMAs per element, no shuffles); short BLOCK_T keeps registers in check.
# Compiled for sm_90 (triton 3.9, D divisible by 16), the tile loop of bf16 (64, 64, 4) holds 224 lane
# shuffles and 7 barriers and fp32 (32, 128, 4) 72 and 7; bf16 (8, 256, 1) none (121 / 168 registers
# forward / backward, no spills). fp32 keeps its measured tile until `kernels.tune_scans` has timed
# the in-register ones ((8, 256, 1), (8, 128, 1), ...) on the GPU.
# Measured with `python -m kernels.tune_scans` (H100, torch 2.11, triton 3.6, fwd+bwd): bf16 at
# B=8 T=4096 D=2048: (4, 256, 1) 0.77 ms (46% of copy bandwidth) vs (64, 64, 4) 1.07 ms; but at the
# Zoology shape B=256 T=256 D=256 the shuffle tile wins, (64, 64, 4) 0.59 ms vs (4, 256, 1) 3.0 ms
# (short sequences: few steps per thread, many programs). fp32: (16, 256, 4) is best or within 5%
# at both (0.69 / 1.23 ms). So the tile depends on the sequence length: TILES_LONG from T >= LONG_T.
# Host overhead (session 4, `kernels.bench`, H100): the carry across chunks was flip/scan/cat torch
# ops and dh0 three more; with the carry kernel and dh0 in the backward kernel, fwd+bwd at B=8
# T=4096 bf16 went from 1.10 to 0.90 ms as called (0.59 ms replayed from a CUDA graph: 60% of copy
# bandwidth; the rest is Python and six launches) and at the Zoology shape from 0.42 to 0.21 ms.
# Loads one tile ahead (PREFETCH) only with the long tiles: bf16 fwd+bwd at B=8 D=2048 T=16384 2.32
# -> 2.21 ms, equal at T=4096, but the Zoology shape's (64, 64, 4) tile slowed down (0.143 -> 0.180 ms
# from a CUDA graph) (session 7, `python -m kernels.bench`, results/bench/scan_prefetch.md).
TILES = {4: (16, 256, 4), 2: (64, 64, 4), 8: (32, 32, 4)}
PREFETCH_T = 1024      # = LONG_T; tests lower it to run the prefetching path in the interpreter
TILES_LONG = {4: (16, 256, 4), 2: (4, 256, 1), 8: (32, 32, 4)}
LONG_T = 1024
CARRY_BLOCK = 512      # state elements per program of the carry across chunks


def _blocks(D: int, elem_size: int, T: int = 0) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_D, num_warps); small tiles in the interpreter (it scans element by element)."""
    if INTERPRETED:
        return 16, min(16, next_power_of_2(D)), 4
    block_t, block_d, warps = (TILES_LONG if T >= LONG_T else TILES)[elem_size]
    return block_t, min(block_d, next_power_of_2(D)), warps


def lr_scan(a: torch.Tensor, b: torch.Tensor, init: torch.Tensor | None, *, reverse: bool = False,
            hsave: torch.Tensor | None = None, h0: torch.Tensor | None = None,
            da_dtype: torch.dtype | None = None, chunk_len: int | None = None):
    """Run the (chunked) scan. a, b: [B, T, D] contiguous; init: [B, D] or None.

    Forward (reverse=False): returns h [B, T, D] in b's dtype.
    Backward (reverse=True, b = dh, hsave = h, h0 = initial state): returns (g = db, da, dh0), dh0
    = a_0 g_0 in h0's dtype (None without h0)."""
    Bsz, T, D = b.shape
    block_t, block_d, warps = _blocks(D, b.element_size(), T)
    n_dblk = cdiv(D, block_d)
    chunk_len, n_chunks = _plan(Bsz, T, D, b.device, chunk_len, block_t, block_d, warps)
    prefetch = T >= PREFETCH_T
    out = torch.empty_like(b)
    da = torch.empty(a.shape, dtype=da_dtype or a.dtype, device=a.device) if reverse else out
    dummy = out
    if n_chunks > 1:
        # 1. per-chunk (∏a, end state) from a zero state
        pend = torch.empty(Bsz, n_chunks, D, dtype=torch.float32, device=b.device)
        hend = torch.empty_like(pend)
        _lr_scan_kernel[(Bsz * n_chunks * n_dblk,)](
            a, b, dummy, dummy, pend, hend, dummy, dummy, dummy, dummy, T, D, chunk_len, n_dblk, n_chunks,
            HAS_INIT=False, STATE_ONLY=True, REVERSE=reverse, HAS_H0=False,
            BLOCK_T=block_t, BLOCK_D=block_d, PREFETCH=prefetch, num_warps=warps)
        # 2. carry across chunks: H_c = P_c H_{c-1} + S_c, itself a linear recurrence
        init_c = chunk_carries(pend, hend, init)   # [B, n_chunks, D] fp32
    else:
        init_c = init
    # 3. final pass from the true initial state of each chunk
    dh0 = torch.empty_like(h0) if reverse and h0 is not None else None
    _lr_scan_kernel[(Bsz * n_chunks * n_dblk,)](
        a, b, init_c if init_c is not None else dummy, out, dummy, dummy,
        hsave if hsave is not None else dummy, h0 if h0 is not None else dummy, da,
        dh0 if dh0 is not None else dummy,
        T, D, chunk_len, n_dblk, n_chunks,
        HAS_INIT=init_c is not None, STATE_ONLY=False, REVERSE=reverse, HAS_H0=h0 is not None,
        BLOCK_T=block_t, BLOCK_D=block_d, PREFETCH=prefetch, num_warps=warps)
    return (out, da, dh0) if reverse else out


def chunk_carries(prod: torch.Tensor, end: torch.Tensor, first: torch.Tensor | None,
                  reverse: bool = False) -> torch.Tensor:
    """The state entering every chunk of a chunked scan. Chunk c maps the state s entering it to
    prod_c * s + end_c (prod, end: [B, n_chunks, ...] fp32 contiguous), so the entering states are
    themselves a linear recurrence over chunks, stepped through by `_chunk_carry_kernel` (one launch:
    the host overhead of a few torch ops per call dominated this step); first ([B, ...] or None = 0)
    enters the first chunk. reverse: the chunks are walked from the last (a backward's carries)."""
    Bsz, n = prod.shape[:2]
    width = prod[0, 0].numel()
    out = torch.empty_like(prod)
    first_c = first.reshape(Bsz, width).contiguous() if first is not None else prod
    block = CARRY_BLOCK if not INTERPRETED else 16
    n_blk = cdiv(width, block)
    _chunk_carry_kernel[(Bsz * n_blk,)](prod, end, first_c, out, n, width, n_blk,
                                        HAS_FIRST=first is not None, REVERSE=reverse, BLOCK=block)
    return out


class LinearRecurrenceFn(torch.autograd.Function):
    """Forward keeps only h (the output); backward runs the reversed scan and fuses da = g h_{t-1}."""

    @staticmethod
    def forward(ctx, a, b, initial_state, chunk_len):
        a, b = a.contiguous(), b.contiguous()
        h0 = initial_state.contiguous() if initial_state is not None else None
        h = lr_scan(a, b, h0, chunk_len=chunk_len)
        ctx.save_for_backward(a, h, h0)
        ctx.chunk_len = chunk_len
        return h

    @staticmethod
    def backward(ctx, dh):
        a, h, h0 = ctx.saved_tensors
        db, da, dh0 = lr_scan(a, dh.contiguous(), None, reverse=True, hsave=h, h0=h0,
                              chunk_len=ctx.chunk_len)
        return da, db, dh0, None


def triton_linear_recurrence(a: torch.Tensor, b: torch.Tensor,
                             initial_state: torch.Tensor | None = None, *,
                             chunk_len: int | None = None) -> torch.Tensor:
    """Triton h_t = a_t h_{t-1} + b_t. a, b: [B, T, D]; initial_state: [B, D] -> h: [B, T, D].

    chunk_len: time steps per program (None = choose to fill the GPU); for tests."""
    return LinearRecurrenceFn.apply(a, b, initial_state, chunk_len)
