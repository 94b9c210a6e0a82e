#!/usr/bin/env bash
# Makes agents/weights/ppo-closed-loop.safetensors (86 KB): the shipped "ppo-closed-loop"
# agent, PPO + KeyConvPolicy trained on LMMPiano-v0 with the closed-loop reward alone (the `ppo`
# preset, agents/training/hyperparams/ppo.yml: 8 envs of folk train tunes trimmed to 12 s,
# 300k env steps, seed 0).
#
# Took 145 s of training (2,077 steps/s; the best validation checkpoint is at 147,456 steps)
# plus the held-out evaluation the example prints, on the project's 2-core x86_64 CPU box,
# 2026-11-25 (BENCHMARKS.md, "Learned agents": the headline PPO run).
#
# Step 1 trains (TensorBoard logs, eval.csv and checkpoints under runs/ppo-closed_loop-s0);
# step 2 keeps the best validation checkpoint's policy tensors only (no optimizer state).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
LOGDIR=${LOGDIR:-runs/ppo-closed_loop-s0}

"$PYTHON" examples/train_ppo.py --reward closed_loop --seed 0 --logdir "$LOGDIR"
"$PYTHON" -c "import sys; from lmm_env.agents import export_policy; print(export_policy(sys.argv[1], sys.argv[2]))" \
    "$LOGDIR/checkpoints/best.safetensors" agents/weights/ppo-closed-loop.safetensors
