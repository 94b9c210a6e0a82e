"""Is the env the bottleneck of PPO? PPO steps/s on LMMPiano-v0 vs a do-nothing env, same spaces.

    python bench/bench_ppo_speed.py                       # default reward (closed_loop), 8 envs
    python bench/bench_ppo_speed.py --reward key_match --steps 16384

Both runs use SB3 PPO with the headline preset (KeyConvPolicy, agents/training/hyperparams/ppo.yml), the same number of envs and
steps, in the same process: LMMPiano-v0 through `make_sb3_vec_env` (the natively batched
env), and a batched VecEnv with identical observation and action spaces that returns zeros
and does nothing. Target (issue 4): LMMPiano-v0 at least 70% of the do-nothing env's steps/s.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

import lmm_env  # noqa: F401
from lmm_env.agents import preset
from lmm_env.agents.learned.policies import KeyConvPolicy
from lmm_env.envs import make_sb3_vec_env


class DoNothingVecEnv(VecEnv):
    """Zeros in the given spaces; episodes of ``length`` steps; no work at all."""

    def __init__(self, num_envs, observation_space, action_space, length=300):
        super().__init__(num_envs, observation_space, action_space)
        self.length = length
        self.t = np.zeros(num_envs, np.int64)
        self._obs = {k: np.zeros((num_envs,) + s.shape, s.dtype) for k, s in observation_space.spaces.items()}

    def reset(self):
        self.t[:] = 0
        return {k: v.copy() for k, v in self._obs.items()}

    def step_async(self, actions):
        pass

    def step_wait(self):
        self.t += 1
        done = self.t >= self.length
        infos = [{"terminal_observation": {k: v[i] for k, v in self._obs.items()}} if d else {}
                 for i, d in enumerate(done)]
        self.t[done] = 0
        return {k: v.copy() for k, v in self._obs.items()}, np.zeros(self.num_envs, np.float32), done, infos

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [None] * self.num_envs

    def set_attr(self, attr_name, value, indices=None):
        pass

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [None] * self.num_envs

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * self.num_envs


def steps_per_second(env, steps, seed=0):
    cfg = preset("ppo")  # the headline run's settings: KeyConvPolicy, n_steps 256, batch 256, 4 epochs
    model = PPO(KeyConvPolicy, env, seed=seed, verbose=0, **cfg["hyperparams"])
    model.learn(256 * env.num_envs)  # warm-up: first rollout and update
    t0 = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reward", default="closed_loop")
    p.add_argument("--n-envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=16384)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="trim tunes (the ppo preset trains on 12 s); default: the env's default, whole tunes")
    args = p.parse_args()
    trim = {} if args.max_seconds is None else {"max_seconds": args.max_seconds}
    piano = make_sb3_vec_env(args.n_envs, seed=0, reward=args.reward, **trim)
    nothing = DoNothingVecEnv(args.n_envs, piano.observation_space, piano.action_space)
    sps_nothing = steps_per_second(nothing, args.steps)
    sps_piano = steps_per_second(piano, args.steps)
    print(f"| env ({args.n_envs} envs, SB3 PPO + KeyConvPolicy, the ppo preset) | steps/s | x do-nothing |")
    print("|---|---|---|")
    print(f"| do-nothing VecEnv, same spaces | {sps_nothing:,.0f} | 1.00 |")
    trimmed = "whole tunes" if args.max_seconds is None else f"tunes trimmed to {args.max_seconds:g} s"
    print(f"| LMMPiano-v0, reward {args.reward}, {trimmed} | {sps_piano:,.0f} | {sps_piano / sps_nothing:.3f} |")


if __name__ == "__main__":
    main()
