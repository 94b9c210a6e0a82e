"""Does an improviser answer its prompt? LMMImprovise-v0 on held-out prompts, against the prompts' own continuations.

For each corpus (``--corpora``), ``--prompts`` pieces of ``--split`` (spread over the split,
pieces at least prompt + 8 s long) are the prompts: the world plays each one's first
``--prompt-seconds``, then the agent plays ``--length`` seconds. Each agent plays every
prompt (``motion-lm`` with ``--seeds`` seeds). Printed per corpus and agent (median over
episodes; p10-p90 of the continuations):

- the improvisation statistics of `lmm_env.improv` (judge NLL, notes/s, pitch-class entropy,
  share in the prompt's key, repetition), beside the same numbers of the pieces' own
  continuations (the next ``--length`` seconds of each prompt's piece);
- prompt dependence: histograms of pitch class and melodic interval (onset order) per
  performance; ``d_cross`` is the mean distance (total variation, the two histograms
  averaged) between the play of different prompts, ``d_seed`` between seeds on the same
  prompt, ``d_prompts`` between the prompts themselves; ``match`` is the share of
  performances whose nearest prompt (same distance) is their own (chance: 1 / prompts);
- diversity across seeds: ``distinct4`` = distinct pitch 4-grams / all pitch 4-grams, pooled
  over the seeds of one prompt (low: the seeds play the same thing).

    .venv/bin/python bench/improviser.py --corpora folk,piano --prompts 20 --seeds 3 --out out/improviser.json

Use ``--split validation`` while choosing sampling settings; the test split is for the final table.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

STAT_KEYS = ("judge_nll", "note_density", "pitch_class_entropy", "in_key_share", "repetition")


def histograms(score) -> np.ndarray:
    """Pitch-class (12) and interval (-12..12, clipped) histograms of a performance, each summing to 1."""
    pc = np.bincount(np.asarray(score.pitches, np.int64) % 12, minlength=12).astype(float)
    order = np.lexsort((score.pitches, score.onsets))
    iv = np.clip(np.diff(np.asarray(score.pitches, np.int64)[order]), -12, 12) + 12
    it = np.bincount(iv, minlength=25).astype(float)
    return np.concatenate([pc / max(pc.sum(), 1), it / max(it.sum(), 1)])


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation of the pitch-class and the interval histograms, averaged."""
    return float(0.25 * np.abs(a[:12] - b[:12]).sum() + 0.25 * np.abs(a[12:] - b[12:]).sum())


def distinct4(scores) -> float:
    grams, total = set(), 0
    for s in scores:
        order = np.lexsort((s.pitches, s.onsets))
        p = tuple(int(x) for x in np.asarray(s.pitches)[order])
        g = [p[i: i + 4] for i in range(len(p) - 3)]
        grams.update(g)
        total += len(g)
    return len(grams) / total if total else float("nan")


def free_part(perf, start: float):
    from lmm_env.score import Score

    keep = perf.onsets >= start - 1e-9
    return Score(perf.pitches[keep], perf.onsets[keep] - start, perf.offsets[keep] - start, perf.velocities[keep],
                 name="free")


def run_corpus(corpus: str, args, agents) -> dict:
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env import improv
    from lmm_env.agents import load_agent
    from lmm_env.agents.registry import AGENTS

    env = gym.make("LMMImprovise-v0", prompt=corpus, split=args.split, prompt_seconds=args.prompt_seconds,
                   length_seconds=args.length)
    sim = env.unwrapped.sim
    pool = sim.pool
    ok = [i for i, s in enumerate(pool) if s.duration >= args.prompt_seconds + 8.0]
    idx = [ok[int(j)] for j in np.unique(np.linspace(0, len(ok) - 1, args.prompts).round().astype(int))]
    rows = {"continuation": [], **{a: [] for a in agents}}
    prompts_h, judge = [], improv._load_judge(None)
    for n, i in enumerate(idx):
        piece = pool[i]
        obs, info = env.reset(seed=args.seed + n, options={"score_index": i})
        prompt = sim.frames[0].to_score()
        key = improv.key_of(prompt)
        prompts_h.append(histograms(prompt))
        # the piece's own next seconds: the notes struck in them (not those sounding across the cut)
        cont = free_part(piece.trim(0.0, args.prompt_seconds + args.length), args.prompt_seconds)
        dur = min(args.length, piece.duration - args.prompt_seconds)
        m = improv.improv_metrics(cont, duration=dur, key=key, judge=judge)
        rows["continuation"].append({"prompt": n, "seed": 0, **m, "h": histograms(cont), "score": cont})
        for name, seeds in agents.items():
            for seed in seeds:
                obs, info = env.reset(seed=args.seed + n, options={"score_index": i})
                if name == "motion-lm":  # built directly: the sampling settings are not registry options
                    from lmm_env.agents.learned.improviser import MotionLMAgent

                    agent = MotionLMAgent(env, seed=seed, temperature=args.temperature, top_p=args.top_p,
                                          rerank=args.rerank, listen=args.listen)
                else:
                    agent = load_agent(name, env, **({"seed": seed} if "seed" in AGENTS[name].options else {}))
                t0 = time.process_time()
                while True:
                    action, _ = agent.predict(obs, deterministic=True)
                    obs, _, term, trunc, info = env.step(action)
                    if term or trunc:
                        break
                cpu = time.process_time() - t0
                free = free_part(sim.performance_score(0), sim.frames[0].T / sim.frame_rate)
                rows[name].append({"prompt": n, "seed": seed, **info["metrics"], "cpu_s": cpu, "h": histograms(free),
                                   "score": free})
        print(f"  {corpus} prompt {n + 1}/{len(idx)}: {pool[i].name}", flush=True)
    env.close()
    return summarize(rows, prompts_h)


