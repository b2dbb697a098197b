"""kernels.sass_stats: the offline sm_90 profile (CPU: triton's bundled compiler and cuobjdump)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from kernels import sass_stats

LISTING = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   FFMA R2, R3, R4, R5 ;
        /*0020*/              @!P0 SHFL.UP PT, R6, R2, 0x1, RZ ;
        /*0030*/                   MUFU.EX2 R7, R6 ;
        /*0040*/               @P1 BRA 0x10 ;
        /*0050*/                   FADD R8, R7, R2 ;
        /*0060*/                   BRA 0x0 ;
        /*0070*/                   EXIT ;
"""


def test_parse_sass_keeps_addresses_and_bare_opcodes():
    instrs = sass_stats.parse_sass(LISTING)
    assert [op for _, op, _ in instrs] == ["MOV", "FFMA", "SHFL", "MUFU", "BRA", "FADD", "BRA", "EXIT"]
    assert instrs[2][0] == 0x20                      # a predicated instruction keeps its address


def test_innermost_loops_are_the_back_branches_without_a_loop_inside():
    # 0x10..0x40 branches back inside 0x0..0x60: only the inner one is innermost
    assert sass_stats.innermost_loops(sass_stats.parse_sass(LISTING)) == [(0x10, 0x40)]


def test_the_scan_kernels_compile_for_sm90_and_report_their_state_loops():
    # a fresh process: this test session imported triton in interpreter mode, which cannot compile
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "kernels.sass_stats"], capture_output=True, text=True, env=env,
                         timeout=300, check=True).stdout
    reports = re.findall(r"^(\w+ \w+ [^:]*): (\d+) registers, (\d+) B local memory", out, re.M)
    assert [r[0] for r in reports] == ["selective_scan fwd (lane)", "selective_scan fwd (states)",
                                       "selective_scan bwd (time, rev=gather)",
                                       "selective_scan bwd (time, rev=plain)", "linear_recurrence fwd bf16",
                                       "linear_recurrence bwd bf16"]
    assert all(0 < int(regs) <= 255 for _, regs, _ in reports)
    loops = re.findall(r"innermost loop: (\d+) instructions per (\d+) state updates.*>= ([\d.]+) ms", out)
    assert len(loops) >= 4 and all(int(n) > 0 and float(ms) > 0 for n, _, ms in loops)


def test_the_linear_attention_kernels_compile_for_sm90_per_decay_kind():
    # chunk.py decorates its kernels at first launch; sass_stats decorates them itself
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "kernels.sass_stats", "--ops", "linear_attention"],
                         capture_output=True, text=True, env=env, timeout=300, check=True).stdout
    labels = re.findall(r"^linear_attention (\w+) decay=([\w-]+): (\d+) registers", out, re.M)
    assert {(name, decay) for name, decay, _ in labels} == {
        (name, decay) for name in ("fwd_kernel", "bwd_dq_kernel", "bwd_dkv_kernel")
        for decay in ("none", "scalar", "channel")} | {("intra_a_kernel", "channel"), ("intra_grad_kernel", "channel"),
                                                       ("chunk_log_decay_kernel", "scalar")}
    # a chunk loop per sweep: 64-token chunks without decay and with scalar decay; per channel the
    # forward's 32-token chunks and the backward's 16, and the reference point's passes walking their flagged
    # chunks (the A pass's 32 tokens, the intra-gradient pass's 16)
    loops = re.findall(r"innermost loop: \d+ instructions per (\d+) tokens \(one chunk\)", out)
    assert len(loops) >= 10 and sorted(int(n) for n in loops)[:4] == [16, 16, 16, 32]


def test_exp2_compiles_to_fewer_instructions_than_tl_exp():
    """The kernels write exp(x) as exp2(x log2 e) and the forwards' gate as 1 / (1 + exp2(...)) because
    triton lowers tl.exp / tl.sigmoid to ex2.approx without ftz, wrapped in a range test and predicated
    multiplies: if a triton release changes that, the kernels' comments no longer hold."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-m", "kernels.sass_stats", "--ops", "exp"], capture_output=True,
                         text=True, env=env, timeout=300, check=True).stdout
    counts = {m.group(1).strip(): int(m.group(2)) for m in re.finditer(r"^  (\S.*?)\s+(\d+)  \(", out, re.M)}
    assert counts["tl.exp2(x log2 e)"] == 2 < counts["tl.exp(x)"]
    assert counts["_sigmoid(x) (triton_scan)"] < counts["tl.sigmoid(x)"]
