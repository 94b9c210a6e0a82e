"""A small grid search around an algorithm's preset, on the default closed-loop reward.

    python bench/tune_presets.py --algo a2c                  # the A2C grid (BENCHMARKS.md)
    python bench/tune_presets.py --algo sac --steps 100000   # the SAC grid

Each setting trains from the preset in ``agents/training/hyperparams/<algo>.yml`` with some
hyperparameters overridden (one seed), evaluates on 8 folk *validation* tunes every
``--eval-every`` steps, and is summarized by its learning curve: the first evaluation with
note onset F1 >= 0.9, the best and the last note F1, and the wall time. The winner goes into
the YAML by hand (the grid and its results are in BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import torch

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env.agents import preset, train

GRIDS = {
    "a2c": [
        {},
        {"learning_rate": 3e-4},
        {"learning_rate": 1.5e-3},
        {"n_steps": 32},
        {"ent_coef": 0.01},
        {"gae_lambda": 0.95},
        {"normalize_advantage": True},
    ],
    "sac": [
        {},
        {"ent_coef": "auto_0.01", "target_entropy": 4.4},
        {"ent_coef": 0.01},
        {"ent_coef": 0.03},
        {"ent_coef": 0.3},
        {"buffer_size": 100000},
        {"policy_kwargs": {"init_press": 0.05}},
    ],
    "ppo": [
        {},
        {"learning_rate": 1e-3},
        {"n_epochs": 8},
    ],
}


def summarize(curve_path: Path) -> dict:
    rows = list(csv.DictReader(open(curve_path)))
    f1 = [(int(r["steps"]), float(r["note_f1"]), float(r["velocity_error"] or "nan")) for r in rows]
    first = next((s for s, f, _ in f1 if f >= 0.9), None)
    best = max(f1, key=lambda x: x[1]) if f1 else (None, float("nan"), float("nan"))
    return {"first_f1_0.9_at": first, "best_note_f1": best[1], "best_at": best[0],
            "last_note_f1": f1[-1][1] if f1 else float("nan"), "last_velocity_error": f1[-1][2] if f1 else float("nan")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=sorted(GRIDS), required=True)
    p.add_argument("--steps", type=int, default=None, help="env steps per setting (default: the preset's)")
    p.add_argument("--eval-every", type=int, default=16_384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/tune", help="logdirs go under here")
    p.add_argument("--only", type=int, nargs="*", help="indices of the grid to run (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (SAC's updates gain from 2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    cfg = preset(args.algo)
    steps = args.steps or cfg["total_steps"]
    print(f"{args.algo} preset: policy {cfg['policy']}, n_envs {cfg['n_envs']}, {cfg['hyperparams']}, "
          f"env {cfg['env_kwargs']}; {steps} steps a setting")
    print()
    print("| setting | first val note F1 >= 0.9 at | best val note F1 (at) | last note F1 | last velocity error | wall s |")
    print("|---|---|---|---|---|---|")
    for i, override in enumerate(GRIDS[args.algo]):
        if args.only and i not in args.only:
            continue
        logdir = Path(args.runs) / f"{args.algo}-{i}"
        if (logdir / "eval.csv").exists():
            (logdir / "eval.csv").unlink()
        name = json.dumps(override) if override else "preset"
        t0 = time.perf_counter()
        train(algo=args.algo, policy=cfg["policy"], total_steps=steps, n_envs=cfg["n_envs"], seed=args.seed,
              logdir=logdir, env_kwargs=cfg["env_kwargs"], hyperparams=dict(cfg["hyperparams"], **copy.deepcopy(override)),
              eval_every=args.eval_every, eval_episodes=8, checkpoint_every=0, progress=False)
        wall = time.perf_counter() - t0
        s = summarize(logdir / "eval.csv")
        first = f"{s['first_f1_0.9_at']:,}" if s["first_f1_0.9_at"] else "never"
        print(f"| {name} | {first} | {s['best_note_f1']:.3f} ({s['best_at']:,}) | {s['last_note_f1']:.3f} | "
              f"{s['last_velocity_error']:.1f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
