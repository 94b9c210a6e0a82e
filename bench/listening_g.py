"""g for two-hand music that listens (issue 24.2): listening-g against g's that do not listen.

    .venv/bin/python bench/listening_g.py                      # piano test split, whole pieces
    .venv/bin/python bench/listening_g.py --split validation --pieces 20
    .venv/bin/python bench/listening_g.py --synths grand,piano,soundfont,/path/to/other.sf2

Every world is LMMPiano-v0 with ``loudness_reference="grand"``: the score's velocities mean
how loud the shipped grand plays them, so a world that plays softer has to be struck harder
(``matched_velocity_error``: the error against the velocities at which that world sounds as
loud as the grand; on the grand it is the plain velocity error). Agents:

* ``listening-g``: the shipped agent (keys learned through the differentiable piano, velocity
  learned by ear while it plays);
* ``listening-g-deaf``: the same keys and loudness lookup with its listener never updated
  (it assumes the world sounds like its body model, the built-in piano): what listening adds;
* ``diff-g``: the shipped g of the toy (folk + Bach, velocities from its loudness loss);
* ``score-reader`` (oracle): the score's keys and velocities copied, as written.

Per world and agent: note / frame / onset+velocity F1, matched and plain velocity error, over
the pieces. And "plays differently": for the listening agent, the mean |velocity on world A -
velocity on world B| of the same notes beside the same difference of the matched velocities.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

COLUMNS = ("note_f1", "frame_f1", "onset_velocity_f1", "matched_velocity_error", "velocity_error")


def _agents():
    from lmm_env.agents import load_agent
    from lmm_env.agents.learned.listening import ListeningGAgent

    return {
        "listening-g": lambda env: load_agent("listening-g", env),
        "listening-g-deaf": lambda env: ListeningGAgent(env, listen=False),
        "diff-g": lambda env: load_agent("diff-g", env),
        "score-reader": lambda env: load_agent("score-reader", env),
    }


def play(agent, env, pieces: int):
    """Per-piece metrics and the played notes (pitch, onset, velocity) of ``agent`` on ``env``."""
    from lmm_env.agents.benchmark.evaluate import play_episode

    rows, notes = [], []
    for i in range(pieces):
        _, info, *_ = play_episode(agent, env, 0, i)
        rows.append({k: float(info["metrics"].get(k, np.nan)) for k in COLUMNS})
        perf = env.unwrapped.performance_score()
        notes.append(np.stack([perf.pitches, np.round(perf.onsets * 20), perf.velocities], -1).astype(np.int64))
    return rows, notes


def _velocity_gap(a, b):
    """Mean |v_a - v_b| over the notes both performances strike (same key, same step)."""
    gaps = []
    for x, y in zip(a, b):
        kx = {(int(p), int(t)): v for p, t, v in x}
        gaps += [abs(kx[(int(p), int(t))] - v) for p, t, v in y if (int(p), int(t)) in kx]
    return float(np.mean(gaps)) if gaps else float("nan")


def main(argv=None) -> int:
    import gymnasium as gym

    import lmm_env  # noqa: F401  (registers the tasks)

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test")
    ap.add_argument("--pieces", type=int, default=0, help="pieces of the split (0: all)")
    ap.add_argument("--max-seconds", type=float, default=None, help="trim pieces (default: whole pieces)")
    ap.add_argument("--synths", default="grand,piano,soundfont", help="worlds (names or .sf2 paths)")
    ap.add_argument("--agents", default=",".join(_agents()))
    ap.add_argument("--out", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)
    agents = _agents()
    names = [a for a in args.agents.split(",") if a]
    unknown = [a for a in names if a not in agents]
    if unknown:
        ap.error(f"unknown agents {unknown}; use some of {list(agents)}")
    results, played = {}, {}
    for synth in [s for s in args.synths.split(",") if s]:
        env = gym.make("LMMPiano-v0", score="piano", split=args.split, synth=synth, reward="key_match",
                       max_seconds=args.max_seconds, loudness_reference="grand")
        n = len(env.unwrapped.sim.pool) if args.pieces <= 0 else min(args.pieces, len(env.unwrapped.sim.pool))
        label = Path(synth).name if synth.endswith((".sf2", ".sf3")) else synth
        for name in names:
            t0 = time.perf_counter()
            rows, notes = play(agents[name](env), env, n)
            wall = time.perf_counter() - t0
            mean = {k: float(np.nanmean([r[k] for r in rows])) for k in COLUMNS}
            worst = {"min_note_f1": min(r["note_f1"] for r in rows), "min_frame_f1": min(r["frame_f1"] for r in rows),
                     "max_matched_velocity_error": max(r["matched_velocity_error"] for r in rows)}
            results[(label, name)] = {**mean, **worst, "pieces": n, "wall_s": wall}
            played[(label, name)] = notes
            print(f"{label:>16} {name:>18}: " + " ".join(f"{k} {v:.3f}" for k, v in mean.items())
                  + f"  (worst note {worst['min_note_f1']:.3f}, frame {worst['min_frame_f1']:.3f}, matched vel "
                  f"{worst['max_matched_velocity_error']:.1f}; {n} pieces, {wall:.0f} s)", flush=True)
        if synth != "grand" and ("grand", "listening-g") in played and (label, "listening-g") in played:
            # same notes, two worlds: how differently it strikes them, beside how differently it should
            from lmm_env.metrics import playable_notes

            sim = env.unwrapped.sim
            should = [np.abs(sim.matched_velocities(ref) - ref.velocities)
                      for ref in (playable_notes(sim.trimmed(sim.pick_score(np.random.default_rng(0), i))) for i in range(n))]
            gap = _velocity_gap(played[("grand", "listening-g")], played[(label, "listening-g")])
            want = float(np.mean(np.concatenate(should))) if should else float("nan")
            results[(label, "plays differently")] = {"velocity_gap_to_grand": gap, "matched_gap_to_grand": want}
            print(f"{label:>16} listening-g strikes the same notes {gap:.1f} velocity apart from the grand; "
                  f"the score's notes need {want:.1f} on average", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({f"{w} | {a}": r for (w, a), r in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
