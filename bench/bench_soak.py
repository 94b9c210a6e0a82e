"""Memory soak: RSS over many env steps of random play, reported as MB per 100k steps after warm-up.

    .venv/bin/python bench/bench_soak.py                        # 1M steps on make_vec(32), 200k on one env
    .venv/bin/python bench/bench_soak.py --vec-steps 300000 --single-steps 100000   # shorter

For ``record_audio`` on and off, random actions (each key uniform in [-1, 1] at each step,
what an untrained policy does), the default reward, folk tunes trimmed to 20 s (a new piece
every episode: the pool has thousands). RSS is sampled every 10k env steps; the slope is a
least-squares fit over the samples after the first 100k steps. Target (issue 13): under 5 MB
per 100k steps with record_audio=False and the default reward; with record_audio=True, memory
bounded by the current episode.
"""
from __future__ import annotations

import argparse
import os
import time

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def soak(n_envs: int, steps: int, record_audio: bool, every: int = 10_000, warmup: int = 100_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    if n_envs == 1:
        env = gym.make("LMMPiano-v0", max_seconds=20.0, record_audio=record_audio)
        env.reset(seed=seed)
        shape = env.action_space.shape
    else:
        env = gym.make_vec("LMMPiano-v0", num_envs=n_envs, max_seconds=20.0, record_audio=record_audio)
        env.reset(seed=seed)
        shape = env.action_space.shape
    samples, done_steps, next_sample = [], 0, 0
    t0 = time.perf_counter()
    while done_steps < steps:
        a = rng.uniform(-1, 1, shape).astype(np.float32)
        if n_envs == 1:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        else:
            env.step(a)
        done_steps += n_envs
        if done_steps >= next_sample:
            samples.append((done_steps, rss_mb()))
            next_sample += every
    wall = time.perf_counter() - t0
    env.close()
    x = np.array([s for s, _ in samples if s >= warmup], float)
    y = np.array([m for s, m in samples if s >= warmup], float)
    slope = float(np.polyfit(x, y, 1)[0] * 100_000) if len(x) >= 2 else float("nan")
    return {"rss_start": samples[0][1], "rss_end": samples[-1][1], "mb_per_100k": slope, "steps_per_s": steps / wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vec-steps", type=int, default=1_000_000)
    ap.add_argument("--single-steps", type=int, default=200_000)
    ap.add_argument("--num-envs", type=int, default=32)
    args = ap.parse_args(argv)
    print("| env | record_audio | env steps | RSS start MB | RSS end MB | MB per 100k steps after 100k | env-steps/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for n, steps in ((args.num_envs, args.vec_steps), (1, args.single_steps)):
        if steps <= 0:  # --vec-steps 0 / --single-steps 0: skip those rows
            continue
        for rec in (False, True):
            r = soak(n, steps, rec)
            print(f"| {'make_vec(' + str(n) + ')' if n > 1 else 'one env'} | {rec} | {steps:,} | {r['rss_start']:.0f} | "
                  f"{r['rss_end']:.0f} | {r['mb_per_100k']:+.1f} | {r['steps_per_s']:,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
