"""Learning curves of the learned mappings, one PNG per task, and the headline PPO runs' table.

    .venv/bin/python bench/learning_curves.py [--ppo-csv runs/ppo-closed_loop-s0/eval.csv]
    .venv/bin/python bench/learning_curves.py --improvise-logdir runs/ppo-improvise
    .venv/bin/python bench/learning_curves.py --reward-runs runs     # the headline's table by reward

* docs/learning_curves/piano.png: diff-g's held-out note F1 (validation folk) against world
  samples (the shipped run, ``agents/weights/diff-g.json``), and, with ``--ppo-csv``, a PPO
  run's validation note F1 against env steps (``lmm-env train`` writes ``eval.csv``).
* docs/learning_curves/piano_listening_g.png: listening-g's keys (g on the two-hand piano
  corpus), held-out note F1 (validation piano) against world samples, the kept point marked
  (``agents/weights/listening-g.json``). A PNG of its own beside piano.png, whose PPO curve
  needs a run's eval.csv that is no longer on disk.
* docs/learning_curves/by_ear.png: diff-h's against world samples (``agents/weights/diff-h.json``),
  and beside it the world-transcriber's pretraining: validation note F1 on pieces rendered by an
  instrument it never hears in training (``lmm_env/lm/weights/transcriber.json``).
* docs/learning_curves/rllib_ppo.png, with ``--rllib-csv``: an ``examples/rllib_ppo.py`` run's
  validation note and frame F1 against env steps (its ``eval.csv``, copied beside the PNG).
* docs/learning_curves/improvise_motion_lm.png: the motion LM of ``motion-lm``, NLL per note on
  the validation split of each corpus (``lmm_env/lm/weights/motion_lm.json``).
* docs/learning_curves/improvise.png, with ``--improvise-logdir``: the ppo-improvise run
  (``scripts/train/ppo_improvise.sh``): judge NLL, return, notes/s and pitch-class entropy
  against env steps, from ``<logdir>/eval.csv`` (validation evaluations) and the TensorBoard
  events (``episode/*``: training episodes); shaded bands are the p10-p90 of held-out corpus
  pieces (`lmm_env.improv.corpus_reference`, *validation* split, 20 pieces each, first 20 s).
* with ``--reward-runs DIR``: the headline PPO runs by training reward
  (``examples/train_ppo.py --reward R``, read from ``DIR/ppo-<R>-s<seed>/eval.csv``): prints
  the markdown table of validation note F1 (frame F1) against env steps that BENCHMARKS.md
  quotes, and draws ``ppo_rewards.png`` beside the others.

LMMDecipher-v0 (bench/learn_decipher.py) draws its own. Each x axis is the samples the method
took from the world: one rendered (or played) step of one piece.
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


def _read_eval(logdir):
    import numpy as np

    with open(Path(logdir) / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}


def _read_tb(logdir, tags):
    import glob

    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for path in sorted(glob.glob(str(Path(logdir) / "events.out.tfevents.*"))):
        ea = EventAccumulator(path, size_guidance={"scalars": 0})
        ea.Reload()
        for tag in tags:
            if tag in ea.Tags()["scalars"]:
                ev = ea.Scalars(tag)
                s, v = out.get(tag, ([], []))
                out[tag] = (s + [e.step for e in ev], v + [e.value for e in ev])
    return {k: (np.array(s), np.array(v)) for k, (s, v) in out.items()}


def _smooth(v, k=9):
    import numpy as np

    if len(v) < k:
        return v
    pad = np.pad(v, (k // 2, k // 2), mode="edge")
    return np.convolve(pad, np.ones(k) / k, mode="valid")


def improvise_curve(logdir, path: Path) -> None:
    """The ppo-improvise run's curves (validation and training episodes) beside the corpus ranges."""
    from lmm_env.improv import corpus_reference

    ev = _read_eval(logdir)
    stats = ("judge_nll", "note_density", "pitch_class_entropy")
    tb = _read_tb(logdir, [f"episode/{s}" for s in stats])
    ref = corpus_reference(split="validation", n=20, seconds=20.0)
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    panels = [("judge_nll", "judge NLL (nats/frame)"), ("return", "improvise return (validation episode)"),
              ("note_density", "notes/s"), ("pitch_class_entropy", "pitch-class entropy (bits)")]
    colors = {"folk": "tab:green", "bach-chorales": "tab:purple"}
    for ax, (key, title) in zip(axes, panels):
        if f"episode/{key}" in tb:
            s, v = tb[f"episode/{key}"]
            ax.plot(s, v, color="0.8", lw=0.8, label="training episodes")
            ax.plot(s, _smooth(v), color="0.5", lw=1.2, label="training (smoothed)")
        if key in ev:
            ax.plot(ev["steps"], ev[key], "o-", color="tab:blue", label="validation (sampled policy, 6 prompts)")
        if key in stats:
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
    fig.savefig(path, dpi=110)
    plt.close(fig)


