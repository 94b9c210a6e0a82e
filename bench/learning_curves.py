"""Learning curves of the learned mappings, one PNG per task (issue 12).

    .venv/bin/python bench/learning_curves.py [--ppo-csv runs/ppo-closed-loop/eval.csv]

* docs/learning_curves/piano.png: diff-g's held-out note F1 (validation folk) against world
  samples (the shipped run, ``agents/weights/diff-g.json``), and, with ``--ppo-csv``, a PPO
  run's validation note F1 against env steps (``lmm-env train`` writes ``eval.csv``).
* docs/learning_curves/by_ear.png: diff-h's against world samples (``agents/weights/diff-h.json``).
* docs/learning_curves/rllib_ppo.png, with ``--rllib-csv``: an ``examples/rllib_ppo.py`` run's
  validation note and frame F1 against env steps (its ``eval.csv``, copied beside the PNG).

LMMDecipher-v0 (bench/learn_decipher.py) and LMMImprovise-v0 (bench/plot_improvise_curve.py)
draw their own. Each x axis is the samples the method took from the world: one rendered (or
played) step of one piece.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "learning_curves"


def _history(name: str):
    d = json.loads((ROOT / "agents" / "weights" / f"{name}.json").read_text())
    h = d["history"]
    return [r["samples"] for r in h], [r["note_f1"] for r in h], [r["wall_s"] for r in h], d["command"]


def _ppo(path):
    xs, ys, ws = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            xs.append(float(row["steps"]))
            ys.append(float(row["note_f1"]))
            ws.append(float(row.get("wall_seconds", "nan")))
    return xs, ys, ws


def _plot(path: Path, curves, xlabel: str, ylabel: str, title: str, symlog: bool = False) -> None:
    """One learning-curve figure: ``curves`` as (x, y, style, label), the 0.9 target dotted."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for x, y, style, label in curves:
        ax.plot(x, y, style, label=label)
    if symlog:
        ax.set_xscale("symlog", linthresh=2048)
    ax.axhline(0.9, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ppo-csv", default=None, help="eval.csv of an lmm-env train run on LMMPiano-v0")
    ap.add_argument("--rllib-csv", default=None, help="eval.csv of an examples/rllib_ppo.py run")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.rllib_csv:
        import shutil

        with open(args.rllib_csv) as f:
            rows = list(csv.DictReader(f))
        steps = [float(r["steps"]) for r in rows]
        _plot(out / "rllib_ppo.png",
              [(steps, [float(r["note_f1"]) for r in rows], "o-", "note F1"),
               (steps, [float(r["frame_f1"]) for r in rows], "s--", "frame F1")],
              "env steps", "validation folk (8 tunes)",
              f"RLlib PPO on LMMPiano-v0, 1 EnvRunner x 8 envs ({float(rows[-1]['wall_seconds']):.0f} s)")
        if Path(args.rllib_csv).resolve() != (out / "rllib_ppo_eval.csv").resolve():
            shutil.copyfile(args.rllib_csv, out / "rllib_ppo_eval.csv")
        print(f"wrote {out / 'rllib_ppo.png'}")

    x, y, w, cmd = _history("diff-g")
    curves = [(x, y, "o-", f"diff-g (backprop through the world; {w[-1]:.0f} s)")]
    if args.ppo_csv:
        px, py, pw = _ppo(args.ppo_csv)
        curves.append((px, py, "s--", f"PPO, closed-loop reward ({pw[-1]:.0f} s)"))
    _plot(out / "piano.png", curves, "world samples (env steps / rendered frames)", "note F1, validation folk",
          "g on LMMPiano-v0", symlog=bool(args.ppo_csv))
    print(f"wrote {out / 'piano.png'} ({cmd})")

    x, y, w, cmd = _history("diff-h")
    _plot(out / "by_ear.png", [(x, y, "o-", f"diff-h, ear of 16 pairs, piano targets ({w[-1]:.0f} s)")],
          "world samples (rendered frames)", "note F1, validation folk (piano targets)", "h on LMMByEar-v0")
    print(f"wrote {out / 'by_ear.png'} ({cmd})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