def summarize(rows, prompts_h) -> dict:
    P = len(prompts_h)
    d_prompts = np.mean([distance(prompts_h[a], prompts_h[b]) for a, b in itertools.combinations(range(P), 2)])
    out = {"d_prompts": float(d_prompts), "agents": {}}
    cont = rows["continuation"]
    for name, rs in rows.items():
        if not rs:
            continue
        s = {k: float(np.nanmedian([r[k] for r in rs])) for k in STAT_KEYS}
        if name == "continuation":
            for k in STAT_KEYS:
                s[k + "_p10"], s[k + "_p90"] = (float(x) for x in np.nanpercentile([r[k] for r in rs], [10, 90]))
        else:
            lo = {k: np.nanpercentile([r[k] for r in cont], 10) for k in ("note_density", "pitch_class_entropy")}
            hi = {k: np.nanpercentile([r[k] for r in cont], 90) for k in ("note_density", "pitch_class_entropy")}
            for k in lo:
                s[k + "_inside"] = float(np.mean([lo[k] <= r[k] <= hi[k] for r in rs]))
            nll_cont = {r["prompt"]: r["judge_nll"] for r in cont}
            s["nll_below_cont"] = float(np.mean([r["judge_nll"] <= nll_cont[r["prompt"]] for r in rs]))
            s["cpu_s"] = float(np.median([r["cpu_s"] for r in rs]))
        cross = [distance(a["h"], b["h"]) for a, b in itertools.combinations(rs, 2) if a["prompt"] != b["prompt"]
                 and a["seed"] == b["seed"]]
        same = [distance(a["h"], b["h"]) for a, b in itertools.combinations(rs, 2) if a["prompt"] == b["prompt"]]
        s["d_cross"] = float(np.mean(cross)) if cross else float("nan")
        s["d_seed"] = float(np.mean(same)) if same else float("nan")
        s["match"] = float(np.mean([int(np.argmin([distance(r["h"], ph) for ph in prompts_h])) == r["prompt"]
                                    for r in rs]))
        by_prompt = {}
        for r in rs:
            by_prompt.setdefault(r["prompt"], []).append(r["score"])
        s["distinct4"] = float(np.nanmean([distinct4(v) for v in by_prompt.values()]))
        s["episodes"] = len(rs)
        out["agents"][name] = s
    return out


def table(corpus: str, res: dict) -> str:
    cols = ("judge_nll", "note_density", "pitch_class_entropy", "in_key_share", "repetition", "d_cross", "d_seed",
            "match", "distinct4")
    lines = [f"### {corpus} (d_prompts = {res['d_prompts']:.3f})", "",
             "| agent | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, s in res["agents"].items():
        cells = []
        for c in cols:
            v = f"{s[c]:.3f}" if np.isfinite(s.get(c, np.nan)) else ""
            if name == "continuation" and c + "_p10" in s:
                v += f" ({s[c + '_p10']:.2f}-{s[c + '_p90']:.2f})"
            cells.append(v)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpora", default="folk,piano")
    p.add_argument("--split", default="test")
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--seeds", type=int, default=3, help="seeds of motion-lm (0 .. seeds-1)")
    p.add_argument("--agents", default="motion-lm,repeat-prompt,lm-sampler,ppo-improvise")
    p.add_argument("--prompt-seconds", type=float, default=4.0)
    p.add_argument("--length", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=None, help="motion-lm's (default: the agent's)")
    p.add_argument("--top-p", type=float, default=None, help="motion-lm's nucleus mass (default: the agent's)")
    p.add_argument("--rerank", type=int, default=None, help="motion-lm's plans per chunk judged by LM^V (default: "
                                                           "the agent's)")
    p.add_argument("--listen", action="store_true",
                   help="motion-lm reads the prompt from the audio (the shipped transcriber), not the score view")
    p.add_argument("--out", default=None, help="write the summary as JSON here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from lmm_env.agents.learned.improviser import MotionLMAgent

    args.temperature = MotionLMAgent.TEMPERATURE if args.temperature is None else args.temperature
    args.top_p = MotionLMAgent.TOP_P if args.top_p is None else args.top_p
    args.rerank = MotionLMAgent.RERANK if args.rerank is None else args.rerank
    agents = {a: (list(range(args.seeds)) if a == "motion-lm" else [0]) for a in args.agents.split(",") if a}
    results = {}
    for corpus in args.corpora.split(","):
        results[corpus] = run_corpus(corpus, args, agents)
        print(table(corpus, results[corpus]), flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
