#!/usr/bin/env bash
# Makes lmm_env/lm/weights/ear.safetensors + ear.json: the older learned ear "ear" (issue 3),
# trained on 16 score-audio pairs re-rendered with random transposition (+-15), tempo and
# velocity by the built-in piano (8,230 frames, 2,000 steps). The K-pairs protocol no longer
# allows that augmentation (its ears: scripts/train/ears.sh); this one is kept for
# compatibility (ClosedLoopReward(ear="ear"), EarMatchReward("ear")).
#
# Took 288 s wall in all (training 262 s, then the held-out evaluation of both ears) on the
# project's 2-core x86_64 CPU box, 2026-11-25 (BENCHMARKS.md, "Language models and ears").
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train ear
