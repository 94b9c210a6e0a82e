"""Train Stable-Baselines3 agents on LMMPiano-v0, with TensorBoard and safe checkpoints.

    from lmm_env.agents import train
    model = train(algo="ppo", total_steps=100_000, n_envs=8, logdir="runs/ppo")
    # tensorboard --logdir runs

``logdir`` also gets ``eval.csv`` (the learning curve: steps, wall seconds and every
evaluation mean) and ``checkpoints/best.safetensors`` (the best evaluation's policy: note
F1, then frame F1 and velocity accuracy; see `_selection_score`). TensorBoard gets SB3's scalars plus ``reward_terms/<name>`` (the mean of every reward term
per rollout), ``episode/<metric>`` (metrics of training episodes as they end) and, every
``eval_every`` steps, ``eval/<metric>`` over held-out scores, an audio clip of the first
evaluation episode and an image of its target vs played piano roll.

Checkpoints are safetensors (policy and optimizer tensors) plus a JSON config, written
atomically (a crash mid-write leaves the last good one): loading never unpickles and so
never executes code, unlike SB3's zip files. ``train(..., resume=True)`` continues from the
last checkpoint in ``logdir`` with its step count.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lmm_env import TASK_IDS  # the only env ids a checkpoint may name (nothing is imported for them)
from lmm_env._checks import check_bool, check_int, short_repr, writable_dir, writable_file

from lmm_env.agents.training.checkpoints import (  # noqa: F401  (re-exported: lmm_env.agents.train's namespace)
    ALGOS, CHECKPOINT_FORMAT, IMPROVISE_ID, MAX_N_ENVS, MAX_SEED, POLICIES, TMP_SUFFIX, _check_config, _check_memory, _check_policy_fits,
    _build_model, _import, _policy, _policy_skeleton, _spaces_env, _write_atomic, algo_class, export_policy,
    load_policy, load_trained, read_checkpoint, remove_stale_temporaries, save_checkpoint)

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"
_ZOO_ONLY = ("n_envs", "n_timesteps", "policy", "env_kwargs", "normalize", "frame_stack", "env_wrapper")


def hyperparams_path(algo: str) -> Path:
    """The rl-zoo3-format YAML of presets for ``algo`` (pass it to ``rl_zoo3.train --conf-file``)."""
    algo_class(algo)
    return HYPERPARAMS_DIR / f"{str(algo).lower()}.yml"


def preset(algo: str, env_id: str = "LMMPiano-v0") -> dict[str, Any]:
    """The tuned preset of ``algo`` for ``env_id``: ``{"hyperparams", "n_envs", "total_steps", "policy", "env_kwargs"}``."""
    import yaml

    with open(hyperparams_path(algo)) as f:
        table = yaml.safe_load(f)
    if env_id not in table:
        raise ValueError(f"no {algo} preset for {env_id!r}; presets exist for {sorted(table)}")
    entry = dict(table[env_id])
    return {"hyperparams": {k: v for k, v in entry.items() if k not in _ZOO_ONLY},
            "n_envs": int(entry.get("n_envs", 8)), "total_steps": int(float(entry.get("n_timesteps", 1e5))),
            "policy": entry.get("policy", "MultiInputPolicy"), "env_kwargs": dict(entry.get("env_kwargs", {}))}


def _writer(model):
    from stable_baselines3.common.logger import TensorBoardOutputFormat

    for fmt in model.logger.output_formats:
        if isinstance(fmt, TensorBoardOutputFormat):
            return fmt.writer
    return None


def roll_image(target: np.ndarray, played: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 picture: target (top) over played (bottom) piano rolls, pitch up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = np.flatnonzero(target.any(0) | played.any(0)) if target.size else np.array([39])
    lo, hi = (max(0, keys.min() - 2), min(88, keys.max() + 3)) if keys.size else (30, 60)
    fig, axes = plt.subplots(2, 1, figsize=(8, 4), sharex=True)
    for ax, roll, title in ((axes[0], target, "target"), (axes[1], played, "played")):
        ax.imshow(roll[:, lo:hi].T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_yticks([])
    fig.tight_layout()
    fig.canvas.draw()
    img = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return img


# --------------------------------------------------------------------------- checkpoints


def _selection_score(means: dict, env_id: str = "LMMPiano-v0") -> tuple[float, float]:
    """How ``best.safetensors`` is chosen from validation means: note onset F1 first (to 0.01,
    so that one note more or less does not decide), then the mean of frame F1 and velocity
    accuracy (1 - error / 127, the error averaged over the episodes that matched notes; 127
    when none did). Ties keep the earlier.

    LMMImprovise-v0 has no notes to match: first whether the improvisation is not collapsed
    (note density within the reward's activity bounds, 0.5 to 12 notes/s, pitch-class
    entropy of at least 3 equally used classes, repetition under 0.5), then the lowest
    judge NLL (the judge LM alone would prefer silence, hence the first test)."""
    if env_id == IMPROVISE_ID:
        nll = float(means.get("judge_nll", float("nan")))
        dens = float(means.get("note_density", 0.0))
        ent = float(means.get("pitch_class_entropy", 0.0))
        rep = float(means.get("repetition", 1.0))
        ok = 0.5 <= dens <= 12.0 and ent >= np.log2(3) and rep < 0.5
        return float(ok), -nll if np.isfinite(nll) else -np.inf
    note = float(means.get("note_f1", 0.0))
    frame = float(means.get("frame_f1", 0.0))
    vel = float(means.get("velocity_error", float("nan")))
    vel = 127.0 if not np.isfinite(vel) else min(vel, 127.0)
    return round(note if np.isfinite(note) else 0.0, 2), (frame + 1.0 - vel / 127.0) / 2.0


def _callbacks(config, logdir, eval_every, eval_episodes, checkpoint_every, eval_split):
    from stable_baselines3.common.callbacks import BaseCallback

    from lmm_env.agents.benchmark.evaluate import evaluate

    class LMMCallback(BaseCallback):
        """Reward terms and episode metrics to the logger; periodic evaluation and checkpoints."""

        def _on_training_start(self) -> None:
            import time

            self._t0 = time.perf_counter()
            self._terms: dict[str, list[float]] = {}
            self._best = None
            self._next_eval = self.num_timesteps + eval_every if eval_every else None
            self._next_ckpt = self.num_timesteps + checkpoint_every if checkpoint_every else None
            from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

            self._on_policy = isinstance(self.model, OnPolicyAlgorithm)

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                for k, v in info.get("reward_terms", {}).items():
                    self._terms.setdefault(k, []).append(float(v))
                for k, v in info.get("metrics", {}).items():
                    if isinstance(v, (int, float)) and np.isfinite(v):
                        self.logger.record_mean(f"episode/{k}", float(v))
            if not self._on_policy:
                self._due()
            return True

        def _on_rollout_start(self) -> None:
            # on-policy: the steps of a rollout are learned from only after it ends, so evaluate
            # and checkpoint between rollouts: a checkpoint's step count is then the steps its
            # weights learned from, and a resumed run repeats no step nor skips one
            if self._on_policy:
                self._due()

        def _due(self) -> None:
            if self._next_eval is not None and self.num_timesteps >= self._next_eval:
                while self._next_eval <= self.num_timesteps:
                    self._next_eval += eval_every
                self.run_eval()
            if self._next_ckpt is not None and self.num_timesteps >= self._next_ckpt and logdir:
                while self._next_ckpt <= self.num_timesteps:
                    self._next_ckpt += checkpoint_every
                save_checkpoint(self.model, Path(logdir) / "checkpoints" / "last.safetensors", config)

        def _on_rollout_end(self) -> None:
            for k, vals in self._terms.items():
                self.logger.record(f"reward_terms/{k}", float(np.mean(vals)))
            self._terms = {}

        def run_eval(self) -> None:
            agent = self.model
            if config["env_id"] == IMPROVISE_ID:  # an improviser is its sampled policy (fixed seed: comparable evals)
                from lmm_env.agents.baselines.improvise import PolicySamplerAgent

                agent = PolicySamplerAgent(self.model.policy, seed=0)
            table = evaluate(agent, config["env_id"], split=eval_split, episodes=eval_episodes,
                             env_kwargs=_held_out_kwargs(config["env_kwargs"]), progress=False, keep_first=True)
            import time

            means = table.mean()
            for k, v in means.items():
                if np.isfinite(v):
                    self.logger.record(f"eval/{k}", v)
            self.logger.dump(step=self.num_timesteps)  # at the step it measured, not at the next log dump
            if logdir:
                # A learning curve anyone can plot, and the best policy so far (see
                # `_selection_score`) beside the last one.
                curve = Path(logdir) / "eval.csv"
                cols = ["steps", "wall_seconds"] + sorted(means)
                new_file = not curve.exists()
                with open(curve, "a") as f:
                    if new_file:
                        f.write(",".join(cols) + "\n")
                    row = {"steps": self.num_timesteps, "wall_seconds": time.perf_counter() - self._t0, **means}
                    f.write(",".join(f"{row.get(c, float('nan')):.6g}" for c in cols) + "\n")
                score = _selection_score(means, config["env_id"])
                if self._best is None or score > self._best:
                    self._best = score
                    save_checkpoint(self.model, Path(logdir) / "checkpoints" / "best.safetensors", config)
            writer = _writer(self.model)
            if writer is not None and table.first is not None:
                import torch

                first = table.first
                audio = first["audio"]
                peak = max(1e-9, float(np.abs(audio).max()))
                writer.add_audio("eval/audio", torch.from_numpy(audio / max(1.0, peak)).float()[None],
                                 self.num_timesteps, sample_rate=first["sample_rate"])
                writer.add_image("eval/piano_roll", roll_image(first["target_roll"], first["played_roll"]),
                                 self.num_timesteps, dataformats="HWC")
                writer.flush()

        def _on_training_end(self) -> None:
            if self._on_policy:  # what fell due during the last rollout, now that it was learned from
                self._due()
            if logdir:
                save_checkpoint(self.model, Path(logdir) / "checkpoints" / "last.safetensors", config)

    return LMMCallback()


# arguments of the batched env (numpy or torch world) that the single evaluation env does not take
_VECTOR_ONLY = ("synth_threads", "backend", "device", "as_numpy", "validate_actions", "mix")
# env arguments that train itself decides (the batch size and its seeds)
_TRAIN_OWNS = ("num_envs", "n_envs", "seed", "vectorization_mode", "vector_kwargs")


def _held_out_kwargs(env_kwargs: dict) -> dict:
    """The training env's arguments for the single held-out env: eval_split decides the split."""
    return {k: v for k, v in env_kwargs.items() if k != "split" and k not in _VECTOR_ONLY}


