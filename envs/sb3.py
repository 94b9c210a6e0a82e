"""`SB3VecEnv`: use a gymnasium VectorEnv (SAME_STEP autoreset) as a Stable-Baselines3 VecEnv."""
from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from lmm_env._checks import check_seed, short_repr

_NEEDS_NUMPY = ("Stable-Baselines3 takes numpy arrays and the torch world returns torch tensors: use "
                "backend='numpy' (the default), add as_numpy=True (the torch world's arrays copied to the host "
                "each step), or train on the torch world (make_vector_env(..., backend='torch')) with a torch learner")


class SB3VecEnv(VecEnv):
    """Adapter from a gymnasium ``VectorEnv`` to SB3's ``VecEnv``.

    SB3 rejects gymnasium VectorEnvs; this wraps one whose ``metadata["autoreset_mode"]``
    is ``SAME_STEP`` (as `LMMPianoVectorEnv` is, or ``gym.make_vec(...,
    vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})``). Per-env infos get SB3's
    keys: ``"terminal_observation"``, ``"TimeLimit.truncated"``, plus the env's own entries
    (``reward_terms``, ``metrics``) unbatched.
    """

    def __init__(self, venv: gym.vector.VectorEnv):
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs a vector env with autoreset_mode SAME_STEP, got {mode!r}; make it with "
                "gym.make_vec(..., vector_kwargs={'autoreset_mode': gymnasium.vector.AutoresetMode.SAME_STEP})"
            )
        if getattr(venv.unwrapped, "as_numpy", True) is False:  # the torch world: tensors fail at the first step
            raise ValueError(f"SB3VecEnv cannot wrap {type(venv.unwrapped).__name__} with as_numpy=False: "
                             f"{_NEEDS_NUMPY}")
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self):
        seeds = self._seeds
        seed = None if all(s is None for s in seeds) else [s for s in seeds]
        obs, info = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [self._env_info(info, i) for i in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos = []
        for i in range(self.num_envs):
            d = self._env_info(info, i)
            if dones[i]:
                d["terminal_observation"] = info["final_obs"][i]
                d["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos.append(d)
        return obs, rewards.astype(np.float32), dones, infos

    @staticmethod
    def _env_info(info: dict, i: int) -> dict[str, Any]:
        """Row ``i`` of a gymnasium vector info dict (masked entries only where present)."""
        out = {}
        for k, v in info.items():
            if k.startswith("_") or k in ("final_obs", "final_info"):
                continue
            mask = info.get("_" + k)
            if mask is not None and not mask[i]:
                continue
            if isinstance(v, dict):
                out[k] = {kk: (vv[i].item() if hasattr(vv[i], "item") else vv[i]) for kk, vv in v.items()
                          if not kk.startswith("_")}
            elif isinstance(v, np.ndarray):
                out[k] = v[i].item() if v.dtype != object else v[i]
        return out

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self.venv.unwrapped, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self.venv.unwrapped, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        method = getattr(self.venv.unwrapped, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def make_sb3_vec_env(num_envs: int = 8, env_id: str = "LMMPiano-v0", seed: int | None = None, **env_kwargs):
    """A batched LMMPiano env ready for SB3: ``PPO("MultiInputPolicy", make_sb3_vec_env(8))``.

    ``env_id``: one of the lmm_env tasks (`lmm_env.TASK_IDS`); ``seed``: None or an int >= 0
    (env i gets ``seed + i``), both checked before the envs are built."""
    from lmm_env import TASK_IDS

    seed = check_seed(seed)  # SB3 would take True as 1, and -1 would fail only at the first reset
    if not isinstance(env_id, str) or env_id not in TASK_IDS:
        raise ValueError(f"env_id={short_repr(env_id)} is not allowed; use one of {list(TASK_IDS)}")
    backend = env_kwargs.get("backend", "numpy")
    if not (isinstance(backend, str) and backend == "numpy") and not env_kwargs.get("as_numpy"):
        # refused before the world is built (it would fail only at the first step)
        raise ValueError(f"backend={short_repr(backend)} is not allowed in make_sb3_vec_env: {_NEEDS_NUMPY}")
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
    env = SB3VecEnv(venv)
    if seed is not None:
        env.seed(seed)
    return env
