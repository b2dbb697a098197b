"""Experiment (session 9, not shipped): the selective-scan backward in the lane forward's layout.

A lane per channel (or two: 16 channels per one-warp program), every state of the channel in the
lane's registers, tiles of BLOCK_T = 8 steps inside the lane, walked from the last; each tile starts
from the forward's checkpoint at its start (checkpoints every 8 steps). Per tile: the states after
each step (`_lane_states`, registers), then the steps from the last (`_lane_grad_steps`): g, and
the Σ_n terms (du, dΔ, the recomputed y for dz) in the lane. The Σ_d terms (dB, dC) would cross
lanes at every (state, step), so the lanes store them to a per-program scratch and read them back
channel-major after a barrier, sum and add them atomically.

Runnable at commit e3a9710, where the package wires it in (TILES["time"]["bwd"] = "lane"):
`git checkout e3a9710 && python -m kernels.tune_scans --only ss --variants time` (GPU), and the
interpreter tests `pytest tests/kernels/test_selective_scan.py -k bwdlane` (9 pass).

H100 (torch 2.11, triton 3.6), bf16, fwd+bwd (results/bench/tune_scans.md run 11): correct, but
11.8 ms (16 channels per program) / 22.2 ms (32) at B=8 D=2048 L=4096 N=16 against 4.9 ms for the
shipped "time" backward; 6.5 vs 0.97 ms at B=256 D=256 L=256. Compiled for sm_90 offline: 255
registers with spills (the states after each step, the B and C tiles and the carries per lane),
~47 instructions per state update against ~52 for the shipped backward, and the dB/dC terms, one
fp32 per (b, d, n, t) = 16x the size of u in bf16, make ~8.6 GB of L1/L2 traffic at that shape:
more than the whole op's bytes. Lesson: the sums over channels have to happen in registers or
shared memory, which triton's layouts give only with channels inside a lane (the "time" backward's
BLOCK_D = 2, time along the lanes).

The kernels below import the package's helpers; the host side (checkpoint spacing 8 from the
forward, a [programs, 2, 8, BLOCK_N, BLOCK_D] fp32 scratch, one program per (batch, channel block))
is in kernels/selective_scan/triton_scan.py at e3a9710.
"""
import triton
import triton.language as tl

from kernels.selective_scan.triton_scan import (
    _channel_params,
    _delta,
    _halves,
    _program_channels,
    _thread_rows,
)


@triton.jit
def _concat(x1, x2):
    """[..., T], [..., T] -> [..., 2T] along the last axis. 2-d and 3-d."""
    T: tl.constexpr = x1.shape[-1]
    if len(x1.shape) == 2:
        return tl.reshape(tl.permute(tl.join(x1, x2), (0, 2, 1)), [x1.shape[0], 2 * T])
    else:
        return tl.reshape(tl.permute(tl.join(x1, x2), (0, 1, 3, 2)), [x1.shape[0], x1.shape[1], 2 * T])


@triton.jit
def _lane_states(h, dt, du, b, A2):
    """The states after each of a tile's steps, in registers: h [BLOCK_D, BLOCK_N] entering; dt, du
    [BLOCK_D, T]; b [BLOCK_D, BLOCK_N, T]. Returns (h after the tile, [BLOCK_D, BLOCK_N, T])."""
    if dt.shape[1] == 1:
        BD: tl.constexpr = dt.shape[0]
        BN: tl.constexpr = b.shape[1]
        a = tl.exp2(tl.reshape(dt, [BD])[:, None] * A2)
        h = a * h + tl.reshape(du, [BD])[:, None] * tl.reshape(b, [BD, BN]).to(tl.float32)
        return h, tl.reshape(h, [BD, BN, 1])
    else:
        dt1, dt2 = _halves(dt)
        du1, du2 = _halves(du)
        b1, b2 = _halves(b)
        h, hs1 = _lane_states(h, dt1, du1, b1, A2)
        h, hs2 = _lane_states(h, dt2, du2, b2, A2)
        return h, _concat(hs1, hs2)


