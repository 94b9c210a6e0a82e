#!/usr/bin/env bash
# Makes lmm_env/lm/weights/transcriber.safetensors (+ transcriber.json: its command and validation
# learning curve), the NoteTranscriber the "world-transcriber" agent plays with: pretrained only on
# the world's own pianos (the built-in piano and the sampled grand; train splits of piano, folk and
# Bach; random colour, rooms and level), and lmm_env/lm/weights/transcriber_pairs{K}_{instrument}.safetensors,
# the same adapted on the K protocol pairs of the built-in piano (K = 4, 16, 64, as its ears are
# shipped) and of TimGM6mb (K = 16, the demo's); other instruments are adapted once at first use
# and cached.
#
# Took 1264 s (pretraining, 2,500 steps x 8 two-second windows, one torch thread, sharing the
# 2-core x86_64 box with two other jobs) + ~4 min (adapting), 2026-12-07 (BENCHMARKS.md,
# "h on unseen pianos: world-transcriber"). Deterministic: a rerun gives the same bytes.
#
# Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}

"$PYTHON" -m lmm_env.lm.train transcriber "$@"
for K in 4 16 64; do "$PYTHON" -m lmm_env.lm.train transcriber --adapt "$K" --instrument piano; done
"$PYTHON" -m lmm_env.lm.train transcriber --adapt 16 --instrument soundfont
