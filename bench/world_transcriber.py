"""h on unseen pianos (issue 24.1): the world-pretrained transcriber adapted on K pairs, beside the outside ones.

    .venv/bin/python bench/world_transcriber.py --instruments soundfont --rooms dry,hall --K 0,4,16,64
    .venv/bin/python bench/world_transcriber.py --instruments /path/FluidR3_GM.sf2 --outside basic-pitch,transkun

For each instrument (a world synth's name or a SoundFont path) and room ("dry" or a named room:
the target *and* the K pairs are heard in it), the first ``--seconds`` of ``--n`` pieces of the
``--split`` split of each corpus are rendered at their own times with their pedal, and each
transcriber writes them down: `lmm_env.lm.transcriber.transcriber_for(K, instrument)` (the
shipped net, adapted once on the K protocol pairs of that instrument in that room) for every
K, and the outside transcribers (``--outside``; installed by ``make outside``). Scored by
mir_eval against the sounding notes (`lmm_env.metrics.note_metrics`): onset F1 (50 ms),
onset+velocity F1, onset+offset F1, median onset lag, and CPU seconds per clip. Prints a
markdown table; ``--out`` writes the rows as JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def clips(instrument: str, corpus_name: str, split: str, n: int, seconds: float):
    from lmm_env import corpus
    from lmm_env.metrics import playable_notes
    from lmm_env.synth import make_synth

    synth = make_synth(instrument, 16000)
    out = []
    for s in corpus.load(corpus_name, split)[:n]:
        s = s.trim(0, seconds) if s.duration > seconds else s
        out.append((synth.render(s, tail=1.0).astype(np.float32), playable_notes(s.sustained(keep_pedal=True))))
    return out


def outside(name: str):
    """An outside transcriber's transcribe(audio, sample_rate), built beside a throwaway LMMByEar-v0."""
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env.agents.registry import load_agent

    return load_agent(name, gym.make("LMMByEar-v0")).transcribe


def score(transcribe, data) -> dict:
    from lmm_env.metrics import note_metrics

    ms, secs = [], []
    for audio, ref in data:
        t = time.process_time()
        est = transcribe(audio, 16000)
        secs.append(time.process_time() - t)
        ms.append(note_metrics(ref, est))
    mean = lambda k: float(np.mean([m[k] for m in ms]))  # noqa: E731
    return {"f1": mean("f1"), "on_vel_f1": mean("onset_velocity_f1"), "on_off_f1": mean("onset_offset_f1"),
            "lag_ms": float(np.nanmedian([m["onset_lag_ms"] for m in ms])), "cpu_s_per_clip": float(np.mean(secs)),
            "pieces": len(ms)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instruments", default="soundfont")
    ap.add_argument("--rooms", default="dry", help="comma-separated: dry and/or named rooms (hall, church, ...)")
    ap.add_argument("--K", default="0,4,16,64")
    ap.add_argument("--corpora", default="piano,folk")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--outside", default="", help="comma-separated outside transcribers: basic-pitch, transkun")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    from lmm_env.lm.transcriber import transcriber_for

    torch.set_num_threads(1)
    rows = []
    for inst in args.instruments.split(","):
        for room in args.rooms.split(","):
            where = inst if room == "dry" else f"{inst}@{room}"
            data = {c: clips(where, c, args.split, args.n, args.seconds) for c in args.corpora.split(",")}
            methods = [(f"world-transcriber K={k}", lambda k=k: transcriber_for(int(k), where).transcribe)
                       for k in args.K.split(",") if k]
            methods += [(name, lambda name=name: outside(name)) for name in args.outside.split(",") if name]
            for label, build in methods:
                t = time.time()
                fn = build()
                for c, d in data.items():
                    row = {"method": label, "instrument": os.path.basename(inst), "room": room, "corpus": c,
                           **score(fn, d)}
                    rows.append(row)
                    print(json.dumps(row), f"({time.time() - t:.0f} s)", flush=True)
    print("\n| method | instrument | room | corpus | onset F1 | on+vel F1 | on+off F1 | lag ms | CPU s / clip |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['instrument']} | {r['room']} | {r['corpus']} | {r['f1']:.3f} | {r['on_vel_f1']:.3f} "
              f"| {r['on_off_f1']:.3f} | {r['lag_ms']:.1f} | {r['cpu_s_per_clip']:.1f} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
