"""Pairs of any instrument: ``lmm_env.pairs.load(K, instrument=...)``, and what ``pairs=K`` / ``ear=`` mean in
every task: the ear of K pairs of the world's instrument (of the target's, for LMMByEar-v0's rendered targets),
or your own ear object or file; the env says which (``sim.pairs_instrument``, ``sim.ear_source``)."""
import warnings

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the envs)
from lmm_env import pairs
from lmm_env.lm import ear as ear_mod
from lmm_env.lm.ear import AnalyticEar

SR = 16000


# --------------------------------------------------------------------------- pairs.load(K, instrument=...)


def test_instrument_is_the_documented_name_and_synth_its_old_one():
    by_name = pairs.load(4, instrument="soundfont")
    assert by_name.instrument == by_name.synth == "soundfont" and "instrument='soundfont'" in repr(by_name)
    old, positional, piano = pairs.load(4, synth="soundfont"), pairs.load(4, "soundfont"), pairs.load(4)
    a, b, c, p = by_name[0], old[0], positional[0], piano[0]
    assert a.name == b.name == c.name == p.name and a.score == p.score  # the same scores ...
    assert np.array_equal(a.audio, b.audio) and np.array_equal(a.audio, c.audio)
    assert not np.allclose(a.audio, p.audio)  # ... heard through another instrument
    assert (a.instrument, p.instrument) == ("soundfont", "piano")
    assert pairs.check_pair(a, 0, SR) is a


def test_load_refuses_both_names_and_bad_instruments_before_rendering(monkeypatch):
    from lmm_env import synth as synth_mod

    def no_render(*a, **k):
        raise AssertionError("the check must come before any synth is built")

    monkeypatch.setattr(synth_mod, "make_synth", no_render)
    with pytest.raises(ValueError, match="instrument='soundfont' and synth='piano' were both given"):
        pairs.load(4, instrument="soundfont", synth="piano")
    with pytest.raises(ValueError, match=r"instrument='harpsichord' is not allowed; use one of \[.*'piano'.*'soundfont'.*\]"):
        pairs.load(4, instrument="harpsichord")
    with pytest.raises(ValueError, match="instrument='/no/such.sf2': SoundFont file does not exist"):
        pairs.load(4, instrument="/no/such.sf2")


def test_instrument_names():
    from lmm_env.synth import PianoSynth, SoundFontSynth, Synth, default_soundfont

    path = default_soundfont()
    assert pairs.load(4, instrument=path).instrument == path
    assert pairs.instrument_name(PianoSynth(SR)) == "piano"
    assert pairs.instrument_name(SoundFontSynth(SR)) == "soundfont"
    assert pairs.instrument_name(SoundFontSynth(SR, path=path)) == "soundfont"  # the default file is "soundfont"

    class Organ(Synth):
        def render(self, score, tail=1.0):
            raise NotImplementedError

        def player(self, n_envs, block_size):
            raise NotImplementedError

    class Bright(PianoSynth):
        pass

    assert pairs.instrument_name(Organ()) == "Organ" and pairs.instrument_name(Bright(SR)) == "Bright"


def test_ear_for_takes_instrument_too():
    with pytest.raises(ValueError, match="were both given"):
        ear_mod.ear_for(16, instrument="soundfont", synth="piano")
    assert isinstance(ear_mod.ear_for(0, instrument="soundfont"), AnalyticEar)
    assert ear_mod.ear_for(4, "piano") is ear_mod.ear_for(4, instrument="piano") is ear_mod.ear_for(4, synth="piano")


def test_fit_ear_records_the_instrument():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ear = ear_mod.fit_ear([pairs.load(4, instrument="soundfont")[0]], steps=2, batch=8, progress=False)
    assert ear.fit_info["instrument"] == "soundfont" and ear.fit_info["pairs"] == 1


# --------------------------------------------------------------------------- the tasks: pairs=K and ear=


@pytest.fixture
def asked(monkeypatch):
    """The (K, instrument) every env asks ear_for for (answered with the analytic ear: nothing is fitted)."""
    calls = []

    def fake(K, instrument=pairs.DEFAULT_INSTRUMENT, seed=0, progress=True, *, synth=pairs.DEFAULT_INSTRUMENT):
        calls.append((K, pairs._instrument_arg(instrument, synth)[0]))
        return AnalyticEar()

    monkeypatch.setattr(ear_mod, "ear_for", fake)
    return calls


