"""The selective-scan backward over all states at once: an experiment (see ss_bwd_states.py), not
used by the package. Same arguments and math as `kernels.selective_scan.triton_scan._ss_bwd_time_kernel`
(without REV_INDEX), with [BLOCK_D, N, BLOCK_T] tiles; REV_GATHER: the g recurrence's inputs loaded in
reversed time order and g gathered back, else a reverse scan."""
import triton
import triton.language as tl

from kernels.linear_recurrence.triton_scan import affine_combine
from kernels.selective_scan.triton_scan import (
    _channel_params,
    _delta,
    _program_channels,
    _store_chunk_summary,
)


@triton.jit
def _ss_bwd_states_kernel(u_ptr, dl_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dout_ptr,
                          ckpt_ptr, dlast_ptr,
                          du_ptr, ddl_ptr, dA_ptr, dB_ptr, dC_ptr, dD_ptr, dz_ptr, dbias_ptr,
                          ginit_ptr, pend_ptr, gend_ptr,
                          Dm, L, N, G, Dg, n_dblk, n_tiles, n_chunks, chunk_tiles,
                          HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr,
                          SOFTPLUS: tl.constexpr, HAS_DLAST: tl.constexpr, HAS_GINIT: tl.constexpr,
                          STATE_ONLY: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_T: tl.constexpr, REV_GATHER: tl.constexpr):
    chunk, offs_d, mask_d, offs_n, mask_dn, row, bc_base, state_off = _program_channels(
        tl.program_id(0), n_dblk, G, n_chunks, Dg, Dm, N, L, BLOCK_D, BLOCK_N)
    bias, Dv = _channel_params(bias_ptr, D_ptr, offs_d, mask_d, HAS_BIAS, HAS_D, BLOCK_D)
    bias3 = bias[:, None, None]
    if HAS_GINIT:
        gc = tl.load(ginit_ptr + state_off, mask=mask_dn, other=0.0)
    elif HAS_DLAST:
        gc = tl.load(dlast_ptr + row[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    else:
        gc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    A = tl.load(A_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(tl.float32)
    A2 = (A * 1.4426950408889634)[:, :, None]
    mask_n = offs_n < N
    dA_acc = tl.zeros([BLOCK_D, BLOCK_N], dtype=tl.float32)
    dD_acc = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    dbias_acc = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    sum_dtn = tl.zeros([BLOCK_D, 1], dtype=tl.float32)
    cols = tl.arange(0, BLOCK_T)
    first = (cols == 0)[None, None, :]
    last = (cols == BLOCK_T - 1)[None, None, :]
    tile_lo = chunk * chunk_tiles
    tile_hi = tl.minimum(tile_lo + chunk_tiles, n_tiles)
    for k in range(0, tile_hi - tile_lo):
        tile = tile_hi - 1 - k
        offs_t = tile * BLOCK_T + cols
        if REV_GATHER:
            offs_g = tile * BLOCK_T + BLOCK_T - 1 - cols
        else:
            offs_g = offs_t
        mask_g = offs_g < L
        m_dg = mask_d[:, None, None] & mask_g[None, None, :]
        off_dg = row[:, None, None] * L + offs_g[None, None, :]
        dt_next, _ = _delta(dl_ptr, off_dg + 1, mask_d[:, None, None] & (offs_g + 1 < L)[None, None, :], bias3,
                            HAS_BIAS, SOFTPLUS)
        dout_g = tl.load(dout_ptr + off_dg, mask=m_dg, other=0.0).to(tl.float32)
        if HAS_Z:
            zz_g = tl.load(z_ptr + off_dg, mask=m_dg, other=0.0).to(tl.float32)
            dout_g = dout_g * zz_g * tl.sigmoid(zz_g)
        c_g = tl.load(C_ptr + bc_base + offs_n[None, :, None] * L + offs_g[None, None, :],
                      mask=mask_n[None, :, None] & mask_g[None, None, :], other=0.0).to(tl.float32)
        a_next = tl.exp2(dt_next * A2)
        cg = dout_g * c_g
        if REV_GATHER:
            cg = tl.where(first, cg + a_next * gc[:, :, None], cg)
            _pg, g = tl.associative_scan((a_next, cg), 2, affine_combine)
            gc_new = tl.sum(tl.where(last, g, 0.0), axis=2)
        else:
            cg = tl.where(last, cg + a_next * gc[:, :, None], cg)
            _pg, g = tl.associative_scan((a_next, cg), 2, affine_combine, reverse=True)
            gc_new = tl.sum(tl.where(first, g, 0.0), axis=2)
        if STATE_ONLY:
            sum_dtn += tl.sum(dt_next, axis=2)
        else:
            if REV_GATHER:
                g = tl.gather(g, tl.broadcast_to((BLOCK_T - 1 - cols)[None, None, :], [BLOCK_D, BLOCK_N, BLOCK_T]),
                              2)
            mask_t = offs_t < L
            m_dt = mask_d[:, None, None] & mask_t[None, None, :]
            off_dt = row[:, None, None] * L + offs_t[None, None, :]
            m_nt = mask_n[None, :, None] & mask_t[None, None, :]
            off_nt = bc_base + offs_n[None, :, None] * L + offs_t[None, None, :]
            u = tl.load(u_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            dt, raw = _delta(dl_ptr, off_dt, m_dt, bias3, HAS_BIAS, SOFTPLUS)
            dout = tl.load(dout_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
            if HAS_Z:
                zz = tl.load(z_ptr + off_dt, mask=m_dt, other=0.0).to(tl.float32)
                sg = tl.sigmoid(zz)
                dy = dout * zz * sg
            else:
                dy = dout
            b = tl.load(B_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
            du = dt * u
            h0 = tl.load(ckpt_ptr + (row[:, None] * n_tiles + tile) * N + offs_n[None, :], mask=mask_dn, other=0.0)
            a = tl.exp2(dt * A2)
            x = du * b
            _pa, hs = tl.associative_scan((a, tl.where(first, x + a * h0[:, :, None], x)), 2, affine_combine)
            s = g * (hs - x)
            gB = tl.sum(g * b, axis=1, keep_dims=True)
            sA = tl.sum(s * A[:, :, None], axis=1, keep_dims=True)
            dA_acc += tl.sum(s * dt, axis=2)
            tl.atomic_add(dB_ptr + off_nt, tl.sum(g * du, axis=0, keep_dims=True), mask=m_nt, sem="relaxed")
            tl.atomic_add(dC_ptr + off_nt, tl.sum(hs * dy, axis=0, keep_dims=True), mask=m_nt, sem="relaxed")
            if HAS_Z:
                c = tl.load(C_ptr + off_nt, mask=m_nt, other=0.0).to(tl.float32)
                y = tl.sum(hs * c, axis=1, keep_dims=True) + Dv[:, None, None] * u
                tl.store(dz_ptr + off_dt, (dout * y * sg * (1.0 + zz * (1.0 - sg))).to(dz_ptr.dtype.element_ty),
                         mask=m_dt)
            ddt = gB * u + sA
            if SOFTPLUS:
                ddt = ddt * tl.sigmoid(raw)
            ddt = tl.where(m_dt, ddt, 0.0)
            dD_acc += tl.sum(dy * u, axis=2)
            dbias_acc += tl.sum(ddt, axis=2)
            tl.store(du_ptr + off_dt, (gB * dt + dy * Dv[:, None, None]).to(du_ptr.dtype.element_ty), mask=m_dt)
            tl.store(ddl_ptr + off_dt, ddt.to(ddl_ptr.dtype.element_ty), mask=m_dt)
        gc = gc_new
    if STATE_ONLY:
        _store_chunk_summary(A_ptr, pend_ptr, gend_ptr, state_off, offs_d, offs_n, mask_dn, N,
                             tl.sum(sum_dtn, axis=1), gc)
    else:
        tl.atomic_add(dA_ptr + offs_d[:, None] * N + offs_n[None, :], dA_acc, mask=mask_dn, sem="relaxed")
        if HAS_D:
            tl.atomic_add(dD_ptr + offs_d, tl.sum(dD_acc, axis=1), mask=mask_d, sem="relaxed")
        if HAS_BIAS:
            tl.atomic_add(dbias_ptr + offs_d, tl.sum(dbias_acc, axis=1), mask=mask_d, sem="relaxed")
