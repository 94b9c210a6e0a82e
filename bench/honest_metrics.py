"""What honest onsets move: note F1 against the frame-snapped reference (the old metric) and against the
score's own times (the new one, info["metrics"]), per agent, on pieces off the 20 fps grid.

    .venv/bin/python bench/honest_metrics.py bach-chorales 4     # corpus, episodes (test split, first 8 s)
    .venv/bin/python bench/honest_metrics.py piano 4 diff-h,gradient

Prints a markdown table (BENCHMARKS.md, "Honest metrics"); --json prints the means as JSON.
"""
import json
import sys

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401
from lmm_env.agents.benchmark.evaluate import act
from lmm_env.agents.registry import load_agent
from lmm_env.metrics import note_metrics

as_json = "--json" in sys.argv
argv = [a for a in sys.argv if a != "--json"]
corpus, episodes = argv[1], int(argv[2])
jobs = [("score-reader", "LMMPiano-v0"), ("ppo-closed-loop", "LMMPiano-v0"), ("diff-g", "LMMPiano-v0"),
        ("random", "LMMPiano-v0"), ("diff-h", "LMMByEar-v0"), ("gradient", "LMMByEar-v0")]
if len(argv) > 3:
    jobs = [j for j in jobs if j[0] in argv[3].split(",")]
out = {}
for name, task in jobs:
    env = gym.make(task, score=corpus, split="test", max_seconds=8.0)
    agent = load_agent(name, env)
    ms = []
    for i in range(episodes):
        obs, info = env.reset(seed=i, options={"score_index": i})
        if hasattr(agent, "reset"):
            agent.reset()
        state, start = None, np.ones((1,), bool)
        while True:
            a, state = act(agent, obs, state, start)
            start = np.zeros((1,), bool)
            a = np.asarray(a, np.float32)
            if a.ndim == 2:
                a = a[0]
            obs, r, te, tr, info = env.step(a)
            if te or tr:
                break
        m = {k: float(v) for k, v in info["metrics"].items()}
        sim = env.unwrapped.sim
        snapped = sim.trimmed(sim.pool[i]).frames(sim.frame_rate).to_score()
        o = note_metrics(snapped, sim.performance_score(0))
        m.update(old_note_f1=o["f1"], old_velocity_error=o["velocity_error"], old_n_ref=o["n_ref"])
        ms.append(m)
    env.close()
    out[f"{name}|{task}"] = {k: float(np.nanmean([m[k] for m in ms])) if any(np.isfinite(m[k]) for m in ms)
                             else float("nan") for k in ms[0]}
    print(name, task, file=sys.stderr, flush=True)
if as_json:
    print(json.dumps(out))
else:
    cols = [("old_note_f1", "note F1, snapped ref"), ("note_f1", "note F1, true onsets"),
            ("onset_offset_f1", "on+off F1"), ("onset_velocity_f1", "on+vel F1"), ("onset_lag_ms", "onset lag ms"),
            ("frame_f1", "frame F1")]
    print(f"{corpus}, test split, first 8 s, {episodes} episodes")
    print("| agent | task | " + " | ".join(c[1] for c in cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for key, m in out.items():
        name, task = key.split("|")
        print(f"| {name} | {task} | " + " | ".join(f"{m[c]:.3f}" if c != "onset_lag_ms" else f"{m[c]:.1f}"
                                                for c, _ in cols) + " |")
