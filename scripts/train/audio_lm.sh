#!/usr/bin/env bash
# Makes lmm_env/lm/weights/audio_lm.safetensors + audio_lm.json: LM^A, the audio LM of the
# closed-loop reward (an MLP over the last 4 log-mel frames, 2 hidden layers of 64, a
# 2-component Laplace mixture per band; 0.19 MB), trained on SoundFont renderings of 300 Bach
# + 300 folk train pieces; held-out NLL stored in the .json.
#
# Took 54 s of training, 78 s in all with a warm corpus cache, on the project's 2-core x86_64
# CPU box, 2026-11-25 (BENCHMARKS.md, "Language models and ears": AudioLM).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train audio --threads 1
