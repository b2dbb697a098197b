#!/usr/bin/env bash
# The learning checks of the mixer issues, on one GPU (results: results/sweeps/learning_check_*).
#   bash scripts/learning_checks.sh            # then: python -m zoo.report results/sweeps/learning_check_mqar
# MQAR at d_model=128, L=256, 16 kv pairs (V=8192, 100k train examples, batch 256), 2 lrs per model,
# 4 runs at a time on the GPU through Hydra's joblib launcher.
set -euo pipefail
MODELS=${MODELS:-attention,based,gla,deltanet,mamba,mamba2,hyena}
python -m zoo -m task=mqar task.vocab_size=8192 task.seq_len=256 task.num_kv_pairs=16 \
  task.num_train=100000 task.num_test=1000 model="$MODELS" model.d_model=128 \
  train.lr=1e-3,3e-3 train.epochs=16 train.batch_size=256 train.progress=false \
  sweep_name=learning_check_mqar hydra/launcher=joblib hydra.launcher.n_jobs=${JOBS:-4}
