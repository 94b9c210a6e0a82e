"""Reliability: accepted settings give a sane world; impossible ones are refused up front (issue 13)."""
import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.audio import LogMel
from lmm_env.score import Score


def test_mel_bands_without_fft_bins_are_refused_with_the_largest_count_that_works():
    with pytest.raises(ValueError, match=r"n_mels=64 .*160 samples.*NaN.*n_mels=60"):
        LogMel(16000, 160, 64)
    feats = LogMel(16000, 160, 60)(np.random.default_rng(0).standard_normal(1600).astype(np.float32))
    assert np.isfinite(feats).all()


def test_100_fps_env_refuses_default_mel_bands_and_is_finite_with_fewer():
    with pytest.raises(ValueError, match="n_mels=64"):
        gym.make("LMMPiano-v0", frame_rate=100, reward="key_match")
    for make in (lambda: gym.make("LMMPiano-v0", frame_rate=100, n_mels=60, reward="audio_match", max_seconds=2.0),):
        env = make()
        obs, _ = env.reset(seed=0)
        for _ in range(50):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            assert np.isfinite(r) and env.observation_space.contains(obs)
            assert np.isfinite(obs["audio"]).all()
            if term or trunc:
                break
        env.close()
    venv = gym.make_vec("LMMPiano-v0", num_envs=3, frame_rate=100, n_mels=60, reward="audio_match", max_seconds=2.0)
    obs, _ = venv.reset(seed=0)
    for _ in range(20):
        obs, r, *_ = venv.step(venv.action_space.sample())
        assert np.isfinite(r).all() and np.isfinite(obs["audio"]).all()
    venv.close()


def test_vector_env_honours_reset_options_like_the_single_env_and_refuses_unknown_ones():
    single = gym.make("LMMPiano-v0", split="validation", max_seconds=2.0)
    _, info = single.reset(seed=0, options={"score_index": 3})
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, split="validation", max_seconds=2.0)
    venv.reset(seed=0, options={"score_index": 3})
    assert venv.unwrapped.sim.names == [info["score_name"]] * 2
    venv.reset(seed=0, options={"score_index": [3, None]})
    assert venv.unwrapped.sim.names[0] == info["score_name"]
    for env in (single, venv):
        with pytest.raises(ValueError, match=r"unknown reset options \['scoreindex'\]"):
            env.reset(seed=0, options={"scoreindex": 3})
    with pytest.raises(ValueError, match="2 envs"):
        venv.reset(seed=0, options={"score_index": [1, 2, 3]})
    single.close()
    venv.close()


@pytest.mark.parametrize("kw, msg", [({"checkpoint_every": -1}, "checkpoint_every=-1"), ({"eval_every": -5}, "eval_every=-5"),
                                     ({"eval_episodes": 0}, "eval_episodes=0"), ({"eval_every": 1.5}, "eval_every=1.5")])
def test_train_refuses_negative_intervals_and_empty_evaluations_before_building_anything(kw, msg):
    from lmm_env.agents import train

    with pytest.raises(ValueError, match=msg):
        train(total_steps=64, n_envs=1, progress=False, **kw)


def test_train_says_when_one_rollout_is_longer_than_the_steps_asked_for():
    from lmm_env.agents import train

    with pytest.warns(UserWarning, match=r"total_steps=10 is less than one rollout of PPO \(n_steps x n_envs = 64\)"):
        model = train(total_steps=10, n_envs=2, hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                      env_kwargs={"max_seconds": 2.0}, eval_every=0, checkpoint_every=0, progress=False)
    assert model.num_timesteps == 64


@pytest.mark.parametrize("kw, msg", [({"pedal": "no"}, "pedal='no'"), ({"record_audio": "False"}, "record_audio='False'"),
                                     ({"layout_seed": -1}, "layout_seed=-1"), ({"layout_seed": 1.5}, "layout_seed=1.5"),
                                     ({"reward": {"key_match": "x"}}, "weight 'x' of reward 'key_match'"),
                                     ({"reward": {"key_match": None}}, "weight None of reward 'key_match'"),
                                     ({"reward": {"key_match": 1e308}}, r"weight 1e\+308 of reward 'key_match'")])
