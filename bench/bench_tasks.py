"""Step cost of every LMM task next to LMMPiano-v0's closed-loop step, at 1 and 64 envs, in one run.

    python bench/bench_tasks.py [--steps 1000] [--num-envs 64]

Actions are random key presses at ~5% density (a plausible player); the clock covers
steps only (``step``) and steps with the episode resets they trigger (``+resets``).
Target (issue 11): each new task's step at most 1.5x LMMPiano-v0's.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401

TASKS = {
    "LMMPiano-v0": dict(max_seconds=20),
    "LMMDecipher-v0": dict(max_seconds=20),
    "LMMDecipher-v0 (relayout=episode)": dict(max_seconds=20, relayout="episode"),
    "LMMByEar-v0": dict(max_seconds=20),
    "LMMImprovise-v0": dict(prompt_seconds=4, length_seconds=20),
}


def actions(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    a = np.where(rng.random((n,) + shape) < 0.05, rng.uniform(0.2, 1.0, (n,) + shape), -1.0)
    return a.astype(np.float32)


def time_env(env, acts, vector: bool, warmup: int = 100):
    env.reset(seed=0)
    for a in acts[:warmup]:  # first calls load models and fill caches: not part of a step's cost
        _, _, term, trunc, _ = env.step(a)
        if not vector and (term or trunc):
            env.reset()
    env.reset(seed=0)
    step_t, reset_t = 0.0, 0.0
    for a in acts:
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        t1 = time.perf_counter()
        step_t += t1 - t0
        if not vector and (term or trunc):
            env.reset()
            reset_t += time.perf_counter() - t1
    return step_t / len(acts), (step_t + reset_t) / len(acts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--num-envs", type=int, default=64)
    args = ap.parse_args(argv)
    rows = []
    for label, kw in TASKS.items():
        env_id = label.split(" ")[0]
        env = gym.make(env_id, **kw)
        s1, r1 = time_env(env, actions(env.action_space.shape, args.steps), vector=False)
        venv = gym.make_vec(env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point", **kw)
        n = max(20, args.steps // 4)
        sv, rv = time_env(venv, actions(venv.action_space.shape[1:], n)[:, None].repeat(args.num_envs, 1), vector=True)
        rows.append((label, s1, r1, sv / args.num_envs))
    base = rows[0]
    print(f"| task | 1 env: us/step | x Piano | 1 env +resets: us/step | {args.num_envs} envs: us/env-step | x Piano |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, s1, r1, sv in rows:
        print(f"| {label} | {s1 * 1e6:.0f} | {s1 / base[1]:.2f} | {r1 * 1e6:.0f} | {sv * 1e6:.1f} | {sv / base[3]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
