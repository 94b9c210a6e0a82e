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

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lmm_env import TASK_IDS  # the only env ids a checkpoint may name (nothing is imported for them)
from lmm_env._checks import check_bool, check_int, short_repr, writable_dir, writable_file

# "sac" is SB3's SAC extended to train the per-key categorical "KeyLevelPolicy" (agents/sac.py).
ALGOS = {"ppo": "stable_baselines3:PPO", "a2c": "stable_baselines3:A2C", "sac": "lmm_env.agents.training.sac:SAC"}
POLICIES = {"MultiInputPolicy": None, "KeyConvPolicy": "lmm_env.agents.learned.policies:KeyConvPolicy",
            "KeyLevelPolicy": "lmm_env.agents.training.sac:KeyLevelSACPolicy"}
_POLICY_ALGOS = {"KeyLevelPolicy": ("sac",)}
CHECKPOINT_FORMAT = "lmm_env-sb3-1"


def _import(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


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


def algo_class(algo: str):
    """The SB3 class for a name ("ppo", "a2c", "sac")."""
    key = str(algo).lower()
    if key not in ALGOS:
        raise ValueError(f"algo={algo!r} is not allowed; use one of {sorted(ALGOS)}")
    return _import(ALGOS[key])


def _policy(policy: str, algo: str | None = None):
    """The policy argument for SB3: a name SB3 resolves per algorithm ("KeyConvPolicy" is
    `KeyConvPolicy` in PPO/A2C and `KeyConvSACPolicy` in SAC once its module is imported;
    "KeyLevelPolicy" exists only in SAC)."""
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is not allowed; use one of {sorted(POLICIES)}")
    allowed = _POLICY_ALGOS.get(policy)
    if algo is not None and allowed is not None and str(algo).lower() not in allowed:
        raise ValueError(f"policy={policy!r} is for algo in {list(allowed)}, not algo={algo!r}; "
                         "use KeyConvPolicy with PPO or A2C")
    if POLICIES[policy] is not None:
        _import(POLICIES[policy])  # registers the alias with PPO, A2C and SAC
    return policy


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


def save_checkpoint(model, path, config: dict) -> Path:
    """Policy + optimizer tensors (safetensors) with ``config`` and the step count, atomically."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"policy.{k}": v.detach().cpu().contiguous() for k, v in model.policy.state_dict().items()}
    if torch.is_tensor(getattr(model, "log_ent_coef", None)):
        tensors["sac.log_ent_coef"] = model.log_ent_coef.detach().cpu().contiguous()
    groups = []
    for oname, opt in _optimizers(model).items():
        state = opt.state_dict()
        for idx, st in state["state"].items():
            for name, value in st.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{oname}.{idx}.{name}"] = t.detach().cpu().contiguous()
        groups.append([oname, state["param_groups"]])
    meta = {"format": CHECKPOINT_FORMAT, "config": json.dumps(config), "num_timesteps": str(model.num_timesteps),
            "optimizers": json.dumps(groups)}
    return _write_atomic(tensors, path, meta)


def _write_atomic(tensors: dict, path: Path, meta: dict) -> Path:
    """safetensors to ``path`` through a temporary file: a crash mid-write leaves the old file."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # readable by everyone, like the package's other data
        os.replace(tmp, path)
    except BaseException:  # an interrupt or a full disk: leave no half-written file behind
        tmp.unlink(missing_ok=True)
        raise
    return path


TMP_SUFFIX = ".tmp"


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete checkpoint temporaries a killed process left in ``folder`` (a kill -9 mid-write); returns them."""
    stale = sorted(Path(folder).glob(f"*.safetensors{TMP_SUFFIX}")) if Path(folder).is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return stale


def _optimizers(model) -> dict:
    out = {}
    if hasattr(model.policy, "optimizer"):  # PPO and A2C: one optimizer for the whole policy
        out["policy"] = model.policy.optimizer
    for name in ("actor", "critic"):  # SAC keeps one optimizer per network
        net = getattr(model, name, None)
        if net is not None and hasattr(net, "optimizer"):
            out[name] = net.optimizer
    if getattr(model, "ent_coef_optimizer", None) is not None:  # SAC's learned entropy coefficient
        out["ent_coef"] = model.ent_coef_optimizer
    return out


def export_policy(checkpoint, out) -> Path:
    """A training checkpoint without its optimizer state: what `load_policy` and `load_agent`
    need to act (how ``agents/weights/ppo-closed-loop.safetensors`` was made from the headline
    run's ``best.safetensors``). Written atomically, readable by everyone."""
    from safetensors import safe_open

    if not str(out).endswith(".safetensors"):
        raise ValueError(f"out={short_repr(str(out))} must end in .safetensors (load_agent recognises policies by it)")
    out = writable_file(out, "out")
    read_checkpoint(checkpoint)  # a clear error for anything that is not a training checkpoint
    with safe_open(str(checkpoint), "pt") as f:
        meta = dict(f.metadata(), optimizers="[]")
        tensors = {k: f.get_tensor(k).contiguous() for k in f.keys() if k.startswith("policy.")}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _write_atomic(tensors, out, meta)


def read_checkpoint(path) -> tuple[dict, dict, int]:
    """(config, tensors, num_timesteps) of a training checkpoint; a clear error if it is not one.

    Nothing the file names is imported or executed: ``env_id`` must be one of lmm_env's
    registered tasks (`TASK_IDS`; gymnasium's ``"module:Id"`` form would import the module),
    ``algo`` and ``policy`` come from fixed tables, and every size the config holds is bounded
    (`_check_config`) before anything is built from it."""
    from safetensors import safe_open

    from lmm_env.lm.checkpoint import check_finite, header_shapes

    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"checkpoint path {short_repr(path)} is not allowed; give the path of a .safetensors file")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a directory, not a file; give the path of a .safetensors file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    shapes = header_shapes(path)  # a clear error for anything that is not safetensors
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not an lmm_env training checkpoint (format {CHECKPOINT_FORMAT})")
    try:
        config = json.loads(meta["config"])
        optimizers = json.loads(meta.get("optimizers", "[]"))
        steps = check_int("num_timesteps", int(meta["num_timesteps"]), 0, 10**13)
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        raise ValueError(f"checkpoint {str(path)!r} has broken metadata ({type(exc).__name__}: {exc}); "
                         "it was not written by lmm_env.agents.training.sb3 or was edited") from None
    missing = [k for k in _CONFIG_KEYS if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} has a config without {missing}; it was not written by "
                         "lmm_env.agents.training.sb3 or was edited")
    _check_config(config, path)
    if not isinstance(optimizers, list):
        raise ValueError(f"checkpoint {str(path)!r} has broken optimizer metadata: {short_repr(optimizers)}")
    stray = sorted(k for k in shapes if not k.startswith(_TENSOR_PREFIXES))
    if stray:
        raise ValueError(f"checkpoint {str(path)!r} holds tensors {stray[:5]} that no part of a training checkpoint "
                         f"uses (names start with {list(_TENSOR_PREFIXES)}); the file was edited")
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    check_finite(path, tensors)
    return config, {"tensors": tensors, "optimizers": optimizers}, steps


