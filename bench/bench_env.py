"""Env speed: one LMMPiano-v0 step vs one CartPole-v1 step, and the batched env at 1..256 envs.

    python bench/bench_env.py            # prints markdown tables (paste into BENCHMARKS.md)

Both single-env numbers come from the same run, through gym.make (default wrappers), with
the issue-2 default reward (audio_match); a last table compares every reward's step cost
(the closed-loop LM reward against key_match, at 1 and 64 envs); the piano is played by the ScoreReaderAgent's actions (a realistic
load: a melody's keys down), precomputed so the agent's time is not counted.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401
from lmm_env.agents import RandomAgent, ScoreReaderAgent


def record_actions(env, agent, n, seed=0):
    obs, _ = env.reset(seed=seed)
    actions = []
    for _ in range(n):
        a, _ = agent.predict(obs)
        actions.append(a)
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            obs, _ = env.reset()
    return actions


def time_single(env, actions, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        env.reset(seed=0)
        t0 = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        best = min(best, (time.perf_counter() - t0) / len(actions))
    return best


def time_vector(n_envs, steps, score, agent_kind, reward="audio_match"):
    venv = gym.make_vec("LMMPiano-v0", num_envs=n_envs, score=score, reward=reward)
    obs, _ = venv.reset(seed=0)
    agent = ScoreReaderAgent(venv) if agent_kind == "score-reader" else RandomAgent(venv, seed=0)
    for _ in range(5):  # warm-up
        obs, *_ = venv.step(agent.predict(obs)[0])
    t_agent = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        ta = time.perf_counter()
        a, _ = agent.predict(obs)
        t_agent += time.perf_counter() - ta
        obs, *_ = venv.step(a)
    elapsed = time.perf_counter() - t0 - t_agent
    return n_envs * steps / elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="single-env steps timed (best of 3)")
    p.add_argument("--score", default="folk", help="corpus the env draws from")
    p.add_argument("--vector-steps", type=int, default=200, help="batched steps timed per size")
    args = p.parse_args()

    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)
    cart_actions = [cart.action_space.sample() for _ in range(args.steps)]
    piano = gym.make("LMMPiano-v0", score=args.score, reward="audio_match")
    piano_actions = record_actions(piano, ScoreReaderAgent(piano), args.steps)
    random_actions = record_actions(piano, RandomAgent(piano, seed=0), args.steps)
    t_cart = time_single(cart, cart_actions)
    t_piano = time_single(piano, piano_actions)
    t_random = time_single(piano, random_actions)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    print()
    print("| env step (gym.make, default wrappers) | us/step | x CartPole |")
    print("|---|---|---|")
    print(f"| CartPole-v1 | {t_cart * 1e6:.1f} | 1.0 |")
    print(f"| LMMPiano-v0, audio_match, score-reader actions | {t_piano * 1e6:.1f} | {t_piano / t_cart:.1f} |")
    print(f"| LMMPiano-v0, audio_match, random actions (~44 keys down) | {t_random * 1e6:.1f} | {t_random / t_cart:.1f} |")
    print()
    print("| batched envs | env-steps/s (score-reader) | x 1 env | env-steps/s (random) | x 1 env |")
    print("|---|---|---|---|---|")
    base = {}
    for n in (1, 16, 64, 256):
        row = []
        for kind in ("score-reader", "random"):
            sps = time_vector(n, max(20, args.vector_steps if n > 1 else 5 * args.vector_steps), args.score, kind)
            base.setdefault(kind, sps)
            row += [f"{sps:,.0f}", f"{sps / base[kind]:.1f}"]
        print(f"| {n} | " + " | ".join(row) + " |")

    # Issue 3: the closed-loop LM reward must cost at most 3x key_match per step, at 1 and 64 envs.
    print()
    print("| reward | 1 env: us/step | x key_match | 64 envs: us/env-step | x key_match |")
    print("|---|---|---|---|---|")
    base = {}
    for reward in ("key_match", "audio_match", "ear_match", "score_lm", "audio_lm", "closed_loop"):
        env = gym.make("LMMPiano-v0", score=args.score, reward=reward)
        t1 = time_single(env, piano_actions)
        t64 = 1.0 / time_vector(64, args.vector_steps, args.score, "score-reader", reward)
        base.setdefault("1", t1)
        base.setdefault("64", t64)
        print(f"| {reward} | {t1 * 1e6:.1f} | {t1 / base['1']:.2f} | {t64 * 1e6:.1f} | {t64 / base['64']:.2f} |")


if __name__ == "__main__":
    main()
