"""Round-2 input checks of the agents and the video writer: every bad argument fails when it is
given, with a clear ValueError/TypeError naming it; numpy scalars are numbers, bools are not."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the tasks)
from lmm_env.agents.baselines.simple import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.agents.baselines.by_ear import ByEarGradientAgent, ReferenceOracle
from lmm_env.agents.baselines.gradient import GradientAgent
from lmm_env.agents.baselines.improvise import PolicySamplerAgent, RepeatPromptAgent, ScoreLMSamplerAgent
from lmm_env.envs.video import RecordEpisodeVideo, write_video

KW = {"score": "exercises-scale", "max_seconds": 1.0, "reward": "key_match"}
FRAMES = [np.zeros((8, 8, 3), np.uint8)] * 4
AUDIO = np.zeros(3200, np.float32)


@pytest.fixture(scope="module")
def piano():
    env = gym.make("LMMPiano-v0", **KW)
    yield env
    env.close()


@pytest.fixture(scope="module")
def by_ear():
    env = gym.make("LMMByEar-v0", **KW)
    yield env
    env.close()


@pytest.fixture(scope="module")
def vec():
    env = gym.make_vec("LMMPiano-v0", num_envs=2, **KW)
    yield env
    env.close()


# --------------------------------------------------------------------------- write_video


@pytest.mark.parametrize("frames, what", [
    ([np.full((8, 8, 3), 0.5, np.float32)] * 2, r"frame 0 of shape \(8, 8, 3\) and dtype float32"),  # was black
    ([np.zeros((8, 8), np.uint8)] * 2, r"frame 0 of shape \(8, 8\) and dtype uint8"),  # grey: was corrupt
    (FRAMES[:1] + [np.zeros((8, 8, 4), np.uint8)], r"frame 1 of shape \(8, 8, 4\)"),  # RGBA
    ([np.zeros((1, 1, 3), np.uint8)] * 2, r"frame 0 of shape \(1, 1, 3\)"),
    ([np.zeros((0, 0, 3), np.uint8)] * 2, r"frame 0 of shape \(0, 0, 3\)"),  # was ffmpeg noise
    (FRAMES[:1] + ["a"], r"frame 1 of 'a'"),
    (FRAMES[:1] + [np.zeros((16, 16, 3), np.uint8)], r"frame 1 of shape \(16, 16, 3\) differs from frame 0's"),
])
def test_write_video_takes_only_rgb_uint8_frames_of_one_size(tmp_path, frames, what):
    with pytest.raises(ValueError, match=what + r".*"):
        write_video(frames, AUDIO, 16000, 20, tmp_path / "v.mp4")
    with pytest.raises(TypeError, match="frames=None is not allowed"):
        write_video(None, AUDIO, 16000, 20, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


def test_write_video_fps_is_a_number_not_a_bool_and_numpy_scalars_work(tmp_path):
    with pytest.raises(ValueError, match=r"fps=True is not allowed; use a finite number in \(0, 1000\]"):
        write_video(FRAMES, AUDIO, 16000, True, tmp_path / "v.mp4")
    for i, fps in enumerate((np.float32(20), np.int64(20), 20)):  # numpy scalars were an imageio AssertionError
        assert write_video(FRAMES, AUDIO, np.int64(16000), fps, tmp_path / f"v{i}.mp4").stat().st_size > 0


@pytest.mark.parametrize("name, match", [("folder", "is a folder"), ("noext", r"ending in \.mp4"),
                                         ("v.txt", r"ending in \.mp4"),
                                         ("afile/v.mp4", "afile. is a file, not a folder")])
def test_write_video_checks_its_path_before_encoding(tmp_path, monkeypatch, name, match):
    import imageio_ffmpeg

    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")

    def encode(*a, **k):
        raise AssertionError("encoded frames for a path it cannot write")

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", encode)
    with pytest.raises(ValueError, match=match):
        write_video(FRAMES, AUDIO, 16000, 20, tmp_path / name)
    with pytest.raises(ValueError, match="path=None is not allowed"):
        write_video(FRAMES, AUDIO, 16000, 20, None)


# --------------------------------------------------------------------------- RecordEpisodeVideo


@pytest.fixture(scope="module")
def rgb():
    env = gym.make("LMMPiano-v0", render_mode="rgb_array", **KW)
    yield env
    env.close()


def test_record_episode_video_checks_its_folder_now(tmp_path, rgb):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="folder=.*afile' is a file, not a folder"):
        RecordEpisodeVideo(rgb, tmp_path / "afile")
    with pytest.raises(ValueError, match="lies inside .*afile"):
        RecordEpisodeVideo(rgb, tmp_path / "afile" / "sub")
    with pytest.raises(ValueError, match="folder=None is not allowed"):
        RecordEpisodeVideo(rgb, None)


def test_record_episode_video_arguments(tmp_path, rgb, vec):
    with pytest.raises(ValueError, match=r"every=True is not allowed; use an int in \[1, "):
        RecordEpisodeVideo(rgb, tmp_path, every=True)
    assert RecordEpisodeVideo(rgb, tmp_path, every=np.int64(2)).every == 2
    for prefix in ("../../escaped", "a/b", "..", "", 5):
        with pytest.raises(ValueError, match="name_prefix=.* is not allowed; use a non-empty file name"):
            RecordEpisodeVideo(rgb, tmp_path, name_prefix=prefix)
    with pytest.raises(TypeError, match="wraps one env .*got LMMPianoVectorEnv"):
        RecordEpisodeVideo(vec, tmp_path)
    quiet = gym.make("LMMPiano-v0", render_mode="rgb_array", record_audio=False, **KW)
    with pytest.raises(ValueError, match="record_audio=True"):  # at wrap time, not at the first save
        RecordEpisodeVideo(quiet, tmp_path)
    with pytest.raises(TypeError, match="not an lmm_env task"):
        RecordEpisodeVideo(gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path)
    assert not any(tmp_path.parent.glob("escaped*"))


# --------------------------------------------------------------------------- GradientAgent


@pytest.mark.parametrize("kw, name", [
    ({"steps": 10**9}, "steps"), ({"steps": "5"}, "steps"), ({"steps": True}, "steps"), ({"steps": 1.7}, "steps"),
    ({"refine_steps": -1}, "refine_steps"), ({"shifts": (10**9,)}, r"shifts\[0\]"), ({"shifts": "ab"}, "shifts"),
    ({"shifts": tuple(range(100))}, "shifts"), ({"init": "bogus"}, "init"), ({"init": 5}, "init"),
    ({"seed": "x"}, "seed"), ({"seed": -1}, "seed"), ({"threads": -1}, "threads"), ({"threads": 0}, "threads"),
    ({"lr": float("inf")}, "lr"), ({"lr": 0}, "lr"), ({"lr": "x"}, "lr"),
    ({"candidate_threshold": float("nan")}, "candidate_threshold"), ({"min_velocity": 200}, "min_velocity"),
    ({"sparsity": -1.0}, "sparsity"), ({"progress": "x"}, "progress"),
])
def test_gradient_agent_checks_every_argument_at_construction(kw, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name}=.* is not allowed"):
        GradientAgent(**kw)


def test_gradient_agent_takes_numpy_numbers_and_refuses_a_vector_env(vec, by_ear, monkeypatch):
    agent = GradientAgent(steps=np.int64(3), refine_steps=np.int32(2), shifts=[np.int64(-2), 2], lr=np.float32(0.1),
                          seed=np.int64(1), threads=np.int64(1), candidate_threshold=np.float64(0.2), progress=False)
    assert (agent.steps, agent.refine_steps, agent.shifts, agent.seed, agent.threads) == (3, 2, (-2, 2), 1, 1)
    with pytest.raises(TypeError, match="plays one env; got a vector env"):
        GradientAgent(vec)
    with pytest.raises(TypeError, match="plays one env; got a vector env"):
        ByEarGradientAgent(vec)
    for cls in (ByEarGradientAgent, ReferenceOracle):
        with pytest.raises(TypeError, match="needs the env it will play, got None"):
            cls(None)
    from lmm_env.lm import ear as ear_mod

    def fit(*a, **k):
        raise AssertionError("loaded the ear before checking the arguments")

    monkeypatch.setattr(ear_mod, "ear_for", fit)
    with pytest.raises(ValueError, match="steps=1000000000 is not allowed"):
        ByEarGradientAgent(by_ear, pairs=4, steps=10**9)


# --------------------------------------------------------------------------- baselines


def test_baselines_refuse_no_env_a_bad_seed_and_a_task_they_cannot_play(piano, by_ear):
    with pytest.raises(ValueError, match="seed='x' is not allowed"):
        RandomAgent(piano, seed="x")
    with pytest.raises(ValueError, match="seed=True is not allowed"):
        RandomAgent(piano, seed=True)
    assert RandomAgent(piano, seed=np.int64(3)).predict({"key_state": np.zeros(88)})[0].shape == (88,)
    for make in (RandomAgent, ScoreReaderAgent, lambda env: WrongPlayAgent(env, "late")):
        with pytest.raises(TypeError, match="needs the env it will play"):
            make(None)
    with pytest.raises(ValueError, match="ScoreReaderAgent reads obs\\['score'\\], which LMMByEar-v0 does not observe"):
        ScoreReaderAgent(by_ear)
    with pytest.raises(ValueError, match="delay=True is not allowed"):
        WrongPlayAgent(piano, "late", delay=True)
    with pytest.raises(ValueError, match="interval='6' is not allowed"):
        WrongPlayAgent(piano, "extra", interval="6")
    assert WrongPlayAgent(piano, "late", delay=np.int64(3)).delay == 3


# --------------------------------------------------------------------------- improvise


class _Policy:  # what PolicySamplerAgent reads of an SB3 policy
    observation_space = action_space = gym.spaces.Box(-1, 1, (2,))

    def obs_to_tensor(self, obs):
        raise NotImplementedError

    def get_distribution(self, obs):
        raise NotImplementedError


def test_improvise_agents_check_their_arguments(piano):
    with pytest.raises(ValueError, match="seed='x' is not allowed"):
        PolicySamplerAgent(_Policy(), seed="x")
    with pytest.raises(ValueError, match="seed=True is not allowed"):
        PolicySamplerAgent(_Policy(), seed=True)
    assert PolicySamplerAgent(_Policy(), seed=np.int64(4)).seed == 4
    with pytest.raises(TypeError, match="policy=None is not allowed"):
        PolicySamplerAgent(None)
    for cls in (RepeatPromptAgent, ScoreLMSamplerAgent):
        with pytest.raises(TypeError, match="needs the env it will play, got None"):
            cls(None)
        with pytest.raises(TypeError, match="is not LMMImprovise-v0"):
            cls(piano)
    improv = gym.make("LMMImprovise-v0", prompt_seconds=0.5, length_seconds=1.0, reward="key_match")
    for kw, name in (({"seed": "x"}, "seed"), ({"temperature": "hot"}, "temperature"), ({"velocity": 300}, "velocity")):
        with pytest.raises(ValueError, match=f"{name}=.* is not allowed"):
            ScoreLMSamplerAgent(improv, **kw)


# --------------------------------------------------------------------------- RLlib (pure checks, no cluster)


@pytest.fixture(scope="module")
def R():
    pytest.importorskip("ray.rllib")
    import lmm_env.agents.training.rllib as rllib

    return rllib


@pytest.mark.parametrize("kw, match", [
    ({"num_env_runners": 10**6}, r"num_env_runners=1000000 is not allowed; use an int in \[0, 256\]"),
    ({"num_envs_per_env_runner": 10**9},
     r"num_envs_per_env_runner=1000000000 is not allowed; use an int in \[1, 4096\]"),
    ({"hyperparams": {"policy_kwargs": {"actor_channels": [10**6, 10**6]}}}, r"actor_channels\[0\]=1000000"),
    ({"hyperparams": {"policy_kwargs": {"actor_channels": [8] * 65}}}, "actor_channels=.* 1 to 64"),
    ({"hyperparams": {"policy_kwargs": {"kernel_size": 10**6}}}, "kernel_size=1000000"),
    ({"hyperparams": {"policy_kwargs": {"kernel_size": 4}}}, "kernel_size=4 is not allowed; use an odd int"),
    ({"hyperparams": {"policy_kwargs": [1]}}, r"policy_kwargs=\[1\] is not allowed"),
    ({"hyperparams": {"n_steps": 10**12}}, "n_steps=1000000000000 is not allowed"),
    ({"hyperparams": {"learning_rate": "abc"}}, "learning_rate='abc' is not allowed"),
    ({"hyperparams": [1]}, r"hyperparams=\[1\] is not allowed"),
    ({"env_kwargs": [1]}, r"env_kwargs=\[1\] is not allowed; pass a dict"),
    ({"env_kwargs": "abc"}, "env_kwargs='abc' is not allowed; pass a dict"),
    ({"seed": "a"}, "seed='a' is not allowed"), ({"seed": -1}, "seed=-1 is not allowed"),
    ({"num_cpus_per_env_runner": "x"}, "num_cpus_per_env_runner='x' is not allowed"),
    ({"env_id": "Bogus-v0"}, "Bogus-v0.* is not an lmm_env task; registered lmm_env tasks: .*LMMPiano-v0"),
])
def test_ppo_config_bounds_and_types_its_arguments(R, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        R.ppo_config(**{"env_kwargs": KW, **kw})


def test_rllib_settings_and_helpers_refuse_bad_values(R, piano, tmp_path):
    with pytest.raises(ValueError, match="n_steps='x' is not allowed"):
        R.rllib_ppo_settings({"n_steps": "x"}, 2)
    with pytest.raises(ValueError, match="n_envs='a' is not allowed"):
        R.rllib_ppo_settings({}, "a")
    with pytest.raises(ValueError, match="n_envs=True is not allowed"):
        R.rllib_ppo_settings({}, True)
    with pytest.raises(ValueError, match="env steps per train batch is not allowed"):
        R.rllib_ppo_settings({"n_steps": 1 << 20}, 1 << 10)
    hyper = {"n_steps": np.int64(64), "batch_size": np.int64(32), "gamma": np.float32(0.5)}
    s = R.rllib_ppo_settings(hyper, np.int64(2))
    assert (s["train_batch_size_per_learner"], s["minibatch_size"], s["gamma"]) == (128, 32, 0.5)
    with pytest.raises(ValueError, match=r"actor_channels\[0\]=10000000 is not allowed"):
        R._module_kwargs({"actor_channels": [10**7]})
    with pytest.raises(TypeError, match=r"model_config=\[1\] is not allowed"):
        R._module_kwargs([1])
    assert R._module_kwargs({"actor_channels": [np.int64(8)]})["actor_channels"] == (8,)
    with pytest.raises(ValueError, match="Bogus-v0.* is not an lmm_env task; registered lmm_env tasks"):
        R.make_env("Bogus-v0", {})
    for n in (True, "2", 1.7, 10**6):
        with pytest.raises(ValueError, match="num_envs=.* is not allowed"):
            R.make_env("LMMPiano-v0", dict(KW, num_envs=n))
    with pytest.raises(TypeError, match=r"env_config=\[1\] is not allowed"):
        R.make_env("LMMPiano-v0", [1])
    with pytest.raises(TypeError, match="env_ids=5 is not allowed"):
        R.register_envs(5)
    with pytest.raises(TypeError, match="NextStepAutoreset wraps an lmm_env batched twin"):
        R.NextStepAutoreset(piano)
    with pytest.raises(TypeError, match="path=None is not allowed"):
        R.policy_state(None)
    with pytest.raises(TypeError, match="algo=None is not allowed"):
        R.export_policy(None, tmp_path / "p.safetensors")

    class Algo:
        config = learner_group = None

    with pytest.raises(ValueError, match="out=None is not allowed"):
        R.export_policy(Algo(), None)
