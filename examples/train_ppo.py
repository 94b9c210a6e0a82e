"""The headline run: PPO learns to play folk tunes from the closed-loop LM reward alone.

    python examples/train_ppo.py                       # closed_loop, 300k steps (a few minutes on 2 cores)
    python examples/train_ppo.py --reward key_match    # the motion-space reward, for comparison
    python examples/train_ppo.py --quick               # a smoke test (seconds)
    tensorboard --logdir runs

The agent never receives key_match: with the default reward it is judged only on what it
heard (an ear, a score LM and an audio LM; see `lmm_env.rewards.ClosedLoopReward`). It reads
the score with `KeyConvPolicy` (a convolution over the key axis, the same weights for every
pitch, and a separate critic). Every --eval-every steps it plays validation tunes; the best
of those policies is then played on the folk *test* split and, without a target yet, on Bach
chorales (polyphonic).
"""
from __future__ import annotations

import argparse
import time

import lmm_env  # noqa: F401  (registers LMMPiano-v0)
from lmm_env.agents import evaluate, load_trained, preset, train

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--reward", default="closed_loop", help="closed_loop (default), audio_match, key_match, ...")
p.add_argument("--steps", type=int, default=300_000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--logdir", default=None, help="default: runs/ppo-<reward>-s<seed>")
p.add_argument("--eval-every", type=int, default=16_384)
p.add_argument("--test-pieces", type=int, default=50, help="folk test tunes in the final evaluation")
p.add_argument("--quick", action="store_true", help="tiny run for a smoke test")
args = p.parse_args()
if args.quick:
    args.steps, args.eval_every, args.test_pieces = 512, 256, 2
logdir = args.logdir or f"runs/ppo-{args.reward}-s{args.seed}"

# 1. The tuned preset (rl-zoo3 format, agents/hyperparams/ppo.yml): 8 envs of folk tunes
#    trimmed to 12 s, KeyConvPolicy, PPO with short horizons (gamma 0.9).
cfg = preset("ppo")
hyperparams = dict(cfg["hyperparams"])
if args.quick:
    hyperparams.update(n_steps=32, batch_size=64, n_epochs=1)
env_kwargs = dict(cfg["env_kwargs"], reward=args.reward)

# 2. Train; TensorBoard logs, eval.csv and checkpoints land in logdir.
t0 = time.perf_counter()
model = train(algo="ppo", policy=cfg["policy"], total_steps=args.steps, n_envs=2 if args.quick else cfg["n_envs"],
              seed=args.seed, logdir=logdir, env_kwargs=env_kwargs, hyperparams=hyperparams,
              eval_every=args.eval_every, eval_episodes=2 if args.quick else 8, checkpoint_every=args.eval_every,
              progress=not args.quick)
wall = time.perf_counter() - t0
print(f"trained {model.num_timesteps} steps in {wall:.0f} s ({model.num_timesteps / wall:.0f} steps/s)")

# 3. The best validation policy on held-out tunes (whole tunes up to 60 s), and on Bach.
best = load_trained(f"{logdir}/checkpoints/best.safetensors")
eval_kwargs = {"reward": args.reward, "max_seconds": 8.0 if args.quick else 60.0}
folk = evaluate(best, split="test", episodes=args.test_pieces, env_kwargs=dict(eval_kwargs, score="folk"),
                progress=not args.quick)
bach = evaluate(best, split="test", episodes=max(1, args.test_pieces // 5),
                env_kwargs=dict(eval_kwargs, score="bach-chorales"), progress=not args.quick)
print(folk.markdown(f"ppo {args.reward}, folk test"))
print(bach.markdown(f"ppo {args.reward}, bach test").splitlines()[-1])
print(f"folk test note F1 {folk.mean()['note_f1']:.3f} (target >= 0.9 within 300k steps); "
      f"checkpoint {logdir}/checkpoints/best.safetensors")
