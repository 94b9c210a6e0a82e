#!/usr/bin/env bash
# Makes lmm_env/lm/weights/judge_lm.safetensors + judge_lm.json: the judge LM of the
# improvisation metric (judge NLL; not a reward), a ScoreLM of width 32 (30k parameters)
# trained on the *validation* split and measured on the test split beside the reward's score
# LM. The command is also stored in judge_lm.json.
#
# Took about 4 minutes (244 s of training, 248 s wall, one thread) on the project's 2-core
# x86_64 CPU box, 2026-12-02 (BENCHMARKS.md, "Language models and ears": the judge LM).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train score --train-split validation --eval-split test --width 32 --seed 1 \
    --steps 2000 --compare score --out lmm_env/lm/weights/judge_lm.safetensors
