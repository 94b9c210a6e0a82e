"""Plug your own language model into LMMPiano-v0 as a reward.

    python examples/custom_reward_lm.py            # about 2 minutes on 2 cores
    python examples/custom_reward_lm.py --quick    # a few seconds (what the test runs)

1. Train a tiny LM of melodies: a GRU over pitch-class tokens (12 pitch classes + rest),
   one token per 50 ms frame, on the folk corpus's train split (about a minute).
2. Turn it into a reward with `TorchLMReward`: a featurizer reads what the agent *heard*
   with the shipped ear (top key above 0.5 -> its pitch class, else rest), and the reward
   is the LM's log-prob of that token given the tokens heard before.
3. Register it by name and mix it with the shipped ear reward.
4. Train a PPO agent briefly on it and print the episode metrics.
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import lmm_env  # noqa: F401  (registers LMMPiano-v0)
from lmm_env import corpus, rewards
from lmm_env.lm import load_pretrained

REST = 12  # token for "no key sounding"; 0..11 are pitch classes C..B


def melody_tokens(held: np.ndarray) -> np.ndarray:
    """(T, 88) held roll -> (T,) tokens: pitch class of the top held key, or REST."""
    top = np.where(held.any(axis=1), 87 - np.argmax(held[:, ::-1], axis=1), -1)
    return np.where(top >= 0, (top + 21) % 12, REST).astype(np.int64)


class PitchClassLM(nn.Module):
    """Tokens (n, T) -> next-token logits (n, T, 13)."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(13, 16)
        self.gru = nn.GRU(16, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 13)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(self.embed(tokens))
        return self.head(out)


def train_lm(n_pieces: int, steps: int, seed: int = 0) -> PitchClassLM:
    torch.manual_seed(seed)
    pieces = corpus.load("folk", "train")
    seqs = [melody_tokens(pieces[i].frames(20).held) for i in range(min(n_pieces, len(pieces)))]
    seqs = [s for s in seqs if len(s) > 33]
    rng = np.random.default_rng(seed)
    lm = PitchClassLM()
    opt = torch.optim.Adam(lm.parameters(), lr=3e-3)
    for step in range(steps):
        batch = []
        for _ in range(32):
            s = seqs[rng.integers(len(seqs))]
            start = rng.integers(len(s) - 33)
            shift = rng.integers(12)  # transposition augmentation: pitch classes rotate
            crop = s[start : start + 33].copy()
            crop[crop != REST] = (crop[crop != REST] + shift) % 12
            batch.append(crop)
        x = torch.from_numpy(np.stack(batch))
        logits = lm(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, 13), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"  LM step {step:4d}  cross-entropy {loss.item():.3f} nats/token")
    lm.eval()
    # Held-out check: next-token cross-entropy on validation tunes vs. a unigram model.
    val = corpus.load("folk", "validation")
    val_seqs = [melody_tokens(val[i].frames(20).held) for i in range(min(max(10, n_pieces // 10), len(val)))]
    counts = np.bincount(np.concatenate(seqs), minlength=13) + 1.0
    unigram = -np.log(counts / counts.sum())
    with torch.no_grad():
        ce = [nn.functional.cross_entropy(lm(torch.from_numpy(v[None, :-1]))[0], torch.from_numpy(v[1:]),
                                          reduction="sum").item() for v in val_seqs]
    n_tokens = sum(len(v) - 1 for v in val_seqs)
    uni = sum(unigram[v[1:]].sum() for v in val_seqs)
    print(f"  held-out cross-entropy: LM {sum(ce) / n_tokens:.3f} vs unigram {uni / n_tokens:.3f} nats/token "
          f"({len(val_seqs)} validation tunes)")
    return lm


def make_featurizer(ear):
    """What the agent heard -> one token per env, read by the ear (never from the keys)."""
    def featurize(ctx) -> np.ndarray:
        act = ear.activations(ctx.recent_audio(ear.history_blocks + 1))  # history + this step
        top = np.argmax(act, axis=1)
        heard = act[np.arange(len(act)), top] > 0.5
        return np.where(heard, (top + 21) % 12, REST).astype(np.int64)

    return featurize


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    lm_pieces, lm_steps, ppo_steps, seconds = (20, 20, 256, 4.0) if args.quick else (400, 3000, 16384, 10.0)

    print("1. training a pitch-class LM on folk melodies")
    lm = train_lm(lm_pieces, lm_steps, args.seed)

    print("2-3. registering it as the reward 'pitch_class_lm'")
    ear = load_pretrained("ear")
    rewards.register(
        "pitch_class_lm",
        lambda: rewards.TorchLMReward(lm, make_featurizer(ear), kind="categorical", context=16, start=REST,
                                      scale=0.1, history_blocks=ear.history_blocks, name="pitch_class_lm"),
        overwrite=True,
    )
    env_kwargs = dict(score="exercises-scale", keys=(48, 84), max_seconds=seconds,
                      reward={"ear_match": 1.0, "pitch_class_lm": 1.0})

    print(f"4. training PPO for {ppo_steps} steps on the mixed reward")
    from stable_baselines3 import PPO

    env = gym.make("LMMPiano-v0", **env_kwargs)
    model = PPO("MultiInputPolicy", env, n_steps=256, batch_size=64, n_epochs=2, seed=args.seed, verbose=0)
    model.learn(total_timesteps=ppo_steps, progress_bar=not args.quick)

    obs, _ = env.reset(seed=args.seed)
    totals: dict[str, float] = {}
    while True:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, term, trunc, info = env.step(action)
        for k, v in info["reward_terms"].items():
            totals[k] = totals.get(k, 0.0) + v
        if term or trunc:
            break
    print("episode reward terms: " + ", ".join(f"{k} {v:.2f}" for k, v in totals.items()))
    m = info["metrics"]
    print(f"metrics: frame F1 {m['frame_f1']:.3f}, note F1 {m['note_f1']:.3f}, "
          f"pitch-class entropy {m['pitch_class_entropy']:.2f} bits (target {m['target_pitch_class_entropy']:.2f}), "
          f"note density {m['note_density']:.2f}/s (target {m['target_note_density']:.2f}/s)")


if __name__ == "__main__":
    main()
