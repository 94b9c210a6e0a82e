"""Does closed_loop prefer re-striking repeated notes over tying them? (a reward check)

    python bench/probe_repeated_notes.py

Eight repeated F4 quarter notes at 120 bpm, played four ways: correctly (release for one
frame, re-strike), tied (the key held through that gap: one long note), softly (velocity 43)
and tied + soft. Prints each reward term's episode sum and the note F1.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401
from lmm_env.agents import ScoreReaderAgent
from lmm_env.score import Score


class Tied:
    """The score reader, but it keeps a key down through the one-frame gap before a re-strike."""

    def __init__(self, env, velocity=None):
        self.reader, self.velocity = ScoreReaderAgent(env), velocity

    def predict(self, obs, deterministic=True):
        a = self.reader.predict(obs)[0].copy()
        score = obs["score"]
        gap = (score[0, 0] < 0.5) & (score[0, 1] > 0.5)  # up now, held on the next frame
        a[gap] = np.maximum((np.rint(score[2, 1][gap] * 127) - 1) / 126, 1e-4)
        if self.velocity is not None:
            a[a > 0] = (self.velocity - 1) / 126
        return a, None


class Soft:
    def __init__(self, env, velocity):
        self.reader, self.velocity = ScoreReaderAgent(env), velocity

    def predict(self, obs, deterministic=True):
        a = self.reader.predict(obs)[0].copy()
        a[a > 0] = (self.velocity - 1) / 126
        return a, None


def main():
    score = Score.from_notes([(65, 0.5 * i, 0.5 * i + 0.5, 90) for i in range(8)])
    env = gym.make("LMMPiano-v0", score=score, reward="closed_loop")
    ways = [("correct", ScoreReaderAgent(env)), ("tied", Tied(env)), ("soft 43", Soft(env, 43)),
            ("tied, soft 43", Tied(env, 43))]
    for name, agent in ways:
        obs, _ = env.reset(seed=0)
        totals: dict[str, float] = {}
        while True:
            obs, _, term, trunc, info = env.step(agent.predict(obs)[0])
            for k, v in info["reward_terms"].items():
                totals[k] = totals.get(k, 0.0) + v
            if term or trunc:
                break
        terms = ", ".join(f"{k} {v:.1f}" for k, v in totals.items())
        print(f"{name:14s} note F1 {info['metrics']['note_f1']:.3f} | {terms}")


if __name__ == "__main__":
    main()
