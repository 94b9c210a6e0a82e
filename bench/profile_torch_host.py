"""The torch world's host share: time in per-episode host work (resets, metrics) against the whole step.

    OMP_NUM_THREADS=1 .venv/bin/python bench/profile_torch_host.py --envs 1024 --actions random melodic

`LMMPianoTorchVectorEnv` steps on its device but starts and scores episodes on the host,
one env at a time, with the numpy `PianoSim` (`reset_env`, `episode_metrics`). This times
those two inside ``--steps`` batched steps (after ``--warmup``), folk pieces trimmed to
``--max-seconds``, key_match reward. Warm the corpus cache first (``lmm-env warm folk``), or
the first resets time music21's conversions.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

import lmm_env  # noqa: F401
import lmm_env.envs.core as core


def melodic(obs):
    """The score reader's keys from the batched observation (tensors)."""
    held, onset, vel = obs["score"][:, 0, 0], obs["score"][:, 1, 0], obs["score"][:, 2, 0]
    was_down = obs["key_state"][:, : held.shape[1]] > 0
    down = (held > 0) & ~((onset > 0) & was_down)
    return torch.where(down, (vel * 127 - 1) / 126 + 1e-3, -torch.ones_like(vel))


def profile(n: int, actions: str, steps: int, warmup: int, max_seconds: float, device: str) -> dict:
    env = gym.make_vec("LMMPiano-v0", num_envs=n, backend="torch", device=device, reward="key_match",
                       max_seconds=max_seconds)
    obs, _ = env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    pool = [(torch.rand((n, 88), generator=g) * 2 - 1).to(device) for _ in range(8)]
    act = (lambda i, o: pool[i % 8]) if actions == "random" else (lambda i, o: melodic(o))
    for i in range(warmup):
        obs, *_ = env.step(act(i, obs))
    spent = {"reset_env": 0.0, "episode_metrics": 0.0}
    originals = {name: getattr(core.PianoSim, name) for name in spent}

    def timed(name):
        def f(self, *a, **k):
            t = time.perf_counter()
            try:
                return originals[name](self, *a, **k)
            finally:
                spent[name] += time.perf_counter() - t
        return f

    try:
        for name in spent:
            setattr(core.PianoSim, name, timed(name))
        t0 = time.perf_counter()
        for i in range(steps):
            obs, *_ = env.step(act(i, obs))
        wall = time.perf_counter() - t0
    finally:
        for name, f in originals.items():
            setattr(core.PianoSim, name, f)
    return {"sps": n * steps / wall, "resets": spent["reset_env"] / wall, "metrics": spent["episode_metrics"] / wall}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=int, nargs="+", default=[1024])
    p.add_argument("--actions", nargs="+", default=["random", "melodic"], choices=["random", "melodic"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=250)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(1)
    print("| num_envs | actions | env-steps/s | host resets | host metrics |")
    print("|---:|---|---:|---:|---:|")
    for n in args.envs:
        for a in args.actions:
            r = profile(n, a, args.steps, args.warmup, args.max_seconds, args.device)
            print(f"| {n:,} | {a} | {r['sps']:,.0f} | {r['resets']:.0%} | {r['metrics']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