def _eval_env(env_id: str, split: str, env_kwargs: dict):
    import gymnasium as gym

    try:
        return gym.make(env_id, split=split, **_held_out_kwargs(env_kwargs))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"the held-out evaluation env ({env_id}, split={split!r}) cannot be made from env_kwargs "
                         f"{short_repr(env_kwargs)}: {exc}") from None


def _claim_logdir(logdir: Path, resume: bool, overwrite: bool) -> None:
    """A new run never silently replaces another's checkpoints and learning curve."""
    held = [p for p in (logdir / "checkpoints" / "last.safetensors", logdir / "checkpoints" / "best.safetensors",
                        logdir / "eval.csv") if p.exists()]
    if not held or resume:
        return
    if not overwrite:
        raise ValueError(f"logdir={str(logdir)!r} already holds a run ({', '.join(p.name for p in held)}); continue "
                         "it with resume=True (--resume), start again with overwrite=True (--overwrite), or choose "
                         "another logdir")
    for p in held:
        p.unlink()


def _warn_rollout(cls, hyperparams: dict, n_envs: int, total_steps: int, resume: bool) -> None:
    """On-policy algorithms learn in whole rollouts of n_steps x n_envs: say so when that exceeds total_steps."""
    import inspect

    param = inspect.signature(cls.__init__).parameters.get("n_steps")
    if param is None or resume:
        return
    rollout = int(hyperparams.get("n_steps", param.default)) * n_envs
    if total_steps < rollout:
        warnings.warn(f"total_steps={total_steps} is less than one rollout of {cls.__name__} (n_steps x n_envs = "
                      f"{rollout}): it will collect and train {rollout} steps; lower n_steps or n_envs for a shorter "
                      "run", UserWarning, stacklevel=3)


