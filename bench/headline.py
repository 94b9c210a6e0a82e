"""The headline table of LMM: note F1 against K score-audio pairs, with and without the LM terms,
against a method that learns from the K pairs alone (issue 12, part 5).

For every K and seed it trains (and caches under ``--out``/weights, so a rerun resumes):

* ``lm``: diff-g / diff-h through the differentiable world with the closed-loop objective:
  the ear of K pairs plus LM^A's likelihood of the rendered audio (``--lm`` weight);
* ``ear``: the same with the LM term switched off (ear only);
* ``pairs``: supervised on the K pairs alone (`lmm_env.agents.baselines.pairs_only`): g fitted on the
  pairs' scores; h = the ear of K pairs reading the target.

and plays them with `lmm_env.agents.benchmark.runner.run` (test split, the fixed protocol):
g on LMMPiano-v0 and, through the keyboard the agent deciphers by ear
(`ListeningDecipherAgent` with the g policy as its actor), on LMMDecipher-v0; h on
LMMByEar-v0 with targets by the built-in piano and by the SoundFont piano.

    .venv/bin/python bench/headline.py --out out/headline            # K 0 4 16 64, seeds 0 1
    .venv/bin/python bench/headline.py --ks 0,16 --seeds 0 --episodes 3 --samples 4096   # a quick look
    .venv/bin/python bench/headline.py --tier real --seeds 0,1,2 --out out/headline-real  # the realistic tier

Each closed-loop run is reported twice: the policy of its best validation point (what
``train`` keeps) and its last policy, so a collapse kept alive by best-checkpoint selection
shows. ``--tier real`` trains on the two-hand ``piano`` corpus and plays the realistic tier
(`lmm_env.agents.benchmark.protocol.TIERS`: the grand and TimGM6mb, as the world for g and as
the target's instrument for h), with world-transcriber, basic-pitch and Transkun (the outside
ones when installed) beside h.

Writes headline.md (the table, mean and min-max over seeds), headline.json (every row) and
headline.png (note F1 against K, one panel a task).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

LABELS = {"lm": "closed loop with LM^A (ear + LM)", "ear": "closed loop, LM terms off (ear only)",
          "pairs": "supervised on the K pairs only",
          "lm-final": "closed loop with LM^A, final policy", "ear-final": "closed loop, LM terms off, final policy"}
# rows of the table: a learned variant twice (the best validation point, and the run's last policy)
ROWS = ("lm", "lm-final", "ear", "ear-final", "pairs")
# training corpora of the closed-loop runs, per tier (the toy's pieces, or the realistic tier's two-hand music)
CORPORA = {"toy": ("folk", "bach-chorales"), "real": ("piano",)}
# the outside transcribers and LMM's own transcriber, beside h's rows on the realistic tier
H_REFERENCE = ("world-transcriber", "basic-pitch", "transkun")


def _k(v):
    return "all" if v == "all" else int(v)


def train_all(args, out: Path) -> dict:
    """Weights path of every (kind, variant, K, seed), training what is missing."""
    from lmm_env.agents.learned.differentiable import DiffConfig, train
    from lmm_env.agents.baselines.pairs_only import train_supervised_g

    paths, log = {}, out / "training.jsonl"
    for K in args.ks:
        for seed in args.seeds:
            for kind in ("g", "h"):
                for variant in ("lm", "ear"):
                    path = out / "weights" / f"{kind}-{variant}-K{K}-s{seed}.safetensors"
                    final = out / "weights" / f"{kind}-{variant}-K{K}-s{seed}-final.safetensors"
                    paths[(kind, variant, K, seed)] = path  # the best validation point's policy
                    paths[(kind, f"{variant}-final", K, seed)] = final  # the run's last policy
                    if path.is_file() and final.is_file():
                        continue
                    cfg = DiffConfig(kind=kind, pairs=K, samples=args.samples, seed=seed,
                                     lm=args.lm if variant == "lm" else 0.0, corpora=CORPORA[args.tier])
                    policy, report = train(cfg, progress=False)
                    best = report.get("best", {})
                    extra = {"samples": report["samples"], "wall_s": report["wall_s"], "best": best}
                    if "final_state" in report:  # keep_best swapped in the best point: save the last one too
                        last = copy.deepcopy(policy)
                        last.net.load_state_dict(report["final_state"])
                        last.save(final, extra={**extra, "final": True})
                    else:
                        policy.save(final, extra={**extra, "final": True})
                    policy.save(path, extra=extra)
                    with log.open("a") as f:
                        f.write(json.dumps({"kind": kind, "variant": variant, "K": K, "seed": seed,
                                            "samples": report["samples"], "wall_s": round(report["wall_s"], 1),
                                            "tier": args.tier,
                                            "best_samples": best.get("samples"), "best_val_f1": best.get("note_f1"),
                                            "curve": [(r["samples"], round(r["note_f1"], 3)) for r in report["history"]]})
                                + "\n")
                    print(f"trained {path.name} in {report['wall_s']:.0f} s", flush=True)
            path = out / "weights" / f"g-pairs-K{K}-s{seed}.safetensors"
            paths[("g", "pairs", K, seed)] = path
            if not path.is_file():
                train_supervised_g(K, seed=seed).save(path, extra={"pairs_only": True})
    return paths


def specs(paths: dict, args) -> tuple[list, list]:
    """(g agents, h agents) as (label, AgentSpec) for the benchmark runner."""
    from lmm_env.agents.registry import AgentSpec

    def g_factory(variant, seed):
        def build(env, pairs, seed_=0):
            from lmm_env.agents.learned.differentiable import DiffAgent, DiffPolicy

            policy = DiffPolicy.load(paths[("g", variant, pairs, seed)])
            if env.unwrapped.sim.keyboard.sealed:
                from lmm_env.agents.learned.decipher import ListeningDecipherAgent

                return ListeningDecipherAgent(env, pairs=pairs, seed=seed, actor=policy)
            return DiffAgent(env, policy)
        return build

    def h_factory(variant, seed):
        def build(env, pairs, seed_=0):
            if variant == "pairs":
                from lmm_env.agents.baselines.pairs_only import EarReaderAgent

                return EarReaderAgent(env, pairs=pairs)
            from lmm_env.agents.learned.differentiable import DiffAgent, DiffPolicy

            return DiffAgent(env, DiffPolicy.load(paths[("h", variant, pairs, seed)]))
        return build

    g, h = [], []
    for variant in ROWS:
        for seed in args.seeds:
            # the pairs are score and audio: they say nothing of a hidden keyboard, so the pairs-only
            # g has no way onto LMMDecipher-v0 (the closed-loop ones decipher it by ear)
            g_tasks = ("LMMPiano-v0",) if variant == "pairs" else ("LMMPiano-v0", "LMMDecipher-v0")
            g.append((f"g:{variant}:s{seed}", AgentSpec(g_factory(variant, seed), g_tasks,
                                                        False, f"g, {LABELS[variant]}, seed {seed}")))
            if variant == "pairs" and seed != args.seeds[0]:
                continue  # the ear of K pairs is one model (seed 0): one row
            h.append((f"h:{variant}:s{seed}", AgentSpec(h_factory(variant, seed), ("LMMByEar-v0",), False,
                                                        f"h, {LABELS[variant]}, seed {seed}")))
    return g, h


PANELS = {
    "toy": [("LMMPiano-v0", "piano", "g: LMMPiano-v0"), ("LMMDecipher-v0", "piano", "g: LMMDecipher-v0 (37 hidden keys)"),
            ("LMMByEar-v0", "piano", "h: LMMByEar-v0, piano target"),
            ("LMMByEar-v0", "soundfont", "h: LMMByEar-v0, SoundFont target")],
    "real": [("LMMPiano-v0", "grand", "g: LMMPiano-v0, the grand"), ("LMMPiano-v0", "soundfont", "g: LMMPiano-v0, TimGM6mb"),
             ("LMMDecipher-v0", "grand", "g: LMMDecipher-v0 (37 hidden keys), the grand"),
             ("LMMByEar-v0", "grand", "h: LMMByEar-v0, grand target"),
             ("LMMByEar-v0", "soundfont", "h: LMMByEar-v0, TimGM6mb target")],
}


def table(rows: list[dict], ks, tier: str = "toy") -> str:
    lines = []
    for task, synth, title in PANELS[tier]:
        lines.append(f"\n**{title}** (note F1, test split; mean over seeds, [min, max])\n")
        lines.append("| method | " + " | ".join(f"K = {k}" for k in ks) + " |")
        lines.append("|---|" + "---:|" * len(ks))
        kind = "h" if task == "LMMByEar-v0" else "g"
        methods = [(f"{kind}:{v}:", LABELS[v]) for v in ROWS]
        if kind == "h":
            methods += [(name, name + " (reference)") for name in sorted({r["agent"] for r in rows})
                        if name in H_REFERENCE]
        for prefix, label in methods:
            cells = []
            for k in ks:
                v = [r["note_f1"] for r in rows if (r["agent"].startswith(prefix) if prefix.endswith(":")
                                                    else r["agent"] == prefix) and r["task"] == task
                     and str(r["pairs"]) == str(k) and r["synth"] == synth]
                v = [x for x in v if x == x]
                if not v:
                    cells.append("–")
                elif len(v) == 1:
                    cells.append(f"{v[0]:.3f}")
                else:
                    cells.append(f"{np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def training_summary(out: Path, ks, seeds, tier: str) -> str:
    """Validation note F1 of every closed-loop run at its best point and at its end, and the collapses."""
    log = out / "training.jsonl"
    if not log.is_file():
        return ""
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r.get("tier", "toy") == tier and r["K"] in ks and r["seed"] in seeds]
    lines = ["\n**Training (validation split): best point and final point of each closed-loop run**\n",
             "| run | K | best F1 (mean) | at samples | final F1 (mean) | collapsed (final < 0.5 after best >= 0.5) |",
             "|---|---:|---:|---:|---:|---:|"]
    for kind in ("g", "h"):
        for variant in ("lm", "ear"):
            for k in ks:
                rs = [r for r in runs if r["kind"] == kind and r["variant"] == variant and r["K"] == k]
                if not rs:
                    continue
                best = [r["best_val_f1"] for r in rs if r.get("best_val_f1") is not None]
                final = [r["curve"][-1][1] for r in rs]
                at = [r["best_samples"] for r in rs if r.get("best_samples") is not None]
                collapsed = sum(1 for r in rs if (r.get("best_val_f1") or 0) >= 0.5 and r["curve"][-1][1] < 0.5)
                lines.append(f"| {kind} {LABELS[variant]} | {k} | {np.mean(best):.3f} | "
                             f"{', '.join(str(a) for a in at)} | {np.mean(final):.3f} | {collapsed} of {len(rs)} |")
    return "\n".join(lines) + "\n"


def plot(rows, ks, path: Path, tier: str = "toy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(task, synth, "h" if task == "LMMByEar-v0" else "g") for task, synth, _ in PANELS[tier]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True)
    x = np.arange(len(ks))
    for ax, (task, synth, kind) in zip(axes, panels):
        for variant, style in zip(ROWS, ("o-", "o:", "s--", "s:", "^-.")):
            m, lo, hi = [], [], []
            for k in ks:
                v = [r["note_f1"] for r in rows if r["agent"].startswith(f"{kind}:{variant}:") and r["task"] == task
                     and str(r["pairs"]) == str(k) and r["synth"] == synth and r["note_f1"] == r["note_f1"]]
                m.append(np.mean(v) if v else np.nan)
                lo.append(min(v) if v else np.nan)
                hi.append(max(v) if v else np.nan)
            ax.plot(x, m, style, label=LABELS[variant])
            ax.fill_between(x, lo, hi, alpha=0.2)
        if kind == "h":  # the references beside h: LMM's transcriber and the outside ones
            for name, style in zip(H_REFERENCE, ("D-", "--", ":")):
                v = [np.mean([r["note_f1"] for r in rows if r["agent"] == name and r["task"] == task
                              and str(r["pairs"]) == str(k) and r["synth"] == synth] or [np.nan]) for k in ks]
                if np.isfinite(v).any():
                    ax.plot(x, v, style, color="0.35" if name != "world-transcriber" else "tab:brown", label=name)
        ax.set_xticks(x, [str(k) for k in ks])
        ax.set_xlabel("K score-audio pairs")
        ax.set_title(f"{kind}: {task} ({synth})", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("note F1 (test)")
    axes[0].legend(fontsize=7, loc="lower right")
    if len(axes) > 3:
        axes[-1].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/headline")
    ap.add_argument("--ks", default="0,4,16,64", help="Ks to run (\"all\" needs the ear of all 9,501 pairs)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--samples", type=int, default=20_000, help="world samples per diff-g / diff-h run")
    ap.add_argument("--lm", type=float, default=0.01, help="weight of LM^A's NLL in the lm variant")
    ap.add_argument("--train-only", action="store_true", help="train (or find) the weights and stop")
    ap.add_argument("--parts", default="g,decipher,h",
                    help="which tables to play (comma-separated g, decipher, h): run them in separate processes "
                         "with the same --out; a last run with all parts (resumed) writes the whole table")
    ap.add_argument("--tier", default="toy", choices=tuple(CORPORA),
                    help="toy: folk, the built-in piano; real: the two-hand piano corpus (training and test), the "
                         "grand and TimGM6mb as worlds and targets, and world-transcriber / basic-pitch / Transkun "
                         "beside h (the outside ones when installed: make outside)")
    args = ap.parse_args(argv)
    args.ks = [_k(v) for v in args.ks.split(",")]
    args.seeds = [int(v) for v in args.seeds.split(",")]
    out = Path(args.out)
    (out / "weights").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths = train_all(args, out)
    t_train = time.perf_counter() - t0
    if args.train_only:
        print(f"weights ready under {out / 'weights'} ({t_train:.0f} s)")
        return 0
    from lmm_env.agents.benchmark.runner import run

    g, h = specs(paths, args)
    cmd = "python bench/headline.py " + " ".join(sys.argv[1:] if argv is None else argv)
    parts = set(args.parts.split(","))
    if not parts <= {"g", "decipher", "h"}:
        ap.error(f"--parts {args.parts!r} is not allowed; use a comma-separated subset of g, decipher, h")
    rows = []
    if args.tier == "toy":
        if "g" in parts:
            rows += run(g, tasks=["LMMPiano-v0", "LMMDecipher-v0"], pairs=args.ks, synths=("piano",),
                        episodes=args.episodes, out=out / "g", command=cmd, resume=True)
        if "h" in parts:
            rows += run(h, tasks=["LMMByEar-v0"], pairs=args.ks, synths=("piano", "soundfont"),
                        episodes=args.episodes, out=out / "h", command=cmd, resume=True)
    else:
        import importlib.util

        outside = [n for n, mod in (("basic-pitch", "basic_pitch"), ("transkun", "transkun"))
                   if importlib.util.find_spec(mod) is not None]
        real = dict(tier="real", pairs=args.ks, episodes=args.episodes, command=cmd, resume=True)
        if "g" in parts:
            rows += run(g, tasks=["LMMPiano-v0"], synths=("grand", "soundfont"), out=out / "g", **real)
        if "decipher" in parts:
            rows += run([s for s in g if "pairs" not in s[0]], tasks=["LMMDecipher-v0"], synths=("grand",),
                        out=out / "decipher", **real)
        if "h" in parts:
            rows += run(h + ["world-transcriber"] + outside, tasks=["LMMByEar-v0"], synths=("grand", "soundfont"),
                        out=out / "h", **real)
    md = table(rows, args.ks, args.tier) + training_summary(out, args.ks, args.seeds, args.tier)
    head = (f"Command: `{cmd}` (training {t_train:.0f} s, all {time.perf_counter() - t0:.0f} s; "
            f"tier {args.tier}; {args.samples} world samples a run, LM weight {args.lm}, seeds {args.seeds}, "
            f"{args.episodes} test pieces a cell)\n")
    (out / "headline.md").write_text(head + md)
    (out / "headline.json").write_text(json.dumps(rows, indent=1, default=str))
    plot(rows, args.ks, out / "headline.png", args.tier)
    print(head + md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
