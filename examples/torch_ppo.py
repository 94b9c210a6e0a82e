"""PPO on the torch world, CleanRL-style: one file, read top to bottom, everything on one device.

    python examples/torch_ppo.py --device cpu --num-envs 256 --total-steps 300000
    python examples/torch_ppo.py --device cuda --num-envs 4096 --total-steps 20000000

The env is `LMMPianoTorchVectorEnv` (``make_vector_env(backend="torch")``): observations,
rewards and done flags arrive as tensors on ``--device``, the rollout buffer lives there,
and nothing crosses to the host per step except the done flags the world already knows.
The actor-critic is pitch-equivariant: one small 1-D conv net slides over the 88 keys, each
key reading its own and its neighbors' columns (kernel 5) of the score window (held,
struck, velocity; 11 frames) and key state, plus a projection of the heard log-mel shared
by all keys; it outputs that key's Gaussian mean; the critic pools the same features over
the keys. The default
reward is ``key_match`` (it learns in minutes on a CPU); ``--reward closed_loop`` trains
on what was heard. Each iteration prints env-steps/s, the mean reward per step and the
frame F1 of the episodes that ended.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from lmm_env import corpus
from lmm_env.envs.torch_vector import make_vector_env


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="torch device of the env, the buffer and the model")
    p.add_argument("--num-envs", type=int, default=256)
    p.add_argument("--num-steps", type=int, default=32, help="rollout length per env between updates")
    p.add_argument("--total-steps", type=int, default=300_000, help="env steps (all envs together)")
    p.add_argument("--reward", default="key_match")
    p.add_argument("--score", default="folk")
    p.add_argument("--max-seconds", type=float, default=10.0, help="trim pieces (episodes of ~max_seconds*20 steps)")
    p.add_argument("--mix", default="compact", choices=["compact", "dense"], help="the torch world's voice mix")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gamma", type=float, default=0.5)
    p.add_argument("--gae-lambda", type=float, default=0.9)
    p.add_argument("--update-epochs", type=int, default=2)
    p.add_argument("--num-minibatches", type=int, default=4)
    p.add_argument("--clip-coef", type=float, default=0.2)
    p.add_argument("--vf-coef", type=float, default=0.5)
    p.add_argument("--max-grad-norm", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    return p.parse_args(argv)


class Agent(nn.Module):
    """Pitch-equivariant Gaussian actor-critic over LMMPiano-v0's Dict observation."""

    def __init__(self, lookahead: int = 11, n_mels: int = 64, hidden: int = 32):
        super().__init__()
        self.audio = nn.Linear(n_mels, hidden)
        self.conv = nn.Conv1d(3 * lookahead + 1, hidden, 5, padding=2)
        self.body = nn.Sequential(nn.Tanh(), nn.Conv1d(hidden, hidden, 1), nn.Tanh())
        self.mean = nn.Conv1d(hidden, 1, 1)
        self.value = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        self.log_std = nn.Parameter(torch.tensor(-0.5))
        nn.init.constant_(self.mean.bias, -1.0)  # start with keys mostly up (a wrong key costs half of key_match)

    def features(self, obs):
        score = obs["score"].flatten(1, 2)  # (B, 3 * frames, keys)
        keys = obs["key_state"][:, None, : score.shape[-1]]
        audio = (obs["audio"] + 10.0) / 10.0  # log-mel of silence is -18.4; loud frames reach ~0
        h = self.conv(torch.cat([score, keys], 1)) + self.audio(audio)[:, :, None]  # heard audio: a bias per env
        return self.body(h)  # (B, hidden, keys)

    def get_value(self, obs):
        h = self.features(obs)
        return self.value(torch.cat([h.mean(-1), h.amax(-1)], 1))[:, 0]

    def get_action_and_value(self, obs, action=None):
        h = self.features(obs)
        mean = self.mean(h)[:, 0]
        dist = torch.distributions.Normal(mean, self.log_std.exp().expand_as(mean))
        if action is None:
            action = dist.sample()
        value = self.value(torch.cat([h.mean(-1), h.amax(-1)], 1))[:, 0]
        return action, dist.log_prob(action).sum(1), dist.entropy().sum(1), value


