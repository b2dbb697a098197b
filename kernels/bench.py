"""Kernel benchmark: `python -m kernels.bench [--quick]` (needs a CUDA GPU).

Each op's `kernels/<op>/bench.py` exposes
`run(quick: bool, only: set[str] | None = None, long: bool = False) -> list[dict]` (only: time just
these implementations, None = all; long: the long shapes only), one dict per measurement:
    op          str    public op name, e.g. "chunked_linear_attention"
    shape       str    e.g. "B=8 T=4096 H=8 K=128 V=128"
    impl        str    "triton" (ours) or a comparison ("torch-chunk", "sdpa", "fla", ...)
    dtype       str    input dtype, e.g. "bfloat16"
    fwd_ms      float  forward time, ms (NaN if not run)
    fwdbwd_ms   float  forward + backward time, ms (NaN if not run)
    gbps        float  bytes the algorithm must move (inputs read, outputs written; grads for bwd)
                       divided by fwdbwd_ms, GB/s
    frac_copy_bw float gbps / measured device copy bandwidth
    fwdbwd_graph_ms float  forward + backward replayed from a CUDA graph (`time_graph`): the device's
                       time without the host's launch overhead, ms (NaN where not measured: only
                       the fast implementations, GRAPH_IMPLS, are captured)
    frac_graph  float  the bytes / fwdbwd_graph_ms / copy bandwidth
    note        str    free text (decay kind, "out of memory", ...)
Where fwdbwd_ms is well above fwdbwd_graph_ms the op is bound by the host (Python, autograd and
kernel launches), not by the GPU; `python -m kernels.profile` splits the time per kernel.
This module gathers the rows of every op whose bench module imports, prints one table and writes
results/bench/kernels.md and results/bench/kernels.csv, headed by GPU name and torch/triton versions.
`--impls triton,fla` times only those implementations; with `--merge` their rows replace the
matching rows of an existing table (same op, shape, impl, dtype and decay), and a note under the
header (kept across merges, in both files) says what each merge re-measured.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import logging
import math
import pathlib
import traceback

import torch

MODULES = ["kernels.linear_attention.bench", "kernels.selective_scan.bench", "kernels.linear_recurrence.bench"]
COLUMNS = ["op", "shape", "impl", "dtype", "fwd_ms", "fwdbwd_ms", "gbps", "frac_copy_bw", "fwdbwd_graph_ms",
           "frac_graph", "note"]
FLOATS = ["fwd_ms", "fwdbwd_ms", "gbps", "frac_copy_bw", "fwdbwd_graph_ms", "frac_graph"]
GRAPH_IMPLS = {"triton", "fla", "fla-hgrn", "sdpa", "mamba_ssm"}   # timed from a CUDA graph too
log = logging.getLogger("kernels.bench")


def copy_bandwidth_gbps() -> float:
    """Device-to-device copy bandwidth (read + write of a 1 GiB buffer), GB/s: the yardstick of frac_copy_bw."""
    from triton.testing import do_bench

    x = torch.empty(2**28, device="cuda")
    y = torch.empty_like(x)
    return 2 * x.numel() * x.element_size() / do_bench(lambda: y.copy_(x)) / 1e6


def time_fwd_bwd(fn, inputs, cot, rep: int = 50) -> tuple[float, float, str]:
    """(fwd_ms, fwdbwd_ms, note) of fn(*inputs) with triton.testing.do_bench (median); the backward is
    torch.autograd.grad w.r.t. the inputs that require grad. NaN and a note when out of memory."""
    from triton.testing import do_bench

    wrt = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
    try:
        fwd = do_bench(lambda: fn(*inputs), warmup=5, rep=rep)
        fwdbwd = do_bench(lambda: torch.autograd.grad(fn(*inputs), wrt, cot), warmup=5, rep=rep)
        return fwd, fwdbwd, ""
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return math.nan, math.nan, "out of memory"


def time_graph(step, reps: int = 10) -> float:
    """ms per call of step(), replayed from a CUDA graph of `reps` calls, so that no host work (Python,
    autograd, kernel launches) is timed; the L2 cache is flushed before each call, as do_bench does,
    and the flushes' own time (a graph of flushes alone) is subtracted. NaN if step cannot be
    captured (a host synchronisation inside) or runs out of memory."""
    flush = torch.empty(2**26, dtype=torch.int32, device="cuda")          # 256 MiB, beyond the L2
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    graphs = []
    try:
        with torch.cuda.stream(side):      # warm-up off the default stream, as capture requires
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        for with_step in (True, False):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for _ in range(reps):
                    flush.zero_()
                    if with_step:
                        step()
            graphs.append(graph)
        ms = []
        for graph in graphs:
            graph.replay()
            times = []
            for _ in range(5):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                graph.replay()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            ms.append(sorted(times)[len(times) // 2])
        return (ms[0] - ms[1]) / reps
    except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
        log.warning("CUDA graph timing failed: %s", str(e).splitlines()[0][:200])
        torch.cuda.synchronize()
        return math.nan
    finally:
        del graphs, flush
        torch.cuda.empty_cache()


def add_graph_time(row: dict, step, nbytes: float, copy_bw: float) -> dict:
    """row with fwdbwd_graph_ms / frac_graph of step() (one forward + backward) for GRAPH_IMPLS; NaN
    for other implementations and where the timing as called failed (fwdbwd_ms NaN)."""
    timed = row["impl"] in GRAPH_IMPLS and not math.isnan(row.get("fwdbwd_ms", math.nan))
    ms = time_graph(step) if timed else math.nan
    return dict(row, fwdbwd_graph_ms=ms, frac_graph=nbytes / ms / 1e6 / copy_bw)


def rel_error(outs, refs) -> float:
    """Worst relative RMS error ||o - r|| / ||r|| over matching tensors; inf if an output is not finite."""
    worst = 0.0
    for o, r in zip(outs, refs, strict=True):
        o, r = o.double(), r.double()
        if not torch.isfinite(o).all():
            return math.inf
        worst = max(worst, ((o - r).norm() / r.norm().clamp_min(1e-30)).item())
    return worst


def collect(quick: bool, modules: list[str] = MODULES, on_rows=None, impls: set[str] | None = None,
            long: bool = False) -> list[dict]:
    """Rows from every importable bench module; a module that is missing or fails is logged and skipped.
    `on_rows(rows so far)` is called after each module (the tables are rewritten as they grow)."""
    rows = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            log.warning("skipping %s: %s", name, e)
            continue
        try:
            rows += module.run(quick, impls, long)
        except Exception:  # one op's failure must not lose the others' rows
            log.error("%s.run failed:\n%s", name, traceback.format_exc())
        if on_rows is not None:
            on_rows(rows)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def header() -> str:
    import triton

    return (f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; "
            f"CUDA {torch.version.cuda}")


def _key(row: dict) -> tuple:
    decay = next((p for p in str(row["note"]).split("; ") if p.startswith("decay=")), "")
    return row["op"], row["shape"], row["impl"], row["dtype"], decay


def read_csv(path: pathlib.Path) -> tuple[str, list[str], list[dict]]:
    """(header line, notes, rows) of a kernels.csv written by `write`."""
    with open(path) as f:
        comments = []
        while (line := f.readline()).startswith("# "):
            comments.append(line[2:].strip())
        rows = list(csv.DictReader([line, *f]))
    for r in rows:
        for c in FLOATS:     # tables written before a column existed: NaN
            r[c] = float(r[c]) if r.get(c) not in (None, "", "nan") else math.nan
    return comments[0], comments[1:], rows


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """old with every row that new re-measured replaced in place; new rows without a match go after
    the last old row of the same op and shape (or at the end)."""
    fresh = {_key(r): r for r in new}
    rows = [fresh.pop(_key(r), r) for r in old]
    for key, r in fresh.items():
        at = max((i for i, o in enumerate(rows) if o["op"] == r["op"] and o["shape"] == r["shape"]),
                 default=len(rows) - 1)
        rows.insert(at + 1, r)
    return rows


def write(rows: list[dict], out_dir: pathlib.Path, notes: list[str] = ()) -> str:
    """Write kernels.md and kernels.csv under out_dir (notes: paragraphs under the header); return
    the markdown table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Kernel benchmark\n\n{header()}\n" + "".join(f"\n{n}\n" for n in notes),
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows = [{**dict.fromkeys(FLOATS, math.nan), **r} for r in rows]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    table = "\n".join(lines) + "\n"
    (out_dir / "kernels.md").write_text(table)
    with open(out_dir / "kernels.csv", "w", newline="") as f:
        f.write("".join(f"# {line}\n" for line in [header(), *notes]))
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r[c] for c in COLUMNS} for r in rows)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few shapes only")
    parser.add_argument("--long", action="store_true", help="the long shapes only (T, L >= 4096)")
    parser.add_argument("--out", default="results/bench", help="output folder")
    parser.add_argument("--ops", default=",".join(m.split(".")[1] for m in MODULES),
                        help="comma-separated ops (default: all)")
    parser.add_argument("--impls", default=None, help="comma-separated implementations to time (default: all)")
    parser.add_argument("--decays", default=None,
                        help="linear attention: decay kinds to time, comma-separated (default: all)")
    parser.add_argument("--shapes", default=None,
                        help="linear attention: only shapes whose name contains one of these, comma-separated "
                             "(e.g. 'T=16384 ,K=128 ')")
    parser.add_argument("--merge", default=None, metavar="CSV",
                        help="replace the re-measured rows of this kernels.csv, keep its other rows")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    # flags first (a typo reports itself on any machine), then the GPU
    modules = [f"kernels.{op}.bench" for op in args.ops.split(",")]
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        raise SystemExit(f"--ops: unknown {unknown}; choose from {[m.split('.')[1] for m in MODULES]}")
    impls = set(args.impls.split(",")) if args.impls else None
    if args.decays or args.shapes:
        la_bench = importlib.import_module("kernels.linear_attention.bench")
    if args.decays:
        unknown = sorted(set(args.decays.split(",")) - set(la_bench.DECAYS))
        if unknown:
            raise SystemExit(f"--decays: unknown {unknown}; choose from {list(la_bench.DECAYS)}")
        la_bench.DECAYS = tuple(args.decays.split(","))
    if args.shapes:
        la_bench.SHAPE_FILTER = tuple(args.shapes.split(","))
        names = la_bench.shape_names(args.quick, args.long)
        if not any(la_bench.shape_selected(n) for n in names):
            raise SystemExit(f"--shapes {args.shapes!r} matches none of the linear-attention shapes {names}")
    if not torch.cuda.is_available():
        raise SystemExit("python -m kernels.bench needs a CUDA GPU (times are measured with triton.testing.do_bench)")
    out = pathlib.Path(args.out)
    if args.merge:
        old_head, old_notes, old = read_csv(pathlib.Path(args.merge))
        notes = [*old_notes, f"Merged: the {', '.join(sorted(impls or ['all']))} rows of {args.ops} re-measured "
                             f"on {header()}; the rows before came from {old_head}."]
        emit = lambda rows: write(merge(old, rows), out, notes)  # noqa: E731
    else:
        emit = lambda rows: write(rows, out)  # noqa: E731
    print(emit(collect(args.quick, modules, on_rows=emit, impls=impls, long=args.long)))


if __name__ == "__main__":
    main()
