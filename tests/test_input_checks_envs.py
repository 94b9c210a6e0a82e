"""The envs refuse bad arguments when they are given, by name, with bounded messages and allocations.

Each test failed before its fix (QA probe: memory bounds, silent or deferred failures, plug-in
rewards, SB3 with the torch world)."""
import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env import rewards
from lmm_env.envs.core import MAX_ENVS, MAX_EPISODE_SECONDS, PianoSim
from lmm_env.rewards import RewardModel
from lmm_env.rewards.base import MAX_HISTORY_BLOCKS, MAX_SCORE_CONTEXT
from lmm_env.score import Score

K = dict(score="exercises-scale", max_seconds=2.0, reward="key_match")


class _Zero(RewardModel):
    name = "zero"

    def __call__(self, ctx):
        return 0.0


def _needs(**attrs):
    return type("Needy", (_Zero,), attrs)()


# --------------------------------------------------------------------------- 1. memory bounds


@pytest.mark.parametrize("value", [MAX_HISTORY_BLOCKS + 1, 10**9, -5, "3", True, 2.0])
def test_history_blocks_is_a_bounded_int(value):
    with pytest.raises(ValueError, match=rf"history_blocks={value!r} is not allowed.*\[0, {MAX_HISTORY_BLOCKS}\]"):
        gym.make_vec("LMMPiano-v0", num_envs=2, history_blocks=value, **K)
    with pytest.raises(ValueError, match="history_blocks="):
        PianoSim(1, history_blocks=value, **K)


@pytest.mark.parametrize("attrs", [dict(history_blocks=MAX_HISTORY_BLOCKS + 1), dict(history_blocks="3"),
                                   dict(history_blocks=-5), dict(history_blocks=True),
                                   dict(score_context=MAX_SCORE_CONTEXT + 1), dict(score_context=-3),
                                   dict(score_context=1.5)])
def test_a_plugin_rewards_needs_are_bounded_ints_naming_the_reward(attrs):
    (attr, value), = attrs.items()
    model = _needs(**attrs)
    msg = rf"reward 'zero' \(Needy\): {attr}={value!r} is not allowed"
    for spec in (model, {model: 1.0}):  # alone, and as a part of a composite
        with pytest.raises(ValueError, match=msg):
            gym.make("LMMPiano-v0", score="exercises-scale", reward=spec)
    rewards.register("needy_plugin", lambda: _needs(**attrs), overwrite=True)
    try:
        with pytest.raises(ValueError, match=rf"reward 'needy_plugin' \(Needy\): {attr}="):
            gym.make_vec("LMMPiano-v0", num_envs=2, score="exercises-scale", reward="needy_plugin")
    finally:
        rewards._REGISTRY.pop("needy_plugin", None)


@pytest.mark.parametrize("value", [1.7, 2.0, True, "2", 0, MAX_ENVS + 1])
def test_num_envs_is_an_int_up_to_the_stated_bound(value):
    with pytest.raises(ValueError, match=rf"num_envs={value!r} is not allowed; use an int in \[1, {MAX_ENVS}\]"):
        gym.make_vec("LMMPiano-v0", num_envs=value, **K)
    assert MAX_ENVS <= 65_536


def test_a_world_too_big_in_all_is_refused_before_allocating_it():
    # each argument is in bounds; together they would take hundreds of GiB
    with pytest.raises(ValueError, match=r"n_envs=65536 with history_blocks=1000.*GiB.*limit is 16 GiB"):
        gym.make_vec("LMMPiano-v0", num_envs=65_536, history_blocks=1000, **K)
    with pytest.raises(ValueError, match=rf"max_seconds=1000000.0 is not allowed.*{MAX_EPISODE_SECONDS:g}"):
        gym.make("LMMPiano-v0", score="exercises-scale", reward="key_match", max_seconds=1e6)


