"""Rewards of the world issue: `KeyMatchReward` (motion space) and `AudioMatchReward` (heard audio)."""
from __future__ import annotations

import numpy as np

from lmm_env.rewards.base import BatchStepContext, EpisodeContext, RewardModel, _positive


class KeyMatchReward(RewardModel):
    """Motion-space reward in the manner of RoboPianist's key-press reward.

    It reads the key state, not the audio: use it for baselines and debugging, not as the
    closed-loop signal. Per step::

        0.5 * (fraction of the target's held keys that are down; 1 if none are wanted)
      + 0.5 * (1 if no key outside the target is down, else 0)

    so a step is worth 1.0 exactly when the keys down are the target's keys. (RoboPianist
    uses a Gaussian tolerance on key travel; here keys are binary, so the tolerance is exact.)
    """

    name = "key_match"
    uses_motion = True

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        c = ctx.score_context
        target = ctx.target_held[:, c]
        down = ctx.key_down
        n_target = target.sum(axis=1)
        hit = (down & target).sum(axis=1)
        recall = np.where(n_target > 0, hit / np.maximum(n_target, 1), 1.0)
        no_wrong = ~(down & ~target).any(axis=1)
        return 0.5 * recall + 0.5 * no_wrong


class AudioMatchReward(RewardModel):
    """How close the heard audio is to the score played through the same synth.

    At reset the target score is rendered through the env's synth and cut into the env's
    log-mel frames; each step compares the heard frame with the target frame::

        reward = exp(-mean_over_bands(|heard - target|) / scale)

    in (0, 1], 1.0 when the audio matches. ``scale`` (nats of log-mel) sets how fast the
    reward falls with distance; the default 2.0 keeps a missing or extra note clearly
    below a right one.
    """

    name = "audio_match"

    def __init__(self, scale: float = 2.0):
        self.scale = _positive("scale", scale)
        self._targets = np.zeros((1, 0, 0), np.float32)  # (n_envs, steps, n_mels), grown on demand

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._targets = np.zeros((n_envs, 0, 0), np.float32)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        feats = episode.target_features()
        n_envs, cap, n_mels = self._targets.shape
        if len(feats) > cap or feats.shape[1] != n_mels:
            grown = np.zeros((n_envs, max(len(feats), 2 * cap), feats.shape[1]), np.float32)
            if feats.shape[1] == n_mels:
                grown[:, :cap] = self._targets
            self._targets = grown
        self._targets[env_index, : len(feats)] = feats

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        if len(ctx.env_ids) == 1:  # a basic index is cheaper than a fancy one
            target = self._targets[int(ctx.env_ids[0]), int(ctx.step[0])][None]
        else:
            target = self._targets[ctx.env_ids, ctx.step]
        diff = ctx.features - target
        distance = np.abs(diff, out=diff).sum(axis=1, dtype=np.float64)
        return np.exp(distance * (-1.0 / (self.scale * diff.shape[1])))
