"""Where an env step's time goes: per-stage microseconds per env-step, one env and batched.

    .venv/bin/python bench/profile_step.py                       # random play, 1 and 256 envs
    .venv/bin/python bench/profile_step.py --actions score-reader --envs 1 64 --reward key_match

Each stage of `PianoSim.step` (keyboard, synth voices, log-mel, reward, observation) and the
episode resets are timed by wrapping them with a perf_counter; "other" is the rest of the
step (gym wrappers, history rings, info dicts, episode metrics). Random play draws each key
uniformly in [-1, 1] every step (about 44 keys down and 22 strikes a step: the synth's worst
case); score-reader plays the piece's melody. Warm-up steps first, so that per-episode buffers
have grown to the pieces' lengths.
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401
import lmm_env.envs.core as core
from lmm_env.agents import ScoreReaderAgent


def _timed(acc, label, f):
    def g(*a, **k):
        t = time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            acc[label] += time.perf_counter() - t
    return g


def profile(n_envs: int, reward: str, actions: str, steps: int, score: str = "folk"):
    env = (gym.make("LMMPiano-v0", reward=reward, score=score) if n_envs == 1
           else gym.make_vec("LMMPiano-v0", num_envs=n_envs, reward=reward, score=score))
    sim = env.unwrapped.sim if n_envs == 1 else env.sim
    acc = defaultdict(float)
    sim.player.step = _timed(acc, "synth voices", sim.player.step)
    sim.features.block = _timed(acc, "log-mel", sim.features.block)
    sim.observation = _timed(acc, "observation", sim.observation)
    sim.keyboard.apply = _timed(acc, "keyboard", sim.keyboard.apply)
    sim.keyboard.check_action = _timed(acc, "keyboard", sim.keyboard.check_action)
    sim.reset_env = _timed(acc, "episode resets", sim.reset_env)
    call_model = core.call_model
    core.call_model = _timed(acc, "reward", call_model)
    try:
        obs, _ = env.reset(seed=0)
        rng = np.random.default_rng(0)
        reader = ScoreReaderAgent(env) if actions == "score-reader" else None

        def act(obs):
            if reader is not None:
                return reader.predict(obs)[0]
            return rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)

        def run(n):
            nonlocal obs
            agent_s = 0.0
            for _ in range(n):
                t = time.perf_counter()
                a = act(obs)
                agent_s += time.perf_counter() - t
                obs, _, term, trunc, _ = env.step(a)
                if n_envs == 1 and (term or trunc):
                    obs, _ = env.reset()
            return agent_s

        run(steps // 2)  # warm-up
        acc.clear()
        t0 = time.perf_counter()
        agent_s = run(steps)
        total = time.perf_counter() - t0 - agent_s
    finally:
        core.call_model = call_model
        env.close()
    per = 1e6 / (steps * n_envs)
    rows = {k: v * per for k, v in acc.items()}
    rows["other"] = total * per - sum(rows.values())
    return total * per, rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 256])
    p.add_argument("--reward", default="audio_match")
    p.add_argument("--actions", choices=["random", "score-reader"], default="random")
    p.add_argument("--steps", type=int, default=0, help="timed steps (default: 3000 at 1 env, 300 batched)")
    args = p.parse_args()
    results = {n: profile(n, args.reward, args.actions, args.steps or (3000 if n == 1 else 300)) for n in args.envs}
    stages = list(dict.fromkeys(k for _, rows in results.values() for k in rows))
    print(f"{args.actions} actions, reward {args.reward}: microseconds per env-step")
    print()
    print("| stage | " + " | ".join(f"{n} env{'s' if n > 1 else ''}" for n in results) + " |")
    print("|---|" + "---:|" * len(results))
    for s in sorted(stages, key=lambda s: -results[args.envs[-1]][1].get(s, 0.0)):
        print(f"| {s} | " + " | ".join(f"{rows.get(s, 0.0):.1f}" for _, rows in results.values()) + " |")
    print("| **total** | " + " | ".join(f"**{t:.1f}**" for t, _ in results.values()) + " |")


if __name__ == "__main__":
    main()
