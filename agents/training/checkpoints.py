"""Checkpoints of trained policies: safetensors tensors plus a JSON config, written atomically,
read back without running anything a file says.

A checkpoint names its algorithm, policy and task only from fixed tables (`ALGOS`,
`POLICIES`, ``lmm_env.TASK_IDS``); every model it describes is first built on torch's meta
device and compared with the file's header, and every size in its config is bounded, so
neither code nor memory is decided by a file. `read_checkpoint`, `load_trained` (the whole
SB3 model, to resume), `load_policy` (the policy alone, to play), `export_policy`.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np

from lmm_env import TASK_IDS  # the only env ids a checkpoint may name (nothing is imported for them)
from lmm_env._checks import check_int, short_repr, writable_file

# "sac" is SB3's SAC extended to train the per-key categorical "KeyLevelPolicy" (agents/sac.py).
ALGOS = {"ppo": "stable_baselines3:PPO", "a2c": "stable_baselines3:A2C", "sac": "lmm_env.agents.training.sac:SAC"}
POLICIES = {"MultiInputPolicy": None, "KeyConvPolicy": "lmm_env.agents.learned.policies:KeyConvPolicy",
            "KeyLevelPolicy": "lmm_env.agents.training.sac:KeyLevelSACPolicy"}
_POLICY_ALGOS = {"KeyLevelPolicy": ("sac",)}
CHECKPOINT_FORMAT = "lmm_env-sb3-1"


def _import(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)



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


def _build_model(cls, policy, env, seed: int, verbose: int, hyperparams: dict, where: str):
    """``cls(policy, env, **hyperparams)`` with SB3's assertions on them (n_steps > 1, ...) as a named ValueError."""
    try:
        return cls(policy, env, seed=seed, verbose=verbose, tensorboard_log=None, **hyperparams)
    except (AssertionError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} {short_repr(hyperparams)} are not accepted by {cls.__name__}: "
                         f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc) else ''}") from None
