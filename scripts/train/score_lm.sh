#!/usr/bin/env bash
# Makes lmm_env/lm/weights/score_lm.safetensors + score_lm.json: LM^V, the score LM of the
# closed-loop reward (53k parameters, 216 KB; trained on the train split of bach-chorales and
# folk, its held-out NLL measured on the validation split and stored in the .json).
#
# Took 273 s of training (276 s wall, one thread) on the project's 2-core x86_64 CPU box,
# 2026-11-25 (BENCHMARKS.md, "Language models and ears": ScoreLM).
#
# The judge LM of the improvisation metric (lmm_env/lm/weights/judge_lm.safetensors) is the
# same trainer with other splits: scripts/train/judge_lm.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train score
