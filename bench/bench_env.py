"""Env speed: one LMMPiano-v0 step vs one CartPole-v1 step, and the batched env at 1..256 envs.

    python bench/bench_env.py            # prints markdown tables (paste into BENCHMARKS.md)

Both single-env numbers come from the same run, through gym.make (default wrappers), with
the issue-2 default reward (audio_match); a last table compares every reward's step cost
(the closed-loop LM reward against key_match, at 1 and 64 envs, per step and with the
episode resets amortized over the steps); the piano is played by the ScoreReaderAgent's
actions (a realistic load: a melody's keys down), precomputed (1 env) or timed out (64 envs)
so the agent's time is not counted.
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


def run_vector(n_envs, steps, score, agent_kind="score-reader", reward="audio_match", warmup=5, synth_threads=1):
    """(seconds in steps, seconds of those in episode resets) over ``steps`` batched steps,
    the agent's time excluded."""
    venv = gym.make_vec("LMMPiano-v0", num_envs=n_envs, score=score, reward=reward, synth_threads=synth_threads)
    timer = _ResetTimer(venv.unwrapped.sim)
    obs, _ = venv.reset(seed=0)
    agent = ScoreReaderAgent(venv) if agent_kind == "score-reader" else RandomAgent(venv, seed=0)
    for _ in range(warmup):
        obs, *_ = venv.step(agent.predict(obs)[0])
    timer.seconds = 0.0
    t_agent = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        ta = time.perf_counter()
        a, _ = agent.predict(obs)
        t_agent += time.perf_counter() - ta
        obs, *_ = venv.step(a)
    return time.perf_counter() - t0 - t_agent, timer.seconds


def time_vector(n_envs, steps, score, agent_kind, reward="audio_match", warmup=100, synth_threads=1):
    """Env-steps per second of the batched env (resets included), after ``warmup`` batched
    steps (as the single env is timed warm: its per-episode buffers have grown already)."""
    return n_envs * steps / run_vector(n_envs, steps, score, agent_kind, reward, warmup=warmup,
                                       synth_threads=synth_threads)[0]

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2000, help="single-env steps timed (best of 3)")
    p.add_argument("--score", default="folk", help="corpus the env draws from")
    p.add_argument("--reward", default="audio_match", help="reward of the env-step and batched tables")
    p.add_argument("--synth-threads", type=int, default=1, help="the batched env's synth_threads (N > 1 envs)")
    p.add_argument("--vector-steps", type=int, default=200, help="batched steps timed per size")
    p.add_argument("--reward-steps", type=int, default=4000, help="single-env steps per reward (cost table)")
    p.add_argument("--reward-vector-steps", type=int, default=1000,
                   help="batched steps at 64 envs per reward (cost table; ~2 episodes of a folk tune)")
    p.add_argument("--only-rewards", action="store_true", help="print only the reward cost table")
    p.add_argument("--no-rewards", action="store_true", help="skip the reward cost table")
    args = p.parse_args()

    cart = gym.make("CartPole-v1")
    cart.reset(seed=0)
    cart_actions = [cart.action_space.sample() for _ in range(args.steps)]
    piano = gym.make("LMMPiano-v0", score=args.score, reward=args.reward)
    piano_actions = record_actions(piano, ScoreReaderAgent(piano), args.steps)
    random_actions = record_actions(piano, RandomAgent(piano, seed=0), args.steps)
    t_cart = time_single(cart, cart_actions)
    t_piano = time_single(piano, piano_actions)
    t_random = time_single(piano, random_actions)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    if not args.only_rewards:
        env_tables(args, t_cart, t_piano, t_random)
    if not args.no_rewards:
        reward_table(args, piano)


def env_tables(args, t_cart, t_piano, t_random):
    print()
    print("| env step (gym.make, default wrappers) | us/step | x CartPole |")
    print("|---|---|---|")
    print(f"| CartPole-v1 | {t_cart * 1e6:.1f} | 1.0 |")
    print(f"| LMMPiano-v0, {args.reward}, score-reader actions | {t_piano * 1e6:.1f} | {t_piano / t_cart:.1f} |")
    print(f"| LMMPiano-v0, {args.reward}, random actions (~44 keys down) | {t_random * 1e6:.1f} | {t_random / t_cart:.1f} |")
    print()
    print("| batched envs | env-steps/s (score-reader) | x 1 env | env-steps/s (random) | x 1 env |")
    print("|---|---|---|---|---|")
    base = {}
    for n in (1, 16, 64, 256):
        row = []
        for kind in ("score-reader", "random"):
            sps = time_vector(n, max(20, args.vector_steps if n > 1 else 5 * args.vector_steps), args.score, kind,
                              args.reward, synth_threads=args.synth_threads if n > 1 else 1)
            base.setdefault(kind, sps)
            row += [f"{sps:,.0f}", f"{sps / base[kind]:.1f}"]
        print(f"| {n} | " + " | ".join(row) + " |")


def reward_table(args, piano):
    # Issue 3: the closed-loop LM reward must cost at most 3x key_match per step, at 1 and 64 envs.
    print()
    print(f"Reward cost: {args.reward_steps} steps at 1 env (best of 3), {args.reward_vector_steps} batched steps "
          "at 64 envs, whole episodes with resets; 'step' excludes the time spent in episode resets")
    print()
    print("| reward | 1 env: us/step | x key_match | with resets | x key_match "
          "| 64 envs: us/env-step | x key_match | with resets | x key_match |")
    print("|---|---|---|---|---|---|---|---|---|")
    reader = record_actions(piano, ScoreReaderAgent(piano), args.reward_steps)
    base = None
    for reward in ("key_match", "audio_match", "ear_match", "score_lm", "audio_lm", "closed_loop"):
        env = gym.make("LMMPiano-v0", score=args.score, reward=reward)
        one = time_with_resets(env, env.unwrapped.sim, lambda e=env: _single_steps(e, reader), repeats=3)
        many = time_vector_with_resets(64, args.reward_vector_steps, args.score, reward)
        row = one + many
        base = base or row
        cells = []
        for v, b in zip(row, base):
            cells += [f"{v * 1e6:.1f}", f"{v / b:.2f}"]
        print(f"| {reward} | " + " | ".join(cells) + " |", flush=True)


class _ResetTimer:
    """Accumulates the time a PianoSim spends in ``reset_env`` (episode starts)."""

    def __init__(self, sim):
        self.seconds = 0.0
        inner = sim.reset_env

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t

        sim.reset_env = timed


def _single_steps(env, actions):
    env.reset(seed=0)
    n = 0
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        n += 1
        if term or trunc:
            env.reset()
    return n


def time_with_resets(env, sim, run, repeats=3):
    """(step-only, with resets) seconds per step of ``run()``, best of ``repeats``."""
    timer = _ResetTimer(sim)
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        timer.seconds = 0.0
        t0 = time.perf_counter()
        n = run()
        total = time.perf_counter() - t0
        reset_first = timer.seconds  # includes the reset before the first step
        best = min(best, ((total - reset_first) / n, total / n))
    return list(best)


def time_vector_with_resets(n_envs, steps, score, reward):
    """(step-only, with resets) seconds per env-step of the batched env under score-reader
    actions; envs start together, so ``steps`` should span a few episodes."""
    total, resets = run_vector(n_envs, steps, score, reward=reward, warmup=0)
    return [(total - resets) / (n_envs * steps), total / (n_envs * steps)]


if __name__ == "__main__":
    main()
