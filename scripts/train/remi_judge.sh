#!/usr/bin/env bash
# Makes lmm_env/judges/weights/remi_judge.safetensors + remi_judge.json (config, command,
# validation curve and ranking): the shipped "remi-judge", a GPT-2 of 3 layers x 128 over miditok
# REMI tokens, trained on the train splits of the folk, piano and Bach corpora. Needs the
# 'judges' extra (pip install -e '.[judges]').
#
# Took about 9 minutes on the project's 2-core x86_64 CPU box (3,000 steps of 16 x 192 tokens),
# 2026-12-07 (BENCHMARKS.md, "Judges from the field").
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.judges.remi --steps 3000 --seed 0 --out lmm_env/judges/weights/remi_judge.safetensors "$@"
