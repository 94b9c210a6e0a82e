"""Speed of the torch world at 1k-16k envs on one device: env-steps/s and PPO steps/s.

    python bench/bench_gpu.py                                   # cuda: 1024, 4096, 16384 envs
    python bench/bench_gpu.py --device cpu --sizes 16 --steps 5 --ppo-steps 4   # smoke check on CPU
    python bench/bench_gpu.py --device cpu --sizes 1024 4096 --numpy --no-ppo   # vs the numpy world
    python bench/bench_gpu.py --mix dense                       # the sync-free voice mix

It first converts the folk train split into the disk cache on every core (`lmm_env.corpus.warm`;
instant when cached, ``--no-warm`` skips it): a fresh machine would otherwise convert a tune
with music21 (~0.04 s) at every first draw, inside the timed resets of thousands of envs.

Prints one markdown table (device name from ``torch.cuda.get_device_name``). Rows:

* env-steps/s of `LMMPianoTorchVectorEnv` (``reward``, default key_match) under two action
  loads: ``random`` (every key uniform in [-1, 1] each step: half the keys down, re-struck
  often, ~130 voices an env) and ``melodic`` (the score reader's keys: the target frame's
  held keys down at its velocities, released for one step before a re-strike). Episode
  resets (done on the host by `PianoSim`, then uploaded) are included: pieces are trimmed to
  ``--max-seconds`` so every env ends a few episodes in a long run, fewer in a short one.
* ``--numpy``: the same for the numpy `LMMPianoVectorEnv` (on the CPU, whatever ``--device``).
* PPO steps/s: `examples/torch_ppo.py`'s training loop (rollout of ``--ppo-rollout`` steps,
  2 epochs x 4 minibatches), env steps per second of wall time, updates included.

Actions come from a pool of 8 batches made before timing (random) or from the observation
on the device (melodic), so the agent's time is (almost) not counted. Timings sync the
device (``torch.cuda.synchronize``) before reading the clock.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time

import numpy as np
import torch


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def melodic(obs, xp):
    """The score reader's action from a batched observation (numpy or torch, same arithmetic)."""
    held, onset, vel = obs["score"][:, 0, 0], obs["score"][:, 1, 0], obs["score"][:, 2, 0]
    was_down = obs["key_state"][:, : held.shape[1]] > 0
    down = (held > 0) & ~((onset > 0) & was_down)  # a re-strike needs one step up first
    value = (vel * 127.0 - 1.0) / 126.0 + 1e-3  # velocity v -> action (v - 1) / 126 (> 0)
    return xp.where(down, value, -1.0 * xp.ones_like(value))


def time_env(make, n: int, steps: int, warmup: int, actions: str, device: torch.device, is_torch: bool) -> float:
    """Env-steps per second over ``steps`` batched steps (after ``warmup``)."""
    env = make()
    obs, _ = env.reset(seed=0)
    shape = env.action_space.shape
    g = np.random.default_rng(0)
    pool = [g.uniform(-1, 1, shape).astype(np.float32) for _ in range(8)]
    if is_torch:
        pool = [torch.from_numpy(p).to(device) for p in pool]

    def act(i, obs):
        if actions == "random":
            return pool[i % len(pool)]
        return melodic(obs, torch if is_torch else np).float() if is_torch else melodic(obs, np).astype(np.float32)

    for i in range(warmup):
        obs, *_ = env.step(act(i, obs))
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        obs, *_ = env.step(act(i, obs))
    sync(device)
    return n * steps / (time.perf_counter() - t0)


def time_ppo(n: int, device: torch.device, iterations: int, rollout: int, reward: str, max_seconds: float,
             mix: str) -> float:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "torch_ppo.py")
    spec = importlib.util.spec_from_file_location("torch_ppo", path)
    ppo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppo)
    args = ppo.parse_args(["--device", str(device), "--num-envs", str(n), "--num-steps", str(rollout),
                           "--total-steps", str(n * rollout * iterations), "--reward", reward,
                           "--max-seconds", str(max_seconds), "--threads", str(torch.get_num_threads()), "--mix", mix])
    return ppo.train(args)["sps"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="num_envs (default 1024 4096 16384 on cuda, 64 on cpu)")
    p.add_argument("--steps", type=int, default=50, help="timed steps per size and load")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--reward", default="key_match")
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--actions", nargs="+", default=["random", "melodic"], choices=["random", "melodic"])
    p.add_argument("--mix", default="compact", choices=["compact", "dense"], help="TorchPianoSim's voice mix")
    p.add_argument("--numpy", action="store_true", help="also time the numpy LMMPianoVectorEnv")
    p.add_argument("--no-ppo", action="store_true")
    p.add_argument("--ppo-steps", type=int, default=3, help="PPO iterations timed per size")
    p.add_argument("--ppo-rollout", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--no-warm", action="store_true",
                   help="skip converting the folk train split into the disk cache first (on a fresh machine the "
                        "first resets of thousands of envs would otherwise convert ~9,000 tunes inside the timed steps, ~6 min on one core)")
    args = p.parse_args(argv)
    warm_note = ""
    if not args.no_warm:
        from lmm_env import corpus

        t0 = time.perf_counter()
        done = corpus.warm("folk", "train")  # every core; instant once cached
        warm_note = (f"; corpus warm-up {time.perf_counter() - t0:.0f} s ({done['converted']} of {done['pieces']} "
                     f"folk train tunes converted on {os.cpu_count()} cores, not timed below)")
        print(f"# {warm_note[2:]}", file=sys.stderr, flush=True)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = args.sizes or ([1024, 4096, 16384] if device.type == "cuda" else [64])
    from lmm_env.envs.torch_vector import make_vector_env

    kw = dict(reward=args.reward, max_seconds=args.max_seconds)
    rows = []
    for n in sizes:
        row = {"n": n}
        for a in args.actions:
            row[f"torch {a}"] = time_env(lambda: make_vector_env(n, backend="torch", device=device, mix=args.mix, **kw),
                                         n, args.steps, args.warmup, a, device, True)
            print(f"# {n} envs, torch, {a}: {row[f'torch {a}']:,.0f} env-steps/s", file=sys.stderr, flush=True)
            if args.numpy:
                row[f"numpy {a}"] = time_env(lambda: make_vector_env(n, **kw), n, args.steps, args.warmup, a,
                                             torch.device("cpu"), False)
                print(f"# {n} envs, numpy, {a}: {row[f'numpy {a}']:,.0f} env-steps/s", file=sys.stderr, flush=True)
        if not args.no_ppo:
            row["PPO"] = time_ppo(n, device, args.ppo_steps, args.ppo_rollout, args.reward, args.max_seconds, args.mix)
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    cols = [c for c in rows[0] if c != "n"]
    print(f"device: {device_name(device)}; torch {torch.__version__}; reward {args.reward}; mix {args.mix}; "
          f"pieces trimmed to {args.max_seconds:g} s; {args.steps} timed steps{warm_note}")
    print()
    print("| num_envs | " + " | ".join(f"{c} (steps/s)" for c in cols) + " |")
    print("|---:|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['n']:,} | " + " | ".join(f"{r[c]:,.0f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
