#!/usr/bin/env bash
# Makes agents/weights/listening-g.safetensors and agents/weights/listening-g.json (config,
# command, validation learning curve): the keys of the shipped "listening-g" agent, g (score
# -> keys) for two-hand music, learned by backpropagation through the differentiable piano,
# judged by the analytic ear (K = 0, no key labels), on the piano corpus's train split.
# Its velocities need no training: it learns them by ear while it plays (agents/learned/listening.py).
#
# Took about 2 min of training (60,160 world samples) on the project's 2-core x86_64 CPU
# box, one torch thread, 2026-12-07 (BENCHMARKS.md, "g for two-hand music that listens").
# Seed 1 was kept over seed 0 on the validation split (note F1 0.999 against 0.985).
#
# Run from the repository root. The run snapshots itself to <out>.run at every validation
# point; continue a killed run by adding --resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.agents.learned.differentiable --kind g --corpora piano --samples 60000 --eval-every 2048 \
    --eval-pieces 12 --seed 1 --out agents/weights/listening-g.safetensors "$@"
