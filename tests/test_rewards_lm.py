"""Closed-loop LM rewards, plug-in LMs (TorchLMReward), diversity metrics, WrongPlayAgent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import lmm_env  # noqa: F401
from lmm_env import rewards
from lmm_env.agents import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.metrics import episode_metrics, note_density, pitch_class_entropy
from lmm_env.rewards import RewardError, RewardModel, TorchLMReward
from lmm_env.score import Score

ROOT = Path(__file__).resolve().parents[1]
SHORT = dict(max_seconds=4.0, tail=0.25)


def run_episode(env, agent, index=0):
    obs, _ = env.reset(seed=index, options={"score_index": index})
    if hasattr(agent, "reset"):
        agent.reset()
    total, terms = 0.0, {}
    while True:
        action, _ = agent.predict(obs)
        obs, r, term, trunc, info = env.step(action)
        total += r
        for k, v in info["reward_terms"].items():
            terms[k] = terms.get(k, 0.0) + v
        if term or trunc:
            return total, terms, info["metrics"]


# --------------------------------------------------------------------------- metrics


def test_pitch_class_entropy_and_note_density():
    one = Score.from_notes([(60, 0.0, 0.5, 80), (72, 0.5, 1.0, 80)])  # one pitch class
    assert pitch_class_entropy(one) == 0.0
    twelve = Score.from_notes([(60 + i, i * 0.1, i * 0.1 + 0.1, 80) for i in range(12)])
    assert pitch_class_entropy(twelve) == pytest.approx(np.log2(12))
    two = Score.from_notes([(60, 0.0, 0.5, 80), (62, 0.5, 1.0, 80)])
    assert pitch_class_entropy(two) == pytest.approx(1.0)
    assert note_density(twelve, 2.0) == pytest.approx(6.0)
    empty = Score.from_notes([])
    assert pitch_class_entropy(empty) == 0.0 and note_density(empty, 1.0) == 0.0
    with pytest.raises(ValueError, match="duration"):
        note_density(two, 0.0)
    m = episode_metrics(np.zeros((20, 88), bool), np.zeros((20, 88), bool), empty, two, duration=1.0)
    assert m["note_density"] == 0.0 and m["target_note_density"] == 2.0
    assert m["target_pitch_class_entropy"] == pytest.approx(1.0)


def test_env_reports_diversity_metrics_and_score_index():
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward="key_match", **SHORT)
    _, _, m = run_episode(env, ScoreReaderAgent(env), index=1)
    assert m["note_density"] == pytest.approx(m["target_note_density"])
    assert m["pitch_class_entropy"] == pytest.approx(m["target_pitch_class_entropy"])
    names = set()
    for i in range(3):
        _, info = env.reset(options={"score_index": i})
        names.add(info["score_name"])
    assert len(names) == 3
    with pytest.raises(ValueError, match="score_index"):
        env.reset(options={"score_index": 10**6})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"piece": 0})


# --------------------------------------------------------------------------- TorchLMReward


class RepeatLM(torch.nn.Module):
    """Categorical LM over 4 tokens that expects the last token again: logits 2 on it, 0 elsewhere."""

    def forward(self, tokens):
        return 2.0 * torch.nn.functional.one_hot(tokens, 4).float()


def step_parity(ctx):
    return (ctx.step % 2).astype(np.int64)  # 0, 1, 0, 1, ... (a stand-in for a heard token)


def test_torch_lm_reward_is_the_log_prob_of_the_heard_token():
    model = TorchLMReward(RepeatLM(), step_parity, kind="categorical", context=3, start=0, name="repeat_lm")
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=model, **SHORT)
    env.reset(seed=0)
    logz = np.log(np.exp(2.0) + 3.0)
    got = [env.step(env.action_space.sample())[1] for _ in range(4)]
    # step 0: token 0 after start 0 (expected) -> 2 - logZ; then tokens alternate: never the last one.
    assert got[0] == pytest.approx(2.0 - logz)
    assert got[1:] == pytest.approx([0.0 - logz] * 3)
    # A new episode starts from `start` again.
    env.reset(seed=1)
    assert env.step(env.action_space.sample())[1] == pytest.approx(2.0 - logz)


class BitLM(torch.nn.Module):
    def forward(self, frames):  # (n, T, 2) -> logits: bit 0 likely on, bit 1 likely off
        return torch.tensor([3.0, -3.0]).expand(frames.shape[0], frames.shape[1], 2)


def test_torch_lm_reward_bernoulli_and_log_prob_outputs():
    feat = lambda ctx: np.tile(np.array([[1.0, 0.0]], np.float32), (len(ctx), 1))  # noqa: E731
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=TorchLMReward(BitLM(), feat, kind="bernoulli"),
                   **SHORT)
    env.reset(seed=0)
    r = env.step(env.action_space.sample())[1]
    assert r == pytest.approx(2 * np.log(1 / (1 + np.exp(-3.0))))

    class LogProbLM(torch.nn.Module):
        def forward(self, frames):
            return torch.nn.functional.logsigmoid(BitLM()(frames))

    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=TorchLMReward(LogProbLM(), feat, kind="bernoulli",
                                                                               output="log_probs"), **SHORT)
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1] == pytest.approx(r)


def test_torch_lm_reward_errors_name_the_problem():
    with pytest.raises(ValueError, match="kind"):
        TorchLMReward(RepeatLM(), step_parity, kind="gaussian")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchLMReward(lambda x: x, step_parity)
    bad = TorchLMReward(RepeatLM(), lambda ctx: np.full(len(ctx), 9, np.int64), name="bad_lm")
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=bad, **SHORT)
    env.reset(seed=0)
    with pytest.raises(RewardError, match="bad_lm.*vocabulary"):
        env.step(env.action_space.sample())


def test_registered_plug_in_reward_by_name_and_in_a_mix():
    rewards.register("test_repeat_lm", lambda: TorchLMReward(RepeatLM(), step_parity, name="test_repeat_lm"),
                     overwrite=True)
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward={"key_match": 1.0, "test_repeat_lm": 0.5}, **SHORT)
    env.reset(seed=0)
    _, r, _, _, info = env.step(env.action_space.sample())
    assert set(info["reward_terms"]) == {"key_match", "test_repeat_lm"}
    assert r == pytest.approx(info["reward_terms"]["key_match"] + 0.5 * info["reward_terms"]["test_repeat_lm"])


def test_non_motion_rewards_never_see_the_keys():
    seen = []

    class Spy(RewardModel):
        name = "spy"

        def batch(self, ctx):
            seen.append(ctx.key_down)
            return np.zeros(len(ctx))

    env = gym.make("LMMPiano-v0", score="exercises-scale", reward={"key_match": 1.0, Spy(): 1.0}, **SHORT)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert seen == [None]


# --------------------------------------------------------------------------- WrongPlayAgent


def test_wrong_play_agents_make_the_stated_mistake():
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward="key_match", **SHORT)
    obs, _ = env.reset(seed=0, options={"score_index": 0})
    right, _ = ScoreReaderAgent(env).predict(obs)
    on = np.flatnonzero(right > 0)
    assert on.size
    semi, _ = WrongPlayAgent(env, "semitone").predict(obs)
    assert np.array_equal(np.flatnonzero(semi > 0), on + 1)
    vel, _ = WrongPlayAgent(env, "velocity").predict(obs)
    assert np.array_equal(np.flatnonzero(vel > 0), on) and not np.allclose(vel[on], right[on])
    extra, _ = WrongPlayAgent(env, "extra").predict(obs)
    assert set(np.flatnonzero(extra > 0)) > set(on)
    late = WrongPlayAgent(env, "late", delay=2)
    assert not (late.predict(obs)[0] > 0).any() and not (late.predict(obs)[0] > 0).any()
    assert np.array_equal(late.predict(obs)[0], right)
    with pytest.raises(ValueError, match="kind"):
        WrongPlayAgent(env, "sloppy")


# --------------------------------------------------------------------------- closed loop (shipped models)


def test_closed_loop_is_the_default_and_reports_every_term():
    env = gym.make("LMMPiano-v0", score="folk", split="test", **SHORT)
    assert env.unwrapped.reward_model.name == "closed_loop" or "closed_loop" in env.unwrapped.reward_model.parts
    env.reset(seed=0)
    _, r, _, _, info = env.step(env.action_space.sample())
    terms = info["reward_terms"]
    for k in ("closed_loop", "ear_match", "score_lm", "audio_lm", "ear_pitch", "ear_loudness"):
        assert k in terms and np.isfinite(terms[k])
    assert r == pytest.approx(terms["ear_match"] + 0.5 * terms["score_lm"] + 0.5 * terms["audio_lm"])
    assert not env.unwrapped.reward_model.uses_motion


def test_closed_loop_ranks_correct_over_wrong_over_random():
    env = gym.make("LMMPiano-v0", score="folk", split="test", max_seconds=8.0)
    for i in range(2):
        correct, _, m = run_episode(env, ScoreReaderAgent(env), i)
        assert m["note_f1"] == 1.0
        rand, _, _ = run_episode(env, RandomAgent(env, seed=i), i)
        for kind in WrongPlayAgent.KINDS:
            wrong, _, _ = run_episode(env, WrongPlayAgent(env, kind), i)
            assert correct > wrong > rand, (i, kind, correct, wrong, rand)


def test_closed_loop_refuses_a_frame_rate_its_models_were_not_trained_at():
    with pytest.raises(ValueError, match="frame_rate=40.*use sample_rate=16000, frame_rate=20"):
        gym.make("LMMPiano-v0", score="exercises-scale", frame_rate=40, **SHORT)


def test_vector_env_closed_loop_matches_single_envs():
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, score="exercises-mixed", max_seconds=3.0)
    obs, _ = venv.reset(seed=[5, 6])
    singles = [gym.make("LMMPiano-v0", score="exercises-mixed", max_seconds=3.0) for _ in range(2)]
    for e, s in zip(singles, (5, 6)):
        e.reset(seed=s)
    agent = RandomAgent(venv, seed=0)
    for _ in range(10):
        a, _ = agent.predict(obs)
        obs, r, _, _, _ = venv.step(a)
        rs = [e.step(a[i])[1] for i, e in enumerate(singles)]
        np.testing.assert_allclose(r, rs, rtol=1e-4, atol=1e-5)


def test_custom_reward_lm_example_runs_quick():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_reward_lm.py"), "--quick"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "metrics: frame F1" in out.stdout and "pitch_class_lm" in out.stdout
