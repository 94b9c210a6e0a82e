#!/usr/bin/env bash
# Makes lmm_env/lm/weights/motion_lm.safetensors (+ motion_lm.json: its command and validation
# curve), the motion LM (LM^M) the "motion-lm" improviser plays with: a GRU over notes (gap,
# key, velocity, hold) trained on the train splits of the piano, folk and Bach corpora
# (transposed by up to 6 semitones, tempo-scaled by 0.8 and 1.25), 3,000 steps of 32 crops of
# 160 notes. The judge LM of lmm_env.improv was trained on the validation split: it never saw
# these pieces either.
#
# Took ~17 min (one torch thread on the 2-core x86_64 box), 2026-12-07 (BENCHMARKS.md,
# "LM^M that answers its prompt: motion-lm").
#
# Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train motion "$@"