def test_loose_types_are_refused_naming_the_argument(kw, msg):
    with pytest.raises(ValueError, match=msg):
        gym.make("LMMPiano-v0", **kw)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from lmm_env.agents import train

    logdir = tmp_path_factory.mktemp("ckpt")
    train(total_steps=64, n_envs=2, hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
          env_kwargs={"max_seconds": 2.0}, eval_every=0, checkpoint_every=0, logdir=logdir, progress=False)
    return logdir / "checkpoints" / "last.safetensors"


def _edited(src, dst, meta_edit=None, tensor_edit=None):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _drop_first_policy_tensor(t):
    del t[next(k for k in t if k.startswith("policy."))]


def _reshape_first_policy_tensor(t):
    k = next(k for k in t if k.startswith("policy.") and t[k].ndim >= 1)
    t[k] = t[k].reshape(-1)[:-1].clone() if t[k].numel() > 1 else t[k].repeat(2)


def _nan_first_policy_tensor(t):
    k = next(k for k in t if k.startswith("policy.") and t[k].is_floating_point())
    t[k] = t[k].clone()
    t[k].view(-1)[0] = float("nan")


@pytest.mark.parametrize("name, meta_edit, tensor_edit, msg", [
    ("notjson", lambda m: m.update(config="{not json"), None, "broken metadata"),
    ("noalgo", lambda m: m.update(config=__import__("json").dumps(
        {k: v for k, v in __import__("json").loads(m["config"]).items() if k != "algo"})), None, r"without \['algo'\]"),
    ("missing", None, _drop_first_policy_tensor, "does not fit the policy"),
    ("shape", None, _reshape_first_policy_tensor, "does not fit the policy"),
    ("nan", None, _nan_first_policy_tensor, "non-finite"),
])
def test_broken_checkpoints_are_refused_naming_the_file(checkpoint, tmp_path, name, meta_edit, tensor_edit, msg):
    from lmm_env.agents import load_agent, load_trained

    bad = _edited(checkpoint, tmp_path / f"{name}.safetensors", meta_edit, tensor_edit)
    for load in (load_trained, load_agent):
        with pytest.raises(ValueError, match=msg) as err:
            load(bad)
        assert f"{name}.safetensors" in str(err.value)
    assert load_agent(checkpoint) is not None  # the untouched file still loads


