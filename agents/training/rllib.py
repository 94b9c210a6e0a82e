"""Ray RLlib (new API stack) on every lmm_env task: envs on every worker, the batched twin, `KeyConvPolicy` as an RLModule.

    import ray
    from lmm_env.agents.training.rllib import export_policy, ppo_config
    ray.init()                                          # or ray.init(address="auto") on a cluster
    algo = ppo_config("LMMPiano-v0", num_env_runners=2, num_envs_per_env_runner=8).build_algo()
    result = algo.train()                               # one PPO iteration (2 x 8 x 256 env steps)
    export_policy(algo, "rllib-ppo.safetensors")        # plays through lmm_env.agents.load_agent

Install with ``pip install lmm_env[rllib]`` (Ray >= 2.40). What RLlib needs, and where it is:

* **Envs on every worker** (`register_envs`): each lmm_env task is registered with RLlib
  under its Gymnasium id; the creator (`make_env`) imports lmm_env itself, so an EnvRunner
  in another process or on another node registers the ids before it builds the env.
* **The batched twin**: with ``gym_env_vectorize_mode="vector_entry_point"`` (`ppo_config`'s
  default) each EnvRunner builds ONE natively batched env of ``num_envs_per_env_runner``
  keyboards (``gym.make_vec(..., vectorization_mode="vector_entry_point")``) instead of that
  many single envs. The twin resets an ended env in the same step (``SAME_STEP``: the next
  episode's first observation comes with the end); RLlib's EnvRunner expects gymnasium's
  default ``NEXT_STEP`` (the final observation with the end, the reset at the next call),
  which `NextStepAutoreset` gives. ``"sync"`` (one env per copy) works too, slower.
* **The policy** (`KeyConvRLModule`): `KeyConvPolicy`'s pitch-equivariant conv actor over
  the key axis and its separate critic, as a torch RLModule that takes the Dict
  observation as it is (RLlib's default encoders do not take a Dict; nothing is
  flattened on the way: the module splits it). Its parameter names are KeyConvPolicy's, so
  `export_policy` writes the package's safetensors policy format (`lmm_env.agents.load_agent`
  and `load_policy` play it) and `policy_state` loads any KeyConvPolicy checkpoint (e.g. the
  shipped ``ppo-closed-loop``) into it. LMMByEar-v0 has no score to convolve over keys
  (its observation is a log-mel ``target``): `ppo_config` gives it RLlib's default MLP on
  the flattened observation.
* **Reward terms** (`RewardTermsCallback`): every term of the env's ``info["reward_terms"]``,
  averaged over each episode, as ``reward_terms/<name>`` in the EnvRunners' results, and the
  ended episodes' metrics as ``episode/<metric>``.
* **The hyperparameters** (`ppo_config`): the SB3 PPO preset (``agents/hyperparams/ppo.yml``)
  carried over name by name (`rllib_ppo_settings`): ``n_steps`` per env, ``batch_size``,
  ``n_epochs``, ``learning_rate``, ``gamma``, ``gae_lambda``, ``ent_coef``, ``clip_range``,
  ``vf_coef`` and ``max_grad_norm``, with SB3's choices where RLlib's defaults differ (no KL
  penalty, no value-loss clipping, actions clipped to the action space).
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorWrapper

try:
    import ray  # noqa: F401
except ImportError as _exc:  # the optional extra: say how to get it, not just "No module named 'ray'"
    raise ImportError("lmm_env.agents.training.rllib needs Ray RLlib, an optional extra: pip install 'lmm_env[rllib]' "
                      f"(or pip install 'ray[rllib]>=2.40'); importing it failed with: {_exc}") from _exc
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from lmm_env._checks import check_int, check_real, check_seed, short_repr, writable_file
from lmm_env.agents.learned.policies import KeyActionHead, KeyConvExtractor, KeyObsExtractor, _key_layout

__all__ = ["KeyConvRLModule", "NextStepAutoreset", "RewardTermsCallback", "make_env", "register_envs", "lmm_task_ids",
           "rllib_ppo_settings", "ppo_config", "export_policy", "env_steps", "policy_state", "POLICY_KWARGS",
           "VECTORIZE_MODES"]

# KeyConvPolicy's keyword arguments that the RLModule takes (its model_config), with their
# defaults; JSON values only, since they go into exported checkpoints.
POLICY_KWARGS = {"actor_channels": (32, 32), "critic_channels": (16, 16), "kernel_size": 5, "audio_hidden": 32,
                 "critic_hidden": 64, "init_bias": -1.0, "log_std_init": -0.5, "learn_log_std": True,
                 "key_bias": False}
VECTORIZE_MODES = ("vector_entry_point", "sync", "async")
# Bounds of what an argument may ask RLlib to build (KeyConvPolicy's checkpoint bounds for the module).
MAX_ENV_RUNNERS, MAX_ENVS_PER_RUNNER = 256, 4096
MAX_N_STEPS, MAX_TRAIN_BATCH = 1 << 20, 1 << 24  # n_steps per env; n_steps x all envs (env steps per iteration)
MAX_LAYERS, MAX_WIDTH, MAX_KERNEL = 64, 4096, 63


# --------------------------------------------------------------------------- envs


def lmm_task_ids() -> list[str]:
    """Every Gymnasium id registered by lmm_env (its entry point lives in ``lmm_env.envs``)."""
    import lmm_env  # noqa: F401  (registers the ids)

    return sorted(k for k, spec in gym.registry.items()
                  if isinstance(spec.entry_point, str) and spec.entry_point.startswith("lmm_env."))


class NextStepAutoreset(VectorWrapper):
    """An lmm_env batched twin (``SAME_STEP`` autoreset) as the ``NEXT_STEP`` vector env RLlib expects.

    The twin steps all its keyboards in lockstep and starts an ended env's next episode in
    the same step. This wrapper returns the ended env's *final* observation with
    ``truncated=True`` (so RLlib bootstraps from the right state) and, at the next
    ``step``, a fresh first observation with reward 0 and no info for that env, as
    gymnasium's ``NEXT_STEP`` mode does (the action given for it is ignored: the twin
    steps the env once more, then the wrapper starts a new episode there again, drawing
    the piece from the wrapper's own per-env generator). So each episode costs one wasted
    env step and one extra reset. ``final_obs`` / ``final_info`` (object arrays, which
    RLlib would copy into every episode) are dropped; ``reward_terms`` and ``metrics``
    stay, masked to the envs they belong to.
    """

    def __init__(self, env: gym.vector.VectorEnv):
        from lmm_env.envs.piano_vector import PianoTaskVectorEnv

        if not isinstance(env, gym.vector.VectorEnv):  # gymnasium's VectorWrapper would only assert
            raise TypeError("NextStepAutoreset wraps an lmm_env batched twin (a vector env), got "
                            f"{type(env).__name__}; "
                            "make one with gym.make_vec(env_id, num_envs=n, vectorization_mode='vector_entry_point')")
        super().__init__(env)
        base = env.unwrapped
        if not isinstance(base, PianoTaskVectorEnv):
            raise TypeError(f"NextStepAutoreset wraps an lmm_env batched twin (PianoTaskVectorEnv), got {type(base)!r}")
        mode = base.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"NextStepAutoreset needs a SAME_STEP vector env, got autoreset_mode={mode!r}")
        self.metadata = dict(env.metadata, autoreset_mode=AutoresetMode.NEXT_STEP)
        self._sim = base.sim
        self._pending = np.zeros(self.num_envs, dtype=bool)
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            first = int(seed if isinstance(seed, (int, np.integer)) else next((s for s in seed if s is not None), 0))
            self._rngs = [np.random.default_rng([first, i, 1]) for i in range(self.num_envs)]
        self._pending[:] = False
        return obs, info

    def step(self, actions):
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        pending = self._pending.copy()
        rewards, terminated, truncated = (np.array(rewards), np.array(terminated, copy=True),
                                          np.array(truncated, copy=True))
        ended = (terminated | truncated) & ~pending
        if ended.any():  # the twin already began their next episode: show the final observation now
            obs = {k: v.copy() for k, v in obs.items()}
            for i in np.flatnonzero(ended):
                for k, v in info["final_obs"][i].items():
                    obs[k][i] = v
        if pending.any():  # RLlib's reset step for these: a fresh first observation, nothing else
            for i in np.flatnonzero(pending):
                self._sim.reset_env(int(i), self._rngs[i])
            fresh = self._sim.observation()
            obs = {k: np.where(pending.reshape((-1,) + (1,) * (v.ndim - 1)), fresh[k], v) for k, v in obs.items()}
            rewards[pending] = 0.0
            terminated[pending] = False
            truncated[pending] = False
        out: dict[str, Any] = {}
        if "reward_terms" in info:
            out["reward_terms"] = {k: np.asarray(v) for k, v in info["reward_terms"].items()}
            out["_reward_terms"] = ~pending
        if "metrics" in info:
            out["metrics"] = info["metrics"]
            out["_metrics"] = np.asarray(info["_metrics"]) & ended
        self._pending = ended
        return obs, rewards, terminated, truncated, out


def make_env(env_id: str, env_config: dict | None = None):
    """RLlib's env creator for lmm_env task ``env_id``: imports lmm_env (registering its ids in
    this process, whichever worker or node it is), then builds one env from ``env_config``
    (the env's keyword arguments), or with ``num_envs`` in it (RLlib's
    ``vector_entry_point`` mode) the batched twin of that many envs behind `NextStepAutoreset`."""
    _check_task_id(env_id)
    if env_config is not None and not isinstance(env_config, dict):  # RLlib's EnvContext is a dict
        raise TypeError(f"env_config={short_repr(env_config)} is not allowed; pass a dict of the env's arguments")
    kwargs = dict(env_config or {})
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is None:
        return gym.make(env_id, **kwargs)
    num_envs = check_int("num_envs", num_envs, 1, MAX_ENVS_PER_RUNNER)
    return NextStepAutoreset(gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                                          **kwargs))


def _check_task_id(env_id) -> str:
    """``env_id`` if lmm_env registers it (importing lmm_env registers them here), else a ValueError naming them."""
    known = lmm_task_ids()
    if not isinstance(env_id, str) or env_id not in known:
        raise ValueError(f"env id {short_repr(env_id)} is not an lmm_env task; registered lmm_env tasks: {known}")
    return env_id


def register_envs(env_ids=None) -> list[str]:
    """Register lmm_env tasks with RLlib (default: every id lmm_env registers) under their
    Gymnasium ids; returns them. Then ``config.environment("LMMPiano-v0", env_config={...})``.

    The creator is `make_env` bound to the id (pickled by reference), so the registration
    travels to every EnvRunner through Ray's registry; call it before building the algorithm.
    """
    from ray.tune.registry import register_env

    known = lmm_task_ids()
    if not (env_ids is None or isinstance(env_ids, (str, list, tuple, set, frozenset))):
        raise TypeError(f"env_ids={short_repr(env_ids)} is not allowed; pass None (every task), an id or a list "
                        f"of ids of {known}")
    ids = known if env_ids is None else [env_ids] if isinstance(env_ids, str) else list(env_ids)
    bad = [i for i in ids if not isinstance(i, str) or i not in known]
    if bad:
        raise ValueError(f"env ids {bad} are not lmm_env tasks; registered lmm_env tasks: {known}")
    for env_id in ids:
        register_env(env_id, functools.partial(make_env, env_id))
    return ids


# --------------------------------------------------------------------------- the RLModule


def _module_kwargs(model_config) -> dict[str, Any]:
    """`KeyConvRLModule`'s keyword arguments from an RLlib model_config (a dict, or RLlib's
    DefaultModelConfig merged in: only the keys of `POLICY_KWARGS` are read)."""
    if model_config is None:
        model_config = {}
    if not isinstance(model_config, dict):
        import dataclasses

        if not dataclasses.is_dataclass(model_config):
            raise TypeError(f"model_config={short_repr(model_config)} is not allowed; pass a dict of "
                            f"KeyConvPolicy's keywords {sorted(POLICY_KWARGS)}")
        model_config = dataclasses.asdict(model_config)
    out = dict(POLICY_KWARGS)
    out.update({k: v for k, v in model_config.items() if k in POLICY_KWARGS})
    # bounded as a KeyConvPolicy checkpoint's are: a typo must not ask for a terabyte of weights
    for k in ("actor_channels", "critic_channels"):
        v = out[k]
        if not (isinstance(v, (list, tuple)) and 1 <= len(v) <= MAX_LAYERS):
            raise ValueError(f"model_config {k}={short_repr(v)} is not allowed; use a list of 1 to {MAX_LAYERS} "
                             f"conv channel counts in [1, {MAX_WIDTH}]")
        out[k] = tuple(check_int(f"model_config {k}[{i}]", c, 1, MAX_WIDTH) for i, c in enumerate(v))
    for k in ("audio_hidden", "critic_hidden"):
        out[k] = check_int(f"model_config {k}", out[k], 1, MAX_WIDTH)
    k = check_int("model_config kernel_size", out["kernel_size"], 1, MAX_KERNEL)
    if k % 2 != 1:
        raise ValueError(f"model_config kernel_size={k} is not allowed; use an odd int in [1, {MAX_KERNEL}] "
                         "(so the key axis keeps its length)")
    out["kernel_size"] = k
    out["init_bias"] = check_real("model_config init_bias", out["init_bias"], -100.0, 100.0)
    out["log_std_init"] = check_real("model_config log_std_init", out["log_std_init"], -20.0, 20.0)
    for k in ("learn_log_std", "key_bias"):
        if not isinstance(out[k], (bool, np.bool_)):
            raise ValueError(f"model_config {k}={short_repr(out[k])} is not allowed; use True or False")
        out[k] = bool(out[k])
    return out


class KeyConvRLModule(TorchRLModule, ValueFunctionAPI):
    """`KeyConvPolicy` as an RLlib torch RLModule (new API stack) for PPO.

    The same networks, under the same parameter names (``mlp_extractor.actor``,
    ``mlp_extractor.critic_*``, ``action_net``, ``log_std``, ``value_net``): a stack of 1-D
    convolutions over the key axis reads the score frames and the key state and a shared
    1x1 head gives each key's mean action (pitch-equivariant); the critic has its own conv
    stack, pooled over keys, joined with an MLP of the heard log-mel. One learnable log-std
    is shared by all keys. The observation comes in as RLlib batches it, a dict of
    ``(batch, ...)`` tensors (``score``, ``audio``, ``key_state``; other keys such as
    LMMImprovise-v0's ``prompt`` are not read).

    ``model_config`` takes KeyConvPolicy's keywords (`POLICY_KWARGS`): ``actor_channels``,
    ``critic_channels``, ``kernel_size``, ``audio_hidden``, ``critic_hidden``, ``init_bias``,
    ``log_std_init``, ``learn_log_std``, ``key_bias``; other keys are ignored.

    Outputs: ``action_dist_inputs`` = the means and the log-std (repeated per action),
    concatenated, as RLlib's ``TorchDiagGaussian`` reads them; `compute_values` = the
    critic's value.
    """

    def __init__(self, *args, **kwargs):
        kwargs.pop("catalog_class", None)  # PPO's default catalog cannot build a Dict-observation encoder
        super().__init__(*args, **kwargs)

    def setup(self):
        _key_layout(self.observation_space, self.action_space)
        kw = self.policy_kwargs = _module_kwargs(self.model_config)
        self.features_extractor = KeyObsExtractor(self.observation_space)  # parameter-free: the Dict, flattened
        self.mlp_extractor = KeyConvExtractor(self.observation_space, actor_channels=kw["actor_channels"],
                                              critic_channels=kw["critic_channels"], kernel_size=kw["kernel_size"],
                                              audio_hidden=kw["audio_hidden"], critic_hidden=kw["critic_hidden"])
        ex = self.mlp_extractor
        self.action_net = KeyActionHead(ex.actor_channels, ex.n_keys, ex.pedal, float(kw["init_bias"]),
                                        key_bias=bool(kw["key_bias"]))
        self.log_std = nn.Parameter(torch.full((1,), float(kw["log_std_init"])),
                                    requires_grad=bool(kw["learn_log_std"]))
        self.value_net = nn.Linear(ex.latent_dim_vf, 1)

    def _features(self, batch) -> torch.Tensor:
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):
            raise TypeError(f"KeyConvRLModule needs the Dict observation as a dict of tensors, got {type(obs)!r}; "
                            "do not add a FlattenObservations connector")
        return self.features_extractor({k: torch.as_tensor(v, dtype=torch.float32) for k, v in obs.items()})

    def action_mean(self, features: torch.Tensor) -> torch.Tensor:
        """Each action's mean (``(batch, n_actions)``) from `KeyObsExtractor`'s flat features."""
        return self.action_net(self.mlp_extractor.forward_actor(features))

    def _dist_inputs(self, features: torch.Tensor) -> torch.Tensor:
        mean = self.action_mean(features)
        return torch.cat([mean, self.log_std.expand_as(mean)], dim=-1)

    def _forward(self, batch, **kwargs):
        return {Columns.ACTION_DIST_INPUTS: self._dist_inputs(self._features(batch))}

    def _forward_train(self, batch, **kwargs):
        features = self._features(batch)
        # the flat features are the critic's input too: compute_values reuses them
        return {Columns.ACTION_DIST_INPUTS: self._dist_inputs(features), Columns.EMBEDDINGS: features}

    def compute_values(self, batch, embeddings=None):
        features = self._features(batch) if embeddings is None else embeddings
        return self.value_net(self.mlp_extractor.forward_critic(features)).squeeze(-1)


# --------------------------------------------------------------------------- callbacks


class RewardTermsCallback(RLlibCallback):
    """Log the env's reward terms and episode metrics from the EnvRunners (new API stack).

    ``on_episode_step`` sums each term of ``info["reward_terms"]`` in the episode's
    ``custom_data`` (it survives RLlib cutting an episode into chunks); ``on_episode_end``
    logs their per-step means as ``reward_terms/<name>`` and the ended episode's
    ``info["metrics"]`` (note F1, frame F1, ...) as ``episode/<name>``: in each training
    result under ``result["env_runners"]``, the mean over the last 100 ended episodes (the
    window RLlib uses for ``episode_return_mean``).
    """

    def on_episode_step(self, *, episode, **kwargs) -> None:
        terms = episode.get_infos(-1).get("reward_terms")
        if not terms:
            return
        sums = episode.custom_data.setdefault("reward_terms", {})
        for k, v in terms.items():
            s = sums.setdefault(k, [0.0, 0])
            s[0] += float(v)
            s[1] += 1

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:
        if metrics_logger is None:
            return
        for k, (total, n) in episode.custom_data.get("reward_terms", {}).items():
            if n:
                metrics_logger.log_value(f"reward_terms/{k}", total / n, reduce="mean", window=100)
        for k, v in (episode.get_infos(-1).get("metrics") or {}).items():
            v = float(v)
            if math.isfinite(v):
                metrics_logger.log_value(f"episode/{k}", v, reduce="mean", window=100)


# --------------------------------------------------------------------------- PPO


# SB3 PPO name -> (RLlib PPOConfig.training name, SB3's default). n_steps is per env, and
# RLlib's train batch is n_steps x all envs, as SB3's rollout is.
_SB3_TO_RLLIB = {"batch_size": ("minibatch_size", 64), "n_epochs": ("num_epochs", 10),
                 "learning_rate": ("lr", 3e-4), "gamma": ("gamma", 0.99), "gae_lambda": ("lambda_", 0.95),
                 "ent_coef": ("entropy_coeff", 0.0), "clip_range": ("clip_param", 0.2),
                 "vf_coef": ("vf_loss_coeff", 0.5), "max_grad_norm": ("grad_clip", 0.5)}
_SB3_OTHER = ("n_steps", "policy_kwargs")
_INT_BOUNDS = {"batch_size": (1, 1 << 20), "n_epochs": (1, 10_000)}  # as train.py bounds a checkpoint's
_REAL_BOUNDS = {"learning_rate": (0.0, 1.0, True), "gamma": (0.0, 1.0, False), "gae_lambda": (0.0, 1.0, False),
                "ent_coef": (0.0, 1e3, False), "clip_range": (0.0, 1e3, True), "vf_coef": (0.0, 1e3, False),
                "max_grad_norm": (0.0, 1e6, True)}  # (lo, hi, lo open)


def rllib_ppo_settings(hyperparams: dict, n_envs: int) -> dict[str, Any]:
    """PPOConfig.training settings equal to SB3 PPO ``hyperparams`` (its names, e.g. the
    ``ppo`` preset) on ``n_envs`` envs in all: the train batch is ``n_steps * n_envs``; no KL
    penalty, no value-loss clipping and global-norm gradient clipping, as SB3 does."""
    if not isinstance(hyperparams, dict):
        raise TypeError(f"hyperparams={short_repr(hyperparams)} is not allowed; pass a dict of SB3 PPO hyperparameters")
    unknown = sorted(set(hyperparams) - set(_SB3_TO_RLLIB) - set(_SB3_OTHER), key=str)
    if unknown:
        raise ValueError(f"SB3 PPO hyperparameters {short_repr(unknown)} have no RLlib equivalent here; allowed: "
                         f"{sorted(_SB3_TO_RLLIB) + list(_SB3_OTHER)}")
    n_steps = check_int("n_steps", hyperparams.get("n_steps", 2048), 1, MAX_N_STEPS)
    n_envs = check_int("n_envs", n_envs, 1, MAX_ENV_RUNNERS * MAX_ENVS_PER_RUNNER)
    if n_steps * n_envs > MAX_TRAIN_BATCH:  # RLlib holds the whole train batch in memory
        raise ValueError(f"n_steps={n_steps} x n_envs={n_envs} = {n_steps * n_envs} env steps per train batch is "
                         f"not allowed; at most {MAX_TRAIN_BATCH}")
    out = {}
    for sb, (rl, default) in _SB3_TO_RLLIB.items():
        v = hyperparams.get(sb, default)
        if sb in _INT_BOUNDS:
            out[rl] = check_int(sb, v, *_INT_BOUNDS[sb])
        else:
            lo, hi, lo_open = _REAL_BOUNDS[sb]
            out[rl] = check_real(sb, v, lo, hi, lo_open=lo_open)
    out.update(train_batch_size_per_learner=n_steps * n_envs, use_kl_loss=False, vf_clip_param=float("inf"),
               grad_clip_by="global_norm", use_gae=True, use_critic=True)
    return out


def ppo_config(env_id: str = "LMMPiano-v0", *, num_env_runners: int = 1, num_envs_per_env_runner: int = 8,
               env_kwargs: dict | None = None, hyperparams: dict | None = None, seed: int | None = 0,
               vectorize_mode: str = "vector_entry_point", num_cpus_per_env_runner: float = 1):
    """An RLlib ``PPOConfig`` (new API stack) for lmm_env task ``env_id``, ready for ``.build_algo()``.

    Args:
        env_id: a registered lmm_env task (it is registered with RLlib here, `register_envs`).
        num_env_runners: EnvRunner actors sampling in parallel (0: sample in the driver).
        num_envs_per_env_runner: keyboards each EnvRunner steps as one batch.
        env_kwargs: the env's keyword arguments (default: the ``ppo`` preset's, folk tunes
            trimmed to 12 s, plus ``reward`` if given).
        hyperparams: SB3 PPO hyperparameters (default: the ``ppo`` preset,
            ``agents/hyperparams/ppo.yml``), carried over by `rllib_ppo_settings`;
            ``policy_kwargs`` become `KeyConvRLModule`'s model_config.
        vectorize_mode: "vector_entry_point" (the batched twin), "sync" or "async" (copies of
            the single env, gymnasium's vector envs).
        seed: RLlib's seed (env seeds and module initialization); None: unseeded.
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from lmm_env.agents.training.sb3 import preset

    _check_task_id(env_id)
    num_env_runners = check_int("num_env_runners", num_env_runners, 0, MAX_ENV_RUNNERS)
    num_envs_per_env_runner = check_int("num_envs_per_env_runner", num_envs_per_env_runner, 1, MAX_ENVS_PER_RUNNER)
    if not isinstance(vectorize_mode, str) or vectorize_mode not in VECTORIZE_MODES:
        raise ValueError(f"vectorize_mode={short_repr(vectorize_mode)} is not allowed; "
                         f"use one of {list(VECTORIZE_MODES)}")
    seed = check_seed(seed)
    check_real("num_cpus_per_env_runner", num_cpus_per_env_runner, 0, 1024)
    for name, v in (("env_kwargs", env_kwargs), ("hyperparams", hyperparams)):
        if v is not None and not isinstance(v, dict):
            raise TypeError(f"{name}={short_repr(v)} is not allowed; pass a dict (or None for the ppo preset's)")
    base = preset("ppo")
    hyperparams = dict(base["hyperparams"] if hyperparams is None else hyperparams)
    env_kwargs = dict(base["env_kwargs"] if env_kwargs is None else env_kwargs)
    n_envs = max(1, num_env_runners) * num_envs_per_env_runner
    settings = rllib_ppo_settings(hyperparams, n_envs)
    policy_kwargs = hyperparams.get("policy_kwargs") or {}
    if not isinstance(policy_kwargs, dict):
        raise TypeError(f"hyperparams policy_kwargs={short_repr(policy_kwargs)} is not allowed; pass a dict of "
                        f"KeyConvPolicy's keywords {sorted(POLICY_KWARGS)}")
    _module_kwargs(policy_kwargs)  # now, not when each Learner builds the module
    register_envs(env_id)
    probe = gym.make(env_id, **env_kwargs)  # here, not first on a worker: a bad argument fails now, by name
    obs_space = probe.observation_space
    probe.close()
    keyconv = isinstance(obs_space, spaces.Dict) and {"score", "audio", "key_state"} <= set(obs_space.spaces)
    config = (
        PPOConfig()
        .environment(env_id, env_config=env_kwargs, normalize_actions=False, clip_actions=True)
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=num_envs_per_env_runner,
                     gym_env_vectorize_mode=vectorize_mode, rollout_fragment_length=int(hyperparams.get("n_steps", 2048)),
                     num_cpus_per_env_runner=num_cpus_per_env_runner)
        .training(**settings)
        .callbacks(RewardTermsCallback)
        .debugging(seed=seed)
    )
    if keyconv:
        config = config.rl_module(rl_module_spec=RLModuleSpec(
            module_class=KeyConvRLModule, model_config=dict(policy_kwargs)))
    else:  # LMMByEar-v0: no score over keys; RLlib's default MLP on the flattened Dict
        from ray.rllib.connectors.env_to_module import FlattenObservations

        config = config.env_runners(env_to_module_connector=lambda env, spaces=None, device=None: FlattenObservations())
    return config