@pytest.mark.parametrize("task, kwargs, instrument", [
    ("LMMPiano-v0", {}, "piano"),
    ("LMMPiano-v0", {"synth": "soundfont"}, "soundfont"),
    ("LMMDecipher-v0", {"synth": "soundfont"}, "soundfont"),
    ("LMMImprovise-v0", {"synth": "soundfont"}, "soundfont"),
    ("LMMByEar-v0", {}, "piano"),
    ("LMMByEar-v0", {"synth": "soundfont"}, "soundfont"),
    ("LMMByEar-v0", {"target_synth": "soundfont"}, "soundfont"),  # the target's instrument, not the world's
    ("LMMByEar-v0", {"synth": "soundfont", "target_synth": "piano"}, "piano"),
    ("LMMByEar-v0", {"synth": "soundfont", "target_synth": "world"}, "soundfont"),
])
def test_pairs_k_is_the_ear_of_k_pairs_of_the_instrument_heard(asked, task, kwargs, instrument):
    kw = dict(kwargs, pairs=16)
    if task != "LMMImprovise-v0":
        kw["max_seconds"] = 2
    env = gym.make(task, **kw)
    sim = env.unwrapped.sim
    assert asked == [(16, instrument)]
    assert sim.pairs == 16 and sim.pairs_instrument == instrument
    assert sim.ear_source == f"pairs K=16 of {instrument!r}"
    assert env.reset(seed=0)[1]["pairs"] == 16
    venv = gym.make_vec(task, num_envs=2, **kw)  # the batched twin means the same
    assert asked[-1] == (16, instrument) and venv.unwrapped.sim.ear_source == sim.ear_source


def test_a_recording_target_is_heard_with_the_worlds_pairs(asked, tmp_path):
    import soundfile as sf

    t = np.arange(SR) / SR
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    env = gym.make("LMMByEar-v0", target=str(wav), synth="soundfont", pairs=4)
    assert asked == [(4, "soundfont")] and env.unwrapped.sim.pairs_instrument == "soundfont"


def test_an_ear_object_or_file_is_what_the_reward_listens_with(asked, tmp_path):
    from lmm_env.lm.checkpoint import save_checkpoint

    mine = AnalyticEar()
    env = gym.make("LMMByEar-v0", target_synth="soundfont", ear=mine, max_seconds=2)
    sim = env.unwrapped.sim
    assert asked == [] and sim.pairs is None and sim.listen_ear is mine
    assert sim.ear_source == "ear object (AnalyticEar)" and sim.pairs_instrument == "soundfont"
    venv = gym.make_vec("LMMByEar-v0", num_envs=2, ear=mine, max_seconds=2)
    assert venv.unwrapped.sim.listen_ear is mine

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = ear_mod.fit_ear([pairs.load(4, instrument="soundfont")[0]], steps=2, batch=8, progress=False)
    env = gym.make("LMMPiano-v0", ear=fitted, max_seconds=2)
    assert env.unwrapped.sim.ear_source == "ear object (LearnedEar fitted on 1 pairs of 'soundfont')"
    closed_loop = env.unwrapped.sim.reward.parts["closed_loop"][0]
    assert closed_loop.parts["ear_match"][0].ear is fitted
    path = save_checkpoint(fitted, tmp_path / "my_ear.safetensors")
    env = gym.make("LMMByEar-v0", ear=str(path), max_seconds=2)
    sim = env.unwrapped.sim
    assert sim.ear_source == f"ear file {str(path)!r}" and type(sim.listen_ear).__name__ == "LearnedEar"
    env.reset(seed=0)
    assert gym.make("LMMPiano-v0", max_seconds=2).unwrapped.sim.ear_source == "the reward's default ear"
    assert gym.make("LMMPiano-v0", ear="ear-analytic", max_seconds=2).unwrapped.sim.ear_source == "ear 'ear-analytic'"


def test_pairs_and_ear_together_and_unnameable_synths_are_refused(asked):
    from lmm_env.synth import PianoSynth

    for task in ("LMMPiano-v0", "LMMByEar-v0"):
        with pytest.raises(ValueError, match="pass pairs= or ear=, not both"):
            gym.make(task, pairs=4, ear=AnalyticEar(), max_seconds=2)

    class Bright(PianoSynth):  # a synth of your own: no pairs are named after it
        name = "bright"

    with pytest.raises(ValueError, match="pairs=4 is the ear of K pairs rendered through synth, but synth=.*"
                                         r"fit_ear\(lmm_env.pairs.load\(4, instrument=your_synth\)\)"):
        gym.make("LMMPiano-v0", synth=Bright(SR), pairs=4, max_seconds=2)
    with pytest.raises(ValueError, match="target_synth='harpsichord' is not allowed"):
        gym.make("LMMByEar-v0", target_synth="harpsichord", pairs=4)
    assert asked == []
    env = gym.make("LMMPiano-v0", synth=Bright(SR), ear=AnalyticEar(), max_seconds=2)  # ear= works with any synth
    assert env.unwrapped.sim.pairs_instrument is None


def test_pairs_never_imports_the_lm_package():
    import subprocess
    import sys

    code = "import sys, lmm_env.pairs as p; p.load(4); p.instrument_name('piano'); print('lmm_env.lm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
