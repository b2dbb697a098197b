"""Static profile of the kernels without a GPU: `python -m kernels.sass_stats [--ops scans|linear_attention|exp|all]`.

Compiles the selective-scan "time" kernels and the linear-recurrence kernel (--ops scans, the
default), or the chunked linear attention's forward/dq/dkv kernels per decay kind, for sm_90 (H100) with
triton's own toolchain (its bundled cuobjdump disassembles the cubin; no GPU or driver is needed),
specialised as triton would specialise them at the benchmark's long shape (16-byte aligned
pointers; sizes divisible by 16; a chunk count of 1 folded in) and with their shipped register
caps, and prints per kernel: registers per thread (255 = the hardware cap: at most 8 one-warp
programs resident per SM), local memory (spills) and, for each innermost loop, its SASS
instruction count and mix (spills show as LDL/STL). --ops exp prints the float instructions of each
form of exp and sigmoid the kernels use (why they write exp(x) as exp2(x log2 e)). For the linear
attention, --la-k 128 takes K = V = 128, --la-sweep-maxnreg N caps the sweeps' registers, and --la-variant
NAME compiles under the TUNE overrides of a `kernels.linear_attention.tune` variant (e.g. "wide w8 reg128").

Why: the kernels are bound by instructions issued and by latency at low occupancy, not by
bytes, and device time is scarce. The instruction count of the innermost loop per state update
bounds the kernel from below: e.g. the selective scan's backward state loop issues I warp
instructions per BLOCK_D x BLOCK_T state updates, so B·D·L·N updates take at least
B·D·L·N / (BLOCK_D·BLOCK_T) · I / (132 SMs x 4 schedulers x 1.755 GHz) seconds on an H100.
A change to a kernel can be judged here first, then timed on the GPU (`kernels.tune_scans`).
The numbers come from the local triton, which may differ from the GPU host's (3.6): e.g. triton 3.9
compiles the selective scan's lane forward to 1610 loop instructions against 1006 with 3.6. To count
with 3.6 (as session 14's figures were), in a venv of its own (no GPU needed):
    python3 -m venv /tmp/v36 && /tmp/v36/bin/pip install torch==2.13.0 triton==3.6.0 numpy
    PYTHONPATH=. /tmp/v36/bin/python -m kernels.sass_stats --ops scans
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import inspect
import pathlib
import re
import subprocess
import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

ISSUE_RATE = 132 * 4 * 1.755e9   # H100 SXM: warp instructions issued per second, all SMs
_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,6})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[.A-Z0-9_]*\s*([^;]*);")


def _specialise(fn, ptr_types: dict, consts: dict, ints: dict, ptrs: tuple = (), floats: tuple = ()):
    """(signature, constexprs, attrs) for ASTSource: pointers (names ending in _ptr, or in ptrs) *fp32
    unless named in ptr_types, 16-byte aligned; floats fp32; ints i32, divisible by 16 where their
    benchmark value is, folded in where it is 1."""
    sig, consts, attrs = {}, dict(consts), {}
    for i, (name, param) in enumerate(inspect.signature(fn.fn).parameters.items()):
        if name not in consts and "constexpr" in str(param.annotation) and param.default is not param.empty:
            consts[name] = param.default   # a constexpr the launch leaves at its default
        if name in consts:
            sig[name] = "constexpr"
        elif name in floats:
            sig[name] = "fp32"
        elif name.endswith("_ptr") or name in ptrs:
            sig[name] = ptr_types.get(name, "*fp32")
            attrs[(i,)] = [["tt.divisibility", 16]]
        elif ints.get(name) == 1:
            sig[name], consts[name] = "constexpr", 1
        else:
            sig[name] = "i32"
            if ints.get(name, 1) % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, consts, attrs


def _tool(name: str) -> str:
    return str(pathlib.Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)


def parse_sass(sass: str) -> list[tuple[int, str, str]]:
    """[(address, opcode without modifiers, operands)] of a cuobjdump -sass listing."""
    return [(int(m.group(1), 16), m.group(2), m.group(3)) for line in sass.splitlines()
            if (m := _INSTR.match(line))]


def innermost_loops(instrs: list[tuple[int, str, str]]) -> list[tuple[int, int]]:
    """(start, end) address ranges of the loops (a branch back to an earlier address) that contain
    no other loop."""
    loops = []
    for addr, op, args in instrs:
        target = re.match(r"\s*(?:`\()?0x([0-9a-f]+)", args)
        if op == "BRA" and target and int(target.group(1), 16) < addr:
            loops.append((int(target.group(1), 16), addr))
    return [(lo, hi) for lo, hi in loops
            if not any((lo2, hi2) != (lo, hi) and lo <= lo2 and hi2 <= hi for lo2, hi2 in loops)]


def stats(fn, ptr_types: dict, consts: dict, ints: dict, num_warps: int, dump: pathlib.Path | None = None,
          maxnreg: int | None = None, ptrs: tuple = (), floats: tuple = ()) -> dict:
    """Compile fn for sm_90 (registers capped at maxnreg, as the kernels' launch option) and return
    {"regs", "local_bytes", "instructions", "loops": [(size, mix)]}; spills show as LDL/STL in a mix."""
    sig, consts, attrs = _specialise(fn, ptr_types, consts, ints, ptrs, floats)
    kernel = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts, attrs=attrs),
                            target=GPUTarget("cuda", 90, 32),
                            options=dict(num_warps=num_warps, **({"maxnreg": maxnreg} if maxnreg else {})))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = pathlib.Path(tmp) / "k.cubin"
        cubin.write_bytes(kernel.asm["cubin"])
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True,
                               check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                              check=True).stdout
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{fn.__name__}.sass").write_text(sass)
    instrs = parse_sass(sass)
    loops = []
    for lo, hi in innermost_loops(instrs):
        mix = collections.Counter(op for addr, op, _ in instrs if lo <= addr <= hi)
        loops.append((sum(mix.values()), mix))
    return dict(regs=int(re.search(r"REG:(\d+)", usage).group(1)),
                local_bytes=int(re.search(r"LOCAL:(\d+)", usage).group(1)),
                instructions=len(instrs), loops=loops, mix=collections.Counter(op for _, op, _ in instrs))


@dataclasses.dataclass
class Kernel:
    """A kernel as `stats` compiles it, and what one iteration of its innermost loop covers."""
    label: str
    fn: object                 # a triton JITFunction
    types: dict                # pointer name -> "*bf16" / "*fp32"
    consts: dict               # constexpr values
    ints: dict                 # benchmark values of the int arguments (specialisation)
    warps: int
    per_iter: int              # items one loop iteration covers
    total: int                 # items at the benchmark shape
    unit: str
    ptrs: tuple = ()           # pointer arguments not named *_ptr
    floats: tuple = ()
    maxnreg: int | None = None


def _scan_kernels() -> list[Kernel]:
    """The shipped tiles (and the backward's rev="plain" option) at B=8 D=2048 L=4096 N=16 (selective
    scan: one forward iteration = all states of a [BLOCK_D, N, BLOCK_T] tile, one backward iteration =
    one state over a [BLOCK_D, BLOCK_T] tile) and B=8 T=4096 D=2048 (recurrence: one [BLOCK_T, BLOCK_D]
    tile)."""
    ss = importlib.import_module("kernels.selective_scan.triton_scan")
    lr = importlib.import_module("kernels.linear_recurrence.triton_scan")
    bf16 = {n: "*bf16" for n in ("u_ptr", "dl_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dout_ptr", "du_ptr",
                                 "ddl_ptr", "dz_ptr", "a_ptr", "b_ptr", "out_ptr", "hsave_ptr", "da_ptr")}
    gates = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True)
    t = ss.TILES["time"]
    ints = dict(Dm=2048, L=4096, N=16, G=1, Dg=2048, n_dblk=2048, n_chunks=1, chunk_len=4096, n_tiles=16,
                chunk_tiles=16, T=4096, D=2048)
    fwd = dict(gates, HAS_INIT=False, STATE_ONLY=False, SAVE=True, BLOCK_D=t["fwd_block_d"], BLOCK_N=16,
               BLOCK_T=t["fwd_block_t"], CK=t["block_t"], PREFETCH=True)
    bwd = dict(gates, HAS_DLAST=False, HAS_GINIT=False, STATE_ONLY=False, BLOCK_D=t["bwd_block_d"], BLOCK_N=16,
               BLOCK_T=t["block_t"])
    ss_total, lr_total = 8 * 2048 * 4096 * 16, 8 * 4096 * 2048
    block_t, block_d, warps = lr.TILES_LONG[2]
    lr_c = dict(HAS_INIT=False, STATE_ONLY=False, HAS_H0=True, BLOCK_T=block_t, BLOCK_D=block_d, PREFETCH=True)
    unit = "state updates"
    lane = dict(fwd, BLOCK_D=16, BLOCK_T=8)       # both forwards (TILES["time"]["fwd"] picks); 16: as at that shape
    out = [Kernel("selective_scan fwd (lane)", ss._ss_fwd_lane_kernel, bf16, lane, ints, 1,
                  lane["BLOCK_D"] * lane["BLOCK_N"] * lane["BLOCK_T"], ss_total, unit),
           Kernel("selective_scan fwd (states)", ss._ss_fwd_time_kernel, bf16, fwd, ints, t["fwd_warps"],
                  fwd["BLOCK_D"] * fwd["BLOCK_N"] * fwd["BLOCK_T"], ss_total, unit, maxnreg=t.get("fwd_maxnreg"))]
    for rev in dict.fromkeys([t["rev"], "plain"]):
        out.append(Kernel(f"selective_scan bwd (time, rev={rev})", ss._ss_bwd_time_kernel, bf16,
                          dict(bwd, REV_INDEX=rev == "index", REV_GATHER=rev == "gather", PREFETCH=True,
                               CARRY_MEM=True, DA_P=ss._da_parts(t["block_t"]),
                               DA_MEM=t.get("da_parts", True), REV_LEAN=ss._rev_lean(True, 2)), ints,
                          t["bwd_warps"], t["bwd_block_d"] * t["block_t"], ss_total, unit,
                          maxnreg=t.get("bwd_maxnreg")))
    for reverse in (False, True):
        out.append(Kernel(f"linear_recurrence {'bwd' if reverse else 'fwd'} bf16", lr._lr_scan_kernel, bf16,
                          dict(lr_c, REVERSE=reverse), ints, warps, block_t * block_d, lr_total, unit))
    return out


def _linear_attention_kernels(K: int = 64, sweep_maxnreg: int | None = None, variant: str | None = None) -> list[Kernel]:
    """The chunked linear attention's forward, dq and dk/dv kernels (with scalar decay the pass forming G; per
    channel the A pass and the intra-gradient pass) per decay kind at B=8 T=4096 H=8 K=V (64 or 128) bf16 with the shipped
    configs (one innermost-loop iteration = one chunk of BT tokens of a [BK, BV] state block; with the
    reference point the A and intra-gradient passes loop over the flagged chunks of their walk; NS segments as `_segments` picks on an H100). Decorated here: chunk.py decorates
    them at first launch. `variant`: a name from `kernels.linear_attention.tune.VARIANTS`, whose TUNE
    overrides the configs take (its "ns", "seg_target" aside: NS stays 4); chunk.TUNE is restored after."""
    la = importlib.import_module("kernels.linear_attention.chunk")
    saved = dict(la.TUNE)
    la.TUNE.clear()
    if variant:
        la.TUNE.update(importlib.import_module("kernels.linear_attention.tune").VARIANTS[variant])
    try:
        return _linear_attention_configs(la, K, sweep_maxnreg or la.TUNE.get("sweep_maxnreg"))
    finally:
        la.TUNE.clear()
        la.TUNE.update(saved)


def _linear_attention_configs(la, K: int, sweep_maxnreg: int | None) -> list[Kernel]:
    """`_linear_attention_kernels` under chunk.TUNE as it stands."""
    import torch

    B, T, H, V = 8, 4096, 8, K
    sig = {"_intra_a_kernel": ("q k g a msum flag v o", {}),
           "_fwd_kernel": ("q k v g s0 o ht a msum flag x gx s_out s_blk", dict(USE_S0=True, NA=0, FSCAN=False)),
           "_intra_grad_kernel": ("q k v g do qi ki msum flag", {}),
           "_bwd_dq_kernel": ("q k v g s0 do dq xq qi dsl gsl flag", dict(USE_S0=True, DG=True)),
           "_bwd_dkv_kernel": ("q k v g do ds0 dk dv dh0 xq dqo s_in ht dg dgc a ki flag x gx qi s_blk",
                               dict(USE_DS0=True, STORE_DH0=False, DG=True, NA=0, FSCAN=False))}
    # g: bf16, as the benchmark passes it (scalar decay: G, fp32, from `_chunk_log_decay_kernel`); dg and a:
    # fp32 only where the launch makes them so (below)
    fp32 = {"s0", "ht", "xq", "ds0", "dh0", "s_in", "dg", "dgc", "a", "dsl", "gsl", "x", "gx", "s_out", "s_blk"}
    out = []
    for decay, kind in enumerate(("none", "scalar", "channel")):
        base = la._config(K, V, decay, torch.bfloat16)   # a copy: the cache keeps its own
        base.pop("num_stages", None)
        ints = dict(T=T, B=B, H=H, K=K, V=V, NS=4, SC=T // base["BT"] // 4, P=3, SUB=1, FIRST=1, NSB=4)
        if decay == 1:   # G, one pass: W chunks per program, no loop
            w = la._log_decay_chunks_per_program(T // base["BT"], base["BT"])
            out.append(Kernel("linear_attention chunk_log_decay_kernel decay=scalar",
                              triton.jit(la._chunk_log_decay_kernel), {"g": "*bf16", "G": "*fp32"},
                              dict(BT=base["BT"], W=w), dict(T=T, H=H), 4, base["BT"] * w, B * T * H, "tokens",
                              ("g", "G"), ()))
        for name, (ptrs, flags) in sig.items():
            if name in ("_intra_a_kernel", "_intra_grad_kernel") and decay != 2:
                continue
            cfg = dict(la._dkv_config(base, K) if name == "_bwd_dkv_kernel" else la._wide_k(base, K))   # as launched
            if name in ("_fwd_kernel", "_intra_a_kernel"):
                cfg = dict(la._fwd_config(base, K))
            if name == "_bwd_dq_kernel":   # as chunk.py's backward
                cfg = dict(la._dq_config(base, K))
            if name in ("_fwd_kernel", "_bwd_dq_kernel", "_bwd_dkv_kernel"):
                flags = dict(flags, UNCHAIN=la._unchain(cfg))
            if name == "_fwd_kernel" and la._fwd_span(4, decay) > 1:   # segments spanning the backward's 4
                flags = dict(flags, SPAN=la._fwd_span(4, decay))
            if name == "_bwd_dkv_kernel" and decay == 2 and (la._fused_bwd() or la._blocked_bwd()):   # dq first
                flags = dict(flags, FUSED_DQ=True, S0_IN=True, CPB=la._blocked_bwd() // base["BT"])
            if name == "_fwd_kernel" and decay == 2 and la._blocked_bwd():   # the states at the blocks' starts
                flags = dict(flags, CPBF=la._blocked_bwd() // la._fwd_config(base, K)["BT"])
            if name == "_bwd_dq_kernel":   # the segments' local dS too, where it does
                flags = dict(flags, DSL=la._fused_dsl(base, K))
            if name == "_bwd_dkv_kernel":   # scalar dlog_decay's sums by their own kernel, where they are
                flags = dict(flags, DGS=decay == 1 and la._dg_split(cfg), AT=la._a_transposed(cfg))
            if name in ("_bwd_dq_kernel", "_bwd_dkv_kernel"):   # q . dq, k . dk in parts, where they are
                kv = la._dkv_config(base, K)
                which = "xq" if name == "_bwd_dq_kernel" else "xk"
                flags = dict(flags, XP=la._x_parts(kv, which) if decay == 1 and la._dg_split(kv) else 1)
            warps = cfg.pop("num_warps")
            blocks = (K // cfg["BK"]) * (V // cfg["BV"])
            if name == "_intra_a_kernel":   # (BV: o's A v terms with the reference point)
                cfg = {n: cfg[n] for n in ("BT", "BK", "BV", "PREC")}
                blocks, warps = K // cfg["BK"], la.TUNE.get("intra_warps", la.A_PASS_WARPS)
            if name == "_intra_grad_kernel":   # the backward's chunks, dq's K blocks
                cfg = {"BT": base["BT"], "BK": cfg["BK"], "BV": base["BV"], "PREC": cfg["PREC"]}
                blocks, warps = K // cfg["BK"], la._intra_grad_warps(cfg["BK"])
            if decay == 0:
                flags = {k: (False if k == "DG" else v) for k, v in flags.items()}
            if name in ("_bwd_dq_kernel", "_bwd_dkv_kernel"):   # per channel dq's residual for q * dq (bf16, int8
                loc = decay == 2 and la._res_chunk(K)            # with res8, or its sums over chunks with res_chunk)
                flags = dict(flags, LO=decay == 2, LO8=10 if decay == 2 and la._res8(K) else 0, LOC=loc)
            if decay == 2:   # A by _intra_a_kernel (partial sums over its K blocks), loaded by forward and dk/dv
                nka = K // la._wide_k(base, K)["BK"]
                ref = la._ref_path(base, K, torch.bfloat16)   # the reference point where the decay allows
                flags = {k: (nka if k == "NA" else v) for k, v in flags.items()}
                flags = dict(flags, REF=ref)
                if name == "_fwd_kernel" and la._a_in_sweep(nka, cfg["BK"], ref):   # A formed and stored by the sweep
                    flags = dict(flags, NA=0, A_IN=True, STORE_A=True)
                if name in ("_intra_grad_kernel", "_bwd_dq_kernel", "_bwd_dkv_kernel") and ref:   # the flags
                    flags = dict(flags, FR=la._fwd_config(base, K)["BT"] // base["BT"])
                if name in ("_intra_a_kernel", "_intra_grad_kernel") and ref:   # REF_WALK chunks per program
                    flags = dict(flags, W=la.REF_WALK)
            if name == "_bwd_dkv_kernel":   # A's rows: the forward's chunk
                flags = dict(flags, AW=la._fwd_config(base, K)["BT"])
            ints = dict(ints, SC=T // cfg["BT"] // 4)
            cap = la._intra_grad_cap().get("maxnreg") if name == "_intra_grad_kernel" else None
            if name in ("_fwd_kernel", "_bwd_dq_kernel", "_bwd_dkv_kernel"):   # TUNE sweep_maxnreg's cap
                cap = sweep_maxnreg
            names = tuple(ptrs.split())
            types = {p: "*i8" if p == "flag" else "*fp32" if p in fp32 or (p == "g" and decay == 1) else "*bf16" for p in names}
            if decay == 2 and "xq" in names:   # per channel: dq's rounding residual, bf16, int8 (`_res8`) or
                types["xq"] = "*fp32" if la._res_chunk(K) else "*i8" if la._res8(K) else "*bf16"   # chunk sums
            if "dg" in names and not flags.get("DGS"):   # fp32 only as scalar decay's k . dk (the split)
                types["dg"] = "*bf16"
            one_a = blocks == 1 if name == "_intra_a_kernel" else flags.get("NA") == 1
            if "a" in names and one_a:   # A in the input dtype where one K block forms it
                types["a"] = "*bf16"
            out.append(Kernel(f"linear_attention {name.strip('_')} decay={kind}", triton.jit(getattr(la, name)),
                              types, dict(cfg, **flags), ints,
                              warps, cfg["BT"], B * T * H * blocks, "tokens (one chunk)", names,
                              ("scale",), maxnreg=cap))
    return out


ss_scan = None
FLOAT_OPS = ("FMUL", "FFMA", "FADD", "FSETP", "FSEL", "FMNMX", "MUFU")
EXP_FORMS = ("tl.exp(x)", "tl.exp2(x log2 e)", "_exp_neg(x) (triton_scan)", "tl.sigmoid(x)",
             "_sigmoid(x) (triton_scan)")


def _exp_probe(x_ptr, y_ptr, FORM: tl.constexpr):
    o = tl.arange(0, 128)
    x = tl.load(x_ptr + o)
    if FORM == 0:
        y = tl.exp(x)
    elif FORM == 1:
        y = tl.exp2(x * 1.4426950408889634)
    elif FORM == 2:
        y = ss_scan._exp_neg(x)
    elif FORM == 3:
        y = tl.sigmoid(x)
    else:
        y = ss_scan._sigmoid(x)
    tl.store(y_ptr + o, y)


def exp_forms() -> list[tuple[str, collections.Counter]]:
    """(form, its float instructions) for each way the kernels compute exp or a sigmoid, one fp32
    element per thread: why they write exp(x) as exp2(x log2 e) (triton lowers tl.exp to ex2.approx
    without ftz, which ptxas wraps in a range test and two predicated multiplies for subnormal results)."""
    global ss_scan   # the probe's _exp_neg and _sigmoid
    ss_scan = importlib.import_module("kernels.selective_scan.triton_scan")
    probe = triton.jit(_exp_probe)
    out = []
    for form, name in enumerate(EXP_FORMS):
        mix = stats(probe, {}, dict(FORM=form), {}, 4)["mix"]
        out.append((name, collections.Counter({op: n for op, n in mix.items() if op in FLOAT_OPS})))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", type=pathlib.Path, default=None, help="also write each kernel's SASS here")
    parser.add_argument("--ops", default="scans", choices=["scans", "linear_attention", "exp", "all"],
                        help="exp: the float instructions of each form of exp and sigmoid the kernels use")
    parser.add_argument("--la-k", type=int, default=64, help="linear attention: K = V (default 64)")
    parser.add_argument("--la-sweep-maxnreg", type=int, default=None,
                        help="linear attention: the sweeps' register cap (as TUNE sweep_maxnreg; default none)")
    parser.add_argument("--la-variant", default=None,
                        help="linear attention: the TUNE overrides of this kernels.linear_attention.tune variant")
    args = parser.parse_args()
    print(f"triton {triton.__version__}, sm_90; a loop's floor = its instructions per iteration x iterations "
          f"at the long shape / {ISSUE_RATE:.3g} warp instructions per second")
    if args.ops in ("exp", "all"):
        print("\nper element (fp32), float instructions:")
        for name, mix in exp_forms():
            print(f"  {name:<28} {sum(mix.values()):>2}  ({', '.join(f'{op} {n}' for op, n in mix.most_common())})")
    kernels = _scan_kernels() if args.ops in ("scans", "all") else []
    kernels += _linear_attention_kernels(args.la_k, args.la_sweep_maxnreg, args.la_variant) \
        if args.ops in ("linear_attention", "all") else []
    for k in kernels:
        s = stats(k.fn, k.types, k.consts, k.ints, k.warps, args.dump, maxnreg=k.maxnreg, ptrs=k.ptrs,
                  floats=k.floats)
        cap = f" (registers capped at {k.maxnreg})" if k.maxnreg else ""
        print(f"\n{k.label}: {s['regs']} registers, {s['local_bytes']} B local memory, {s['instructions']} "
              f"instructions, {k.warps} warp(s) per program{cap}")
        for size, mix in s["loops"]:
            top = ", ".join(f"{op} {n}" for op, n in mix.most_common(8))
            floor = k.total / k.per_iter * size * k.warps / ISSUE_RATE * 1e3
            spills = mix.get("LDL", 0) + mix.get("STL", 0)
            print(f"  innermost loop: {size} instructions per {k.per_iter} {k.unit}; if it is the hot loop, "
                  f"issuing it takes >= {floor:.2f} ms. Mix: {top}; spill loads/stores (LDL+STL): {spills}")

if __name__ == "__main__":
    main()
