"""Experiment: PPO on LMMImprovise-v0 with a density floor / in-key term in the improvise reward,
an optional warm start, and a model-selection rule that keeps a checkpoint only when its
validation note density and pitch-class entropy lie inside the validation corpus ranges
(folk or Bach p10-p90, `lmm_env.improv.corpus_reference(split="validation", seconds=20)`).

    OMP_NUM_THREADS=1 python bench/train_improvise_ranged.py --steps 327680 --min-notes 2.5 \
        --key-weight 3 --init agents/weights/ppo-improvise.safetensors --logdir runs/ppo-improvise-ranged
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

ENV_ID = "LMMImprovise-v0"


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=327_680)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default="runs/ppo-improvise-ranged")
    p.add_argument("--eval-every", type=int, default=40_960)
    p.add_argument("--eval-episodes", type=int, default=6)
    p.add_argument("--min-notes", type=float, default=0.5)
    p.add_argument("--key-weight", type=float, default=0.0)
    p.add_argument("--max-pc-entropy", type=float, default=None)
    p.add_argument("--init", default=None, help="warm start: policy tensors of a checkpoint/export")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--export", default=None)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    import importlib

    T = importlib.import_module("lmm_env.agents.train")
    from lmm_env import rewards
    from lmm_env.improv import corpus_reference
    from lmm_env.rewards.improvise import ImproviseReward

    torch.set_num_threads(1)
    name = "improvise-ranged"
    rewards.register(name, functools.partial(ImproviseReward, min_notes_per_s=args.min_notes,
                                             key_weight=args.key_weight,
                                             max_pc_entropy=args.max_pc_entropy), takes_ear=True, overwrite=True)
    ref = corpus_reference(split="validation", seconds=20.0)
    ranges = {c: {s: (ref[c][s]["p10"], ref[c][s]["p90"]) for s in ("note_density", "pitch_class_entropy")}
              for c in ref}
    print("validation ranges", json.dumps(ranges))

    def selection(means, env_id=ENV_ID):
        nll = float(means.get("judge_nll", float("nan")))
        d = float(means.get("note_density", 0.0))
        e = float(means.get("pitch_class_entropy", 0.0))
        rep = float(means.get("repetition", 1.0))
        viol = []
        for r in ranges.values():
            (dl, dh), (el, eh) = r["note_density"], r["pitch_class_entropy"]
            viol.append(max(0.0, dl - d) / dl + max(0.0, d - dh) / dh + max(0.0, el - e) / el + max(0.0, e - eh) / eh)
        ok = min(viol) == 0.0 and rep < 0.5 and np.isfinite(nll)
        return float(ok), (-nll if ok else -min(viol))

    T._selection_score = selection
    if args.init:
        base = T.algo_class("ppo")
        from safetensors.torch import load_file

        state = {k[len("policy."):]: v for k, v in load_file(args.init).items() if k.startswith("policy.")}

        class WarmPPO(base):
            def _setup_model(self):
                super()._setup_model()
                self.policy.load_state_dict(state)

        T.algo_class = lambda algo: WarmPPO
    pre = T.preset("ppo", ENV_ID)
    env_kwargs = dict(pre["env_kwargs"], split="train", reward=name)
    hp = dict(pre["hyperparams"])
    if args.lr:
        hp["learning_rate"] = args.lr
    t0 = time.perf_counter()
    model = T.train(env_id=ENV_ID, algo="ppo", total_steps=args.steps, n_envs=pre["n_envs"], seed=args.seed,
                    logdir=args.logdir, env_kwargs=env_kwargs, hyperparams=hp, policy=pre["policy"],
                    eval_every=args.eval_every, eval_episodes=args.eval_episodes, eval_split="validation",
                    checkpoint_every=args.eval_every, progress=False)
    print(f"trained {model.num_timesteps} steps in {time.perf_counter() - t0:.0f} s")
    if args.export:
        print("exported", T.export_policy(Path(args.logdir) / "checkpoints" / "best.safetensors", args.export))
    return 0


if __name__ == "__main__":
    sys.exit(main())
