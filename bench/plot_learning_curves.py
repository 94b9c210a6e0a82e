"""Learning curves of the headline runs: held-out note F1 vs env steps, one line per reward.

    python examples/train_ppo.py --reward closed_loop     # and key_match, audio_match
    python bench/plot_learning_curves.py                  # -> bench/learning_curves.png + a markdown table

Reads ``runs/ppo-<reward>-s<seed>/eval.csv`` (written by `lmm_env.agents.train` at every
evaluation on validation tunes) for each reward given.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_curve(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs")
    p.add_argument("--rewards", default="closed_loop,audio_match,key_match")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/learning_curves.png")
    args = p.parse_args()
    curves = {}
    for reward in args.rewards.split(","):
        path = Path(args.runs) / f"ppo-{reward}-s{args.seed}" / "eval.csv"
        if path.exists():
            curves[reward] = read_curve(path)
        else:
            print(f"(no {path}; run: python examples/train_ppo.py --reward {reward})")
    if not curves:
        raise SystemExit("no learning curves found")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for reward, rows in curves.items():
        steps = [r["steps"] / 1000 for r in rows]
        axes[0].plot(steps, [r["note_f1"] for r in rows], marker="o", ms=3, label=reward)
        axes[1].plot(steps, [r["frame_f1"] for r in rows], marker="o", ms=3, label=reward)
    for ax, name in zip(axes, ("note onset F1", "frame F1")):
        ax.set_xlabel("env steps (thousands)")
        ax.set_ylabel(f"{name}, validation folk tunes")
        ax.set_ylim(0, 1.02)
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
    axes[0].legend(title="training reward")
    fig.suptitle("PPO + KeyConvPolicy on LMMPiano-v0 (folk, 8 envs)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}\n")
    marks = sorted({int(r["steps"]) for rows in curves.values() for r in rows})
    print("| steps | " + " | ".join(f"{r} note F1 (frame F1)" for r in curves) + " |")
    print("|---" * (len(curves) + 1) + "|")
    for m in marks:
        cells = []
        for rows in curves.values():
            row = next((r for r in rows if int(r["steps"]) == m), None)
            cells.append("-" if row is None else f"{row['note_f1']:.3f} ({row['frame_f1']:.3f})")
        print(f"| {m:,} | " + " | ".join(cells) + " |")
    print()
    for reward, rows in curves.items():
        first = next((r for r in rows if r["note_f1"] >= 0.9), None)
        when = "never" if first is None else f"{int(first['steps']):,} steps ({first['wall_seconds']:.0f} s)"
        print(f"{reward}: validation note F1 >= 0.9 first at {when}; last {rows[-1]['note_f1']:.3f} "
              f"at {int(rows[-1]['steps']):,} steps, {rows[-1]['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
