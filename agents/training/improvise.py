"""Train the shipped improviser "ppo-improvise": PPO + KeyConvPolicy on LMMImprovise-v0 (LM^M).

    python -m lmm_env.agents.training.improvise --steps 655360 --logdir runs/ppo-improvise \\
        --export agents/weights/ppo-improvise.safetensors

The ``ppo`` preset for LMMImprovise-v0 (`agents/training/hyperparams/ppo.yml`): 8 batched envs of
folk *train* prompts (4 s, played by the world) then 20 s of free play, rewarded by
``improvise`` alone. Every ``--eval-every`` steps the sampled policy
(`lmm_env.agents.baselines.improvise.PolicySamplerAgent`, seed 0) plays ``--eval-episodes`` folk
*validation* prompts; ``eval.csv`` and TensorBoard (``eval/judge_nll``,
``eval/note_density``, ...) get the means, and ``checkpoints/best.safetensors`` keeps the
best by `lmm_env.agents.training.sb3._selection_score` (not collapsed, then the lowest judge NLL).
``--export`` writes that checkpoint's policy tensors (no optimizer) for shipping.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ENV_ID = "LMMImprovise-v0"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmm_env.agents.training.improvise", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="env steps (default: the preset's n_timesteps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", default="runs/ppo-improvise")
    p.add_argument("--eval-every", type=int, default=81_920)
    p.add_argument("--eval-episodes", type=int, default=6)
    p.add_argument("--export", default=None, help="write the best checkpoint's policy here (.safetensors)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from lmm_env._checks import check_cli_output

    check_cli_output(p, args.export, "--export")  # before the training, not after it

    import torch

    from lmm_env.agents.training.sb3 import export_policy, preset, train

    torch.set_num_threads(int(args.threads))
    pre = preset("ppo", ENV_ID)
    env_kwargs = dict(pre["env_kwargs"], split="train")
    steps = int(args.steps or pre["total_steps"])
    t0 = time.perf_counter()
    model = train(env_id=ENV_ID, algo="ppo", total_steps=steps, n_envs=pre["n_envs"], seed=args.seed,
                  logdir=args.logdir, env_kwargs=env_kwargs, hyperparams=pre["hyperparams"], policy=pre["policy"],
                  eval_every=args.eval_every, eval_episodes=args.eval_episodes, eval_split="validation",
                  checkpoint_every=args.eval_every, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    best = Path(args.logdir) / "checkpoints" / "best.safetensors"
    print(f"trained {model.num_timesteps} steps in {wall:.0f} s ({model.num_timesteps / wall:.0f} steps/s); "
          f"learning curve: {os.path.join(args.logdir, 'eval.csv')}")
    if args.export:
        if not best.is_file():
            raise SystemExit(f"no best checkpoint at {best} (set --eval-every <= --steps)")
        print(f"exported {best} -> {export_policy(best, args.export)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
