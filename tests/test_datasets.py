"""Episodes as Minari datasets (lmm_env.agents.datasets): write a small one, read it back, replay it."""
import sys

import gymnasium as gym
import numpy as np
import pytest

from lmm_env.agents.datasets import check_dataset_id, episode_metadata, record_dataset

SHORT = {"max_seconds": 2.0}


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """Minari's datasets root in tmp_path (never ~/.minari), with what recording needs installed."""
    pytest.importorskip("minari", reason="the datasets extra is not installed (pip install 'lmm_env[datasets]')")
    pytest.importorskip("jax", reason="minari.DataCollector needs jax (minari[create]; pip install 'lmm_env[datasets]')")
    pytest.importorskip("pyarrow", reason="Minari's arrow storage needs pyarrow (pip install 'lmm_env[datasets]')")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _play(env, agent, seed):
    """(observations, actions, rewards, last info, reset info) of one episode of ``agent`` on ``env``
    reset with ``seed``."""
    obs, first = env.reset(seed=seed)
    observations, actions, rewards = [obs], [], []
    while True:
        action, _ = agent.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        if terminated or truncated:
            return observations, np.asarray(actions), np.asarray(rewards), info, first


def test_score_reader_dataset_round_trip(minari_root):
    import minari

    from lmm_env.agents.registry import load_agent

    record_dataset("LMMPiano-v0", "score-reader", 2, "lmm/piano-score-reader-v0", seed=5, env_kwargs=SHORT,
                   author="tests")
    assert (minari_root / "lmm" / "piano-score-reader-v0").is_dir()
    ds = minari.load_dataset("lmm/piano-score-reader-v0")
    assert ds.total_episodes == 2
    assert ds.storage.metadata["algorithm_name"] == "score-reader"
    assert set(ds.observation_space.spaces) == {"score", "audio", "key_state"}

    env = ds.recover_environment()  # the recording env, rebuilt from the spec stored in the dataset
    try:
        assert env.spec.id == "LMMPiano-v0" and env.spec.kwargs == dict(SHORT, split="train")
        sim = env.unwrapped.sim
        agent = load_agent("score-reader", env)
        for i, episode in enumerate(ds.iterate_episodes()):
            meta = episode_metadata(ds, i)
            assert meta["seed"] == 5 + i and meta["agent"] == "score-reader" and meta["task"] == "LMMPiano-v0"
            steps = len(episode.actions)
            assert steps == meta["total_steps"] and steps > 0
            # the score ahead, the heard audio features and the keys: one more observation than actions
            assert episode.observations["score"].shape == (steps + 1, 3, sim.lookahead + 1, 88)
            assert episode.observations["audio"].shape == (steps + 1, sim.n_mels)
            assert episode.observations["key_state"].shape == (steps + 1, 88)
            assert episode.actions.shape == (steps, 88) and episode.rewards.shape == (steps,)
            assert episode.truncations[-1] and not episode.truncations[:-1].any() and not episode.terminations.any()
            # a replay of the agent on the same seeded env plays the recorded episode
            observations, actions, rewards, info, first = _play(env, agent, meta["seed"])
            assert meta["score_name"] == first["score_name"]  # the piece played
            np.testing.assert_array_equal(episode.actions, actions)
            np.testing.assert_allclose(episode.rewards, rewards, rtol=1e-6, atol=1e-9)
            for k in ("score", "audio", "key_state"):
                np.testing.assert_allclose(episode.observations[k], np.stack([o[k] for o in observations]),
                                           atol=1e-6, err_msg=k)
            # the metrics stored with the episode are the replay's: the score reader plays perfectly
            assert meta["metrics"]["note_f1"] == pytest.approx(info["metrics"]["note_f1"]) == 1.0
            assert meta["rewards_sum"] == pytest.approx(float(rewards.sum()))
    finally:
        env.close()


def test_recorded_actions_reproduce_the_episode_open_loop(minari_root):
    """The recorded actions alone (no agent), replayed on the env reset with the episode's
    seed, give back its rewards and its note F1."""
    import minari

    ds = record_dataset("LMMPiano-v0", "score-reader", 1, "piano-open-loop-v0", env_kwargs={"max_seconds": 1.5,
                        "reward": "key_match"})
    ds = minari.load_dataset("piano-open-loop-v0")
    episode = next(ds.iterate_episodes())
    meta = episode_metadata(ds, 0)
    env = gym.make("LMMPiano-v0", max_seconds=1.5, reward="key_match")
    try:
        env.reset(seed=meta["seed"])
        rewards = []
        for a in episode.actions:
            _, r, _, truncated, info = env.step(a)
            rewards.append(r)
        assert truncated
        np.testing.assert_allclose(episode.rewards, rewards, rtol=1e-6, atol=1e-9)
        assert info["metrics"]["note_f1"] == pytest.approx(meta["metrics"]["note_f1"]) == 1.0
    finally:
        env.close()


