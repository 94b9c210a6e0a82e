"""Validation-split metrics of an LMMImprovise-v0 policy (sampled with PolicySamplerAgent, seed 0).

    python bench/eval_improvise_val.py PATH [--episodes 10] [--temperature 1.0]
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--split", default="validation")
    args = p.parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from lmm_env.agents.evaluate import evaluate
    from lmm_env.agents.improvise import PolicySamplerAgent
    from lmm_env.agents.train import load_policy

    agent = PolicySamplerAgent(load_policy(args.path), seed=0)
    if args.temperature != 1.0:
        rng, t = agent.rng, args.temperature
        agent.rng = type("R", (), {"standard_normal": staticmethod(lambda shape: t * rng.standard_normal(shape))})()
    kw = dict(prompt="folk", prompt_seconds=4.0, length_seconds=20.0, reward="key_match")
    table = evaluate(agent, "LMMImprovise-v0", split=args.split, episodes=args.episodes, env_kwargs=kw,
                     progress=False)
    m = table.mean()
    keys = ("judge_nll", "pitch_class_entropy", "note_density", "in_key_share", "repetition")
    print(json.dumps({"path": args.path, "T": args.temperature, "split": args.split,
                      **{k: round(float(m[k]), 3) for k in keys if k in m}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
