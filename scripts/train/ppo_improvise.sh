#!/usr/bin/env bash
# Makes agents/weights/ppo-improvise.safetensors: the shipped "ppo-improvise" agent (LM^M),
# PPO + KeyConvPolicy trained from scratch on LMMImprovise-v0 with the `improvise` reward
# (the `ppo` preset for that task), checkpoint chosen on validation prompts (not collapsed,
# then the lowest judge NLL: the 491,520-step checkpoint), exported as policy tensors only.
#
# Took 1,350 s (485 steps/s, 655,360 env steps) on the project's 2-core x86_64 CPU box while
# other work shared it, 2026-12-02 (BENCHMARKS.md, "Learned agents": ppo-improvise).
#
# The later attempts to bring its note density into the corpus range
# (bench/train_improvise_ranged.py, removed in issue 22) were not shipped.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.agents.training.improvise --steps 655360 --eval-every 81920 --eval-episodes 6 \
    --logdir runs/ppo-improvise --export agents/weights/ppo-improvise.safetensors
