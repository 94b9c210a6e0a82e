"""What `room=` costs: the built-in piano's block player dry and heard in each named room, at 1 and 256 envs.

    .venv/bin/python bench/bench_room.py [--steps 20]

Dense random play (5% of keys struck, 30% damped each step), 800-sample blocks, mean ms per
step after one warm-up step. Prints a markdown table (BENCHMARKS.md, "Rooms").
"""
import argparse
import time

import numpy as np

from lmm_env.synth import PianoSynth
from lmm_env.synth.room import ROOMS, in_room

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--steps", type=int, default=20)
args = ap.parse_args()
synth = PianoSynth(16000)
rooms = [None] + list(ROOMS)
print("| envs | " + " | ".join(r or "dry" for r in rooms) + " |")
print("|---:|" + "---:|" * len(rooms))
for n in (1, 256):
    cells = []
    for room in rooms:
        player = in_room(synth, room).player(n, 800)
        rng = np.random.default_rng(0)
        onset = rng.random((n, 88)) < 0.05
        velocity = rng.integers(20, 120, (n, 88))
        damped = ~onset & (rng.random((n, 88)) < 0.3)
        player.step(onset, velocity, damped)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            player.step(onset, velocity, damped)
        cells.append(f"{(time.perf_counter() - t0) / args.steps * 1000:.2f} ms")
    print(f"| {n} | " + " | ".join(cells) + " |")