def test_cli_reports_user_errors_in_one_line_without_a_traceback(tmp_path, capsys):
    from lmm_env.agents.cli import main

    assert main(["train", "--steps", "10", "--eval-every", "-5", "--logdir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "eval_every=-5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    d = tmp_path / "some_dir.mid"
    d.mkdir()
    assert main(["play", str(d), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is a directory, not a MIDI file" in err and len(err.strip().splitlines()) == 1


def test_a_checkpoint_temporary_left_by_a_killed_run_is_removed_at_the_next_start(tmp_path):
    from lmm_env.agents import train

    ck = tmp_path / "checkpoints"
    ck.mkdir()
    orphan = ck / "last.safetensors.tmp"
    orphan.write_bytes(b"\0" * 1000)  # what a kill -9 during a write leaves
    with pytest.warns(UserWarning, match="a killed run was writing"):
        train(total_steps=32, n_envs=1, hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1},
              env_kwargs={"max_seconds": 2.0}, eval_every=0, checkpoint_every=0, logdir=tmp_path, progress=False)
    assert not orphan.exists() and not list(ck.glob("*.tmp"))


def test_an_interrupted_checkpoint_write_leaves_no_temporary(tmp_path, monkeypatch):
    import safetensors.torch
    import torch

    import importlib

    train_mod = importlib.import_module("lmm_env.agents.training.sb3")

    def boom(*a, **k):
        open(a[1], "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        train_mod._write_atomic({"x": torch.zeros(2)}, tmp_path / "last.safetensors", {})
    assert list(tmp_path.iterdir()) == []


def _midi_with_pitch_0(path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, 0, 0.0, 0.5), pretty_midi.Note(80, 60, 0.5, 1.0),
                   pretty_midi.Note(80, 64, 1.0, 1.5)]
    pm.instruments.append(inst)
    pm.write(str(path))
    return pm


@pytest.mark.parametrize("as_object", [False, True])
def test_out_of_range_policy_applies_to_the_midi_files_own_pitches(tmp_path, as_object):
    pm = _midi_with_pitch_0(tmp_path / "low.mid")
    src = pm if as_object else str(tmp_path / "low.mid")
    with pytest.raises(Exception, match=r"pitch(es)? .*\b0\b"):
        gym.make("LMMPiano-v0", score=src, out_of_range="reject")
    env = gym.make("LMMPiano-v0", score=src, out_of_range="drop")
    env.reset(seed=0)
    assert sorted(env.unwrapped.target_score().pitches.tolist()) == [60, 64]
    env.close()


class _Returns:
    """A plug-in reward with no ``name`` of its own: it returns ``value``, or raises."""

    def __init__(self, value):
        self.value = value

    def make(self):
        from lmm_env.rewards import RewardModel

        value = self.value

        class Plugin(RewardModel):
            def __call__(self, ctx):
                if isinstance(value, Exception):
                    raise value
                return value

        return Plugin()


@pytest.mark.parametrize("value, msg", [
    (ZeroDivisionError("boom"), r"reward 'my_plugin' \(Plugin\) raised at step 0 of env 0: ZeroDivisionError"),
    (None, r"reward 'my_plugin' \(Plugin\) returned None at step 0 of env 0: None, not a number"),
    ("0.5", r"returned '0.5' at step 0 of env 0: a str, not a number"),
    (True, r"returned True at step 0 of env 0: a bool, not a number"),
    (np.zeros(3), r"a sequence of shape \(3,\); __call__ must return one number"),
    (float("nan"), r"reward 'my_plugin' \(Plugin\) returned nan at step 0 of env 0"),
])
@pytest.mark.parametrize("mix", [False, True])
def test_failing_plugin_rewards_are_named_as_registered_with_step_and_env(value, msg, mix):
    from lmm_env import rewards
    from lmm_env.rewards import RewardError

    rewards.register("my_plugin", _Returns(value).make, overwrite=True)
    spec = {"key_match": 0.5, "my_plugin": 0.5} if mix else "my_plugin"
    env = gym.make("LMMPiano-v0", reward=spec, max_seconds=2.0)
    env.reset(seed=0)
    with pytest.raises(RewardError, match=msg):
        env.step(env.action_space.sample())
    env.close()
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, reward=spec, max_seconds=2.0)
    venv.reset(seed=0)
    with pytest.raises(RewardError, match="my_plugin.*env 0"):
        venv.step(venv.action_space.sample())
    venv.close()


def test_a_corpus_with_no_piece_inside_keys_fails_fast_with_the_reason():
    import time

    from lmm_env.score import ScoreError

    t0 = time.perf_counter()
    with pytest.raises(ScoreError, match=r"none of the 64 pieces tried has notes inside keys=\(60, 60\)"):
        gym.make("LMMPiano-v0", keys=(60, 60)).reset(seed=0)
    assert time.perf_counter() - t0 < 60  # it converted 9,188 tunes (> 10 minutes) before


def test_a_transient_error_while_converting_is_not_cached_as_a_bad_piece(monkeypatch, tmp_path):
    from lmm_env import corpus

    monkeypatch.setattr(corpus, "cache_dir", lambda: tmp_path)
    piece = corpus.load("bach-chorales", "test").ids[0]

    def flaky(piece_id):
        raise TimeoutError("interrupted")

    real = corpus._convert_music21
    monkeypatch.setattr(corpus, "_convert_music21", flaky)
    with pytest.raises(TimeoutError):
        corpus._load_cached(piece)
    assert not corpus._cache_path(piece).exists()
    monkeypatch.setattr(corpus, "_convert_music21", real)
    assert corpus._load_cached(piece) is not None  # converted for real the next time


def test_batched_env_i_matches_the_single_env_seeded_s_plus_i_within_the_stated_tolerance():
    from lmm_env.envs.core import VECTOR_TOLERANCE

    n, seed, steps = 3, 7, 60
    rng = np.random.default_rng(0)
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, max_seconds=3.0)
    obs_v, _ = venv.reset(seed=seed)
    actions = [np.where(rng.random((n,) + venv.single_action_space.shape) < 0.05, 0.7, -1.0).astype(np.float32)
               for _ in range(steps)]
    vec_audio, vec_rew = [obs_v["audio"]], []
    for a in actions:
        obs_v, r, *_ = venv.step(a)
        vec_audio.append(obs_v["audio"])
        vec_rew.append(r)
    venv.close()
    for i in range(n):
        env = gym.make("LMMPiano-v0", max_seconds=3.0)
        obs, _ = env.reset(seed=seed + i)
        audio, rew = [obs["audio"]], []
        for a in actions:
            obs, r, term, trunc, _ = env.step(a[i])
            audio.append(obs["audio"])
            rew.append(r)
            if term or trunc:
                break
        k = len(rew)
        np.testing.assert_allclose(np.array(audio), np.array(vec_audio)[: k + 1, i], atol=VECTOR_TOLERANCE, rtol=0)
        np.testing.assert_allclose(np.array(rew), np.array(vec_rew)[:k, i], atol=VECTOR_TOLERANCE, rtol=0)
        env.close()


def test_on_policy_checkpoints_count_only_the_steps_their_weights_learned_from(tmp_path, monkeypatch):
    import importlib

    train_mod = importlib.import_module("lmm_env.agents.training.sb3")
    saved = []
    real = train_mod.save_checkpoint

    def spy(model, path, config):
        saved.append((model.num_timesteps, model._n_updates))
        return real(model, path, config)

    monkeypatch.setattr(train_mod, "save_checkpoint", spy)
    # rollouts of 32 x 2 = 64 steps; a checkpoint is due every 16 steps, i.e. inside rollouts
    train_mod.train(total_steps=192, n_envs=2, hyperparams={"n_steps": 32, "batch_size": 64, "n_epochs": 1},
                    env_kwargs={"max_seconds": 2.0}, eval_every=0, checkpoint_every=16, logdir=tmp_path,
                    progress=False)
    assert len(saved) >= 3
    for steps, updates in saved:  # one update a rollout (n_epochs 1, one batch)
        assert steps == 64 * updates, saved


def test_resume_says_where_it_resumes_and_continues_the_step_count(tmp_path, capsys):
    from lmm_env.agents import train

    kw = dict(n_envs=2, hyperparams={"n_steps": 32, "batch_size": 64, "n_epochs": 1}, env_kwargs={"max_seconds": 2.0},
              eval_every=0, checkpoint_every=64, logdir=tmp_path, progress=False)
    train(total_steps=128, **kw)
    capsys.readouterr()
    model = train(total_steps=256, resume=True, **kw)
    out = capsys.readouterr().out
    assert "resuming from" in out and "last.safetensors at step 128 of 256" in out, out
    assert model.num_timesteps == 256 and model._n_updates == 2  # two more rollouts learned from, none skipped


def test_a_corpus_keeps_a_bounded_number_of_pieces_in_memory(monkeypatch):
    from lmm_env import corpus

    monkeypatch.setattr(corpus, "MEMO_SIZE", 8)
    c = corpus.load("exercises-scale", "train", n=40)
    first = c[0]
    for i in range(40):
        c[i]
    assert len(c._memo) == 8
    assert c[0] == first  # an evicted piece comes back the same


def test_doctor_checks_every_default_path_and_fails_only_on_required_ones(monkeypatch, capsys):
    from lmm_env import doctor
    from lmm_env.agents.cli import main

    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    for what in ("package torch", "synth piano (built-in)", "model ear", "env LMMPiano-v0", "threads"):
        assert what in out
    real = doctor._version
    monkeypatch.setattr(doctor, "_version", lambda d: None if d == "tinysoundfont" else real(d))
    assert doctor.main() == 0  # the SoundFont piano is optional: a warning
    assert "[warn] package tinysoundfont" in capsys.readouterr().out
    monkeypatch.setattr(doctor, "_version", lambda d: None if d == "music21" else real(d))
    assert doctor.main() == 1
    assert "[FAIL] package music21" in capsys.readouterr().out


def test_a_pickled_env_is_small_and_steps_like_the_original():
    import pickle

    env = gym.make("LMMPiano-v0", max_seconds=3.0)
    env.reset(seed=0)
    blob = pickle.dumps(env.unwrapped)
    assert len(blob) < 5e6  # it was 69 MB with the synth's tables; workers rebuild them
    copy = pickle.loads(blob)
    a = np.where(np.random.default_rng(0).random(88) < 0.05, 0.7, -1.0).astype(np.float32)
    for _ in range(5):
        o1, r1, *_ = env.step(a)
        o2, r2, *_ = copy.step(a)
        np.testing.assert_array_equal(o1["audio"], o2["audio"])
        assert r1 == r2
    env.close()


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_sb3_subprocess_vec_env_runs_the_env_under_every_start_method(method):
    import functools

    from stable_baselines3.common.vec_env import SubprocVecEnv

    make = functools.partial(gym.make, "lmm_env:LMMPiano-v0", max_seconds=1.0, reward="key_match")
    venv = SubprocVecEnv([make, make], start_method=method)
    try:
        obs = venv.reset()
        for _ in range(5):
            obs, r, done, info = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
            assert np.isfinite(r).all() and np.isfinite(obs["audio"]).all()
    finally:
        venv.close()


def test_gymnasium_async_vector_env_runs_the_env():
    import functools

    make = functools.partial(gym.make, "lmm_env:LMMPiano-v0", max_seconds=1.0, reward="key_match")
    venv = gym.vector.AsyncVectorEnv([make, make])
    try:
        obs, _ = venv.reset(seed=0)
        for _ in range(5):
            obs, r, *_ = venv.step(venv.action_space.sample())
            assert np.isfinite(r).all() and np.isfinite(obs["audio"]).all()
    finally:
        venv.close()


# What the two kill tests train: PPO on 2 envs, a 64-step rollout and a checkpoint each rollout.
_KILL_HP = {"n_steps": 32, "batch_size": 64, "n_epochs": 1}
_KILL_KW = {"max_seconds": 2.0, "reward": "key_match"}


def _train_argv(tmp_path) -> list[str]:
    import json

    return ["train", "--steps", "1000000", "--n-envs", "2", "--logdir", str(tmp_path),
            "--hyperparams", json.dumps(_KILL_HP), "--env-kwargs", json.dumps(_KILL_KW),
            "--eval-every", "0", "--checkpoint-every", "64", "--no-progress"]


def _resume(tmp_path, steps):
    """Resume the killed run for 128 more steps (the checks are the callers')."""
    from lmm_env.agents import train

    return train(total_steps=steps + 128, n_envs=2, hyperparams=_KILL_HP, env_kwargs=_KILL_KW, eval_every=0,
                 checkpoint_every=64, logdir=tmp_path, resume=True, progress=False)


def _plays(ckpt) -> bool:
    from lmm_env.agents import load_agent

    agent = load_agent(ckpt)
    env = gym.make("LMMPiano-v0", **_KILL_KW)
    obs, _ = env.reset(seed=0)
    action, _ = agent.predict(obs, deterministic=True)
    env.close()
    return env.action_space.contains(action)


def test_training_killed_with_sigkill_resumes_from_its_last_good_checkpoint(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from lmm_env.agents.training.sb3 import read_checkpoint

    cmd = [sys.executable, "-m", "lmm_env.agents.cli"] + _train_argv(tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    ckpt = tmp_path / "checkpoints" / "last.safetensors"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (ckpt.is_file() and read_checkpoint(ckpt)[2] >= 256):
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    _, _, steps = read_checkpoint(ckpt)  # the last good checkpoint loads
    assert steps >= 256 and steps % 64 == 0
    model = _resume(tmp_path, steps)
    assert model.num_timesteps == steps + 128 and not list(ckpt.parent.glob("*.tmp"))
    assert _plays(ckpt)


_BLOCK_THE_THIRD_WRITE = """
import os, sys, time
import safetensors.torch as st
real, calls = st.save_file, [0]
def save_file(tensors, filename, metadata=None):
    calls[0] += 1
    real(tensors, filename, metadata=metadata)
    if calls[0] == 3:  # half of the third checkpoint is on disk; wait here for the kill
        size = os.path.getsize(filename)
        with open(filename, "r+b") as f:
            f.truncate(size // 2)
        open(os.environ["LMM_TEST_MARKER"], "w").close()
        time.sleep(600)
st.save_file = save_file
from lmm_env.agents.cli import main
main(sys.argv[1:])
"""


def test_training_killed_with_sigkill_during_a_checkpoint_write_resumes_from_the_previous_one(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from lmm_env.agents.training.sb3 import read_checkpoint

    marker = tmp_path / "writing"
    cmd = [sys.executable, "-c", _BLOCK_THE_THIRD_WRITE] + _train_argv(tmp_path)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS="1", LMM_TEST_MARKER=str(marker)))
    ckpt = tmp_path / "checkpoints" / "last.safetensors"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not marker.exists() and proc.poll() is None:
            time.sleep(0.1)
        assert marker.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "timed out"
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: the temporary holds half a checkpoint
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    temporaries = list(ckpt.parent.glob("*.tmp"))
    assert temporaries, "the kill should have left the half-written temporary"
    _, _, steps = read_checkpoint(ckpt)  # the previous checkpoint is whole and loads
    assert steps == 128  # writes at 64 (1), 128 (2); the third, at 192, was killed
    with pytest.warns(UserWarning, match="a killed run was writing"):
        model = _resume(tmp_path, steps)
    assert model.num_timesteps == steps + 128 and not list(ckpt.parent.glob("*.tmp"))
    assert read_checkpoint(ckpt)[2] == steps + 128
    assert _plays(ckpt)


def test_episode_videos_have_a_video_and_an_audio_stream_of_the_episodes_length(tmp_path):
    from lmm_env.agents import ScoreReaderAgent
    from lmm_env.envs import RecordEpisodeVideo
    from lmm_env.envs.video import streams

    env = RecordEpisodeVideo(gym.make("LMMPiano-v0", render_mode="rgb_array", max_seconds=2.0), tmp_path)
    agent = ScoreReaderAgent(env.unwrapped)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, _, term, trunc, _ = env.step(agent.predict(obs)[0])
        steps, done = steps + 1, term or trunc
    (path,) = env.paths
    s = streams(path)
    seconds = steps / env.unwrapped.sim.frame_rate
    assert s["video"] == pytest.approx(seconds, abs=0.15) and s["audio"] == pytest.approx(seconds, abs=0.15)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        RecordEpisodeVideo(gym.make("LMMPiano-v0"), tmp_path)


def test_play_writes_a_video_with_sound(tmp_path):
    import pretty_midi

    from lmm_env.agents.cli import main
    from lmm_env.envs.video import streams

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes += [pretty_midi.Note(80, p, 0.25 * i, 0.25 * i + 0.2) for i, p in enumerate((60, 62, 64, 65))]
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "tune.mid"))
    assert main(["play", str(tmp_path / "tune.mid"), "--out", str(tmp_path / "o"), "--video", "--no-progress"]) == 0
    s = streams(tmp_path / "o" / "tune_performance.mp4")
    assert s["video"] and s["audio"]


