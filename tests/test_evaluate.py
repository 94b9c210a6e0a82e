"""lmm_env.agents.benchmark.evaluate: one loop for baselines and SB3 models, same pieces for every agent."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lmm_env.agents import ScoreReaderAgent, evaluate, load_agent

KW = dict(score="folk", max_seconds=4.0, reward={"key_match": 1.0, "audio_match": 1.0})


def test_score_reader_scores_perfectly_and_random_does_not():
    good = evaluate("score-reader", episodes=3, env_kwargs=KW, progress=False)
    bad = evaluate("random", episodes=3, env_kwargs=KW, progress=False)
    assert [r["score"] for r in good.rows] == [r["score"] for r in bad.rows]  # same pieces, in order
    assert len({r["score"] for r in good.rows}) == 3
    g, b = good.mean(), bad.mean()
    assert g["note_f1"] == 1.0 and g["frame_f1"] == 1.0 and g["velocity_error"] == 0.0
    assert b["note_f1"] < 0.2 and g["return"] > b["return"]
    assert g["key_match"] == pytest.approx(g["return"] - g["audio_match"])
    table = good.markdown("score-reader")
    assert table.splitlines()[2].startswith("| score-reader | 3 | 1.000")


def test_any_predict_object_is_an_agent_and_bad_names_fail():
    class Silent:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return -np.ones(88, np.float32), state

    t = evaluate(Silent(), episodes=1, env_kwargs=KW, progress=False)
    assert t.rows[0]["note_f1"] == 0.0 and math.isnan(t.rows[0]["velocity_error"])
    assert math.isnan(t.mean()["velocity_error"])
    with pytest.raises(ValueError, match="score-reader"):
        evaluate("perfect", episodes=1, env_kwargs=KW, progress=False)
    with pytest.raises(ValueError, match="episodes"):
        evaluate("random", episodes=0, env_kwargs=KW)


def test_load_agent_by_name():
    import gymnasium as gym

    env = gym.make("LMMPiano-v0", **KW)
    assert isinstance(load_agent("score-reader", env), ScoreReaderAgent)
