"""Real-time factor of lmm_env's synths on a ~30 s corpus piece, side by side.

Run:  PYTHONPATH=. python bench/bench_synth.py [--seconds 30] [--sample-rate 16000] [--repeats 3]

Every renderer gets the same notes (the first piece of bach-chorales/test, trimmed or
looped to ``--seconds``), one warm-up run, then the best of ``--repeats`` timed runs
(``time.perf_counter``). x-real-time = audio seconds / wall seconds. Prints machine info
and a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np


def load_piece(seconds: float):
    """(Score, description): the first bach-chorales test piece (or a folk tune) at ~``seconds``."""
    from lmm_env.score import Score

    try:
        from lmm_env import corpus
    except ImportError as exc:
        raise SystemExit(f"lmm_env.corpus is not ready ({exc}); cannot load a corpus piece") from exc
    last_error = None
    for name in ("bach-chorales", "folk"):
        try:
            score = corpus.load(name, "test")[0]
            break
        except Exception as exc:  # a corpus may need data that is not installed
            last_error = exc
    else:
        raise SystemExit(f"no corpus piece could be loaded: {last_error!r}")
    # Loop the piece until it is long enough, then trim it to exactly ``seconds``.
    dur = score.duration
    reps = max(1, int(np.ceil(seconds / dur)))
    p = np.tile(score.pitches, reps)
    on = np.concatenate([score.onsets + i * dur for i in range(reps)])
    off = np.concatenate([score.offsets + i * dur for i in range(reps)])
    v = np.tile(score.velocities, reps)
    looped = Score(p, on, off, v, name=score.name).trim(0.0, seconds)
    return looped, f"{name}/test[0] {score.name!r} ({dur:.1f} s, {len(score)} notes) -> {len(looped)} notes in {seconds:g} s"


def best_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (caches, tables, lazy imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--frame-rate", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a small shared machine more threads "
                         "made DifferentiablePianoSynth up to 10x slower and erratic)")
    args = ap.parse_args(argv)
    sr, fr = args.sample_rate, args.frame_rate

    import torch

    from lmm_env.synth import DifferentiablePianoSynth, PianoSynth, SoundFontSynth

    torch.set_grad_enabled(False)
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    score, desc = load_piece(args.seconds)
    print("## Synth benchmark")
    print()
    print(f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, python {platform.python_version()}")
    print(f"- numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"- piece: {desc}")
    print(f"- {sr} Hz; best of {args.repeats} after one warm-up; x-real-time = audio s / wall s")
    print()

    rows = []  # (name, seconds or None, audio seconds, note)

    piano = PianoSynth(sr)
    t, audio = best_time(lambda: piano.render(score, tail=1.0), args.repeats)
    rows.append(("PianoSynth.render", t, len(audio) / sr, ""))
    piano_t = t / (len(audio) / sr)

    fs = score.frames(fr)
    hop = sr // fr
    onset_np, vel_np, held_np = fs.onset, fs.velocity.astype(np.int64), fs.held

    def stepped():
        player = piano.player(1, hop)
        out = np.empty((fs.T, hop), np.float32)
        for i in range(fs.T):
            out[i] = player.step(onset_np[i][None], vel_np[i][None], ~held_np[i][None])[0]
        return out

    t, audio = best_time(stepped, args.repeats)
    rows.append((f"PianoSynth.player (1 env, {hop}-sample steps)", t, audio.size / sr, "env stepping path"))

    try:
        sf = SoundFontSynth(sr)
        t, audio = best_time(lambda: sf.render(score, tail=1.0), args.repeats)
        rows.append(("SoundFontSynth.render (tinysoundfont, TimGM6mb)", t, len(audio) / sr, ""))
        sf_t = t / (len(audio) / sr)
    except (ImportError, OSError) as exc:
        rows.append(("SoundFontSynth.render (tinysoundfont, TimGM6mb)", None, 0.0, f"not installed ({exc})"))
        sf_t = None

    pm = score.to_pretty_midi()
    try:
        t, audio = best_time(lambda: pm.fluidsynth(fs=sr), args.repeats)
        rows.append(("FluidSynth (pretty_midi.fluidsynth)", t, len(audio) / sr, ""))
    except (ImportError, OSError, ValueError) as exc:
        rows.append(("FluidSynth (pretty_midi.fluidsynth)", None, 0.0, f"not installed ({type(exc).__name__}: {exc})"))

    dsynth = DifferentiablePianoSynth(sr, fr)
    o = torch.from_numpy(onset_np.astype(np.float32))
    v = torch.from_numpy(fs.velocity.astype(np.float32))
    h = torch.from_numpy(np.array(held_np))  # writable copy
    t, audio = best_time(lambda: dsynth(o, v, h), args.repeats)
    rows.append(("DifferentiablePianoSynth (torch CPU, no grad)", t, audio.numel() / sr, "rolls at 20 fps"))

    def with_grad():
        vv = v.clone().requires_grad_(True)
        with torch.enable_grad():
            out = dsynth(o, vv, h)
            (out**2).sum().backward()
        return out

    t, audio = best_time(with_grad, args.repeats)
    rows.append(("DifferentiablePianoSynth forward+backward", t, audio.numel() / sr, "d(energy)/d(velocity)"))

    print("| renderer | audio s | wall s | x real time | note |")
    print("|---|---:|---:|---:|---|")
    for name, t, dur, note in rows:
        if t is None:
            print(f"| {name} | - | - | - | {note} |")
        else:
            print(f"| {name} | {dur:.2f} | {t:.4f} | {dur / t:,.0f} | {note} |")
    print()
    if sf_t is not None:
        ratio = sf_t / piano_t
        verdict = "meets" if ratio >= 5 else "MISSES"
        print(f"PianoSynth.render is {ratio:.1f}x faster than SoundFontSynth.render ({verdict} the 5x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
