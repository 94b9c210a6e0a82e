"""The sampled grand's env step against the built-in piano's (and the SoundFont's), side by side.

    .venv/bin/python bench/bench_grand.py            # prints a markdown table (and the machine's load)

LMMPiano-v0 through gym.make (default wrappers) and gym.make_vec at ``--n-envs`` envs, with
``synth="piano"``, ``"grand"`` and ``"soundfont"`` (TimGM6mb through tinysoundfont), under two
kinds of play:

* random: RandomAgent's actions (uniform in [0, 1]: about half the keys down, re-struck
  often: the densest load, what an untrained policy does);
* melodic: ScoreReaderAgent's actions (the target's keys: a melody or chorale).

The single-env actions are recorded once and replayed to every synth (best of
``--repeats`` timed passes); the batched env's agent time is excluded. The synths take turns
inside each cell so that a change of the machine's load hits them alike. The reward is
``--reward`` (default key_match, the cheapest: the synth's share of a step is then the
largest, the strictest comparison). Prints µs per env-step and each synth's ratio to the
built-in piano.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import lmm_env  # noqa: E402,F401
from lmm_env.agents import RandomAgent, ScoreReaderAgent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_env import record_actions  # noqa: E402  (the same recorded play as bench_env.py)


def time_single(env, actions):
    env.reset(seed=0)
    t0 = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return (time.perf_counter() - t0) / len(actions)


def time_vector(venv, kind, steps, warmup):
    """Seconds per env-step of the batched env (agent time excluded)."""
    obs, _ = venv.reset(seed=0)
    agent = ScoreReaderAgent(venv) if kind == "melodic" else RandomAgent(venv, seed=0)
    for _ in range(warmup):
        obs, *_ = venv.step(agent.predict(obs)[0])
    t_agent = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        ta = time.perf_counter()
        a, _ = agent.predict(obs)
        t_agent += time.perf_counter() - ta
        obs, *_ = venv.step(a)
    return (time.perf_counter() - t0 - t_agent) / (steps * venv.num_envs)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synths", default="piano,grand,soundfont", help="comma-separated synths (the first is the base)")
    p.add_argument("--steps", type=int, default=600, help="single-env steps per timed pass")
    p.add_argument("--repeats", type=int, default=3, help="timed passes (best kept)")
    p.add_argument("--n-envs", type=int, default=256, help="batched envs")
    p.add_argument("--vector-steps", type=int, default=40, help="batched steps per timed pass")
    p.add_argument("--warmup", type=int, default=20, help="batched steps before timing")
    p.add_argument("--score", default="folk", help="corpus the env draws from")
    p.add_argument("--reward", default="key_match", help="the env's reward")
    args = p.parse_args(argv)
    synths = [s.strip() for s in args.synths.split(",") if s.strip()]
    kw = dict(score=args.score, reward=args.reward)

    load0 = os.getloadavg()
    t_start = time.perf_counter()
    # single env: the same recorded actions for every synth
    envs = {s: gym.make("LMMPiano-v0", synth=s, **kw) for s in synths}
    base_env = envs[synths[0]]
    actions = {"random": record_actions(base_env, RandomAgent(base_env, seed=0), args.steps),
               "melodic": record_actions(base_env, ScoreReaderAgent(base_env), args.steps)}
    rows = []
    for kind in ("random", "melodic"):
        best = {s: float("inf") for s in synths}
        time_single(envs[synths[0]], actions[kind][:50])  # warm
        for _ in range(args.repeats):
            for s in synths:
                best[s] = min(best[s], time_single(envs[s], actions[kind]))
        rows.append((kind, 1, best))
    for e in envs.values():
        e.close()
    # batched
    for kind in ("random", "melodic"):
        venvs = {s: gym.make_vec("LMMPiano-v0", num_envs=args.n_envs, **kw, synth=s) for s in synths}
        best = {s: float("inf") for s in synths}
        for r in range(max(1, args.repeats - 1)):
            for s in synths:
                best[s] = min(best[s], time_vector(venvs[s], kind, args.vector_steps, args.warmup if r == 0 else 2))
        for v in venvs.values():
            v.close()
        rows.append((kind, args.n_envs, best))
    load1 = os.getloadavg()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}; load average (1, 5, 15 min) before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {time.perf_counter() - t_start:.0f} s")
    print(f"LMMPiano-v0, reward={args.reward}, score={args.score}; single env: {args.steps} steps, best of "
          f"{args.repeats}; {args.n_envs} envs: {args.vector_steps} batched steps, best of {max(1, args.repeats - 1)}")
    print()
    base = synths[0]
    head = "| play | envs | " + " | ".join(f"{s}: µs/env-step" + ("" if s == base else f" | {s} / {base}")
                                         for s in synths) + " |"
    print(head)
    print("|" + "---|" * (2 + len(synths) * 2 - 1))
    for kind, n, best in rows:
        cells = []
        for s in synths:
            cells.append(f"{best[s] * 1e6:,.1f}")
            if s != base:
                cells.append(f"{best[s] / best[base]:.2f}")
        print(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
