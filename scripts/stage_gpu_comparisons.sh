#!/usr/bin/env bash
# Stages the comparison libraries the kernel benches time when importable, for the GPU host (no
# network; Python 3.12, torch 2.11, triton 3.6): FLA's ops (fla-core, pure Python + Triton) and
# einops, as wheels in ./.whl next to those of ../shared/gpu/stage-wheels.sh. The install line that
# script prints installs them too (it takes .whl/*.whl).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
mkdir -p "$root/.whl"
python3 -m pip download -q --no-deps --dest "$root/.whl" "fla-core==0.6.0" "einops==0.8.2"
ls "$root/.whl"
