"""ListeningDecipherAgent: learns LMMDecipher-v0's hidden keyboard from what its own strikes sound like."""
import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.agents.learned.decipher import ListeningDecipherAgent
from lmm_env.agents.registry import AGENTS, agents_for, make_agent
from lmm_env.keyboard import HiddenLayoutError
from lmm_env.tasks import probe_keyboard

EASY = dict(keys=(60, 72), max_seconds=6, split="train")


def _sealed(env):
    env.unwrapped.keyboard._reveal_allowed = False  # as the benchmark does for non-oracles
    return env


def _play(agent, env, episodes, seed=0):
    f1, actions = [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i, options={"score_index": i})
        if hasattr(agent, "reset"):
            agent.reset()
        start = np.ones((1,), bool)
        while True:
            action, _ = agent.predict(obs, episode_start=start, deterministic=True)
            start = np.zeros((1,), bool)
            actions.append(np.asarray(action).copy())
            obs, _, term, trunc, info = env.step(action)
            if term or trunc:
                break
        f1.append(info["metrics"]["note_f1"])
    return f1, actions


def test_registered_and_never_reads_the_layout():
    assert "decipher-closed-loop" in agents_for("LMMDecipher-v0")
    assert AGENTS["decipher-closed-loop"].oracle is False
    assert ListeningDecipherAgent.oracle is False
    env = _sealed(gym.make("LMMDecipher-v0", **EASY))
    with pytest.raises(HiddenLayoutError):
        env.unwrapped.keyboard.reveal()
    agent = make_agent("decipher-closed-loop", env, pairs=0)
    assert isinstance(agent, ListeningDecipherAgent)
    f1, _ = _play(agent, env, 2)  # would raise HiddenLayoutError if it read the layout
    result = probe_keyboard(agent, env)
    rand = probe_keyboard(make_agent("random", env, seed=0), env)
    assert result["keys_deciphered"] >= 0.9 > 0.1 > rand["keys_deciphered"]


@pytest.mark.parametrize("group_size", [None, 4])  # default here: one key (votes); groups of 4 (soft)
def test_learns_and_beats_random_on_the_easy_curriculum(group_size):
    env = _sealed(gym.make("LMMDecipher-v0", **EASY))
    agent = ListeningDecipherAgent(env, pairs=0, seed=0, group_size=group_size)
    f1, _ = _play(agent, env, 3)
    rand_f1, _ = _play(make_agent("random", env, seed=0), env, 3)
    assert f1[-1] >= 0.9, f1          # the map learned in episode 0 holds with relayout="never"
    assert np.mean(f1) > np.mean(rand_f1) + 0.4, (f1, rand_f1)
    assert agent.settled.all()
    assert agent.explore_strikes <= 2 * agent.n_keys  # it stops exploring once keys are known


def test_deterministic_for_a_fixed_seed():
    runs = []
    for _ in range(2):
        env = gym.make("LMMDecipher-v0", **EASY)
        agent = ListeningDecipherAgent(env, pairs=0, seed=3)
        runs.append(_play(agent, env, 1, seed=5)[1])
    assert len(runs[0]) == len(runs[1])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))


def test_relayout_episode_relearns_each_episode():
    env = _sealed(gym.make("LMMDecipher-v0", relayout="episode", **EASY))
    agent = ListeningDecipherAgent(env, pairs=0, seed=0)
    f1, _ = _play(agent, env, 2)
    assert agent.explore_strikes >= 2 * 13  # struck every key again in the second episode (evidence cleared)
    result = probe_keyboard(agent, env)  # a new layout: worked out inside the probe's lead-in
    assert result["keys_deciphered"] >= 0.9


def test_needs_recorded_audio():
    env = gym.make("LMMDecipher-v0", record_audio=False, **EASY)
    with pytest.raises(ValueError, match="record_audio"):
        ListeningDecipherAgent(env)
