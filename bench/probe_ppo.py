"""Can PPO + KeyConvPolicy learn LMMPiano-v0? A learning-curve probe on held-out pieces.

    python bench/probe_ppo.py --reward key_match --steps 150000      # motion-space sanity check
    python bench/probe_ppo.py --steps 150000                          # the closed-loop reward

Trains SB3 PPO with `lmm_env.agents.policies.KeyConvPolicy` on the batched LMMPiano-v0
(``make_sb3_vec_env``, score="folk", train split, pieces trimmed to ``--max-seconds``), and
every ``--eval-every`` steps plays ``--n-eval`` held-out pieces (split="test", picked with
``reset(options={"score_index": i})``, trimmed the same way) with the deterministic policy
(the mean action), printing note F1 / frame F1 (from ``info["metrics"]``) against steps,
with wall time and steps/s. The evaluation env's reward is "key_match" whatever the training
reward (metrics do not depend on the reward and key_match is the cheapest). Before training
it prints the same metrics for silence (every key up) and the ScoreReaderAgent (the oracle),
which bound the scale: silence scores frame F1 > 0 (RoboPianist's frame F1 counts a silent
target frame played silently as right).

Uses one torch thread (``torch.set_num_threads(1)``).
"""
from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env.agents import ScoreReaderAgent
from lmm_env.agents.policies import KeyConvPolicy
from lmm_env.envs import make_sb3_vec_env

METRICS = ("note_f1", "frame_f1", "note_precision", "note_recall", "frame_precision", "frame_recall", "velocity_error")


class _Silence:
    def __init__(self, env):
        self.shape = env.action_space.shape

    def predict(self, obs, deterministic=True):
        return -np.ones(self.shape, np.float32), None


def evaluate(agent, env, n_eval: int) -> dict[str, float]:
    """Mean metrics of ``agent`` (deterministic) over test pieces 0 .. n_eval-1."""
    rows = []
    for i in range(n_eval):
        obs, _ = env.reset(options={"score_index": i})
        done = False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
        rows.append(info["metrics"])
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in METRICS}
    out["notes_played_per_ref"] = float(np.sum([r["n_est"] for r in rows]) / max(np.sum([r["n_ref"] for r in rows]), 1))
    return out


