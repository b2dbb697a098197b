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
Each program owns one batch row, BLOCK_D channels of one group and, in the forward, one chunk of
time; it walks time in tiles of BLOCK_T steps and composes the affine maps of a tile with
`tl.associative_scan` (Blelloch 1990; Martin & Cundy 2018, arXiv 1709.04057) on a
[BLOCK_D, BLOCK_N, BLOCK_T] register tile. The forward writes only y and, when a backward will
follow, the state at the start of each tile ([B, D, L/BLOCK_T, N] fp32, 1/BLOCK_T of h); the
backward walks tiles from the end, recomputes h inside the tile from that checkpoint and runs the
reverse scan for g. dB, dC (summed over the channels of a group), dA, dD and dδ_bias are
accumulated in fp32 with atomic adds.

Long sequences with few (batch, channel) programs are cut into chunks in the forward (as in
`kernels.linear_recurrence`): a state-only pass per chunk, a carry across chunks (a linear
recurrence over chunks on [B, n_chunks, D·N]), and the final pass from each chunk's true state.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..linear_recurrence.triton_scan import INTERPRETED, _sm_count, affine_combine, lr_scan


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


# register tile sizes: BLOCK_T, and BLOCK_D·BLOCK_N·BLOCK_T ~ elems for the forward / backward
# picked by bench.tune() on an H100 (B=8 D=2048 L=4096 N=16 bf16: fwd 4.5 ms, fwd+bwd 18.5 ms;
# BLOCK_D 8/4 gave 6.8 / 22.5 ms): small channel blocks, many programs
TILES = dict(block_t=32, fwd_elems=2048, bwd_elems=1024, fwd_warps=4, bwd_warps=4)


def _blocks(N: int, Dg: int, backward: bool) -> tuple[int, int, int, int]:
    """(BLOCK_D, BLOCK_N, BLOCK_T, num_warps)."""
    block_n = triton.next_power_of_2(N)
    if INTERPRETED:   # the interpreter scans element by element
        return 2, block_n, 8, 4
    block_t = TILES["block_t"]
    budget = TILES["bwd_elems" if backward else "fwd_elems"]
    block_d = max(1, min(16, budget // (block_n * block_t), triton.next_power_of_2(Dg)))
    return block_d, block_n, block_t, TILES["bwd_warps" if backward else "fwd_warps"]


class SelectiveScanFn(torch.autograd.Function):
    """Saves inputs and the per-tile entering states; the backward recomputes h per tile."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len):
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
        # forward and backward must agree on BLOCK_T (the checkpoint spacing)
        block_d, block_n, block_t, warps = _blocks(N, Dg, backward=False)
        n_dblk, n_tiles = triton.cdiv(Dg, block_d), triton.cdiv(L, block_t)
        n_prog = Bsz * G * n_dblk
        if chunk_len is None:
            n_chunks = max(1, min(triton.cdiv(4 * _sm_count(u.device), n_prog), triton.cdiv(n_tiles, 4)))
            chunk_len = triton.cdiv(n_tiles, n_chunks) * block_t
        chunk_len = triton.cdiv(max(1, min(chunk_len, L)), block_t) * block_t
        n_chunks = triton.cdiv(L, chunk_len)
        y = torch.empty_like(u)
        last = torch.empty(Bsz, Dm, N, dtype=torch.float32, device=u.device)
        ckpt = torch.empty(Bsz, Dm, n_tiles, N, dtype=torch.float32, device=u.device) if save else last
        dummy = last
        flags = dict(HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                     SOFTPLUS=bool(delta_softplus), BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t,
                     num_warps=warps)
        args = (u, delta, A, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
                delta_bias if delta_bias is not None else dummy)
        grid = (Bsz * G * n_dblk * n_chunks,)
        init = None
        if n_chunks > 1:
            # 1. state-only pass per chunk; 2. carry across chunks (a linear recurrence over chunks)
            pend = torch.empty(Bsz, n_chunks, Dm, N, dtype=torch.float32, device=u.device)
            hend = torch.empty_like(pend)
            _ss_fwd_kernel[grid](*args, dummy, dummy, dummy, dummy, pend, hend,
                                 Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                                 HAS_INIT=False, STATE_ONLY=True, SAVE=False, **flags)
            carried = lr_scan(pend.view(Bsz, n_chunks, Dm * N), hend.view(Bsz, n_chunks, Dm * N), None)
            init = torch.cat([torch.zeros_like(carried[:, :1]), carried[:, :-1]], dim=1).contiguous()
        # 3. final pass: y, per-tile checkpoints, last state
        _ss_fwd_kernel[grid](*args, y, init if init is not None else dummy, ckpt, last, dummy, dummy,
                             Dm, L, N, G, Dg, n_dblk, n_chunks, chunk_len, n_tiles,
                             HAS_INIT=init is not None, STATE_ONLY=False, SAVE=save, **flags)
        ctx.save_for_backward(u, delta, A, B4, C4, D, z, delta_bias, ckpt if save else None)
        ctx.softplus, ctx.grouped, ctx.block_t = bool(delta_softplus), grouped, block_t
        ctx.set_materialize_grads(False)   # an unused h_L brings dlast=None, not zeros
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B4, C4, D, z, delta_bias, ckpt = ctx.saved_tensors
        Bsz, Dm, L = u.shape
        N, G = A.shape[1], B4.shape[1]
        Dg = Dm // G
        block_d, block_n, block_t, warps = _blocks(N, Dg, backward=True)
        assert block_t == ctx.block_t, "forward and backward tiles must match the checkpoints"
        n_dblk, n_tiles = triton.cdiv(Dg, block_d), triton.cdiv(L, block_t)
        f32 = dict(dtype=torch.float32, device=u.device)
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dz = torch.empty_like(z) if z is not None else None
        dA, dB, dC = torch.zeros(Dm, N, **f32), torch.zeros(B4.shape, **f32), torch.zeros(C4.shape, **f32)
        dD, dbias = torch.zeros(Dm, **f32), torch.zeros(Dm, **f32)
        dummy = dA
        if dy is None:
            dy = torch.zeros_like(u)
        _ss_bwd_kernel[(Bsz * G * n_dblk,)](
            u, delta, A, B4, C4, D if D is not None else dummy, z if z is not None else dummy,
            delta_bias if delta_bias is not None else dummy, dy.contiguous(), ckpt,
            dlast.contiguous() if dlast is not None else dummy,
            du, ddelta, dA, dB, dC, dD, dz if dz is not None else dummy, dbias,
            Dm, L, N, G, Dg, n_dblk, n_tiles,
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.softplus, HAS_DLAST=dlast is not None,
            BLOCK_D=block_d, BLOCK_N=block_n, BLOCK_T=block_t, num_warps=warps)
        dB, dC = dB.to(B4.dtype), dC.to(C4.dtype)
        if not ctx.grouped:
            dB, dC = dB[:, 0], dC[:, 0]
        return (du, ddelta, dA.to(A.dtype), dB, dC,
                dD.to(D.dtype) if D is not None else None, dz,
                dbias.to(delta_bias.dtype) if delta_bias is not None else None, None, None)


def triton_selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                          C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                          delta_bias: torch.Tensor | None = None, delta_softplus: bool = False, *,
                          return_last_state: bool = False, chunk_len: int | None = None):
    """Triton selective scan; signature and shapes of `naive_selective_scan`.

    chunk_len: time steps per forward program (None = choose to fill the GPU); for tests."""
    y, last = SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_len)
    return (y, last) if return_last_state else y
