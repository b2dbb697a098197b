#!/usr/bin/env bash
# The learning checks of the mixer issues, on one GPU; results under results/sweeps/learning_check_*,
# tables with `python -m zoo.report results/sweeps/learning_check_<name>`.
#   bash scripts/learning_checks.sh [mqar|selective_copy|flip_flop ...]     (default: all three)
# EXTRA="key=value ..." adds overrides to the MQAR sweep (e.g. EXTRA=model.mixer.expand_k=1).
# Runs several small jobs at once on the GPU through Hydra's joblib launcher (JOBS, default 4).
# Re-running skips completed runs (same config), so an interrupted check is finished by re-running.
set -euo pipefail
JOBS=${JOBS:-4}
launcher="hydra/launcher=joblib hydra.launcher.n_jobs=$JOBS"

mqar() {  # MQAR at d_model=128, L=256, 16 kv pairs (V=8192, 100k train examples, batch 256)
  python -m zoo -m task=mqar task.vocab_size=8192 task.seq_len=256 task.num_kv_pairs=16 \
    task.num_train=100000 task.num_test=1000 model="${MODELS:-attention,based,gla,deltanet,mamba,mamba2,hyena}" \
    model.d_model=128 train.lr="${LRS:-1e-3,3e-3}" train.epochs=16 train.batch_size=256 train.progress=false \
    sweep_name=learning_check_mqar $launcher ${EXTRA:-}
}

selective_copy() {  # Mamba on selective copying at a reduced length (paper: 4096, 400k steps)
  python -m zoo -m task=selective_copy task.seq_len=${SC_LEN:-1024} task.num_train=100000 model=mamba model.d_model=64 \
    train.lr=1e-3,3e-3 train.epochs=4 train.batch_size=64 train.progress=false \
    sweep_name=learning_check_selective_copy $launcher
}

flip_flop() {  # a 1-layer LSTM on flip-flop at the paper's length T=512 (Liu et al. 2023: it extrapolates perfectly)
  python -m zoo -m task=flip_flop task.seq_len=512 task.num_train=32000 model=lstm model.n_layers=1 \
    model.d_model=128 train.lr=1e-3,3e-3 train.epochs=1 train.batch_size=16 train.warmup_steps=50 \
    train.schedule=linear train.eval_every=500 train.progress=false sweep_name=learning_check_flip_flop $launcher
}

checks=("$@")
[ ${#checks[@]} -gt 0 ] || checks=(mqar selective_copy flip_flop)
for check in "${checks[@]}"; do "$check"; done
