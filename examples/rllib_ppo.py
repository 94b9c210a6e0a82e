"""PPO on LMMPiano-v0 with Ray RLlib (new API stack): the SB3 headline run, scaled out.

    pip install "lmm_env[rllib]"
    python examples/rllib_ppo.py                                  # a local Ray cluster (ray.init())
    python examples/rllib_ppo.py --num-env-runners 2 --num-envs-per-env-runner 8
    python examples/rllib_ppo.py --address auto --num-env-runners 16   # an existing cluster (ray start ...)
    python examples/rllib_ppo.py --quick                          # a smoke test (a minute)
    tensorboard --logdir runs/rllib_ppo

Each EnvRunner steps ``--num-envs-per-env-runner`` keyboards as ONE batched env (lmm_env's
``vector_entry_point`` twin); the policy is `KeyConvPolicy` as an RLModule
(`lmm_env.agents.training.rllib.KeyConvRLModule`: pitch-equivariant conv actor, separate critic), and
the hyperparameters are the SB3 ``ppo`` preset's (agents/hyperparams/ppo.yml: n_steps 256
per env, minibatch 256, 4 epochs, lr 3e-4, gamma 0.9, GAE lambda 0.9, clip 0.2, no entropy
bonus) on folk tunes trimmed to 12 s with the closed-loop reward. Every ``--eval-every`` env
steps the policy is exported to the package's safetensors format and played on folk
*validation* tunes with `lmm_env.agents.benchmark.evaluate`; the best export (note F1, then frame F1 and
velocity accuracy, as `lmm_env.agents.training.sb3` chooses) is finally played on the folk *test*
split. ``lmm_env.agents.load_agent("<logdir>/checkpoints/best.safetensors")`` plays it.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import ray
from torch.utils.tensorboard import SummaryWriter

from lmm_env.agents import evaluate, preset
from lmm_env.agents.training.rllib import env_steps, export_policy, ppo_config
from lmm_env.agents.training.sb3 import _selection_score

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--steps", type=int, default=500_000, help="env steps in all")
p.add_argument("--num-env-runners", type=int, default=1, help="EnvRunner actors (0: sample in this process)")
p.add_argument("--num-envs-per-env-runner", type=int, default=8, help="keyboards each EnvRunner steps as one batch")
p.add_argument("--address", default=None, help="an existing Ray cluster ('auto' or host:port); default: start one here")
p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local cluster (default: all)")
p.add_argument("--n-steps", type=int, default=None,
               help="env steps per env per iteration (default: the preset's 256; the train batch is n_steps x all envs)")
p.add_argument("--reward", default="closed_loop")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--logdir", default=None, help="default: runs/rllib_ppo/<reward>-r<runners>x<envs>-s<seed>")
p.add_argument("--eval-every", type=int, default=16_384, help="env steps between validation evaluations")
p.add_argument("--eval-episodes", type=int, default=8)
p.add_argument("--test-pieces", type=int, default=50, help="folk test tunes in the final evaluation")
p.add_argument("--quick", action="store_true", help="tiny run for a smoke test")
args = p.parse_args()
if args.quick:
    args.steps, args.eval_every, args.eval_episodes, args.test_pieces = 1024, 512, 1, 1
logdir = Path(args.logdir or f"runs/rllib_ppo/{args.reward}-r{args.num_env_runners}x{args.num_envs_per_env_runner}"
              f"-s{args.seed}")
try:  # before any work: a bad --logdir fails now, in one line
    (logdir / "checkpoints").mkdir(parents=True, exist_ok=True)
except OSError as exc:
    p.error(f"--logdir {str(logdir)!r} cannot be used: {exc.strerror or exc}")

# 1. Ray: a cluster started here, or the one at --address (every node needs lmm_env[rllib]).
ray.init(address=args.address) if args.address else ray.init(num_cpus=args.num_cpus, include_dashboard=False)

# 2. The SB3 preset, carried over to RLlib (train batch = n_steps x all envs).
cfg = preset("ppo")
hyperparams = dict(cfg["hyperparams"])
env_kwargs = dict(cfg["env_kwargs"], reward=args.reward)
if args.n_steps is not None:
    hyperparams["n_steps"] = args.n_steps
if args.quick:
    hyperparams.update(n_steps=32, batch_size=64, n_epochs=1)
    env_kwargs["max_seconds"] = 2.0
config = ppo_config("LMMPiano-v0", num_env_runners=args.num_env_runners,
                    num_envs_per_env_runner=args.num_envs_per_env_runner, env_kwargs=env_kwargs,
                    hyperparams=hyperparams, seed=args.seed)
algo = config.build_algo()
writer = SummaryWriter(str(logdir))
print(f"RLlib PPO on LMMPiano-v0: {args.num_env_runners} env runner(s) x {args.num_envs_per_env_runner} envs, "
      f"{config.train_batch_size_per_learner} env steps per iteration; logs in {logdir}", flush=True)


# 3. Validation: export the policy, play held-out tunes with it, keep the best export.
def validate(steps: int, wall: float, best: tuple | None) -> tuple:
    last = export_policy(algo, logdir / "checkpoints" / "last.safetensors", steps=steps)
    held_out = {k: v for k, v in env_kwargs.items() if k != "split"}
    means = evaluate(str(last), split="validation", episodes=args.eval_episodes, env_kwargs=held_out,
                     progress=False).mean()
    for k, v in means.items():
        if np.isfinite(v):
            writer.add_scalar(f"eval/{k}", v, steps)
    curve = logdir / "eval.csv"
    cols = ["steps", "wall_seconds"] + sorted(means)
    with open(curve, "a") as f:
        if f.tell() == 0:
            f.write(",".join(cols) + "\n")
        row = {"steps": steps, "wall_seconds": wall, **means}
        f.write(",".join(f"{row[c]:.6g}" for c in cols) + "\n")
    score = _selection_score(means)
    if best is None or score > best:
        best = score
        shutil.copyfile(last, logdir / "checkpoints" / "best.safetensors")
    print(f"{steps:>8,} env steps {wall:6.0f} s  validation note F1 {means['note_f1']:.3f} "
          f"frame F1 {means['frame_f1']:.3f}", flush=True)
    return best


# 4. Train: one iteration = sample on every EnvRunner, then epochs of minibatch updates.
LOGGED = ("episode_return_mean", "episode_len_mean", "reward_terms/", "episode/")
LEARNER = ("policy_loss", "vf_loss", "entropy", "total_loss", "vf_explained_var")
t0, train_wall, steps, best, next_eval = time.perf_counter(), 0.0, 0, None, args.eval_every
while steps < args.steps:
    t_iter = time.perf_counter()
    result = algo.train()
    train_wall += time.perf_counter() - t_iter
    steps = env_steps(algo)
    for k, v in result["env_runners"].items():
        if k.startswith(LOGGED) and isinstance(v, (int, float)):
            writer.add_scalar(f"env_runners/{k}", v, steps)
    for k in LEARNER:
        writer.add_scalar(f"learner/{k}", result["learners"]["default_policy"][k], steps)
    writer.add_scalar("perf/env_steps_per_s", steps / train_wall, steps)
    if steps >= next_eval or steps >= args.steps:
        while next_eval <= steps:
            next_eval += args.eval_every
        best = validate(steps, time.perf_counter() - t0, best)
print(f"trained {steps:,} env steps in {train_wall:.0f} s of training ({steps / train_wall:.0f} env steps/s; "
      f"{time.perf_counter() - t0:.0f} s with evaluations)", flush=True)
algo.stop()
ray.shutdown()

# 5. The best validation policy on held-out folk tunes (whole tunes up to 60 s).
best_path = logdir / "checkpoints" / "best.safetensors"
folk = evaluate(str(best_path), split="test", episodes=args.test_pieces,
                env_kwargs={"score": "folk", "reward": args.reward, "max_seconds": 8.0 if args.quick else 60.0},
                progress=False)
writer.add_scalar("test/note_f1", folk.mean()["note_f1"], steps)
writer.close()
print(folk.markdown(f"rllib ppo {args.reward}, folk test"))
print(f"folk test note F1 {folk.mean()['note_f1']:.3f} (target >= 0.9 within 500k env steps); "
      f"lmm_env.agents.load_agent({str(best_path)!r}) plays it")