def test_learned_agent_dataset(minari_root):
    """An env-bound learned agent (diff-g: g learned through the differentiable piano) is recorded too."""
    import minari

    from lmm_env.agents.registry import load_agent

    record_dataset("LMMPiano-v0", "diff-g", 1, "lmm/piano-diff-g-v0", seed=2, env_kwargs={"max_seconds": 1.5},
                   in_order=True)
    ds = minari.load_dataset("lmm/piano-diff-g-v0")
    assert ds.total_episodes == 1 and ds.storage.metadata["algorithm_name"] == "diff-g"
    episode = next(ds.iterate_episodes())
    meta = episode_metadata(ds, 0)
    assert meta["options"] == {"score_index": 0} and set(meta["metrics"]) >= {"note_f1", "frame_f1"}
    env = gym.make("LMMPiano-v0", split="train", max_seconds=1.5)
    try:
        agent = load_agent("diff-g", env)
        obs, _ = env.reset(seed=2, options={"score_index": 0})
        for t, recorded in enumerate(episode.actions):
            action, _ = agent.predict(obs, deterministic=True)
            np.testing.assert_allclose(recorded, action, atol=1e-6, err_msg=f"step {t}")
            obs, *_ = env.step(action)
    finally:
        env.close()


def test_agent_object_on_a_given_env(minari_root):
    """An agent object built on the caller's env records through that env, which stays open."""
    import minari

    from lmm_env.agents.baselines.simple import ScoreReaderAgent

    env = gym.make("LMMDecipher-v0", max_seconds=1.0, reward="key_match", keys=(60, 72))
    try:
        agent = ScoreReaderAgent(env)
        record_dataset(env, agent, 2, "decipher-object-v1", algorithm_name="oracle")
        ds = minari.load_dataset("decipher-object-v1")
        assert ds.total_episodes == 2 and ds.storage.metadata["algorithm_name"] == "oracle"
        assert all(episode_metadata(ds, i)["metrics"]["note_f1"] == 1.0 for i in range(2))
        assert next(ds.iterate_episodes()).actions.shape[1] == 13
        env.reset(seed=0)  # still usable
        assert [p.name for p in minari_root.iterdir()] == ["decipher-object-v1"]  # no scratch folder left
    finally:
        env.close()


@pytest.mark.parametrize("bad", ["piano-score-reader", "lmm/piano score-v0", "/piano-v0", "lmm/piano-v", "", None, 3])
def test_dataset_id_is_checked(bad):
    with pytest.raises(ValueError, match="dataset_id="):
        check_dataset_id(bad)


@pytest.mark.parametrize("good", ["piano-v0", "lmm/piano-score-reader-v0", "lmm/folk/piano_oracle-v12"])
def test_dataset_id_accepts_minari_ids(good):
    assert check_dataset_id(good) == good


def test_bad_arguments_are_refused_before_playing(minari_root):
    with pytest.raises(ValueError, match="piano-score-reader"):
        record_dataset("LMMPiano-v0", "score-reader", 1, "lmm/piano-score-reader")
    with pytest.raises(ValueError, match="task="):
        record_dataset("LMMPiano-v1", "score-reader", 1, "lmm/x-v0")
    with pytest.raises(ValueError, match="split"):
        record_dataset("LMMPiano-v0", "score-reader", 1, "lmm/x-v0", env_kwargs={"split": "test"})
    with pytest.raises(ValueError, match="episodes="):
        record_dataset("LMMPiano-v0", "score-reader", 0, "lmm/x-v0")
    with pytest.raises(ValueError, match="does not play"):
        record_dataset("LMMByEar-v0", "score-reader", 1, "lmm/x-v0", env_kwargs=SHORT)
    (minari_root / "lmm" / "taken-v0").mkdir(parents=True)
    with pytest.raises(ValueError, match="already exists"):
        record_dataset("LMMPiano-v0", "score-reader", 1, "lmm/taken-v0")


def test_missing_minari_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)  # import minari now raises ImportError
    with pytest.raises(ImportError, match=r"lmm_env\[datasets\]"):
        record_dataset("LMMPiano-v0", "score-reader", 1, "lmm/piano-v0")
