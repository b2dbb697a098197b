#!/usr/bin/env bash
# The GPU kernel checks in stages that each fit a 10-minute call on one H100 (first compile included);
# logs go to OUT (default results/bench/stages), the kernel table (kernels.md/csv, the re-measured rows
# merged into the existing ones) to TABLE (default results/bench; on the GPU host: TABLE=$OUT).
#   bash scripts/kernel_checks.sh [tests|tune|ss|la|la-fla|lr ...]       (default: all, in this order)
#   tests   GPU kernel tests (selective scan, linear recurrence, linear attention 16-bit and fp32), as
#           four parallel pytest processes (compilation is CPU-bound)
#   tune    python -m kernels.tune_scans (selective scan "time"/"seq" configs, linear recurrence tiles)
#   ss | lr python -m kernels.bench for that op, every implementation, merged into kernels.csv
#   la      linear attention: ours, sdpa and the PyTorch forms, merged
#   la-fla  linear attention at the long shapes: FLA only (its autotuning takes minutes per shape, so
#           the Zoology shapes do not fit in the same call; needs fla-core on the host:
#           scripts/stage_gpu_comparisons.sh), merged; DECAYS=channel narrows it to those decay kinds
set -euo pipefail
OUT=${OUT:-results/bench/stages}
TABLE=${TABLE:-results/bench}
mkdir -p "$OUT" "$TABLE"
[ -f "$TABLE/kernels.csv" ] || cp results/bench/kernels.csv "$TABLE/kernels.csv"
T=tests/kernels

tests() {
  timeout 540 python -m pytest -q -m gpu $T/test_selective_scan.py > "$OUT/test_ss.log" 2>&1 &
  timeout 540 python -m pytest -q -m gpu $T/test_linear_recurrence.py > "$OUT/test_lr.log" 2>&1 &
  timeout 540 python -m pytest -q -m gpu $T/test_chunked_linear_attention.py -k "not float32" \
    > "$OUT/test_la.log" 2>&1 &
  timeout 540 python -m pytest -q -m gpu $T/test_chunked_linear_attention.py -k "float32" \
    > "$OUT/test_la_fp32.log" 2>&1 &
  wait
  for f in "$OUT"/test_*.log; do echo "== $f"; tail -n 3 "$f"; done
}
tune() { timeout 540 python -m kernels.tune_scans 2>&1 | tee "$OUT/tune_scans.log"; }
bench() {  # op, implementations (empty: all); LONG=1: the long shapes only; DECAYS=channel,...: those only
  timeout 540 python -m kernels.bench --ops "$1" ${2:+--impls "$2"} ${LONG:+--long} ${DECAYS:+--decays "$DECAYS"} \
    --merge "$TABLE/kernels.csv" \
    --out "$TABLE" 2>&1 | tee "$OUT/bench_$1.log"
}
ss() { bench selective_scan; }
lr() { bench linear_recurrence; }
la() { bench linear_attention triton,sdpa,torch-chunk,torch-quadratic; }
la-fla() { LONG=1 bench linear_attention fla; }

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(tests tune ss la la-fla lr)
for stage in "${stages[@]}"; do "$stage"; done
