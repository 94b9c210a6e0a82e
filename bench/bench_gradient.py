"""GradientAgent (analysis by synthesis) vs its initialization (the analytic ear) on held-out audio.

Run:  PYTHONPATH=. python bench/bench_gradient.py [--pieces 5] [--seconds 15] [--steps 80] [--refine-steps 30]

For the first ``--pieces`` test-split pieces of "folk" and of "bach-chorales", each trimmed to
``--seconds``, the score is rendered (a) through the built-in `PianoSynth` (the sound model the
agent descends through) and (b) through `SoundFontSynth` (another piano timbre). The agent gets
the audio only. Reference: the clip's own note times (`playable_notes`, issue 23). Metrics: note
onset F1 (mir_eval, 50 ms, `note_metrics`), frame F1 (`frame_f1` of the held rolls), velocity
error on matched notes, wall time per clip (1 torch thread). "init" is the analytic ear's
transcription alone (velocity 64); its wall time is the ear alone. Prints per-clip rows and a
markdown summary table (means over clips).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def rolls(score, T, fr):
    fs = score.frames(fr)
    held = np.zeros((T, 88), bool)
    n = min(T, fs.T)
    held[:n] = fs.held[:n]
    return held


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--refine-steps", type=int, default=30)
    ap.add_argument("--corpora", default="folk,bach-chorales")
    ap.add_argument("--synths", default="piano,soundfont")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from lmm_env import corpus
    from lmm_env.agents.baselines.gradient import GradientAgent
    from lmm_env.lm import load_pretrained
    from lmm_env.metrics import frame_f1, note_metrics, playable_notes
    from lmm_env.synth import PianoSynth, SoundFontSynth

    fr = 20
    synths = {"piano": PianoSynth(), "soundfont": SoundFontSynth()}
    agent = GradientAgent(steps=args.steps, refine_steps=args.refine_steps, progress=False)
    ear = load_pretrained("ear-analytic")
    rows = []
    print(f"# bench_gradient: {args.pieces} pieces x {args.corpora}, {args.seconds:g} s clips, "
          f"steps={args.steps}, refine_steps={args.refine_steps}, 1 torch thread", flush=True)
    print("| corpus | piece | synth | notes | init F1 | grad F1 | init frame F1 | grad frame F1 | "
          "init vel err | grad vel err | time (s) |", flush=True)
    print("|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for cname in args.corpora.split(","):
        pieces = corpus.load(cname, "test")[: args.pieces]
        for i, piece in enumerate(pieces):
            score = piece.trim(0.0, args.seconds)
            ref = playable_notes(score)  # the audio's own times, not the frame-snapped copy (issue 23)
            for sname in args.synths.split(","):
                audio = synths[sname].render(score)
                t0 = time.perf_counter()
                ear.transcribe(audio)
                t_init = time.perf_counter() - t0
                t0 = time.perf_counter()
                est = agent.transcribe(audio)
                t_grad = time.perf_counter() - t0
                T = max(len(audio) // agent.hop, 1)
                ref_held = rolls(ref, T, fr)
                r = {"corpus": cname, "piece": i, "synth": sname, "n": len(ref), "t_init": t_init, "t_grad": t_grad,
                     "loss_init": agent.losses["init"], "loss_grad": agent.losses["final"]}
                for tag, s in (("init", agent.init_score), ("grad", est)):
                    m = note_metrics(ref, s)
                    r[f"{tag}_f1"] = m["f1"]
                    r[f"{tag}_vel"] = m["velocity_error"]
                    r[f"{tag}_frame"] = frame_f1(rolls(s, T, fr), ref_held)["f1"]
                rows.append(r)
                print(f"| {cname} | {i} | {sname} | {len(ref)} | {r['init_f1']:.3f} | {r['grad_f1']:.3f} | "
                      f"{r['init_frame']:.3f} | {r['grad_frame']:.3f} | {r['init_vel']:.1f} | {r['grad_vel']:.1f} | "
                      f"{t_grad:.1f} |", flush=True)

    print()
    print("## Summary (mean over clips)")
    print()
    print("| synth | corpus | clips | method | note F1 | frame F1 | velocity error | spectral loss | wall s / clip |")
    print("|---|---|---|---|---|---|---|---|---|")
    for sname in args.synths.split(","):
        for cname in args.corpora.split(",") + ["all"]:
            sel = [r for r in rows if r["synth"] == sname and (cname == "all" or r["corpus"] == cname)]
            if not sel:
                continue
            for tag, label, tkey in (("init", "init: analytic ear", "t_init"), ("grad", "GradientAgent", "t_grad")):
                f1 = np.mean([r[f"{tag}_f1"] for r in sel])
                fra = np.mean([r[f"{tag}_frame"] for r in sel])
                vel = np.nanmean([r[f"{tag}_vel"] for r in sel])
                loss = np.mean([r[f"loss_{tag}"] for r in sel])
                tm = np.mean([r[tkey] for r in sel])
                print(f"| {sname} | {cname} | {len(sel)} | {label} | {f1:.3f} | {fra:.3f} | {vel:.1f} | "
                      f"{loss:.3f} | {tm:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