_CONFIG_KEYS = ("algo", "env_id", "env_kwargs", "hyperparams", "policy", "n_envs", "seed")
_TENSOR_PREFIXES = ("policy.", "optim.", "sac.")
MAX_N_ENVS = 4096  # a checkpoint's n_envs (envs load_trained builds when given none)
MAX_SEED = 2**32 - 1  # what SB3 and torch take
MAX_MODEL_BYTES = 4 << 30  # a policy's parameters

# Sizes in hyperparams that decide what SB3 allocates (rollout and replay buffers, minibatches).
_HYPER_LIMITS = {"n_steps": 1 << 20, "batch_size": 1 << 20, "buffer_size": 10_000_000, "n_epochs": 10_000,
                 "gradient_steps": 100_000, "train_freq": 1 << 20, "learning_starts": 1 << 30, "n_critics": 16}
_MAX_LAYERS = 64  # of any list of layer sizes in policy_kwargs (net_arch, actor_channels, ...)


def _check_config(config: dict, path) -> None:
    """A training checkpoint's config, checked before anything is built from it (names the file and the field)."""
    where = f"checkpoint {str(path)!r}"
    env_id = config["env_id"]
    if env_id not in TASK_IDS:
        raise ValueError(f"{where} names env_id={short_repr(env_id)}; a checkpoint may name only lmm_env's registered "
                         f"tasks {list(TASK_IDS)} (anything else could import code named by the file)")
    if str(config["algo"]).lower() not in ALGOS:
        raise ValueError(f"{where} names algo={short_repr(config['algo'])}; allowed: {sorted(ALGOS)}")
    if config["policy"] not in POLICIES:
        raise ValueError(f"{where} names policy={short_repr(config['policy'])}; allowed: {sorted(POLICIES)}")
    for key in ("env_kwargs", "hyperparams"):
        if not isinstance(config[key], dict) or not all(isinstance(k, str) for k in config[key]):
            raise ValueError(f"{where} has {key}={short_repr(config[key])}; it must be a JSON object of arguments")
    if config["env_kwargs"].get("pairs") == "all":  # the ear of every pair: hours of fitting named by a file
        raise ValueError(f"{where} asks for env_kwargs.pairs='all' (an ear fitted on every train piece, hours of "
                         "work); a checkpoint may name K up to 64: retrain with pairs=64 or fewer")
    try:
        check_int("n_envs", config["n_envs"], 1, MAX_N_ENVS)
        check_int("seed", config["seed"], 0, MAX_SEED)
        hyper = config["hyperparams"]
        for key, hi in _HYPER_LIMITS.items():
            v = hyper.get(key)
            if isinstance(v, list) and key == "train_freq":  # SB3's (n, "step") form
                v = v[0] if v else None
            if v is not None:
                check_int(f"hyperparams.{key}", v, 0 if key == "learning_starts" else 1, hi)
        kwargs = hyper.get("policy_kwargs", {})
        if not isinstance(kwargs, dict):
            raise ValueError(f"hyperparams.policy_kwargs={short_repr(kwargs)} must be a JSON object")
        for key, v in kwargs.items():
            layers = v.values() if isinstance(v, dict) else [v]  # net_arch may be {"pi": [...], "vf": [...]}
            for layer in layers:
                if isinstance(layer, list) and len(layer) > _MAX_LAYERS:
                    raise ValueError(f"hyperparams.policy_kwargs.{key} lists {len(layer)} layers; at most {_MAX_LAYERS}")
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _state_of(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _load_state(module, state: dict, path, what: str) -> None:
    """``module.load_state_dict(state)`` with an error that names the file and what does not fit."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ValueError(f"checkpoint {str(path)!r}: its {what} does not fit the model its own config builds "
                         f"({first}); the file is damaged or was edited") from None


def _policy_class(config: dict):
    """The SB3 policy class a checkpoint's (algo, policy) names."""
    cls = algo_class(config["algo"])
    name = _policy(config["policy"], config["algo"])
    return cls.policy_aliases[name]


def _policy_kwargs(config: dict) -> dict:
    """The keyword arguments SB3 passes the policy for this config (``use_sde`` only when the run set it)."""
    hyper = config["hyperparams"]
    kwargs = dict(hyper.get("policy_kwargs", {}))
    if hyper.get("use_sde"):
        kwargs["use_sde"] = True
    return kwargs


def _policy_skeleton(config: dict, observation_space, action_space, where: str):
    """(policy class, its kwargs, its state dict built on the meta device): what the config's policy
    would hold, with no memory allocated. ``where`` names the source of the config in errors."""
    import torch

    from lmm_env.lm.checkpoint import skeleton_state

    policy_cls = _policy_class(config)
    kwargs = _policy_kwargs(config)
    # SB3 moves sub-networks to ``self.device`` while building: a subclass whose device is meta keeps them there
    skeleton_cls = type(f"Skeleton{policy_cls.__name__}", (policy_cls,), {"device": property(lambda self: torch.device("meta"))})
    try:
        state = skeleton_state(lambda: skeleton_cls(observation_space, action_space, lambda _: 0.0, **kwargs))
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        raise ValueError(f"{where}: its policy_kwargs {short_repr(kwargs)} do not build a {policy_cls.__name__}: "
                         f"{type(exc).__name__}: {exc}") from None
    return policy_cls, kwargs, state


def _check_policy_fits(path, skeleton: dict, tensors: dict) -> None:
    """The file's ``policy.*`` tensors against the skeleton its config builds (shapes and dtypes):
    a config that asks for a layer the file does not hold is refused before anything is allocated."""
    from lmm_env.lm.checkpoint import check_fits, tensor_dtypes

    held = _state_of(tensors, "policy.")
    check_fits(path, {k: tuple(v.shape) for k, v in skeleton.items()}, {k: tuple(v.shape) for k, v in held.items()},
               "policy", expected_dtypes=tensor_dtypes(skeleton), held_dtypes=tensor_dtypes(held))


def _machine_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def _check_memory(cls, config: dict, observation_space, action_space, skeleton: dict, where: str) -> None:
    """Refuse hyperparameters whose buffers or policy cannot fit in this machine's memory, before SB3
    allocates them: the rollout buffer (n_steps x n_envs transitions), SAC's replay buffer (buffer_size,
    observations stored twice) and the policy's parameters (``skeleton``: `_policy_skeleton`'s state)."""
    import inspect

    hyper = config["hyperparams"]
    spaces_ = getattr(observation_space, "spaces", {"obs": observation_space})
    obs = sum(int(np.prod(sp.shape)) for sp in spaces_.values())
    act = int(np.prod(action_space.shape))
    defaults = inspect.signature(cls.__init__).parameters
    need, what = 0, []
    if "n_steps" in defaults:
        n_steps = int(hyper.get("n_steps", defaults["n_steps"].default))
        need += n_steps * int(config["n_envs"]) * (obs + act + 8) * 4
        what.append(f"n_steps={n_steps} x n_envs={config['n_envs']}")
    if "buffer_size" in defaults:
        size = int(hyper.get("buffer_size", defaults["buffer_size"].default))
        need += size * (2 * obs + act + 4) * 4
        what.append(f"buffer_size={size}")
    limit = _machine_bytes()
    if need > limit:
        raise ValueError(f"{where}: {' and '.join(what)} transitions of {obs + act} numbers take {need / 2**30:.1f} GiB, "
                         f"more than this machine's {limit / 2**30:.0f} GiB; lower them")
    size = sum(v.numel() * v.element_size() for v in skeleton.values())
    if size > MAX_MODEL_BYTES:
        raise ValueError(f"{where}: policy_kwargs {short_repr(_policy_kwargs(config))} build a "
                         f"{_policy_class(config).__name__} of {size / 2**30:.1f} GiB of parameters; at most "
                         f"{MAX_MODEL_BYTES / 2**30:g} GiB")


def load_trained(path, env=None):
    """Rebuild the SB3 model a checkpoint describes and load its weights (no unpickling)."""
    import torch

    config, data, steps = read_checkpoint(path)
    if env is None:
        from lmm_env.envs import make_sb3_vec_env

        env = make_sb3_vec_env(config["n_envs"], env_id=config["env_id"], seed=config["seed"],
                               **config["env_kwargs"])
    elif not hasattr(env, "observation_space") or not hasattr(env, "num_envs"):
        raise ValueError(f"env={short_repr(env)} is not a vector env; pass an SB3 VecEnv (e.g. "
                         "lmm_env.envs.make_sb3_vec_env) or None to build the checkpoint's own")
    where = f"checkpoint {str(path)!r}"
    _, _, skeleton = _policy_skeleton(config, env.observation_space, env.action_space, where)
    _check_memory(algo_class(config["algo"]), config, env.observation_space, env.action_space, skeleton, where)
    tensors = data["tensors"]
    _check_policy_fits(path, skeleton, tensors)
    cls = algo_class(config["algo"])
    model = _build_model(cls, _policy(config["policy"], config["algo"]), env, config["seed"], 0,
                         config["hyperparams"], f"checkpoint {str(path)!r}: its hyperparams")
    _load_state(model.policy, _state_of(tensors, "policy."), path, "policy")
    if "sac.log_ent_coef" in tensors and torch.is_tensor(getattr(model, "log_ent_coef", None)):
        with torch.no_grad():
            model.log_ent_coef.copy_(tensors["sac.log_ent_coef"])
    opts = _optimizers(model)
    for entry in data["optimizers"]:
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in opts):
            raise ValueError(f"checkpoint {str(path)!r} has optimizer metadata {short_repr(entry)}; this model has "
                             f"optimizers {sorted(opts)}")
        oname, groups = entry
        prefix = f"optim.{oname}."
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith(prefix):
                idx, name = k[len(prefix):].split(".", 1)
                if not idx.isdigit():
                    raise ValueError(f"checkpoint {str(path)!r} has an optimizer tensor {k!r} without a parameter index")
                state.setdefault(int(idx), {})[name] = v
        _load_state(opts[oname], {"state": state, "param_groups": groups}, path, f"optimizer {oname!r}")
    model.num_timesteps = steps
    return model


