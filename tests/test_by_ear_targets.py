"""LMMByEar-v0's target arguments: target_sample_rate checks, long recordings read lazily, short error messages."""
import math

import gymnasium as gym
import numpy as np
import pytest
import soundfile as sf

import lmm_env  # noqa: F401  (registers the envs)
from lmm_env.audio import load_audio
from lmm_env.score import Score

SR = 16000


def _tone(seconds, sr=SR, amp=0.1):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """Ten minutes of a quiet sine at 16 kHz, written in 10 s chunks (19 MB of PCM_16)."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    chunk = _tone(10.0, amp=0.05)  # 440 Hz: a whole number of periods per 10 s chunk
    with sf.SoundFile(path, "w", SR, 1, "PCM_16") as f:
        for _ in range(60):
            f.write(chunk)
    return str(path)


@pytest.mark.parametrize("rate", [1.5, 16, 0, -1, float("nan"), True, 16000.0, 10**9, "16000"])
def test_target_sample_rate_is_checked_when_made(rate):
    # a short array: the old code took 1.5 as 1 Hz and upsampled it (slowly, without complaint)
    with pytest.raises(ValueError, match=r"target_sample_rate=.*\[4000, 384000\]"):
        gym.make("LMMByEar-v0", target=_tone(0.01), target_sample_rate=rate)


def test_target_sample_rate_is_refused_without_an_array(tmp_path):
    wav = tmp_path / "t.wav"
    sf.write(wav, _tone(1.0), SR)
    for target in (str(wav), wav):
        with pytest.raises(ValueError, match="carries its own sample rate"):
            gym.make("LMMByEar-v0", target=target, target_sample_rate=SR)
    with pytest.raises(ValueError, match="target_sample_rate= is the sample rate of a target array"):
        gym.make("LMMByEar-v0", target_sample_rate=SR)


def test_target_sample_rate_accepts_numpy_ints():
    with pytest.warns(UserWarning, match="resampled"):
        env = gym.make("LMMByEar-v0", target=_tone(1.0, sr=8000), target_sample_rate=np.int64(8000))
    assert env.reset(seed=0)[1]["n_steps"] == 20  # 1 s at 20 steps per second
    assert len(env.unwrapped.target_audio()) == 20 * 800


def test_a_long_wav_is_read_only_as_far_as_the_episode(long_wav, monkeypatch):
    calls = []
    read = sf.read

    def spy(*args, **kwargs):
        calls.append(kwargs.get("frames", -1))
        return read(*args, **kwargs)

    monkeypatch.setattr(sf, "read", spy)
    env = gym.make("LMMByEar-v0", target=long_wav, max_seconds=2)
    assert calls and all(0 < n <= 2 * SR for n in calls)  # not the file's 9.6 M frames
    _, info = env.reset(seed=0)
    assert info["n_steps"] == 40 and len(env.unwrapped.target_audio()) == 2 * SR


def test_a_long_recording_keeps_its_reference_to_the_part_played(long_wav):
    # notes over the whole ten minutes: they match the file, not the 2 s read of it
    ref = Score.from_notes([(60 + i % 12, 2.0 * i, 2.0 * i + 1.5, 80) for i in range(300)])
    env = gym.make("LMMByEar-v0", target=long_wav, reference=ref, max_seconds=2)
    env.reset(seed=0)
    assert env.unwrapped.reference_score().duration <= 2.0
    with pytest.raises(ValueError, match="the audio lasts 600.00 s"):  # still checked against the whole file
        gym.make("LMMByEar-v0", target=long_wav, max_seconds=2,
                 reference=Score.from_notes([(60, 0.0, 700.0, 80)]))


def test_a_long_array_is_cut_before_resampling():
    x = _tone(3.0, sr=8000)
    x[2 * 8000 + 100:] = np.nan  # past the part read: never looked at
    with pytest.warns(UserWarning, match="resampled"):
        y, seconds = load_audio(x, SR, source_rate=8000, max_seconds=2, return_seconds=True)
    assert math.isclose(seconds, 3.0) and len(y) == 2 * SR


def test_a_directory_target_is_named_as_such(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not an audio file"):
        gym.make("LMMByEar-v0", target=str(tmp_path))


@pytest.mark.parametrize("kwargs", [
    dict(target=[0.1] * 100_000),
    dict(target=tuple(range(100_000))),
    dict(target=_tone(1.0), reference=[0.5] * 100_000),
    dict(target_synth=[0.5] * 100_000),
])
def test_error_messages_stay_short(kwargs):
    with pytest.raises(ValueError) as info:
        gym.make("LMMByEar-v0", **kwargs)
    assert len(str(info.value)) < 400, str(info.value)[:400]


def test_a_list_target_is_refused_with_a_hint():
    with pytest.raises(ValueError, match=r"float numpy array: np.asarray\(samples, np.float32\)"):
        gym.make("LMMByEar-v0", target=[0.1, 0.2, 0.3])


def test_a_corpus_target_sounds_at_its_own_times_with_its_pedal():
    """The target is the piece as a recording of it sounds: onsets off the 20 fps grid stay
    where they are (not snapped), and the sustain pedal rings released notes on; the note
    metrics' reference is the notes a listener hears (held on until the pedal lifts)."""
    from lmm_env.synth import make_synth

    piece = Score([60, 67], [0.033, 0.51], [0.2, 0.9], [90, 70], pedal=[[0.1, 1.2]], name="off-grid")
    env = gym.make("LMMByEar-v0", target_synth="piano", max_seconds=None)
    env.reset(seed=0, options={"score": piece})
    sim = env.unwrapped.sim
    audio = sim.target_audios[0]
    rendered = make_synth("piano", sim.sample_rate).render(piece.sustained(), tail=1.0)
    n = min(len(audio), len(rendered))
    np.testing.assert_allclose(audio[:n], rendered[:n], atol=1e-6)
    first = int(np.flatnonzero(np.abs(audio) > 1e-4)[0])
    assert abs(first - 0.033 * sim.sample_rate) < 0.002 * sim.sample_rate  # not 0.05 s (the grid's frame 1)
    ref = sim.references[0]
    assert ref.onsets.tolist() == pytest.approx([0.033, 0.51])
    assert ref.offsets.tolist() == pytest.approx([1.2, 1.2])  # both released under the pedal
    env.close()
