"""Baseline agents with SB3's ``predict`` signature, so one evaluation loop serves all."""
from __future__ import annotations

import numpy as np
from gymnasium import spaces

from lmm_env._checks import check_int, check_seed, short_repr

_SILENT = -1.0


def _task_name(env) -> str:
    spec = getattr(env, "spec", None) or getattr(getattr(env, "unwrapped", None), "spec", None)
    return getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__


def _score_sim(env, who: str):
    """The sim of an lmm_env task whose observation holds the score (one env or a vector env)."""
    if env is None:
        raise TypeError(f"{who} needs the env it will play, got None")
    sim = getattr(getattr(env, "unwrapped", None), "sim", None)
    if sim is None:
        raise TypeError(f"{short_repr(env)} is not an LMMPiano env (it has no .sim); baselines need LMMPiano-v0")
    space = env.single_observation_space if hasattr(env, "single_observation_space") else env.observation_space
    if not (isinstance(space, spaces.Dict) and "score" in space.spaces):  # LMMByEar-v0 observes only audio
        raise ValueError(f"{who} reads obs['score'], which {_task_name(env)} does not observe; it plays the score "
                         "tasks (LMMPiano-v0, LMMDecipher-v0, LMMImprovise-v0)")
    return sim


class RandomAgent:
    """Uniform random actions from the env's action space (seeded)."""

    def __init__(self, env, seed: int | None = None):
        if env is None:
            raise TypeError("RandomAgent needs the env it will play (for its action space), got None")
        seed = check_seed(seed)
        space = env.single_action_space if hasattr(env, "single_action_space") else env.action_space
        if not isinstance(space, spaces.Box):
            raise TypeError(f"RandomAgent needs a Box action space, got {space!r}")
        self.space = space
        self.rng = np.random.default_rng(seed)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        batch = np.asarray(observation["key_state"]).ndim == 2
        shape = (len(observation["key_state"]),) + self.space.shape if batch else self.space.shape
        action = self.rng.uniform(self.space.low, self.space.high, size=shape).astype(np.float32)
        return action, state


class ScoreReaderAgent:
    """Reads the score observation and presses exactly the target keys at target velocities.

    It reads row 0 of ``obs["score"]`` (the frame this step plays): held keys go down with
    the target velocity (``a = (v - 1) / 126`` strikes at exactly ``v``), others go up.
    With a shuffled layout it reads the env's hidden pitch->key map, so it is an oracle:
    with any layout it plays every score perfectly. With a pedal it never uses it.
    """

    oracle = True  # reads the hidden layout of a shuffled keyboard

    def __init__(self, env):
        sim = _score_sim(env, "ScoreReaderAgent")
        self.keyboard = kb = sim.keyboard
        self.n_actions = kb.n_actions
        self.pedal = kb.pedal
        self.column_of_action  # fails now, not mid-episode, where the layout may not be read

    @property
    def column_of_action(self) -> np.ndarray:
        """Score column (pitch - lo) of each action: (n_keys,), or (n_envs, n_keys) once envs differ.

        Read afresh each step: with ``relayout="episode"`` the layout changes at every reset."""
        kb = self.keyboard
        pitches = kb.reveal() if kb.sealed else kb.pitch_of_action
        return pitches - kb.lo

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        score = np.asarray(observation["score"])
        batch = score.ndim == 4
        if not batch:
            score = score[None]
        cols = self.column_of_action
        if cols.ndim == 1:
            held = score[:, 0, 0, cols] > 0.5
            vel = np.rint(score[:, 2, 0, cols] * 127.0)
        else:  # one layout per env
            held = np.take_along_axis(score[:, 0, 0], cols, axis=1) > 0.5
            vel = np.rint(np.take_along_axis(score[:, 2, 0], cols, axis=1) * 127.0)
        action = np.full((score.shape[0], self.n_actions), _SILENT, dtype=np.float32)
        keys = action[:, : cols.shape[-1]]
        # max(...) keeps velocity 1 (a = 0) a press: 1 + round(126 * 1e-4) = 1.
        keys[held] = np.maximum((vel[held] - 1.0) / 126.0, 1e-4)
        return (action if batch else action[0]), state


class WrongPlayAgent:
    """The ScoreReaderAgent with one deliberate mistake, for checking that rewards rank play.

    Kinds (``kind=``):

    * ``"semitone"``: every note a semitone higher (the key one action index up; a note on
      the top key is dropped).
    * ``"late"``: every action ``delay`` steps late (default 2); silence before.
    * ``"velocity"``: loud notes (velocity > 64) played at velocity 20, soft ones at 110.
    * ``"extra"``: on every frame with notes, also holds the key ``interval`` semitones
      (default 6, a tritone) above the highest target key, at the same velocity.

    Needs the identity layout (it reasons in pitch). Works for one env or a vector env.
    """

    KINDS = ("semitone", "late", "velocity", "extra")

    def __init__(self, env, kind: str, delay: int = 2, interval: int = 6):
        if not isinstance(kind, str) or kind not in self.KINDS:
            raise ValueError(f"kind={short_repr(kind)} is not allowed; use one of {self.KINDS}")
        sim = _score_sim(env, "WrongPlayAgent")
        if sim.keyboard.layout != "identity":
            raise ValueError("WrongPlayAgent needs layout='identity'")
        delay = check_int("delay", delay, 1, 10_000)
        interval = check_int("interval", interval, 1, 87)  # semitones above the top key, within the 88
        self.reader = ScoreReaderAgent(env)
        self.kind, self.delay, self.interval = kind, delay, interval
        self.n_keys = self.reader.column_of_action.shape[-1]
        self._queue: list[np.ndarray] = []

    def reset(self) -> None:
        """Forget queued actions (call at episode start for ``kind="late"``)."""
        self._queue = []

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        action, _ = self.reader.predict(observation)
        a = np.array(action, dtype=np.float32, copy=True)
        keys = a[..., : self.n_keys]
        if self.kind == "semitone":
            shifted = np.full_like(keys, _SILENT)
            shifted[..., 1:] = keys[..., :-1]
            keys[...] = shifted
        elif self.kind == "late":
            self._queue.append(a.copy())
            if len(self._queue) > self.delay:
                a = self._queue.pop(0)
            else:
                a = np.full_like(a, _SILENT)
        elif self.kind == "velocity":
            down = keys > 0
            loud = keys > (64 - 1) / 126.0
            keys[down & loud] = (20 - 1) / 126.0
            keys[down & ~loud] = (110 - 1) / 126.0
        else:  # extra
            flat = keys.reshape(-1, self.n_keys)
            for row in flat:
                on = np.flatnonzero(row > 0)
                if on.size:
                    k = on[-1] + self.interval
                    if k >= self.n_keys:
                        k = on[0] - self.interval
                    if 0 <= k < self.n_keys:
                        row[k] = row[on[-1]]
        return a, state
