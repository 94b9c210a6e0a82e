"""`BabbleAgent`: the floor of LMMDecipher-v0. Press every key once, listen, then read the score."""
from __future__ import annotations

import numpy as np

_SILENT = -1.0


def listening_sim(env, who: str, velocity: int):
    """The sim of an lmm_env task that records its audio, for an agent that decodes keys by ear."""
    sim = getattr(env.unwrapped, "sim", None)
    if sim is None:
        raise TypeError(f"{env!r} is not an lmm_env task (it has no .sim); {who} plays LMMDecipher-v0")
    if not sim.record_audio:
        raise ValueError(f"{who} listens to the episode's audio; make the env with record_audio=True")
    if not (isinstance(velocity, int) and 1 <= velocity <= 127):
        raise ValueError(f"velocity={velocity!r} must be an int in [1, 127]")
    return sim


def ear_synth(sim) -> str:
    """Whose K pairs the ear is fitted on: the world's instrument when pairs exist for it, else the piano."""
    return getattr(sim, "pairs_instrument", None) or "piano"


class BabbleAgent:
    """Works out a hidden keyboard by ear, then plays the score through the map it inferred.

    At the start of its first episode (every episode with ``relayout="episode"``) it
    presses each key of the range once, alone, for one step at ``velocity``, with a step
    up between keys (``2 * n_keys`` steps of babbling, the cost it pays; the score goes on
    meanwhile). It then listens to what it heard (``env.unwrapped.episode_audio()``, the
    audio of its own presses: it never reads the layout), reads each press's pitch with the
    ear of ``pairs`` K (the analytic ear for K = 0; or the ``ear`` handed over: an ear object or
    the file of a saved one, `lmm_env.agents._ears`), and assigns pitches to keys by a
    one-to-one matching of the ear's activations (Hungarian algorithm, so two keys never
    claim one pitch). From then on it plays like `ScoreReaderAgent` through that map.

    Attributes after babbling: ``pitch_of_action`` (the inferred map), ``babble_steps``
    (steps spent babbling so far, over all episodes).
    """

    oracle = False

    def __init__(self, env, pairs=None, velocity: int = 100, ear=None):
        from lmm_env.agents._ears import resolve_ear

        sim = listening_sim(env, "BabbleAgent", velocity)
        self.env = env
        self.sim = sim
        self.n_keys = sim.keyboard.n_keys
        self.n_actions = sim.keyboard.n_actions
        self.lo = sim.keyboard.lo
        self.every_episode = sim.relayout == "episode"
        self.ear = resolve_ear(pairs, ear, synth=ear_synth(sim), sample_rate=sim.sample_rate, progress=True)
        self.pairs = pairs
        self.velocity = velocity
        self.pitch_of_action: np.ndarray | None = None
        self.babble_steps = 0
        self._k = 0
        self._start = 0

    def reset(self) -> None:
        """A new episode: babble again if the layout changes every episode."""
        if self.every_episode:
            self.pitch_of_action = None
        self._k = 0

    @property
    def babbling(self) -> bool:
        return self.pitch_of_action is None

    def _infer(self) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment

        audio = self.env.unwrapped.episode_audio()
        B, W = self.sim.block_size, self.ear.window
        pad = np.concatenate([np.zeros(W, np.float32), audio])
        acts = np.zeros((self.n_keys, 88), np.float32)
        for lag in (1, 2):  # windows ending with the strike block and the block after it
            ends = W + (self._start + 2 * np.arange(self.n_keys) + lag) * B
            frames = np.stack([pad[e - W: e] for e in ends])
            acts += self.ear.activations(frames)
        pitches = np.arange(self.lo, self.lo + self.n_keys)
        cost = -np.log(acts[:, pitches - 21] + 1e-6)
        rows, cols = linear_sum_assignment(cost)
        out = np.empty(self.n_keys, np.int64)
        out[rows] = pitches[cols]
        return out

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        if episode_start is not None and bool(np.any(episode_start)) and self._k:
            self.reset()
        action = np.full(self.n_actions, _SILENT, np.float32)
        if self.babbling:
            if self._k == 0:
                self._start = int(self.sim.t[0])
            j, phase = divmod(self._k, 2)
            if j < self.n_keys:
                if phase == 0:
                    action[j] = (self.velocity - 1) / 126.0
                self._k += 1
                self.babble_steps += 1
                return action, state
            self.pitch_of_action = self._infer()
        self._k += 1
        score = np.asarray(observation["score"])
        cols = self.pitch_of_action - self.lo
        held = score[0, 0, cols] > 0.5
        vel = np.rint(score[2, 0, cols] * 127.0)
        keys = action[: self.n_keys]
        keys[held] = np.maximum((vel[held] - 1.0) / 126.0, 1e-4)
        return action, state
