"""The natively batched twin of LMMPiano-v0, and an adapter to Stable-Baselines3's VecEnv.

``gym.make_vec("LMMPiano-v0", num_envs=N)`` builds `LMMPianoVectorEnv`: one `PianoSim`
steps all N keyboards, synth voices, features and rewards as arrays. Env ``i`` reset with
seed ``s + i`` plays the same episode as a single LMMPiano-v0 reset with that seed.

SB3 does not take gymnasium VectorEnvs: wrap one with `SB3VecEnv` (or call
`make_sb3_vec_env`).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from lmm_env._checks import check_int, check_seed, short_repr
from lmm_env.envs.core import PianoSim, check_n_envs
from lmm_env.envs.piano import PianoTaskEnv, check_reset_options, make_spaces


class PianoTaskVectorEnv(VectorEnv):
    """The batched twin of a `PianoTaskEnv`: a subclass sets ``sim_class`` (see `LMMPianoVectorEnv`)."""

    sim_class = PianoSim
    task_id = "LMMPiano-v0"
    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, record_audio: bool = False, render_mode: str | None = None,
                 backend: str = "numpy", device=None, **kwargs: Any):
        if render_mode is not None:
            raise ValueError(f"render_mode={short_repr(render_mode)}: the vector env does not render; "
                             "use the single env")
        check_n_envs(num_envs, "num_envs")
        # gym.make_vec passes these to every task's vector entry point: say what this one supports
        if backend != "numpy":
            hint = ("the torch world plays LMMPiano-v0 only" if backend == "torch"
                    else "use backend='numpy' (or 'torch' for LMMPiano-v0)")
            raise ValueError(f"backend={short_repr(backend)} is not available for {self.task_id}: {hint}; "
                             f"{self.task_id} runs on backend='numpy' (the default)")
        if device not in (None, "cpu"):
            raise ValueError(f"device={short_repr(device)} is not available for {self.task_id}: it runs on the CPU "
                             "(backend='numpy'); only LMMPiano-v0 has a torch world for other devices")
        self.sim = self.sim_class(num_envs, record_audio=record_audio, **kwargs)
        self.num_envs = self.sim.n_envs
        self.single_observation_space, self.single_action_space = make_spaces(self.sim)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._started = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        self._reset_envs(seed, options)
        return self.sim.observation(), {}

    def _reset_envs(self, seed, options) -> None:
        """Start every env's episode in ``self.sim``: env i seeded ``seed + i`` (or ``seed[i]``;
        None keeps its generator), with its share of the reset ``options``."""
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            seeds = [check_seed(seed) + i for i in range(self.num_envs)]
        else:
            if not isinstance(seed, (list, tuple, np.ndarray)):
                raise ValueError(f"seed={short_repr(seed)} is not allowed; use None, an int >= 0 (env i gets seed + i) "
                                 "or a list of one per env")
            seeds = [check_seed(s, f"seed[{i}]") for i, s in enumerate(seed)]
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs; give one per env")
        per_env = self._per_env_options(options)
        for i, s in enumerate(seeds):
            if s is not None or not self._started:
                self._rngs[i] = seeding.np_random(s)[0]
            self.sim.reset_env(i, self._rngs[i], *per_env[i])
        self._started = True

    reset_options = PianoTaskEnv.reset_options

    def _per_env_options(self, options) -> list[tuple]:
        """(score_index, score) for each env: one value for every env, or a list with one per env."""
        options = check_reset_options(options, self.reset_options)
        cols = []
        for name in self.reset_options:
            v = options.get(name)
            if name == "score_index" and isinstance(v, np.ndarray):
                v = v.tolist()  # one index per env, as a list (a 0-d array: one for all)
            if isinstance(v, (list, tuple)) and not (name == "score" and len(v) and isinstance(v[0], (int, float))):
                if len(v) != self.num_envs:
                    raise ValueError(f"reset option {name}= has {len(v)} entries for {self.num_envs} envs; give one "
                                     "value for every env or one per env (None: drawn as usual)")
                cols.append(list(v))
            else:
                cols.append([v] * self.num_envs)
        return list(zip(*cols))

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        sim = self.sim
        rewards, truncated, terms = sim.step(np.asarray(actions))
        infos: dict[str, Any] = {"reward_terms": dict(terms)}
        terminations = np.zeros(self.num_envs, dtype=bool)
        ended = np.flatnonzero(truncated)
        if not len(ended):
            return sim.observation(), rewards, terminations, truncated, infos
        # SAME_STEP autoreset: ended envs start their next episode now.
        self._end_episodes(infos, ended, truncated, sim.observation())
        return sim.observation(), rewards, terminations, truncated, infos

    def _end_episodes(self, infos: dict, ended: np.ndarray, truncated: np.ndarray, final_obs: dict) -> None:
        """Put the ended envs' metrics and final observations into ``infos`` (gymnasium's vector
        convention) and start their next episodes in ``self.sim``."""
        sim = self.sim
        per_env = {int(i): sim.episode_metrics(int(i)) for i in ended}
        names = next(iter(per_env.values())).keys()
        infos["metrics"] = {n: np.array([per_env[i][n] if i in per_env else 0.0 for i in range(self.num_envs)])
                            for n in names}
        infos["_metrics"] = truncated.copy()
        final = np.empty(self.num_envs, dtype=object)
        for i in ended:
            final[i] = {k: v[i] for k, v in final_obs.items()}
        infos["final_obs"] = final
        infos["_final_obs"] = truncated.copy()
        infos["final_info"] = {"metrics": infos["metrics"], "_metrics": truncated.copy()}
        infos["_final_info"] = truncated.copy()
        for i in ended:
            sim.reset_env(int(i), self._rngs[i])

    def env_index(self, i) -> int:
        """``i`` if it names one of the envs, else a ValueError."""
        return check_int("env index i", i, 0, self.num_envs - 1)

    def performance(self, i: int):
        """Env ``i``'s performance so far as PrettyMIDI."""
        return self.sim.performance_midi(self.env_index(i))

    def episode_audio(self, i: int) -> np.ndarray:
        return self.sim.episode_audio(self.env_index(i))


class LMMPianoVectorEnv(PianoTaskVectorEnv):
    """``num_envs`` LMMPiano-v0 envs stepped as one batch (same arguments as `LMMPianoEnv`).

    Autoreset is gymnasium's ``AutoresetMode.SAME_STEP`` (declared in ``metadata``): an
    episode's last step already returns the next episode's first observation, and the
    final one is in ``infos["final_obs"]`` (as SB3 expects). Every env keeps stepping in
    lockstep, with no wasted step per episode.

    Extra arguments:
        record_audio: keep each env's episode audio (default False: it costs memory).
        synth_threads: threads the piano's voice loop splits the envs over (default 1;
            numba's thread pool). Worth it with dense play on idle cores (2 threads: +25%
            env-steps/s at 256 envs of random play on 2 cores, BENCHMARKS.md "Dense play");
            each env's sound is the same for any value.

    ``infos`` follow gymnasium's vector convention: ``infos["reward_terms"][name]`` is an
    array over envs; ``infos["metrics"][name]`` with mask ``infos["_metrics"]`` holds the
    metrics of envs whose episode ended this step.
    """

    sim_class = PianoSim
