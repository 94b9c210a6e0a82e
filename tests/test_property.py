"""Every accepted argument combination gives a sane world (issue 13): a property test.

For combinations drawn by hypothesis over keys, frame_rate, sample_rate, n_mels, lookahead,
layout, pedal, synth, reward, max_seconds, tail and the vector env's num_envs, either the
constructor refuses them with a ValueError / ScoreError naming the bad value, or a whole
episode of random actions gives finite observations inside the observation space and finite
rewards.
"""
import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.score import ScoreError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

REWARDS = ["key_match", "audio_match", "ear_match", "closed_loop", {"key_match": 0.5, "audio_match": 0.5}]


@st.composite
def settings_(draw):
    lo = draw(st.integers(21, 100))
    hi = draw(st.integers(lo, min(108, lo + 40)))
    sr = draw(st.sampled_from([8000, 16000, 22050, 44100]))
    fr = draw(st.sampled_from([10, 20, 25, 40, 50, 100, 33, 441]))
    return dict(keys=(lo, hi), sample_rate=sr, frame_rate=fr,
                n_mels=draw(st.sampled_from([8, 32, 64, 128])), lookahead=draw(st.integers(0, 12)),
                layout=draw(st.sampled_from(["identity", "shuffled"])), pedal=draw(st.booleans()),
                synth=draw(st.sampled_from(["piano", "soundfont"])), reward=draw(st.sampled_from(REWARDS)),
                max_seconds=draw(st.sampled_from([0.5, 1.0])), tail=draw(st.sampled_from([0.0, 0.25, 0.5])),
                score="exercises-scale")


def _episode(env, rng, vector):
    space = env.single_observation_space if vector else env.observation_space
    for _ in range(200):
        obs, r, term, trunc, _ = env.step(env.action_space.sample())
        assert np.isfinite(r).all(), r
        for k, v in obs.items():
            assert np.isfinite(v).all(), k
            vals = v if vector else v[None]
            for x in vals:
                assert space[k].contains(np.asarray(x, space[k].dtype)), (k, x.min(), x.max())
        if np.any(term) or np.any(trunc):
            break


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(kw=settings_(), num_envs=st.sampled_from([1, 3]))
def test_every_accepted_setting_gives_a_sane_world(kw, num_envs):
    rng = np.random.default_rng(0)
    try:
        env = (gym.make("LMMPiano-v0", **kw) if num_envs == 1
               else gym.make_vec("LMMPiano-v0", num_envs=num_envs, **kw))
    except (ValueError, ScoreError) as exc:
        text = str(exc)
        assert "=" in text or "not allowed" in text or "must" in text, text  # it names the bad value
        hypothesis.event(f"refused: {type(exc).__name__}")
        return
    hypothesis.event("played an episode")
    try:
        env.reset(seed=0)  # a reward trained at another timing was refused above, not here
        env.action_space.seed(0)
        _episode(env, rng, num_envs > 1)
    finally:
        env.close()