@pytest.mark.parametrize("kw, names", [
    (dict(frame_rate=40, reward="ear_match"), ["ear_match", "frame_rate=40", "frame_rate=20"]),
    (dict(frame_rate=40), ["closed_loop", "ear_match", "frame_rate=20"]),
    (dict(n_mels=32), ["audio_lm", "n_mels=32", "n_mels=64"]),
    (dict(n_mels=32, reward={"key_match": 0.5, "audio_lm": 0.5}), ["audio_lm", "n_mels=64"]),
    (dict(sample_rate=22050, frame_rate=25, reward="score_lm"), ["score_lm", "sample_rate=16000"]),
])
def test_a_reward_trained_at_another_timing_is_refused_at_construction(kw, names):
    for make in (lambda: gym.make("LMMPiano-v0", **kw), lambda: gym.make_vec("LMMPiano-v0", num_envs=2, **kw)):
        with pytest.raises(ValueError) as err:
            make()  # not at the first reset: before any piece is loaded
        for name in names:
            assert name in str(err.value)


def test_the_improvise_task_refuses_another_frame_rate_at_construction():
    with pytest.raises(ValueError, match="improvise.*frame_rate=20"):
        gym.make("LMMImprovise-v0", frame_rate=40)


def test_a_reward_that_fits_any_timing_still_plays_at_another_frame_rate():
    env = gym.make("LMMPiano-v0", frame_rate=40, reward="key_match", max_seconds=1.0)
    env.reset(seed=0)
    _, r, *_ = env.step(env.action_space.sample())
    assert np.isfinite(r)
    env.close()


