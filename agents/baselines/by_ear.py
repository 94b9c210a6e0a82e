"""Baselines of LMMByEar-v0: the reference oracle and the gradient (analysis-by-synthesis) agent."""
from __future__ import annotations

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.agents.baselines.gradient import GradientAgent, _single_env_sim

_SILENT = -1.0


def frame_action(frames, t: int, cols: np.ndarray, n_actions: int) -> np.ndarray:
    """The action that plays frame ``t`` of ``frames`` (a `FrameScore`) on the identity keyboard:
    held keys down at their velocity (``a = (v - 1) / 126``), every other key up (silent past the end)."""
    action = np.full(n_actions, _SILENT, np.float32)
    if t < frames.T:
        held = frames.held[t, cols]
        vel = frames.velocity[t, cols].astype(np.float32)
        keys = action[: len(cols)]
        keys[held] = np.maximum((vel[held] - 1.0) / 126.0, 1e-4)
    return action


class ReferenceOracle:
    """Plays the target's hidden reference notes (an oracle: the task hides them)."""

    oracle = True

    def __init__(self, env):
        sim = _single_env_sim(env, "ReferenceOracle")
        if not hasattr(sim, "target_feats"):
            raise TypeError(f"{short_repr(env)} is not LMMByEar-v0; ReferenceOracle plays LMMByEar-v0")
        self.sim = sim
        self.cols = np.arange(sim.keyboard.lo, sim.keyboard.hi + 1) - 21
        self._ref = None
        self._frames = None

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        sim = self.sim
        ref = sim.references[0]
        if ref is None:
            raise ValueError("this target has no reference notes; the oracle has nothing to read")
        if ref is not self._ref:
            self._ref, self._frames = ref, ref.frames(sim.frame_rate)
        return frame_action(self._frames, int(sim.t[0]), self.cols, sim.keyboard.n_actions), state


class ByEarGradientAgent(GradientAgent):
    """`GradientAgent` on LMMByEar-v0: listens to the whole target at the episode's start, then plays.

    Its initial guess comes from the ear of ``pairs`` K (the analytic ear for K = 0), or from
    ``ear`` (an ear object or the file of a saved one; not both)."""

    oracle = False

    def __init__(self, env, pairs=None, ear=None, **kwargs):
        from lmm_env.agents._ears import check_ear, resolve_ear

        _single_env_sim(env, "ByEarGradientAgent")
        if not hasattr(env.unwrapped, "target_audio"):
            raise TypeError(f"{short_repr(env)} is not LMMByEar-v0; ByEarGradientAgent plays LMMByEar-v0")
        if "init" in kwargs:
            raise TypeError("ByEarGradientAgent takes no init: its initial guess is the ear of `pairs` (or `ear`)")
        if ear is not None and pairs is not None:
            resolve_ear(pairs, ear)  # refuses both, before the search is set up
        if ear is not None:
            ear = check_ear(ear, env.unwrapped.sim.sample_rate)
        kwargs.setdefault("progress", False)
        # every argument is checked before the ear of K pairs is loaded (or fitted: minutes)
        super().__init__(env, **kwargs)
        self.init = ear if ear is not None else resolve_ear(pairs, synth=getattr(env.unwrapped.sim, "pairs_instrument", None) or "piano", progress=True)
        self._heard = None

    def reset(self) -> None:
        super().reset()
        self._heard = None

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        target = self.env.unwrapped.target_audio()
        if target is not self._heard or (episode_start is not None and bool(np.any(episode_start))):
            self.listen(target)
            self._heard = target
        return super().predict(observation, state, None, deterministic)