def test_an_untrimmed_piece_longer_than_the_episode_bound_is_refused_naming_it(tmp_path):
    end = MAX_EPISODE_SECONDS + 60
    long = Score.from_notes([(60, 0.0, 3.0, 80), (62, end - 1.0, end, 80)], name="marathon")
    path = tmp_path / "marathon.mid"
    long.to_pretty_midi().write(str(path))
    msg = r"'marathon.*' lasts 10,860 s.*10,800 s.*max_seconds="
    for score in (long, [long], str(path)):  # when the pool is resolved, not at the first reset
        with pytest.raises(ValueError, match=msg):
            gym.make("LMMPiano-v0", score=score, reward="key_match")
    with pytest.raises(ValueError, match=msg):
        gym.make("LMMPiano-v0", score="exercises-scale", reward="key_match").reset(seed=0, options={"score": long})
    trimmed = gym.make("LMMPiano-v0", score=[long, str(path)], reward="key_match", max_seconds=2.0)
    _, info = trimmed.reset(seed=0, options={"score_index": 1})
    assert info["n_steps"] == 50  # the first 2 s and the 0.5 s tail
    _, info = gym.make("LMMPiano-v0", **K).reset(seed=0, options={"score": long})  # max_seconds trims it
    assert info["n_steps"] == 50


# --------------------------------------------------------------------------- 2. silent or deferred


def test_split_and_out_of_range_are_checked_at_construction_with_any_score(tmp_path):
    s = Score.from_notes([(60, 0.0, 0.5, 80)], name="one")
    path = tmp_path / "one.mid"
    s.to_pretty_midi().write(str(path))
    for score in (s, str(path), "exercises-scale"):
        with pytest.raises(ValueError, match=r"split='bogus' is not allowed.*'train', 'validation', 'test'"):
            gym.make("LMMPiano-v0", score=score, split="bogus", reward="key_match")
    for score in ("exercises-scale", "folk"):
        with pytest.raises(ValueError, match=r"out_of_range='bogus' is not allowed.*'transpose', 'reject', 'drop'"):
            gym.make("LMMPiano-v0", score=score, out_of_range="bogus", keys=(60, 72), reward="key_match")


def test_a_keys_range_that_no_corpus_piece_fits_is_refused_at_construction():
    with pytest.raises(ValueError, match=r"keys=\(60, 61\).*widen keys"):
        gym.make("LMMPiano-v0", score="folk", keys=(60, 61), max_seconds=2.0, reward="key_match")
    gym.make("LMMPiano-v0", score="folk", keys=(48, 72), max_seconds=2.0, reward="key_match").reset(seed=0)


def test_improvise_refuses_an_episode_without_free_play_and_arguments_it_has_no_use_for():
    kw = dict(prompt="exercises-scale", reward="key_match")
    with pytest.raises(ValueError, match=r"prompt_seconds=4.*max_seconds=1.0 leave no step of free play"):
        gym.make("LMMImprovise-v0", prompt_seconds=4, max_seconds=1, **kw)
    with pytest.raises(ValueError, match=r"no step of free play"):
        gym.make("LMMImprovise-v0", length_seconds=0.5, frame_rate=1, sample_rate=8000, n_mels=8, **kw)
    env = gym.make("LMMImprovise-v0", prompt_seconds=1, max_seconds=2, **kw)
    _, info = env.reset(seed=0)
    assert info["n_steps"] == 40  # 1 s of prompt, 1 s of free play
    with pytest.raises(ValueError, match=r"tail= is not an argument of LMMImprovise-v0"):
        gym.make("LMMImprovise-v0", tail=1.0, **kw)
    with pytest.raises(ValueError, match=r"^prompt=5 is not allowed"):
        gym.make("LMMImprovise-v0", prompt=5, reward="key_match")
    with pytest.raises(ValueError, match=r"prompt item 5 is not allowed"):
        gym.make("LMMImprovise-v0", prompt=[Score.from_notes([(60, 0.0, 0.5, 80)]), 5], reward="key_match")


def test_improvise_without_a_prompt_refuses_a_score_index_other_than_0():
    env = gym.make("LMMImprovise-v0", prompt=None, max_seconds=2, reward="key_match")
    for bad in (3, 1, True, "0"):
        with pytest.raises(ValueError, match=rf"options\['score_index'\]={bad!r} is not allowed.*no prompt"):
            env.reset(seed=0, options={"score_index": bad})
    _, info = env.reset(seed=0, options={"score_index": 0})  # evaluate() asks for piece 0 of a pool of one
    assert info["score_name"] == "no prompt"


def test_reset_options_must_be_a_dict_and_score_index_an_int_not_a_bool():
    env = gym.make("LMMPiano-v0", **K)
    with pytest.raises(ValueError, match=r"options='score_index' is not allowed; reset options are a dict"):
        env.reset(seed=0, options="score_index")
    for bad in (True, 1.0):
        with pytest.raises(ValueError, match=rf"options\['score_index'\]={bad!r} is not allowed"):
            env.reset(seed=0, options={"score_index": bad})
    with pytest.raises(ValueError, match=r"options\['score_index'\]=False is not allowed"):
        env.reset(seed=0, options={"score_index": np.bool_(False)})
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, **K)
    with pytest.raises(ValueError, match=r"reset options are a dict"):
        venv.reset(seed=0, options=["score_index"])


