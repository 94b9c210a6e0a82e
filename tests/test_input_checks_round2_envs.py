"""The envs refuse bad arguments when they are given (second QA probe, envs' share).

Each test failed before its fix: untrimmed pools whose episodes outgrow memory at reset,
render_mode="human", the torch world's NaN actions / record_audio=False / foreign-device
tensors, make_sb3_vec_env's seed and env_id, LMMByEar-v0's target_synth with a recording and
its missing target file, and a corpus name inside a score list."""
import re
import time

import gymnasium as gym
import numpy as np
import pretty_midi
import pytest
import torch

import lmm_env
from lmm_env._checks import short_repr
from lmm_env.envs.core import MAX_WORLD_BYTES
from lmm_env.score import Score

K = dict(score="exercises-scale", max_seconds=1.0, reward="key_match")


def _long_midi(hours: float) -> pretty_midi.PrettyMIDI:
    """200 notes spread over ``hours`` (the probe's piece)."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    step = hours * 3600 / 200
    inst.notes.extend(pretty_midi.Note(80, 60 + k % 20, k * step, (k + 1) * step) for k in range(200))
    pm.instruments.append(inst)
    return pm


def _tone(seconds: float, sr: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


# --------------------------------------------------------------------------- M1: episode memory


@pytest.mark.parametrize("n, hours, seconds", [(64, 2.9, "10,440"), (1024, 1.0, "3,600")])
def test_untrimmed_pieces_too_long_for_all_envs_are_refused_at_construction(n, hours, seconds):
    pm = _long_midi(hours)
    msg = rf"n_envs={n} with a {seconds} s score.*GiB of episode storage.*16 GiB: pass max_seconds=.*fewer envs"
    for score in (pm, Score.from_midi(pm)):
        t = time.perf_counter()
        with pytest.raises(ValueError, match=msg):
            gym.make_vec("LMMPiano-v0", num_envs=n, score=score, reward="key_match")
        assert time.perf_counter() - t < 10  # refused before any episode is laid out
    # trimmed, the same piece builds and plays
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, score=pm, reward="key_match", max_seconds=2.0)
    venv.reset(seed=0)
    assert int(venv.unwrapped.sim.n_steps.max()) == 50


def test_the_bound_counts_each_world_and_task():
    one_hour = _long_midi(1.0)
    # 150 envs of an hour fit the numpy world, not the torch world's extra device tapes
    gym.make_vec("LMMPiano-v0", num_envs=150, score=one_hour, reward="key_match")
    with pytest.raises(ValueError, match=r"n_envs=150 with a 3,600 s score.*at most 13\d\)"):
        gym.make_vec("LMMPiano-v0", num_envs=150, score=one_hour, reward="key_match", backend="torch")
    # a corpus by its typical piece: very many envs of untrimmed folk are refused, short exercises not
    with pytest.raises(ValueError, match=r"n_envs=16384 with corpus 'folk' \(pieces of about 60 s\).*max_seconds="):
        gym.make_vec("LMMPiano-v0", num_envs=16384, reward="key_match")
    gym.make_vec("LMMPiano-v0", num_envs=4096, score="exercises-scale", reward="key_match")
    gym.make_vec("LMMPiano-v0", num_envs=4096, reward="key_match", max_seconds=10.0)
    # an hour-long prompt and free play in each of 128 envs
    with pytest.raises(ValueError, match=r"n_envs=128 with prompt_seconds=3600 and length_seconds=3600"):
        gym.make_vec("LMMImprovise-v0", num_envs=128, prompt_seconds=3600, length_seconds=3600, reward="key_match")
    # a 10-minute recording heard by 300 envs (each keeps its audio and log-mel)
    with pytest.raises(ValueError, match=r"n_envs=300 with target 'target-array' \(600 s\)"):
        gym.make_vec("LMMByEar-v0", num_envs=300, target=_tone(600.0), reward="key_match")


def test_a_reset_score_too_long_for_all_envs_is_refused_at_that_reset():
    venv = gym.make_vec("LMMPiano-v0", num_envs=64, score="exercises-scale", reward="key_match")
    with pytest.raises(ValueError, match=r"n_envs=64 with a 10,440 s score"):
        venv.reset(seed=0, options={"score": _long_midi(2.9)})
    venv.reset(seed=0)


def test_ordinary_untrimmed_folk_still_builds():
    venv = gym.make_vec("LMMPiano-v0", num_envs=256, reward="key_match")
    assert 256 * 12_012 * venv.unwrapped.sim.episode_step_bytes() < MAX_WORLD_BYTES


# --------------------------------------------------------------------------- render_mode="human"


@pytest.mark.parametrize("env_id", lmm_env.TASK_IDS)
def test_render_mode_human_is_refused_at_make(env_id):
    with pytest.raises(ValueError, match=r"render_mode='human' is not supported.*'rgb_array'.*RecordEpisodeVideo"):
        gym.make(env_id, render_mode="human", reward="key_match")


def test_rgb_array_and_the_env_checker_still_work():
    from gymnasium.utils.env_checker import check_env

    env = gym.make("LMMPiano-v0", render_mode="rgb_array", **K)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3
    assert env.unwrapped.metadata["render_modes"] == ["rgb_array"]
    check_env(gym.make("LMMPiano-v0", **K).unwrapped)  # tries every render mode the env lists


# --------------------------------------------------------------------------- torch world


def test_torch_world_unchecked_nan_acts_as_key_up():
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", validate_actions=False, **K)
    ref = gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", validate_actions=False, **K)
    venv.reset(seed=0)
    ref.reset(seed=0)
    a = torch.full((2, 88), -1.0)
    a[0, 39] = float("nan")
    a[1, 40] = float("inf")
    b = torch.full((2, 88), -1.0)
    b[1, 40] = 1.0
    obs, rew, *_ = venv.step(a)
    obs_ref, rew_ref, *_ = ref.step(b)
    assert torch.equal(obs["key_state"], obs_ref["key_state"]) and torch.equal(rew, rew_ref)
    assert obs["key_state"][0, 39] == 0 and obs["key_state"][1, 40] == 1


def test_torch_world_takes_record_audio_false_and_names_other_values():
    gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", record_audio=False, **K).reset(seed=0)
    with pytest.raises(ValueError, match=r"record_audio=True is not allowed in the torch world"):
        gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", record_audio=True, **K)
    with pytest.raises(ValueError, match=r"record_audio='no' is not allowed; use True or False"):
        gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", record_audio="no", **K)


def test_torch_world_refuses_a_tensor_on_another_device():
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", **K)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"action is a tensor on device 'meta'; this world runs on 'cpu'"):
        venv.step(torch.zeros(2, 88, device="meta"))
    venv.step(torch.zeros(2, 88))  # the CPU (and numpy) still go


# --------------------------------------------------------------------------- make_sb3_vec_env


@pytest.mark.parametrize("seed", [-1, 1.5, True, "a", np.float64(2.0)])
def test_make_sb3_vec_env_checks_the_seed_before_building(seed):
    from lmm_env.envs import make_sb3_vec_env

    with pytest.raises(ValueError, match=rf"seed={re.escape(short_repr(seed))} is not allowed; use None or an int"):
        make_sb3_vec_env(2, seed=seed, **K)


def test_make_sb3_vec_env_names_the_task_ids():
    from lmm_env.envs import make_sb3_vec_env

    with pytest.raises(ValueError, match=r"env_id='Bogus-v0' is not allowed; use one of \['LMMPiano-v0', "):
        make_sb3_vec_env(2, env_id="Bogus-v0", **K)
    env = make_sb3_vec_env(2, seed=np.int64(3), **K)
    assert env.reset()["audio"].shape[0] == 2


# --------------------------------------------------------------------------- LMMByEar-v0 targets


def test_by_ear_refuses_target_synth_with_a_recording(tmp_path):
    import soundfile as sf

    wav = tmp_path / "tone.wav"
    sf.write(str(wav), _tone(1.0), 16000)
    for target in (str(wav), wav, _tone(1.0)):
        with pytest.raises(ValueError, match=r"target_synth='soundfont' is not allowed with target=.*corpus"):
            gym.make("LMMByEar-v0", target=target, target_synth="soundfont", reward="key_match")
    gym.make("LMMByEar-v0", target=str(wav), reward="key_match").reset(seed=0)


def test_by_ear_missing_target_file_is_a_file_not_found_error(tmp_path):
    missing = tmp_path / "missing.wav"
    with pytest.raises(FileNotFoundError, match=r"target file '.*missing.wav' does not exist"):
        gym.make("LMMByEar-v0", target=str(missing))
    with pytest.raises(ValueError, match="does not exist"):  # as before
        gym.make_vec("LMMByEar-v0", num_envs=2, target=missing)


# --------------------------------------------------------------------------- messages


def test_a_corpus_name_inside_a_score_list_is_named_as_such():
    one = Score.from_notes([(60, 0.0, 0.5, 80)], name="one")
    with pytest.raises(ValueError, match=r"score item 'folk' is a corpus name, which a list cannot hold: give the "
                                         r"corpus alone \(score='folk'\)") as info:
        gym.make("LMMPiano-v0", score=[one, "folk"], reward="key_match")
    assert "or a corpus name" not in str(info.value)
    with pytest.raises(ValueError, match=r"score item 5 is not allowed; a list holds MIDI paths"):
        gym.make("LMMPiano-v0", score=[5], reward="key_match")
    env = gym.make("LMMPiano-v0", **K)
    with pytest.raises(ValueError, match=r"options\['score'\]='folk' is not allowed; use a MIDI path.*one piece") as e:
        env.reset(seed=0, options={"score": "folk"})
    assert "or a corpus name" not in str(e.value)