def test_trimmed_pieces_reserve_their_episode_buffers_once():
    # max_seconds bounds every episode: the batched env reserves exactly that per env and never
    # allocates or copies episode storage again (a copy stalls 256 envs for most of a second)
    venv = gym.make_vec("LMMPiano-v0", num_envs=4, reward="key_match", max_seconds=2.0, tail=0.5)
    venv.reset(seed=0)
    tapes = venv.unwrapped.sim.tapes
    assert tapes.reserve == 52  # (2.0 + 0.5) s x 20 fps + 2
    pool, off = tapes.tape, tapes.off.copy()
    rng = np.random.default_rng(0)
    for _ in range(200):  # several episodes per env
        venv.step(rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32))
    assert tapes.tape is pool and np.array_equal(tapes.off, off) and tapes.compactions == 0
    venv.close()


def test_episode_storage_follows_the_pieces_played_not_the_longest_times_the_batch():
    # Untrimmed pieces of very different lengths: storage grows by compacting live episodes,
    # which must carry every running env's tape and history over unchanged, and stays
    # proportional to the episodes being played (not n_envs x the longest piece ever drawn).
    long = Score.from_notes([(60 + (k % 12), 0.25 * k, 0.25 * k + 0.2, 80) for k in range(400)], name="long")
    short = Score.from_notes([(62, 0.0, 0.5, 80), (64, 0.5, 1.0, 80)], name="short")
    n = 8
    kw = dict(reward="key_match", score=[short] * 7 + [long], tail=0.0)
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, **kw)
    sim = venv.unwrapped.sim
    venv.reset(seed=0)
    singles = [gym.make("LMMPiano-v0", **kw) for _ in range(n)]
    for i, env in enumerate(singles):
        env.reset(seed=i)
    rng = np.random.default_rng(1)
    longest = peak_live = 0
    for _ in range(700):
        a = rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32)
        obs, _, _, trunc, infos = venv.step(a)
        for i, env in enumerate(singles):
            o, _, _, tr, info = env.step(a[i])
            assert tr == trunc[i]
            if tr:  # the batch resets in the same step: its final observation is in the info
                final = infos["final_obs"][i]
                assert np.array_equal(o["score"], final["score"]) and np.array_equal(o["key_state"], final["key_state"])
                assert info["metrics"]["note_f1"] == infos["metrics"]["note_f1"][i]
                assert info["metrics"]["frame_f1"] == infos["metrics"]["frame_f1"][i]
                o, _ = env.reset()
            assert np.array_equal(o["score"], obs["score"][i]) and np.array_equal(o["key_state"], obs["key_state"][i])
        longest = max(longest, int(sim.n_steps.max()))
        tp = sim.tapes  # live rows: each env's episode, at least its reservation
        peak_live = max(peak_live, int(np.maximum(tp.used, 2 * tp.pad + tp.reserve).sum()))
    assert sim.tapes.compactions > 0  # the long piece outgrew the 256-step reservation
    assert sim.tapes.rows <= max(2 * peak_live, sim.tapes.MIN_ROWS)
    venv.close()


