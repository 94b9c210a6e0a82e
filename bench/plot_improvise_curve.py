"""Learning curve of the ppo-improvise run: judge NLL, return and note statistics against env steps.

    python bench/plot_improvise_curve.py --logdir runs/ppo-improvise --out docs/learning_curves/improvise.png

Reads ``<logdir>/eval.csv`` (validation evaluations written by `lmm_env.agents.train`) and the
TensorBoard events (``episode/*``: training episodes, train split, as they end). The shaded bands
are the p10-p90 of held-out corpus pieces (`lmm_env.improv.corpus_reference`, *validation*
split, 20 pieces each, first 20 s): where a non-collapsed improvisation should sit.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os

import numpy as np


def read_eval(logdir):
    with open(os.path.join(logdir, "eval.csv")) as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def read_tb(logdir, tags):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        ea = EventAccumulator(path, size_guidance={"scalars": 0})
        ea.Reload()
        for tag in tags:
            if tag in ea.Tags()["scalars"]:
                ev = ea.Scalars(tag)
                s, v = out.get(tag, ([], []))
                out[tag] = (s + [e.step for e in ev], v + [e.value for e in ev])
    return {k: (np.array(s), np.array(v)) for k, (s, v) in out.items()}


def smooth(v, k=9):
    if len(v) < k:
        return v
    pad = np.pad(v, (k // 2, k // 2), mode="edge")
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logdir", default="runs/ppo-improvise")
    p.add_argument("--out", default="docs/learning_curves/improvise.png")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lmm_env.improv import corpus_reference

    ev = read_eval(args.logdir)
    stats = ("judge_nll", "note_density", "pitch_class_entropy")
    tb = read_tb(args.logdir, [f"episode/{s}" for s in stats])
    ref = corpus_reference(split="validation", n=20, seconds=20.0)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [("judge_nll", "judge NLL (nats/frame)"), ("return", "improvise return (validation episode)"),
              ("note_density", "notes/s"), ("pitch_class_entropy", "pitch-class entropy (bits)")]
    colors = {"folk": "tab:green", "bach-chorales": "tab:purple"}
    for ax, (key, title) in zip(axes, panels):
        if f"episode/{key}" in tb:
            s, v = tb[f"episode/{key}"]
            ax.plot(s, v, color="0.8", lw=0.8, label="training episodes")
            ax.plot(s, smooth(v), color="0.5", lw=1.2, label="training (smoothed)")
        if key in ev:
            ax.plot(ev["steps"], ev[key], "o-", color="tab:blue", label="validation (sampled policy, 6 prompts)")
        if key in ("judge_nll", "note_density", "pitch_class_entropy"):
            for name, st in ref.items():
                lo, hi = st[key]["p10"], st[key]["p90"]
                ax.axhspan(lo, hi, color=colors.get(name, "0.7"), alpha=0.15, label=f"{name} p10-p90")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle("ppo-improvise: PPO + KeyConvPolicy on LMMImprovise-v0 (improvise reward)", fontsize=11)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
