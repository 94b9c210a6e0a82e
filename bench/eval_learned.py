"""Held-out note metrics of the shipped diff-g and diff-h, under the protocol of PPO's headline table.

    .venv/bin/python bench/eval_learned.py            # folk: 50 test tunes, Bach: 10 chorales, <= 60 s each

g (diff-g) plays LMMPiano-v0; h (diff-h) plays LMMByEar-v0 with targets by the built-in piano
and by the SoundFont piano (the timbre the world lacks). Episode i plays test piece i with env
seed i (`lmm_env.agents.evaluate`). Honest metrics (issue 23): notes against the pieces' own
times. Prints one markdown table.
"""
from __future__ import annotations

import argparse
import time

import lmm_env  # noqa: F401
from lmm_env.agents import evaluate

COLS = (("note_f1", "note F1", 3), ("onset_offset_f1", "on+off F1", 3), ("onset_velocity_f1", "on+vel F1", 3),
        ("onset_lag_ms", "onset lag ms", 1), ("frame_f1", "frame F1", 3), ("velocity_error", "vel. err", 1))


def play(task, agent_name, corpus, episodes, seconds, **kwargs) -> dict:
    table = evaluate(agent_name, task, episodes=episodes, progress=False,
                     env_kwargs=dict(score=corpus, max_seconds=seconds, **kwargs))
    return table.summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folk", type=int, default=50)
    ap.add_argument("--bach", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    head = " | ".join(label for _, label, _ in COLS)
    print(f"| agent | task (target) | corpus | episodes | {head} | wall s |")
    print("|---|---|---|---:|" + "---:|" * (len(COLS) + 1))
    for task, name, kw, label in (("LMMPiano-v0", "diff-g", {}, "LMMPiano-v0 (score)"),
                                  ("LMMByEar-v0", "diff-h", {"target_synth": "piano"}, "LMMByEar-v0 (built-in piano)"),
                                  ("LMMByEar-v0", "diff-h", {"target_synth": "soundfont"}, "LMMByEar-v0 (SoundFont)")):
        for corpus, n in (("folk", args.folk), ("bach-chorales", args.bach)):
            t0 = time.perf_counter()
            row = play(task, name, corpus, n, args.seconds, **kw)
            cells = " | ".join(f"{float(row[c]):.{d}f}" for c, _, d in COLS)
            print(f"| {name} | {label} | {corpus} | {row['episodes']} | {cells} | {time.perf_counter() - t0:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