def motion_lm_curve(path: Path) -> None:
    """The motion LM's (motion-lm's LM^M) training: NLL per note on the validation split of each corpus."""
    meta = json.loads((ROOT / "lmm_env" / "lm" / "weights" / "motion_lm.json").read_text())["extra"]
    curve = meta["curve"]
    steps = [c["step"] for c in curve]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.plot(steps, [c["train_nll"] for c in curve], "k--", lw=1, label="training crops (running mean)")
    for name, color in zip(meta["corpora"], ("tab:red", "tab:green", "tab:purple")):
        ax.plot(steps, [c[name] for c in curve], "o-", color=color, label=f"{name}, validation split")
    ax.set_xlabel("optimizer steps (32 crops x 160 notes)")
    ax.set_ylabel("NLL per note (nats: gap + key + velocity + hold)")
    ax.set_title(f"motion LM (LM^M of motion-lm): {meta['params'] / 1e3:.0f}k params, "
                 f"{meta['train_seconds']:.0f} s on one core", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reward_runs(runs, rewards, seed: int, path: Path) -> None:
    """The headline PPO runs by training reward: a figure and the markdown table BENCHMARKS.md quotes."""
    curves = {}
    for reward in rewards:
        csv_path = Path(runs) / f"ppo-{reward}-s{seed}" / "eval.csv"
        if csv_path.exists():
            with open(csv_path) as f:
                curves[reward] = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        else:
            print(f"(no {csv_path}; run: python examples/train_ppo.py --reward {reward} --seed {seed})")
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}\n")
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


def listening_g_curve(path: Path) -> None:
    x, y, w, cmd = _history("listening-g")
    best = max(range(len(y)), key=lambda i: (y[i], x[i]))  # the kept point: ties go to the later one
    best = max(i for i in range(len(y)) if y[i] == y[best])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(x, y, "o-", label=f"listening-g's keys (backprop through the world, analytic ear; {w[-1]:.0f} s)")
    ax.plot([x[best]], [y[best]], "r*", ms=14, label=f"kept (validation): {y[best]:.3f} at {x[best]:,} samples")
    ax.axhline(0.98, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("world samples (rendered frames of the differentiable piano)")
    ax.set_ylabel("note F1, validation piano (12 pieces)")
    ax.set_title("g for two-hand music on LMMPiano-v0 (scripts/train/listening_g.sh)", fontsize=10)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def by_ear_curve(path: Path, diff_h) -> None:
    """h's learning curves: diff-h (left) and the world-transcriber's pretraining (right)."""
    x, y, w = diff_h
    tr = json.loads((ROOT / "lmm_env" / "lm" / "weights" / "transcriber.json").read_text())
    pts = tr["validation"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].plot(x, y, "o-", label=f"diff-h, ear of 16 pairs ({w[-1]:.0f} s)")
    axes[0].set_xlabel("world samples (rendered frames)")
    axes[0].set_ylabel("note F1, validation folk (built-in piano targets)")
    axes[0].set_title("diff-h: backprop through the differentiable piano", fontsize=10)
    windows = [p["step"] * 8 for p in pts]
    for corpus_name, style in (("piano", "o-"), ("folk", "s--")):
        axes[1].plot(windows, [p[corpus_name] for p in pts], style, label=f"{corpus_name} (validation, 6 pieces x 20 s)")
    axes[1].set_xlabel("world samples (2 s windows of the built-in piano and the grand)")
    axes[1].set_ylabel(f"note F1, K = 0\nheard through {tr['eval_instrument']} (never trained on)")
    axes[1].set_title(f"world-transcriber pretraining ({pts[-1]['wall_s']:.0f} s on one core)", fontsize=10)
    for ax in axes:
        ax.axhline(0.9, color="grey", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("h on LMMByEar-v0")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ppo-csv", default=None, help="eval.csv of an lmm-env train run on LMMPiano-v0")
    ap.add_argument("--rllib-csv", default=None, help="eval.csv of an examples/rllib_ppo.py run")
    ap.add_argument("--improvise-logdir", default=None, help="a ppo-improvise run's logdir: draw improvise.png")
    ap.add_argument("--reward-runs", default=None,
                    help="a folder of examples/train_ppo.py runs (ppo-<reward>-s<seed>): print their table, "
                         "draw ppo_rewards.png")
    ap.add_argument("--rewards", default="closed_loop,audio_match,key_match", help="with --reward-runs")
    ap.add_argument("--seed", type=int, default=0, help="with --reward-runs")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.reward_runs:
        reward_runs(args.reward_runs, args.rewards.split(","), args.seed, out / "ppo_rewards.png")
    if args.improvise_logdir:
        improvise_curve(args.improvise_logdir, out / "improvise.png")
        print(f"wrote {out / 'improvise.png'}")

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

    listening_g_curve(out / "piano_listening_g.png")
    print(f"wrote {out / 'piano_listening_g.png'} (agents/weights/listening-g.json)")
    x, y, w, cmd = _history("diff-h")
    by_ear_curve(out / "by_ear.png", (x, y, w))
    print(f"wrote {out / 'by_ear.png'} ({cmd})")
    motion_lm_curve(out / "improvise_motion_lm.png")
    print(f"wrote {out / 'improvise_motion_lm.png'} (lmm_env/lm/weights/motion_lm.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
