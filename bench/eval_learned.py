"""Held-out note F1 of the shipped diff-g and diff-h, under the protocol of PPO's headline table.

    .venv/bin/python bench/eval_learned.py            # folk: 50 test tunes, Bach: 10 chorales, <= 60 s each

g (diff-g) plays LMMPiano-v0; h (diff-h) plays LMMByEar-v0 with targets by the built-in piano
and by the SoundFont piano (the timbre the world lacks). Prints one markdown table.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import lmm_env  # noqa: F401
from lmm_env.agents.registry import make_agent


def play(task, agent_name, corpus, episodes, seconds, **kwargs) -> dict:
    env = gym.make(task, score=corpus, split="test", max_seconds=seconds, **kwargs)
    agent = make_agent(agent_name, env)
    rows = []
    for i in range(episodes):
        obs, _ = env.reset(seed=i, options={"score_index": i})
        if hasattr(agent, "reset"):
            agent.reset()
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(agent.predict(obs, deterministic=True)[0])
            done = term or trunc
        rows.append(info["metrics"])
    env.close()
    return {k: float(np.nanmean([r[k] for r in rows])) for k in ("note_f1", "frame_f1", "velocity_error")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folk", type=int, default=50)
    ap.add_argument("--bach", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    print("| agent | task (target) | folk test: note F1 | frame F1 | velocity error | Bach test: note F1 | frame F1 | "
          "velocity error | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for task, name, kw, label in (("LMMPiano-v0", "diff-g", {}, "LMMPiano-v0 (score)"),
                                  ("LMMByEar-v0", "diff-h", {"target_synth": "piano"}, "LMMByEar-v0 (built-in piano)"),
                                  ("LMMByEar-v0", "diff-h", {"target_synth": "soundfont"}, "LMMByEar-v0 (SoundFont)")):
        t0 = time.perf_counter()
        f = play(task, name, "folk", args.folk, args.seconds, **kw)
        b = play(task, name, "bach-chorales", args.bach, args.seconds, **kw)
        print(f"| {name} | {label} | {f['note_f1']:.3f} | {f['frame_f1']:.3f} | {f['velocity_error']:.1f} | "
              f"{b['note_f1']:.3f} | {b['frame_f1']:.3f} | {b['velocity_error']:.1f} | {time.perf_counter() - t0:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
