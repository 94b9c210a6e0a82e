"""Training speed, same machine, same run: RLlib PPO with 1 and 2 EnvRunners against SB3 PPO.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_rllib_speed.py            # 20,480 env steps each
    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_rllib_speed.py --steps 40960

Every row trains the `ppo` preset (KeyConvPolicy / KeyConvRLModule, n_steps 256 per env, the
preset's env kwargs: folk tunes trimmed to 12 s, closed_loop reward) on 8 envs in all, after
one warm-up iteration; env steps per second of training time only (not Ray start-up, actor
creation or env construction). Needs ``pip install lmm_env[rllib]`` (``make`` installs it).
"""
from __future__ import annotations

import argparse
import os
import time


def sb3_speed(steps: int) -> float:
    from stable_baselines3 import PPO

    import lmm_env.agents.learned.policies  # noqa: F401  (registers KeyConvPolicy)
    from lmm_env.agents import preset
    from lmm_env.envs import make_sb3_vec_env

    cfg = preset("ppo")
    venv = make_sb3_vec_env(8, seed=0, **cfg["env_kwargs"])
    model = PPO("KeyConvPolicy", venv, seed=0, **cfg["hyperparams"])
    model.learn(2048)  # warm-up: one rollout and update
    t = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    speed = steps / (time.perf_counter() - t)
    venv.close()
    return speed


def rllib_speed(steps: int, runners: int, envs_per_runner: int) -> float:
    from lmm_env.agents.training.rllib import env_steps, ppo_config

    algo = ppo_config("LMMPiano-v0", num_env_runners=runners, num_envs_per_env_runner=envs_per_runner).build_algo()
    try:
        algo.train()  # warm-up iteration
        start, t = env_steps(algo), time.perf_counter()
        while env_steps(algo) - start < steps:
            algo.train()
        return (env_steps(algo) - start) / (time.perf_counter() - t)
    finally:
        algo.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_480, help="timed env steps per row")
    args = p.parse_args()
    import ray

    rows = [("SB3 PPO, make_sb3_vec_env(8)", sb3_speed(args.steps))]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        for runners, envs in ((1, 8), (2, 4), (0, 8)):
            label = "sampling in the driver" if runners == 0 else f"{runners} EnvRunner{'s' if runners > 1 else ''}"
            rows.append((f"RLlib PPO, {label} x {envs} envs", rllib_speed(args.steps, runners, envs)))
    finally:
        ray.shutdown()
    print(f"{args.steps:,} env steps a row, {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print()
    print("| trainer | env steps/s | x SB3 |")
    print("|---|---:|---:|")
    for label, speed in rows:
        print(f"| {label} | {speed:,.0f} | {speed / rows[0][1]:.2f} |")


if __name__ == "__main__":
    main()
