"""ImproviseReward's optional key term (key_weight; off by default)."""
import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the envs)
from lmm_env.rewards.improvise import ImproviseReward


def _env(key_weight):
    reward = ImproviseReward(key_weight=key_weight)
    env = gym.make("LMMImprovise-v0", prompt="folk", prompt_seconds=4.0, length_seconds=6.0, split="test",
                   reward=reward)
    env.reset(seed=0)
    return env, reward


def _free_play_return(key_weight, pitches_of):
    scale = _env(1.0)[1]._scale[0].copy()  # the prompt key's scale (the same episode for every run)
    assert 5 <= scale.sum() <= 8
    env, _ = _env(key_weight)
    pitches = pitches_of(scale)
    total, t, free = 0.0, 0, 0
    while True:
        a = np.full(env.action_space.shape, -1.0, np.float32)
        prompt = t < env.unwrapped.sim.prompt_steps
        if not prompt and free % 5 < 3:  # a note every 0.25 s, cycling through the pitches
            a[pitches[(free // 5) % len(pitches)] - 21] = 0.6
        free += not prompt
        _, r, term, trunc, info = env.step(a)
        if not prompt:
            total += r
        t += 1
        if term or trunc:
            return total


def test_key_term_defaults_off_and_favours_the_prompt_key():
    assert ImproviseReward().key_weight == 0.0
    with pytest.raises(ValueError, match="key_weight"):
        ImproviseReward(key_weight=-1.0)

    def in_key(scale):
        return [60 + pc for pc in range(12) if scale[pc]] * 2

    def out_of_key(scale):
        outside = [60 + pc for pc in range(12) if not scale[pc]]
        assert len(outside) >= 3
        return outside * 3

    off = _free_play_return(0.0, out_of_key), _free_play_return(0.0, in_key)
    on = _free_play_return(2.0, out_of_key), _free_play_return(2.0, in_key)
    assert on[1] > 0 and on[0] < 0.2 * on[1]  # out of key earns (almost) nothing with the term
    assert off[0] > 0.2 * off[1]  # and something without it


def test_entropy_term_defaults_off_and_penalizes_spread_pitch_classes():
    assert ImproviseReward().max_pc_entropy is None
    with pytest.raises(ValueError, match="max_pc_entropy"):
        ImproviseReward(max_pc_entropy=0.0)

    def run(max_pc_entropy):
        reward = ImproviseReward(max_pc_entropy=max_pc_entropy)
        env = gym.make("LMMImprovise-v0", prompt=None, length_seconds=6.0, reward=reward)
        env.reset(seed=0)
        pitches = [60, 62, 64, 65, 67, 69, 71, 61, 63, 66, 68, 70] * 3  # twelve pitch classes, H = log2(12)
        total, t = 0.0, 0
        while True:
            a = np.full(env.action_space.shape, -1.0, np.float32)
            if t % 5 < 3:
                a[pitches[(t // 5) % len(pitches)] - 21] = 0.6
            _, r, term, trunc, _ = env.step(a)
            total, t = total + r, t + 1
            if term or trunc:
                return total

    free, capped = run(None), run(2.0)
    assert free > 0 and capped < 0.3 * free  # (the first 8 notes are not judged)