def test_the_vector_env_takes_a_numpy_array_of_score_indices_like_a_list():
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, **K)
    venv.reset(seed=0, options={"score_index": [3, 5]})
    names = list(venv.unwrapped.sim.names)
    obs_list = venv.unwrapped.sim.observation()
    venv.reset(seed=0, options={"score_index": np.array([3, 5])})
    assert list(venv.unwrapped.sim.names) == names and names[0] != names[1]
    np.testing.assert_array_equal(venv.unwrapped.sim.observation()["score"], obs_list["score"])
    venv.reset(seed=0, options={"score_index": np.int64(4)})  # one for every env
    assert venv.unwrapped.sim.names[0] == venv.unwrapped.sim.names[1]
    with pytest.raises(ValueError, match="score_index= has 3 entries for 2 envs"):
        venv.reset(seed=0, options={"score_index": np.array([1, 2, 3])})


@pytest.mark.parametrize("bad", [5, 2, -1, "a", True, 1.0])
def test_the_vector_envs_name_a_bad_env_index(bad):
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, **K)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=rf"env index i={bad!r} is not allowed; use an int in \[0, 1\]"):
        venv.performance(bad)
    assert venv.performance(1) is not None


def test_the_torch_vector_env_names_a_bad_env_index():
    pytest.importorskip("torch")
    from lmm_env.envs import make_vector_env

    venv = make_vector_env(2, backend="torch", **K)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"env index i=5 is not allowed"):
        venv.performance(5)
    with pytest.raises(ValueError, match=r"num_envs=1.5 is not allowed"):
        make_vector_env(1.5, backend="torch", **K)


# --------------------------------------------------------------------------- 3. plug-in rewards


def test_a_plugin_factory_that_returns_no_reward_model_is_refused_naming_it():
    rewards.register("returns_five", lambda: 5, overwrite=True)
    rewards.register("returns_class", lambda: _Zero, overwrite=True)
    try:
        with pytest.raises(TypeError, match=r"reward 'returns_five': its factory returned 5, not a .*RewardModel"):
            gym.make("LMMPiano-v0", reward="returns_five", score="exercises-scale")
        with pytest.raises(TypeError, match=r"reward 'returns_class'.*_Zero'>.*return _Zero\(\) instead"):
            rewards.make({"key_match": 1.0, "returns_class": 0.5})
    finally:
        rewards._REGISTRY.pop("returns_five", None)
        rewards._REGISTRY.pop("returns_class", None)
    with pytest.raises(TypeError, match=r"reward 'x' is 5, not a lmm_env.rewards.RewardModel"):
        rewards.CompositeReward({"x": (5, 1.0)})


def test_a_reward_returning_a_huge_value_gets_a_short_message():
    class Huge(_Zero):
        def __call__(self, ctx):
            return list(range(100_000))

    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=Huge())
    env.reset(seed=0)
    with pytest.raises(rewards.RewardError, match=r"returned \[0, 1, 2, .*shape \(100000,\)") as err:
        env.step(np.zeros(88, np.float32))
    assert len(str(err.value)) < 400


# --------------------------------------------------------------------------- 4. SB3 and the torch world


def test_sb3_refuses_the_torch_world_unless_it_returns_numpy():
    pytest.importorskip("torch")
    from lmm_env.envs import SB3VecEnv, make_sb3_vec_env, make_vector_env

    with pytest.raises(ValueError, match=r"backend='torch' is not allowed in make_sb3_vec_env.*numpy.*as_numpy=True"):
        make_sb3_vec_env(2, backend="torch", **K)
    with pytest.raises(ValueError, match=r"SB3VecEnv cannot wrap LMMPianoTorchVectorEnv with as_numpy=False"):
        SB3VecEnv(make_vector_env(2, backend="torch", **K))
    env = make_sb3_vec_env(2, backend="torch", as_numpy=True, seed=0, **K)  # the host copy SB3 can take
    env.reset()
    for _ in range(50):  # to the end of the 2.5 s episodes
        _, r, done, infos = env.step(np.zeros((2, 88), np.float32))
        assert r.shape == (2,) and np.isfinite(r).all()
    assert done.all() and "metrics" in infos[0] and "terminal_observation" in infos[0]
