"""LMMPiano-v0 for thousands of envs on one device: `LMMPianoTorchVectorEnv` and `make_vector_env`.

``make_vector_env(4096, backend="torch", device="cuda")`` builds `LMMPianoTorchVectorEnv`,
whose observations, rewards and flags are torch tensors on the device (numpy with
``as_numpy=True``); ``backend="numpy"`` builds the numpy `LMMPianoVectorEnv`. Both play the
same episodes for the same seeds (see `lmm_env.envs.torch_sim`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lmm_env._checks import check_bool, short_repr
from lmm_env.envs.core import check_n_envs
from lmm_env.envs.piano import make_spaces
from lmm_env.envs.piano_vector import LMMPianoVectorEnv, PianoTaskVectorEnv
from lmm_env.envs.torch_sim import TorchPianoSim

BACKENDS = ("numpy", "torch")


class LMMPianoTorchVectorEnv(VectorEnv):
    """``num_envs`` LMMPiano-v0 envs stepped as one batch of torch tensors on ``device``.

    The world is `LMMPianoVectorEnv`'s (a `PianoSim` draws and scores the episodes); the
    per-step path (keyboard, synth voices, log-mel, rewards) runs in torch on the device
    (`TorchPianoSim`). For the same seeds and actions, env i plays the same episode as env
    i of ``gym.make_vec("LMMPiano-v0", num_envs=N)``: identical score and key-state
    observations, log-mel and rewards within ``TORCH_TOLERANCE`` (1e-3).

    ## Action Space
    ``Box(-1, 1, (num_envs, n_keys), float32)`` as in LMMPiano-v0: key ``i`` is down while
    ``a[i] > 0`` and strikes with velocity ``1 + round(126 a[i])``; a torch tensor (on the
    env's ``device`` or the CPU) or a numpy array. Wrong shapes, non-float dtypes and tensors on
    another device raise ValueError; NaN/inf raise too when ``validate_actions`` (default: on
    CPU only, see `TorchPianoSim`; unchecked, NaN acts as key up and +-inf as the bound).

    ## Observation Space
    LMMPiano-v0's ``Dict`` batched: ``"score"`` (num_envs, 3, lookahead + 1, n_keys),
    ``"audio"`` (num_envs, n_mels) log-mel of the last step, ``"key_state"`` (num_envs,
    n_actions); float32 tensors on ``device`` (numpy arrays with ``as_numpy=True``).

    ## Rewards
    (num_envs,) float32 on the device (float64 numpy with ``as_numpy=True``). ``reward`` is
    one of ``key_match``, ``audio_match``, ``ear_match``, ``score_lm``, ``audio_lm``,
    ``closed_loop`` (default) or a ``{name: weight}`` dict of them; other rewards raise
    ValueError at construction (use the numpy env). ``infos["reward_terms"][name]``: every
    term, as LMMPianoVectorEnv reports it.

    ## Episode End
    As LMMPiano-v0: truncation after the score plus ``tail``; no termination. Autoreset is
    ``AutoresetMode.SAME_STEP``: an episode's last step returns the next episode's first
    observation; the final one is in ``infos["final_obs"]`` (an object array of per-env
    dicts, None for envs that go on, mask ``infos["_final_obs"]``); the episode's metrics in
    ``infos["metrics"][name]`` (numpy, mask ``infos["_metrics"]``) and ``infos["final_info"]``.

    ## Arguments
    * ``num_envs``: envs in the batch (1,024-16,384 is what this env is for).
    * ``device`` ("cpu"): the torch device every per-step tensor lives on.
    * ``as_numpy`` (False): return numpy arrays instead of tensors.
    * ``mix`` ("compact"): "compact" mixes only the sounding voices (one device sync a step
      for their count), "dense" every voice slot (no sync, more work); see `TorchPianoSim`.
    * ``validate_actions`` (None: on CPU only): check actions for NaN/inf (a device sync per step).
    * every other argument of `LMMPianoEnv` (``score``, ``split``, ``frame_rate``, ``keys``,
      ``layout``, ``pedal``, ``max_seconds``, ...), except ``synth`` (only "piano") and
      ``record_audio`` (only False).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
    # the numpy twin's episode bookkeeping, on the same PianoSim (self.sim)
    reset_options = PianoTaskVectorEnv.reset_options
    _per_env_options = PianoTaskVectorEnv._per_env_options
    _reset_envs = PianoTaskVectorEnv._reset_envs
    _end_episodes = PianoTaskVectorEnv._end_episodes
    env_index = PianoTaskVectorEnv.env_index

    def __init__(self, num_envs: int = 1, device="cpu", as_numpy: bool = False,
                 validate_actions: bool | None = None, render_mode: str | None = None, **kwargs: Any):
        if render_mode is not None:
            raise ValueError(f"render_mode={short_repr(render_mode)}: the vector env does not render; "
                             "use the single env")
        check_bool("as_numpy", as_numpy)
        check_n_envs(num_envs, "num_envs")
        self.world = TorchPianoSim(num_envs, device=device, validate_actions=validate_actions, **kwargs)
        self.sim = self.world.sim
        self.device = self.world.device
        self.as_numpy = bool(as_numpy)
        self.num_envs = self.sim.n_envs
        self.single_observation_space, self.single_action_space = make_spaces(self.sim)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._started = False

    def _out(self, obs: dict[str, torch.Tensor]):
        if self.as_numpy:
            return {k: v.cpu().numpy() for k, v in obs.items()}
        return obs

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._reset_envs(seed, options)
        self.world.upload(np.arange(self.num_envs))
        return self._out(self.world.observation()), {}

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        world = self.world
        rewards, truncated, terms = world.step(actions)
        ended = np.flatnonzero(truncated)
        infos: dict[str, Any] = {"reward_terms": self._values(terms)}
        if len(ended):
            world.download_history(ended)  # the metrics read the ended envs' key history
            self._end_episodes(infos, ended, truncated, self._out(world.observation()))  # SAME_STEP autoreset
            world.upload(ended)
        obs = self._out(world.observation())
        terminations = np.zeros(self.num_envs, dtype=bool)
        if self.as_numpy:
            return obs, rewards.double().cpu().numpy(), terminations, truncated, infos
        flags = torch.from_numpy(np.stack([terminations, truncated])).to(self.device, non_blocking=True)
        return obs, rewards, flags[0], flags[1], infos

    def _values(self, terms: dict[str, torch.Tensor]) -> dict:
        if self.as_numpy:
            return {k: v.double().cpu().numpy() for k, v in terms.items()}
        return dict(terms)

    def performance(self, i: int):
        """Env ``i``'s performance so far as PrettyMIDI."""
        return self.world.performance_midi(self.env_index(i))


def make_vector_env(num_envs: int = 1, backend: str = "numpy", device=None, **kwargs: Any) -> VectorEnv:
    """LMMPiano-v0 batched: ``backend="numpy"`` (`LMMPianoVectorEnv`) or ``"torch"`` (`LMMPianoTorchVectorEnv`).

    ``device`` (torch only; default "cpu") is where the torch world's tensors live; the
    numpy world takes None or "cpu". Other arguments go to the env (see each class).
    """
    if backend == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"device={short_repr(device)} needs backend='torch'; the numpy world runs on the CPU")
        extra = {k for k in ("as_numpy", "validate_actions") if k in kwargs}
        if extra:
            raise ValueError(f"{sorted(extra)} are arguments of backend='torch'; the numpy world returns numpy arrays")
        return LMMPianoVectorEnv(num_envs, **kwargs)
    if backend == "torch":
        return LMMPianoTorchVectorEnv(num_envs, device="cpu" if device is None else device, **kwargs)
    raise ValueError(f"backend={short_repr(backend)} is not allowed; use one of {list(BACKENDS)}")