# Env arguments that choose what is played and how it is judged, not the spaces a policy acts in:
# `load_policy` leaves them out (no corpus, recording, SoundFont or ear is loaded to learn two shapes).
_CONTENT_ARGS = ("score", "split", "target", "reference", "target_synth", "target_sample_rate", "prompt", "synth",
                 "pairs", "ear", "reward", "max_seconds")


def _spaces_env(config: dict):
    """An env of the checkpoint's task with its shape arguments (keys, lookahead, n_mels, pedal, ...), cheap to build."""
    import gymnasium as gym

    kwargs = {k: v for k, v in config["env_kwargs"].items() if k not in _CONTENT_ARGS}
    if config["env_id"] == IMPROVISE_ID:
        kwargs["prompt"] = None
    else:
        kwargs["score"] = "exercises-scale"  # generated: no corpus to convert
    return gym.make(config["env_id"], reward="key_match", **kwargs)


def load_policy(path):
    """Just the policy of a training checkpoint, for acting: ``policy.predict(obs, deterministic=True)``.

    Lighter than `load_trained` (no vector env, no optimizer): the spaces come from one env
    made with the checkpoint's env arguments, the weights from the file (nothing unpickled,
    nothing imported; the policy is checked against the file's tensors before it is built).
    """
    import torch

    import lmm_env  # noqa: F401  (registers the task ids)

    config, data, _ = read_checkpoint(path)
    env = _spaces_env(config)
    try:
        policy_cls, policy_kwargs, skeleton = _policy_skeleton(config, env.observation_space, env.action_space,
                                                               f"checkpoint {str(path)!r}")
        _check_policy_fits(path, skeleton, data["tensors"])
        policy = policy_cls(env.observation_space, env.action_space, lambda _: 0.0, **policy_kwargs)
    finally:
        env.close()
    _load_state(policy, _state_of(data["tensors"], "policy."), path, "policy")
    policy.set_training_mode(False)
    policy.env_id = config["env_id"]  # the task it was trained on (load_agent checks it against the env)
    # and the world's timing: its observations mean other things at another frame or sample rate
    policy.world = {"frame_rate": float(config["env_kwargs"].get("frame_rate", 20)),
                    "sample_rate": int(config["env_kwargs"].get("sample_rate", 16000))}
    with torch.no_grad():
        return policy


# --------------------------------------------------------------------------- callbacks


IMPROVISE_ID = "LMMImprovise-v0"


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


def _build_model(cls, policy, env, seed: int, verbose: int, hyperparams: dict, where: str):
    """``cls(policy, env, **hyperparams)`` with SB3's assertions on them (n_steps > 1, ...) as a named ValueError."""
    try:
        return cls(policy, env, seed=seed, verbose=verbose, tensorboard_log=None, **hyperparams)
    except (AssertionError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} {short_repr(hyperparams)} are not accepted by {cls.__name__}: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}") from None


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
