"""Do the closed-loop rewards rank play correctly? correct > each kind of wrong > random.

    python bench/bench_rewards.py                      # 20 folk + 20 Bach test pieces, markdown tables
    python bench/bench_rewards.py --pieces 3 --max-seconds 8     # quick look

For each held-out piece (the test split, first N of each corpus), one episode per way of
playing it: the ScoreReaderAgent ("correct"), four WrongPlayAgent kinds (a semitone off, two
frames late, wrong velocities, an extra note) and a RandomAgent. Every reward term is
computed in the same episodes (closed_loop is the return; ear_match, score_lm, audio_lm,
audio_match and key_match ride along at weight 0) and its episode sum compared across the
ways of playing. A piece is "ordered" for a term when correct > every wrong kind and every
wrong kind > random.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import lmm_env  # noqa: F401
from lmm_env.agents import RandomAgent, ScoreReaderAgent, WrongPlayAgent

WAYS = ("correct", "semitone", "late", "velocity", "extra", "random")
TERMS = ("closed_loop", "ear_match", "score_lm", "audio_lm", "audio_match", "key_match")


def play(env, agent, index: int):
    obs, _ = env.reset(seed=index, options={"score_index": index})
    if hasattr(agent, "reset"):
        agent.reset()
    sums = dict.fromkeys(TERMS, 0.0)
    while True:
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, term, trunc, info = env.step(action)
        for k in TERMS:
            sums[k] += info["reward_terms"][k]
        if term or trunc:
            return sums, info["metrics"]


def run(corpus: str, pieces: int, max_seconds: float, progress: bool = True):
    env = gym.make("LMMPiano-v0", score=corpus, split="test", max_seconds=max_seconds,
                   reward={"closed_loop": 1.0, "audio_match": 0.0, "key_match": 0.0})
    agents = {"correct": ScoreReaderAgent(env), "random": None}
    for kind in WrongPlayAgent.KINDS:
        agents[kind] = WrongPlayAgent(env, kind)
    n = min(pieces, len(env.unwrapped.sim.pool))
    returns = {w: {t: np.zeros(n) for t in TERMS} for w in WAYS}
    for i in tqdm(range(n), desc=corpus, disable=not progress):
        agents["random"] = RandomAgent(env, seed=i)
        for way in WAYS:
            sums, _ = play(env, agents[way], i)
            for t in TERMS:
                returns[way][t][i] = sums[t]
    env.close()
    return returns


def ordered(returns, term):
    """Per piece: correct > every wrong, and every wrong > random."""
    wrong = [returns[w][term] for w in WAYS[1:-1]]
    ok = np.ones_like(returns["correct"][term], dtype=bool)
    for r in wrong:
        ok &= (returns["correct"][term] > r) & (r > returns["random"][term])
    return ok


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pieces", type=int, default=20, help="test pieces per corpus")
    p.add_argument("--corpora", default="folk,bach-chorales")
    p.add_argument("--max-seconds", type=float, default=20.0, help="pieces are trimmed to this length")
    args = p.parse_args()
    t0 = time.perf_counter()
    all_returns = {c: run(c, args.pieces, args.max_seconds) for c in args.corpora.split(",")}
    print(f"\n{sum(len(r['correct']['closed_loop']) for r in all_returns.values())} pieces, "
          f"{time.perf_counter() - t0:.0f} s\n")
    for corpus, returns in all_returns.items():
        n = len(returns["correct"]["closed_loop"])
        print(f"### {corpus} (test split, first {n} pieces, trimmed to {args.max_seconds:g} s)\n")
        print("| reward term | " + " | ".join(f"{w} return" for w in WAYS) + " | pieces ordered |")
        print("|---" * (len(WAYS) + 2) + "|")
        for t in TERMS:
            means = " | ".join(f"{returns[w][t].mean():.1f}" for w in WAYS)
            print(f"| {t} | {means} | {ordered(returns, t).mean() * 100:.0f}% |")
        print()
        print("Share of pieces where correct beats each wrong way, and that way beats random:\n")
        print("| reward term | " + " | ".join(f"correct > {w}" for w in WAYS[1:]) + " | "
              + " | ".join(f"{w} > random" for w in WAYS[1:-1]) + " |")
        print("|---" * (2 * len(WAYS) - 2) + "|")
        for t in TERMS:
            beat = [(returns["correct"][t] > returns[w][t]).mean() * 100 for w in WAYS[1:]]
            over = [(returns[w][t] > returns["random"][t]).mean() * 100 for w in WAYS[1:-1]]
            print(f"| {t} | " + " | ".join(f"{b:.0f}%" for b in beat + over) + " |")
        print()
    pooled = np.concatenate([ordered(r, "closed_loop") for r in all_returns.values()])
    print(f"closed_loop ordered on {pooled.mean() * 100:.1f}% of {len(pooled)} pieces (target >= 95%)")


if __name__ == "__main__":
    main()
