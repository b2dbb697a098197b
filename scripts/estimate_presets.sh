#!/usr/bin/env bash
# Estimated GPU time of every paper preset (or those named), from step times measured on this GPU:
#   scripts/estimate_presets.sh [PRESET ...]      # env: BUDGET (s of timing per preset, default 45)
# Writes results/bench/presets/<preset>.json and results/bench/presets/README.md (see zoo/estimate.py).
set -uo pipefail
cd "$(dirname "$0")/.."
presets=("$@")
if [ ${#presets[@]} -eq 0 ]; then
  presets=($(ls conf/experiment/*.yaml | xargs -n1 basename | sed 's/\.yaml$//'))
fi
for p in "${presets[@]}"; do
  timeout "${TIMEOUT:-300}" python -m zoo.estimate "+experiment=$p" --budget-s "${BUDGET:-45}" || echo "estimate $p failed ($?)"
done