# --------------------------------------------------------------------------- export / import


def _sb3_hyperparams(config) -> dict[str, Any]:
    """The SB3 PPO hyperparameters an RLlib PPOConfig made by `ppo_config` stands for."""
    out = {"n_steps": int(config.get_rollout_fragment_length())}
    for sb, (rl, _) in _SB3_TO_RLLIB.items():
        v = getattr(config, rl)
        out[sb] = int(v) if sb in ("batch_size", "n_epochs") else float(v)
    spec = config.rl_module_spec
    if spec.module_class is KeyConvRLModule:
        kw = _module_kwargs(spec.model_config)
        given = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items() if v != POLICY_KWARGS[k]}
        if given:
            out["policy_kwargs"] = given
    return out


def export_policy(algo, out, *, steps: int | None = None) -> Path:
    """Write the policy an RLlib PPO ``algo`` (built by `ppo_config`) is learning, as the
    package's safetensors policy (KeyConvPolicy's tensors under ``policy.``, the training
    checkpoint format of `lmm_env.agents.training.sb3` without optimizer state), atomically.

    ``lmm_env.agents.load_agent(out)`` plays it; loading never unpickles anything. The
    config records the env, its arguments, the SB3-named hyperparameters and, under
    ``"rllib"``, how it was trained. ``steps``: env steps to record (default: the
    algorithm's sampled env steps so far).
    """
    import ray
    from ray.rllib.core import DEFAULT_MODULE_ID

    from lmm_env.agents.training.checkpoints import CHECKPOINT_FORMAT, _write_atomic

    if not (hasattr(algo, "config") and hasattr(algo, "learner_group")):
        raise TypeError(f"algo={short_repr(algo)} is not allowed; pass the RLlib Algorithm that "
                        "ppo_config(...).build_algo() made")
    out = writable_file(out, "out")  # before the weights are gathered from the learners
    if steps is not None:
        steps = check_int("steps", steps, 0, (1 << 63) - 1)
    cfg = algo.config
    spec = cfg.rl_module_spec
    if spec.module_class is not KeyConvRLModule:
        raise ValueError(f"export_policy writes KeyConvRLModule policies; this algorithm trains {spec.module_class!r}")
    weights = algo.learner_group.get_weights()[DEFAULT_MODULE_ID]
    tensors = {f"policy.{k}": torch.as_tensor(np.asarray(v)).detach().cpu().contiguous() for k, v in weights.items()}
    if steps is None:
        steps = env_steps(algo)
    env_id = cfg.env
    n_envs = max(1, int(cfg.num_env_runners)) * int(cfg.num_envs_per_env_runner)
    config = {"env_id": env_id, "algo": "ppo", "policy": "KeyConvPolicy", "n_envs": n_envs,
              "seed": 0 if cfg.seed is None else int(cfg.seed), "env_kwargs": dict(cfg.env_config),
              "hyperparams": _sb3_hyperparams(cfg),
              "rllib": {"ray": ray.__version__, "num_env_runners": int(cfg.num_env_runners),
                        "num_envs_per_env_runner": int(cfg.num_envs_per_env_runner),
                        "gym_env_vectorize_mode": str(getattr(cfg.gym_env_vectorize_mode, "value",
                                                              cfg.gym_env_vectorize_mode))}}
    meta = {"format": CHECKPOINT_FORMAT, "config": json.dumps(config), "num_timesteps": str(int(steps)),
            "optimizers": "[]"}
    return _write_atomic(tensors, out, meta)


def env_steps(algo) -> int:
    """Env steps the algorithm's EnvRunners have sampled so far (lifetime)."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    peek = algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
    return int(peek)


def policy_state(path) -> dict[str, torch.Tensor]:
    """The KeyConvPolicy tensors of an lmm_env policy or training checkpoint (``.safetensors``,
    e.g. the shipped ``ppo-closed-loop`` or an `export_policy` file), named as
    `KeyConvRLModule`'s state dict: ``module.load_state_dict(policy_state(path))`` warm-starts
    the RLModule from it. Nothing is unpickled."""
    from lmm_env.agents.training.checkpoints import read_checkpoint

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"path={short_repr(path)} is not allowed; give the path of a .safetensors policy checkpoint")
    config, data, _ = read_checkpoint(path)
    if config.get("policy") != "KeyConvPolicy" or config.get("algo") not in ("ppo", "a2c"):
        raise ValueError(f"checkpoint {str(path)!r} holds a {config.get('policy')!r} for {config.get('algo')!r}; "
                         "KeyConvRLModule loads KeyConvPolicy checkpoints of ppo or a2c")
    return {k[len("policy."):]: v for k, v in data["tensors"].items() if k.startswith("policy.")}