def train(env_id: str = "LMMPiano-v0", algo: str = "ppo", total_steps: int = 100_000, n_envs: int = 8,
          seed: int = 0, logdir: str | os.PathLike | None = None, env_kwargs: dict | None = None,
          hyperparams: dict | None = None, policy: str = "MultiInputPolicy", eval_every: int = 20_000,
          eval_episodes: int = 4, eval_split: str = "validation", checkpoint_every: int = 20_000,
          resume: bool = False, progress: bool = True, verbose: int = 0, overwrite: bool = False):
    """Train an SB3 agent on a batched LMMPiano env; returns the trained model.

    Args:
        env_id: registered env id. env_kwargs: its arguments (JSON-serializable: they are
            stored in checkpoints).
        algo: "ppo", "a2c" or "sac". policy: "MultiInputPolicy" (SB3's), "KeyConvPolicy" or
            (SAC only) "KeyLevelPolicy".
        hyperparams: keyword arguments of the SB3 class (e.g. ``{"n_steps": 256}``).
        total_steps: env steps in all (a resumed run continues up to it).
        logdir: TensorBoard logs and ``checkpoints/last.safetensors`` (None: neither).
        eval_every / checkpoint_every: env steps between evaluations / checkpoints (0: never).
        eval_episodes, eval_split: held-out scores each evaluation plays.
        resume: continue from ``logdir``'s last checkpoint with its step count (SAC's replay
            buffer is not saved: a resumed SAC collects ``learning_starts`` steps before updating).
        overwrite: start a new run in a ``logdir`` that already holds one (its checkpoints and
            learning curve are removed first); without it (or ``resume``) such a logdir is refused.
    """
    from lmm_env.corpus import SPLITS
    from lmm_env.envs import make_sb3_vec_env

    # every argument checked now, before any env is built or step taken
    if env_id not in TASK_IDS:
        raise ValueError(f"env_id={short_repr(env_id)} is not allowed; train plays lmm_env's tasks {list(TASK_IDS)}")
    for name, value in (("env_kwargs", env_kwargs), ("hyperparams", hyperparams)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name}={short_repr(value)} must be a dict of keyword arguments (or None)")
    n_envs = check_int("n_envs", n_envs, 1, MAX_N_ENVS)
    seed = check_int("seed", seed, 0, MAX_SEED)
    check_int("total_steps", total_steps, 1, 10**13)
    check_int("verbose", verbose, 0, 2)
    for name, flag in (("resume", resume), ("progress", progress), ("overwrite", overwrite)):
        check_bool(name, flag)
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run in logdir, overwrite "
                         "starts a new one there")
    owned = sorted(k for k in (env_kwargs or {}) if k in _TRAIN_OWNS)
    if owned:
        raise ValueError(f"env_kwargs holds {owned}: train sets them itself (n_envs=, seed=); give them to train")
    if eval_split not in SPLITS:
        raise ValueError(f"eval_split={short_repr(eval_split)} is not allowed; use one of {list(SPLITS)}")
    env_kwargs = dict(env_kwargs or {})
    hyperparams = dict(hyperparams or {})
    config = {"env_id": env_id, "algo": str(algo).lower(), "policy": policy, "n_envs": n_envs, "seed": seed,
              "env_kwargs": env_kwargs, "hyperparams": hyperparams}
    try:
        json.dumps(config)
    except TypeError as exc:
        raise ValueError(f"env_kwargs and hyperparams must be JSON-serializable (they go into checkpoints): {exc}")
    cls = algo_class(algo)
    policy_obj = _policy(policy, algo)
    for name, v in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0):
            raise ValueError(f"{name}={v!r} must be an int >= 0 (env steps between them; 0: never)")
    if not (isinstance(eval_episodes, (int, np.integer)) and not isinstance(eval_episodes, bool) and eval_episodes >= 1):
        raise ValueError(f"eval_episodes={eval_episodes!r} must be an int >= 1 (held-out pieces each evaluation plays)")
    if logdir:  # checked before the envs are built and any step is taken, not at the first checkpoint
        writable_dir(Path(logdir) / "checkpoints", "logdir")
        _claim_logdir(Path(logdir), resume, overwrite)
    _warn_rollout(cls, hyperparams, n_envs, total_steps, resume)
    env = make_sb3_vec_env(n_envs, env_id=env_id, seed=seed, **env_kwargs)
    if eval_every:  # the held-out env the evaluations will play, built once now: a bad argument fails here
        _eval_env(env_id, eval_split, env_kwargs).close()
    tb = str(logdir) if logdir else None
    if logdir:
        for f in remove_stale_temporaries(Path(logdir) / "checkpoints"):
            warnings.warn(f"removed {f}, a checkpoint a killed run was writing", UserWarning, stacklevel=2)
    if resume:
        if not logdir:
            raise ValueError("resume=True needs the logdir of the run to continue")
        ckpt = Path(logdir) / "checkpoints" / "last.safetensors"
        if not ckpt.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {ckpt}")
        saved, _, _ = read_checkpoint(ckpt)
        if saved != config:
            raise ValueError(f"the checkpoint at {ckpt} was made with {saved}, not {config}; resume with the same "
                             "arguments (or start a new logdir)")
        model = load_trained(ckpt, env)
        print(f"lmm-env train: resuming from {ckpt} at step {model.num_timesteps:,} of {total_steps:,}", flush=True)
        if hasattr(model, "replay_buffer"):
            # the replay buffer is not in the checkpoint: refill it for learning_starts steps
            # before updating again, rather than training on a nearly empty one
            model.learning_starts += model.num_timesteps
        if tb:
            from stable_baselines3.common.logger import configure

            model.set_logger(configure(tb, ["tensorboard"] + (["stdout"] if verbose else [])))
    else:
        _, _, skeleton = _policy_skeleton(config, env.observation_space, env.action_space, "hyperparams")
        _check_memory(cls, config, env.observation_space, env.action_space, skeleton, "hyperparams")
        model = _build_model(cls, policy_obj, env, seed, verbose, hyperparams, "hyperparams")
        if tb:
            from stable_baselines3.common.logger import configure

            model.set_logger(configure(tb, ["tensorboard"] + (["stdout"] if verbose else [])))
    callback = _callbacks(config, logdir, eval_every, eval_episodes, checkpoint_every, eval_split)
    remaining = total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=callback, reset_num_timesteps=not resume,
                    progress_bar=progress)
    return model
