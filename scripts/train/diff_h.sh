#!/usr/bin/env bash
# Makes agents/weights/diff-h.safetensors and agents/weights/diff-h.json (its config, command
# and validation learning curve): the shipped "diff-h" agent, h (heard target -> keys) learned
# by backpropagation through the differentiable piano and the ear of K = 16 pairs
# (lmm_env/lm/weights/ear_pairs16.safetensors, made by scripts/train/ears.sh), on targets
# rendered by the built-in piano only.
#
# Took 110 s (20,224 world samples; validation folk note F1 0.893 at 4k samples, 0.974 at 20k)
# on the project's 2-core x86_64 CPU box while another job shared it, one torch thread,
# 2026-12-02 (BENCHMARKS.md, "Learned agents"). Reruns of the same configuration were less
# stable than the shipped run (see "The K-pairs table" in BENCHMARKS.md).
#
# Run from the repository root. Continue a killed run by adding --resume.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.agents.learned.differentiable --kind h --pairs 16 --samples 20000 --eval-every 4096 \
    --out agents/weights/diff-h.safetensors "$@"