def train(args) -> dict:
    """Train; returns {"history": [per-iteration dicts], "sps": env-steps/s over the run}."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.score in corpus.names() and not args.score.startswith("exercises-"):
        # thousands of first resets would otherwise convert the pieces one by one with music21
        corpus.warm(args.score, "train")
    envs = make_vector_env(args.num_envs, backend="torch", device=device, reward=args.reward, score=args.score,
                           max_seconds=args.max_seconds, mix=args.mix)
    agent = Agent(envs.single_observation_space["score"].shape[1], envs.single_observation_space["audio"].shape[0])
    agent = agent.to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.lr, eps=1e-5)
    N, T = args.num_envs, args.num_steps
    n_act = envs.single_action_space.shape[0]
    obs_buf = {k: torch.zeros((T, N) + s.shape, device=device) for k, s in envs.single_observation_space.items()}
    actions = torch.zeros(T, N, n_act, device=device)
    logprobs, rewards, dones, values = (torch.zeros(T, N, device=device) for _ in range(4))

    next_obs, _ = envs.reset(seed=args.seed)
    next_done = torch.zeros(N, device=device)
    iterations = max(1, args.total_steps // (N * T))
    batch, mb = N * T, max(1, N * T // args.num_minibatches)
    history, start = [], time.perf_counter()
    for it in range(1, iterations + 1):
        f1s = []
        # ---- rollout: T steps of every env, on the device
        for step in range(T):
            for k in obs_buf:
                obs_buf[k][step] = next_obs[k]
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value
            next_obs, reward, term, trunc, infos = envs.step(action)
            rewards[step] = reward
            next_done = (term | trunc).float()
            if "metrics" in infos:
                f1s.extend(infos["metrics"]["frame_f1"][infos["_metrics"]].tolist())
        # ---- GAE (a done flag marks the first step of a new episode; SAME_STEP autoreset)
        with torch.no_grad():
            next_value = agent.get_value(next_obs)
            advantages = torch.zeros_like(rewards)
            lastgaelam = torch.zeros(N, device=device)
            for t in reversed(range(T)):
                nextnonterminal = 1.0 - (next_done if t == T - 1 else dones[t + 1])
                nextvalues = next_value if t == T - 1 else values[t + 1]
                delta = rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                lastgaelam = delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                advantages[t] = lastgaelam
            returns = advantages + values
        # ---- PPO update on the flattened batch
        b_obs = {k: v.reshape((batch,) + v.shape[2:]) for k, v in obs_buf.items()}
        b_actions, b_logprobs = actions.reshape(batch, n_act), logprobs.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        for _ in range(args.update_epochs):
            perm = torch.randperm(batch, device=device)
            for s in range(0, batch, mb):
                idx = perm[s: s + mb]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    {k: v[idx] for k, v in b_obs.items()}, b_actions[idx])
                ratio = (newlogprob - b_logprobs[idx]).exp()
                adv = b_adv[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - args.clip_coef, 1 + args.clip_coef)).mean()
                v_loss = 0.5 * (newvalue - b_returns[idx]).square().mean()
                loss = pg_loss + args.vf_coef * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        row = {"iteration": it, "env_steps": it * batch, "seconds": time.perf_counter() - start,
               "reward_per_step": float(rewards.mean()), "frame_f1": float(np.mean(f1s)) if f1s else float("nan"),
               "episodes": len(f1s), "log_std": float(agent.log_std.detach())}
        row["sps"] = row["env_steps"] / row["seconds"]
        history.append(row)
        print(f"iter {it:4d}  steps {row['env_steps']:>10,}  {row['sps']:>9,.0f} steps/s  "
              f"reward/step {row['reward_per_step']:.3f}  frame F1 {row['frame_f1']:.3f} ({len(f1s)} episodes)",
              flush=True)
    return {"history": history, "sps": history[-1]["sps"]}


if __name__ == "__main__":
    train(parse_args())
