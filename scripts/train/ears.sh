#!/usr/bin/env bash
# Makes the shipped learned ears of K protocol pairs (lmm_env.pairs, fit_ear), K = 4, 16, 64:
#   lmm_env/lm/weights/ear_pairs4.safetensors  + ear_pairs4.json
#   lmm_env/lm/weights/ear_pairs16.safetensors + ear_pairs16.json
#   lmm_env/lm/weights/ear_pairs64.safetensors + ear_pairs64.json
# (each .json stores its command, fit wall time and held-out F1). They are the "ear of K
# pairs" of every task's reward (pairs=K) and of diff-h, babble and decipher-closed-loop.
#
# Fit wall time (render + features + training, 1,500 Adam steps on one torch thread):
# K = 4: 64.5 s, K = 16: 53.1 s, K = 64: 90.7 s, on the project's 2-core x86_64 CPU box, each
# run sharing the cores with another job, 2026-12-02 (BENCHMARKS.md, "Language models and
# ears": learned ears from K pairs). The held-out evaluation after each fit adds a few minutes.
#
# The older learned ear "ear" (lmm_env/lm/weights/ear.safetensors) has its own recipe:
# scripts/train/ear_augmented.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

for K in 4 16 64; do
    "$PYTHON" -m lmm_env.lm.train ear-pairs --pairs "$K" --synth piano --seed 0
done
