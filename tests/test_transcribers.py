"""The outside transcribers as by-ear agents: the torchaudio stand-in, the install message, and
basic-pitch playing a target (when installed: `make outside`)."""
import sys

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.agents.baselines import transcribers


def test_the_mel_filterbank_stand_in_is_torchaudios_htk_filterbank():
    librosa = pytest.importorskip("librosa")
    fb = transcribers._melscale_fbanks(2049, 30.0, 8000.0, 229, 44100).numpy()
    ref = librosa.filters.mel(sr=44100, n_fft=4096, n_mels=229, fmin=30.0, fmax=8000.0, htk=True, norm=None).T
    assert fb.shape == (2049, 229)
    np.testing.assert_allclose(fb, ref, atol=1e-4)
    with pytest.raises(ValueError, match="norm=None"):
        transcribers._melscale_fbanks(2049, 30.0, 8000.0, 229, 44100, norm="slaney")


def test_the_stand_in_is_gone_after_the_model_is_built(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchaudio", None)  # as here: torchaudio does not import
    with transcribers._torchaudio_filterbank():
        import torchaudio

        assert torchaudio.functional.melscale_fbanks is transcribers._melscale_fbanks
    assert sys.modules.get("torchaudio") is None


@pytest.mark.parametrize("module,cls,line", [("basic_pitch", "BasicPitchAgent", "basic-pitch"),
                                             ("transkun", "TranskunAgent", "transkun")])
def test_a_missing_transcriber_names_its_install_line(monkeypatch, module, cls, line):
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, f"{module}.inference" if module == "basic_pitch" else f"{module}.ModelTransformer",
                        None)
    env = gym.make("LMMByEar-v0", score="exercises-scale", max_seconds=2.0)
    with pytest.raises(ImportError, match=f"pip install --no-deps {line}"):
        getattr(transcribers, cls)(env)


def test_basic_pitch_plays_what_it_hears():
    pytest.importorskip("basic_pitch")
    pytest.importorskip("onnxruntime")
    from lmm_env.agents import evaluate

    table = evaluate("basic-pitch", "LMMByEar-v0", episodes=1, progress=False,
                     env_kwargs={"score": "exercises-scale", "max_seconds": 4.0})
    assert table.summary["note_f1"] >= 0.8
    with pytest.raises(TypeError, match="LMMByEar-v0"):
        transcribers.BasicPitchAgent(gym.make("LMMPiano-v0", score="exercises-scale", max_seconds=2.0))


def test_a_target_heard_before_is_not_transcribed_again():
    """The benchmark plays one target at every K: a transcriber writes it down once."""
    from lmm_env.score import Score

    class CountingTranscriber(transcribers.TranscriberAgent):
        calls = 0

        def transcribe(self, audio, sample_rate):
            CountingTranscriber.calls += 1
            return Score([60], [0.0], [0.5], [80])

    for pairs in (0, 4):
        env = gym.make("LMMByEar-v0", score="exercises-scale", max_seconds=2.0, pairs=pairs)
        agent = CountingTranscriber(env)
        for seed in (0, 1):
            obs, _ = env.reset(seed=seed, options={"score_index": 0})
            action, _ = agent.predict(obs, episode_start=np.array([True]))
            assert action[60 - 21] > 0  # it plays the note it wrote down (C4, struck at step 0)
        env.close()
    assert CountingTranscriber.calls == 1
    other = gym.make("LMMByEar-v0", score="exercises-scale", max_seconds=2.0)
    other.reset(seed=0, options={"score_index": 1})
    CountingTranscriber(other).predict(None)
    assert CountingTranscriber.calls == 2