def test_one_long_episode_costs_its_own_rows_not_the_whole_batch():
    from lmm_env.envs.tapes import EpisodeTapes

    n, pad = 8, 3
    tapes = EpisodeTapes(n, pad, reserve=10)
    rng = np.random.default_rng(0)
    marks = {}

    def begin(i, steps):
        tapes.begin(i, steps)
        assert not tapes.episode_tape(i).any() and not tapes.history(i, steps)[0].any()  # cleared
        marks[i] = rng.integers(1, 255, (2 * pad + steps, 88), dtype=np.uint8)
        tapes.episode_tape(i)[:] = marks[i]
        tapes.history(i, steps)[1][:] = marks[i][:steps]

    for i in range(n):
        begin(i, 10)
    begin(0, 5000)  # one very long piece: outgrows the pool, compacts the others
    def live():  # each env's episode, at least its reservation
        return int(np.maximum(tapes.used, 2 * pad + tapes.reserve).sum())

    peak = live()
    for _ in range(20):
        for i in range(1, n):
            begin(i, int(rng.integers(5, 40)))
            peak = max(peak, live())
            for j in range(n):  # every other env's episode survives allocation and compaction
                assert np.array_equal(tapes.episode_tape(j), marks[j])
                steps = len(marks[j]) - 2 * pad
                assert np.array_equal(tapes.history(j, steps)[1], marks[j][:steps])
    assert tapes.compactions >= 1
    assert tapes.rows <= max(2 * peak, tapes.MIN_ROWS) < n * (2 * pad + 5000) / 2
    # episodes within the reservation reuse their env's region, compactions or not
    for i in range(1, n):
        begin(i, tapes.reserve)
        off = int(tapes.off[i])
        for steps in (1, tapes.reserve // 2, tapes.reserve):
            begin(i, steps)
            assert int(tapes.off[i]) == off