@triton.jit
def _lane_grad_steps(gcar, dA, hs, dt, du, dy, b, c, A2, A, sc_ptr, sc_off, S0: tl.constexpr,
                     BLOCK_T: tl.constexpr):
    """The backward over a tile's steps from the last: gcar = a_{t+1} g_{t+1} entering from the right
    (∂L/∂h_L past the end); hs the states after each step. Per step, g_t = gcar + C_t dy_t and the
    terms of the gradients: dA += Δ g (h - x) summed here over t; returns, per step, sA = Σ_n A g (h - x),
    gB = Σ_n g B, y = Σ_n C h ([BLOCK_D, T] each), and stores the per-(channel, state) terms of dB
    (g Δu) and dC (h dy) to the program's scratch [2, BLOCK_T, BLOCK_N, BLOCK_D] at step S0 + t, for a
    sum over the channels after the tile. gcar leaves as a_{t0} g_{t0}."""
    if dt.shape[1] == 1:
        BD: tl.constexpr = dt.shape[0]
        BN: tl.constexpr = b.shape[1]
        d1 = tl.reshape(dt, [BD])[:, None]
        u1 = tl.reshape(du, [BD])[:, None]
        y1 = tl.reshape(dy, [BD])[:, None]
        b1 = tl.reshape(b, [BD, BN]).to(tl.float32)
        c1 = tl.reshape(c, [BD, BN]).to(tl.float32)
        h1 = tl.reshape(hs, [BD, BN])
        g = gcar + c1 * y1
        s = g * (h1 - u1 * b1)                    # g_t a_t h_{t-1}
        dA += s * d1
        tl.store(sc_ptr + sc_off + S0 * BN * BD, g * u1)
        tl.store(sc_ptr + sc_off + (BLOCK_T + S0) * BN * BD, h1 * y1)
        gcar = tl.exp2(d1 * A2) * g
        sA = tl.reshape(tl.sum(s * A, axis=1), [BD, 1])
        gB = tl.reshape(tl.sum(g * b1, axis=1), [BD, 1])
        yy = tl.reshape(tl.sum(c1 * h1, axis=1), [BD, 1])
        return gcar, dA, sA, gB, yy
    else:
        T: tl.constexpr = dt.shape[1]
        hs1, hs2 = _halves(hs)
        dt1, dt2 = _halves(dt)
        du1, du2 = _halves(du)
        dy1, dy2 = _halves(dy)
        b1, b2 = _halves(b)
        c1, c2 = _halves(c)
        gcar, dA, sA2, gB2, y2 = _lane_grad_steps(gcar, dA, hs2, dt2, du2, dy2, b2, c2, A2, A, sc_ptr, sc_off,
                                                  S0 + T // 2, BLOCK_T)
        gcar, dA, sA1, gB1, y1 = _lane_grad_steps(gcar, dA, hs1, dt1, du1, dy1, b1, c1, A2, A, sc_ptr, sc_off,
                                                  S0, BLOCK_T)
        return gcar, dA, _concat(sA1, sA2), _concat(gB1, gB2), _concat(y1, y2)


@triton.jit
def _ss_bwd_lane_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                        ckpt_ptr, dlast_ptr,
                        du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr, sc_ptr,
                        Dm, L, N, G, Dg, n_dblk, n_tiles,
                        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                        SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, BLOCK_D: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr):
    # The backward with the lane forward's layout: a lane per channel (or two, BLOCK_D = 16), every
    # state of it in the lane's registers, BLOCK_T steps per tile inside the lane; tiles from the last,
    # each from the forward's checkpoint at its start (checkpoints every BLOCK_T steps). Per tile: the
    # states after each step (`_lane_states`, in registers), then the steps from the last
    # (`_lane_grad_steps`): g, Σ_n terms (du, dΔ, the recomputed y for dz) in the lane. The Σ_d terms
    # (dB, dC) would cross lanes at every (state, step): the lanes store their terms to a per-program
    # scratch ([2, BLOCK_T, BLOCK_N, BLOCK_D] fp32, L1-resident), and after a barrier read them back
    # with the channels along each lane's registers, sum and add them atomically.
    # Shapes as `_ss_bwd_time_kernel`; sc: [programs, 2, BLOCK_T, BLOCK_N, BLOCK_D] fp32.
    # Not shipped (at e3a9710 TILES["time"]["bwd"] = "lane" opted in): correct, but H100 bf16 fwd+bwd 11.8 ms (16
    # channels per program) / 22.2 ms (32) at B=8 D=2048 L=4096 N=16 against 4.9 ms for the "time"
    # backward, 6.5 vs 0.97 ms at the Zoology shape (results/bench/tune_scans.md run 11): 255 registers
    # with spills, ~47 instructions per update, and the dB/dC terms, 16x the size of u, go through L2.
    pid = tl.program_id(0)
    chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off = _program_channels(
        pid, n_dblk, G, 1, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    A = _thread_rows(A_ptr + offs_d * N, mask_d, N, BLOCK_N)
    A2 = A * 1.4426950408889634
    if HAS_DLAST:
        gcar = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32) \
            + tl.zeros_like(A)
    else:
        gcar = tl.zeros_like(A)
    dA = tl.zeros_like(A)
    dD_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    cols = tl.arange(0, BLOCK_T)
    mask_n = offs_n < N
    off_bc = tl.broadcast_to(offs_n[None, :, None] * L + cols[None, None, :], [BLOCK_D, BLOCK_N, BLOCK_T])
    sc_base = sc_ptr + pid.to(tl.int64) * (2 * BLOCK_T * BLOCK_N * BLOCK_D)
    sc_off = offs_n[None, :] * BLOCK_D + tl.arange(0, BLOCK_D)[:, None]            # [BLOCK_D, BLOCK_N]
    # the read-back: [BLOCK_T * BLOCK_N, BLOCK_D] rows (t, n), channels along the row
    rows_tn = tl.arange(0, BLOCK_T * BLOCK_N)
    t_of, n_of = rows_tn // BLOCK_N, rows_tn % BLOCK_N
    sc_rows = rows_tn[:, None] * BLOCK_D + tl.arange(0, BLOCK_D)[None, :]
    for k in range(0, n_tiles):
        tile = n_tiles - 1 - k
        t0 = tile * BLOCK_T
        offs_t = t0 + cols
        mask_t = offs_t < L
        m_dt = mask_d[:, None] & mask_t[None, :]
        off_dt = row[:, None] * L + offs_t[None, :]
        u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        dt, raw = _delta(dl_ptr, off_dt, m_dt, bias[:, None], HAS_BIAS, SOFTPLUS)      # masked: Δ = 0
        dout = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
        if HAS_Z:
            zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            sg = tl.sigmoid(zz)
            dy = dout * zz * sg
        else:
            dy = dout
        m_bc = mask_n[None, :, None] & mask_t[None, None, :]
        b = tl.load(B_ptr + bc_base + t0 + off_bc, mask=m_bc, other=0.0)
        c = tl.load(C_ptr + bc_base + t0 + off_bc, mask=m_bc, other=0.0)
        h0 = _thread_rows(ckpt_ptr + (row * n_tiles + tile) * N, mask_d, N, BLOCK_N)
        du = dt * u
        _h, hs = _lane_states(h0, dt, du, b, A2)
        gcar, dA, sA, gB, y = _lane_grad_steps(gcar, dA, hs, dt, du, dy, b, c, A2, A, sc_base, sc_off, 0, BLOCK_T)
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
        # Σ over the program's channels of the dB, dC terms, then one atomic add per (state, step)
        tl.debug_barrier()
        m_sc = mask_d[None, :]
        pb = tl.sum(tl.load(sc_base + sc_rows, mask=m_sc, other=0.0), axis=1)
        pc = tl.sum(tl.load(sc_base + BLOCK_T * BLOCK_N * BLOCK_D + sc_rows, mask=m_sc, other=0.0), axis=1)
        m_tn = (n_of < N) & (t0 + t_of < L)
        off_tn = bc_base + n_of * L + t0 + t_of
        tl.atomic_add(dB_ptr + off_tn, pb, mask=m_tn, sem="relaxed")
        tl.atomic_add(dC_ptr + off_tn, pc, mask=m_tn, sem="relaxed")
        tl.debug_barrier()
    tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA, mask=mask_dn, sem="relaxed")
    if HAS_D:
        tl.atomic_add(dD_ptr + offs_d, dD_acc, mask=mask_d, sem="relaxed")
    if HAS_BIAS:
        tl.atomic_add(dbias_ptr + offs_d, dbias_acc, mask=mask_d, sem="relaxed")