class EvalCallback(BaseCallback):
    """Evaluate every ``every`` steps; also average the training episodes' metrics and returns."""

    def __init__(self, eval_env, every: int, n_eval: int, t0: float, log: list):
        super().__init__()
        self.eval_env, self.every, self.n_eval, self.t0, self.log = eval_env, every, n_eval, t0, log
        self.next_eval = every
        self.train_rows: list[dict] = []
        self.ep_return = None
        self.train_returns: list[float] = []
        self.eval_time = 0.0

    def _on_training_start(self) -> None:
        self.ep_return = np.zeros(self.training_env.num_envs)

    def _on_step(self) -> bool:
        self.ep_return += self.locals["rewards"]
        for i, info in enumerate(self.locals["infos"]):
            if "metrics" in info:
                self.train_rows.append(info["metrics"])
                self.train_returns.append(float(self.ep_return[i]))
                self.ep_return[i] = 0.0
        if self.num_timesteps >= self.next_eval:
            self.next_eval += self.every
            self.report()
        return True

    def report(self) -> None:
        t_eval = time.perf_counter()
        m = evaluate(self.model, self.eval_env, self.n_eval)
        self.eval_time += time.perf_counter() - t_eval
        wall = time.perf_counter() - self.t0
        train_time = wall - self.eval_time
        rows, self.train_rows = self.train_rows, []
        rets, self.train_returns = self.train_returns, []
        train_f1 = float(np.nanmean([r["frame_f1"] for r in rows])) if rows else float("nan")
        row = dict(steps=self.num_timesteps, wall_s=round(wall, 1), train_steps_per_s=round(self.num_timesteps / train_time, 1),
                   train_return=round(float(np.mean(rets)), 2) if rets else None, train_frame_f1=round(train_f1, 3),
                   std=round(float(self.model.policy.log_std.detach().exp().mean()), 3),
                   **{k: round(v, 3) for k, v in m.items()})
        self.log.append(row)
        print(f"{row['steps']:>8} {row['wall_s']:>7.1f} {row['train_steps_per_s']:>7.0f} "
              f"{row['train_return'] if row['train_return'] is not None else float('nan'):>8.2f} "
              f"{row['train_frame_f1']:>8.3f} {row['std']:>6.3f} | {row['note_f1']:>6.3f} {row['frame_f1']:>6.3f} "
              f"{row['note_precision']:>6.3f} {row['note_recall']:>6.3f} {row['notes_played_per_ref']:>6.2f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reward", default="closed_loop", help="closed_loop (default), key_match, audio_match, ...")
    ap.add_argument("--steps", type=int, default=150_000)
    ap.add_argument("--eval-every", type=int, default=16_384)
    ap.add_argument("--n-eval", type=int, default=8, help="held-out (test split) pieces per evaluation")
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--max-seconds", type=float, default=12.0)
    ap.add_argument("--score", default="folk")
    ap.add_argument("--seed", type=int, default=0)
    # PPO
    ap.add_argument("--n-steps", type=int, default=256, help="rollout length per env")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--n-epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--gamma", type=float, default=0.9)
    ap.add_argument("--gae-lambda", type=float, default=0.9)
    ap.add_argument("--ent-coef", type=float, default=0.0)
    ap.add_argument("--clip-range", type=float, default=0.2)
    # KeyConvPolicy
    ap.add_argument("--init-bias", type=float, default=-1.0)
    ap.add_argument("--log-std-init", type=float, default=-0.5)
    ap.add_argument("--actor-channels", default="32,32")
    ap.add_argument("--kernel-size", type=int, default=5)
    ap.add_argument("--save", default=None, help="save the model here (SB3 .zip)")
    ap.add_argument("--json", default=None, help="write the learning curve here")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    env = make_sb3_vec_env(args.n_envs, seed=args.seed, score=args.score, split="train",
                           max_seconds=args.max_seconds, reward=args.reward)
    eval_env = gym.make("LMMPiano-v0", score=args.score, split="test", max_seconds=args.max_seconds,
                        reward="key_match", record_audio=False)
    policy_kwargs = dict(init_bias=args.init_bias, log_std_init=args.log_std_init,
                         actor_channels=tuple(int(c) for c in args.actor_channels.split(",")),
                         kernel_size=args.kernel_size)
    hp = dict(n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=args.n_epochs, learning_rate=args.lr,
              gamma=args.gamma, gae_lambda=args.gae_lambda, ent_coef=args.ent_coef, clip_range=args.clip_range)
    print(f"# reward={args.reward} steps={args.steps} n_envs={args.n_envs} max_seconds={args.max_seconds} "
          f"score={args.score} seed={args.seed}")
    print(f"# PPO {hp}")
    print(f"# KeyConvPolicy {policy_kwargs}")
    for name, agent in (("silence", _Silence(eval_env)), ("oracle", ScoreReaderAgent(eval_env))):
        m = evaluate(agent, eval_env, args.n_eval)
        print(f"# {name:8s} on {args.n_eval} test pieces: note_f1 {m['note_f1']:.3f} frame_f1 {m['frame_f1']:.3f}")
    model = PPO(KeyConvPolicy, env, policy_kwargs=policy_kwargs, seed=args.seed, device="cpu", verbose=0, **hp)
    log: list[dict] = []
    t0 = time.perf_counter()
    cb = EvalCallback(eval_env, args.eval_every, args.n_eval, t0, log)
    print(f"{'steps':>8} {'wall_s':>7} {'steps/s':>7} {'tr_ret':>8} {'tr_fF1':>8} {'std':>6} | "
          f"{'noteF1':>6} {'frmF1':>6} {'nPrec':>6} {'nRec':>6} {'played':>6}   (eval: deterministic, test split)")
    cb.model = model  # for the step-0 row
    cb.num_timesteps = 0
    cb.ep_return = np.zeros(args.n_envs)
    cb.report()
    model.learn(args.steps, callback=cb)
    if model.num_timesteps > log[-1]["steps"]:
        cb.report()
    wall = time.perf_counter() - t0
    print(f"# done: {model.num_timesteps} steps in {wall:.0f} s wall ({wall - cb.eval_time:.0f} s training, "
          f"{model.num_timesteps / (wall - cb.eval_time):.0f} steps/s)")
    if args.save:
        model.save(args.save)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(args=vars(args), curve=log), f, indent=1)


if __name__ == "__main__":
    main()
