#!/usr/bin/env bash
# Makes agents/weights/diff-g.safetensors and agents/weights/diff-g.json (its config, command
# and validation learning curve): the shipped "diff-g" agent, g (score -> keys) learned by
# backpropagation through the differentiable piano and the analytic ear (K = 0).
#
# Took 41 s of training (20,224 world samples; validation note F1 >= 0.9 after 2,048 samples,
# 9.3 s) on the project's 2-core x86_64 CPU box, one torch thread, 2026-12-02
# (BENCHMARKS.md, "Learned agents").
#
# Run from the repository root. The run snapshots itself to <out>.run at every validation
# point; continue a killed run by adding --resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.agents.learned.differentiable --kind g --samples 20000 --eval-every 2048 \
    --out agents/weights/diff-g.safetensors "$@"
