"""Argument checks of the K-pairs protocol: `lmm_env.pairs.load` / `check_pair` and `lmm_env.lm.fit_ear`."""
from __future__ import annotations

import numpy as np
import pytest

from lmm_env import pairs
from lmm_env.pairs import Pair
from lmm_env.score import Score

SR = 16000


def _pair(audio=None, name="tiny", seconds=2.0, sample_rate=SR):
    """A 2-note score of ``seconds`` and a decaying sine that sounds over it (zero after)."""
    score = Score.from_notes([(60, 0.0, seconds / 2), (64, seconds / 2, seconds)])
    if audio is None:
        t = np.arange(int(seconds * SR)) / SR
        audio = (0.3 * np.sin(2 * np.pi * 262 * t) * np.exp(-t)).astype(np.float32)
    return Pair(score=score, audio=audio, sample_rate=sample_rate, name=name)


def _fit(ps, **kw):
    from lmm_env.lm import fit_ear

    kw.setdefault("steps", 2)  # on the old code a bad pair is fitted: keep that short too
    return fit_ear(ps, progress=False, **kw)


# --------------------------------------------------------------------------- fit_ear: the pairs


def test_fit_ear_refuses_a_nan_sample_naming_the_pair():
    audio = _pair().audio.copy()
    audio[100] = np.nan
    with pytest.raises(ValueError, match=r"pair 1 \('noisy'\).*finite"):
        _fit([_pair(), _pair(audio, name="noisy")])


def test_fit_ear_refuses_int16_audio_and_says_how_to_convert():
    pcm = (_pair().audio * 32767).astype(np.int16)
    with pytest.raises(ValueError, match=r"pair 0 \('pcm'\).*int16.*32768"):
        _fit([_pair(pcm, name="pcm")])


@pytest.mark.parametrize("audio, match", [
    (np.zeros(0, np.float32), "empty"),
    (np.zeros((2, 32000), np.float32), "1-D"),
    ([0.0] * 32000, "numpy array"),
])
def test_fit_ear_refuses_empty_2d_and_list_audio(audio, match):
    with pytest.raises(ValueError, match=rf"pair 0 \('tiny'\).*{match}"):
        _fit([Pair(score=_pair().score, audio=audio, sample_rate=SR, name="tiny")])


def test_fit_ear_refuses_audio_much_shorter_than_the_score():
    score = Score.from_notes([(60, 0.0, 7.5), (64, 7.5, 15.0)])
    short = Pair(score=score, audio=np.full(1000, 0.1, np.float32), sample_rate=SR, name="short")
    with pytest.raises(ValueError, match=r"pair 0 \('short'\).*0\.0625 s.*15 s.*0\.5 s"):
        _fit([short])
    # within the tolerance: ends 0.4 s before the last note does
    ok = Pair(score=score, audio=np.full(int(14.6 * SR), 0.1, np.float32), sample_rate=SR, name="ok")
    pairs.check_pair(ok, 0, SR)


def test_fit_ear_refuses_audio_that_sounds_long_after_the_score():
    p = _pair()
    loud_tail = np.concatenate([p.audio, np.zeros(10 * SR, np.float32), np.full(SR, 0.2, np.float32)])
    with pytest.raises(ValueError, match=r"pair 0 \('tail'\).*after the score"):
        _fit([Pair(score=p.score, audio=loud_tail, sample_rate=SR, name="tail")])
    # zero padding (as pairs.load pads a short piece to 15 s) is fine, and so is a faint tail
    padded = np.concatenate([p.audio, np.zeros(13 * SR, np.float32)])
    padded[-SR:] = 1e-4
    pairs.check_pair(Pair(score=p.score, audio=padded, sample_rate=SR, name="padded"), 0, SR)


def test_fit_ear_refuses_another_sample_rate_naming_the_index():
    with pytest.raises(ValueError, match=r"pair 1 \('x'\).*22050.*16000"):
        _fit([_pair(), _pair(name="x", sample_rate=22050)])


def test_fit_ear_refuses_tuples_and_says_how_to_build_a_pair():
    p = _pair()
    with pytest.raises(ValueError, match=r"pair 0 .*tuple.*lmm_env\.pairs\.Pair\(score="):
        _fit([(p.score, p.audio, SR)])
    with pytest.raises(ValueError, match=r"pair 0 \('s'\).*score.*Score"):
        _fit([Pair(score=[(60, 0.0, 1.0)], audio=p.audio, sample_rate=SR, name="s")])


def test_fit_ear_checks_every_pair_before_computing_features(monkeypatch):
    from lmm_env.lm import ear as ear_mod

    def boom(*a, **k):
        raise AssertionError("features computed before the pairs were checked")

    monkeypatch.setattr(ear_mod, "_features_np", boom)
    bad = _pair(np.full(32000, np.inf, np.float32), name="inf")
    with pytest.raises(ValueError, match=r"pair 2 \('inf'\)"):
        _fit([_pair(), _pair(), bad])


@pytest.mark.parametrize("kw, match", [
    (dict(steps=0), "steps=0"), (dict(steps=2.5), "steps=2.5"), (dict(batch=0), "batch=0"),
    (dict(batch=True), "batch=True"), (dict(lr=-1.0), "lr=-1.0"), (dict(lr=float("nan")), "lr=nan"),
    (dict(lr=0.0), "lr=0.0"),
])
def test_fit_ear_refuses_bad_steps_batch_lr_by_name(kw, match):
    with pytest.raises(ValueError, match=match):
        _fit([_pair()], **kw)


def test_fit_ear_on_a_good_hand_made_pair_is_finite_and_deterministic():
    a = _fit([_pair()], steps=3, batch=8)
    b = _fit([_pair()], steps=3, batch=8)
    for (na, ta), (_, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert np.isfinite(ta.numpy()).all(), na
        assert np.array_equal(ta.numpy(), tb.numpy()), na


def test_real_pairs_pass_the_check():
    for synth in ("piano", "soundfont"):
        for i, p in enumerate(pairs.load(4, synth=synth)):
            assert pairs.check_pair(p, i, SR) is p


# --------------------------------------------------------------------------- pairs.load: the arguments


@pytest.mark.parametrize("kw, match", [
    (dict(synth="harpsichord"), "synth='harpsichord'.*piano.*soundfont.*sf2"),
    (dict(synth="/nonexistent/piano.sf2"), "does not exist"),
    (dict(synth=3), "synth=3"),
    (dict(sample_rate=0), r"sample_rate=0.*\[8000, 96000\]"),
    (dict(sample_rate=16000.0), r"sample_rate=16000\.0"),
    (dict(seed=-1), r"seed=-1.*>= 0"),
    (dict(seed=1.5), r"seed=1\.5"),
])
def test_load_checks_synth_sample_rate_and_seed_when_called(kw, match, monkeypatch):
    from lmm_env import synth as synth_mod

    def no_render(*a, **k):
        raise AssertionError("the check must come before any synth is built")

    monkeypatch.setattr(synth_mod, "make_synth", no_render)
    with pytest.raises(ValueError, match=match):
        pairs.load(4, **kw)
    with pytest.raises(ValueError, match=match):
        pairs.Pairs(4, **kw)


def test_load_accepts_a_synth_object_and_an_sf2_path_and_checks_the_rate():
    from lmm_env.synth import PianoSynth, default_soundfont

    assert pairs.load(4, synth=PianoSynth(16000)).K == 4
    assert pairs.load(4, synth=default_soundfont()).K == 4
    with pytest.raises(ValueError, match="22050"):
        pairs.load(4, synth=PianoSynth(22050))
