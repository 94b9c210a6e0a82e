"""Tests of lmm_env.corpus: listing, splits, music21 conversion, disk cache, exercises."""
import os
import time
from collections.abc import Sequence

import numpy as np
import pytest

from lmm_env import corpus
from lmm_env.score import Score, ScoreError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMM_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names():
    ns = corpus.names()
    for n in ("bach-chorales", "folk", "essen", "oneills", "ryans", "exercises-scale",
              "exercises-arpeggio", "exercises-random-walk", "exercises-chords", "exercises-mixed"):
        assert n in ns


def test_unknown_name_and_split():
    with pytest.raises(ValueError) as e:
        corpus.load("beatles")
    assert "beatles" in str(e.value) and "bach-chorales" in str(e.value)
    with pytest.raises(ValueError) as e:
        corpus.load("folk", "dev")
    assert "dev" in str(e.value) and "validation" in str(e.value)
    with pytest.raises(ValueError, match="kind"):
        corpus.exercises("trills")
    with pytest.raises(ValueError, match="exercises"):
        corpus.load("folk", n=3)


def test_splits_deterministic_disjoint_and_complete():
    parts = {sp: corpus.load("oneills", sp) for sp in corpus.SPLITS}
    ids = {sp: set(c.ids) for sp, c in parts.items()}
    assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"])
    assert not (ids["validation"] & ids["test"])
    total = sum(len(c) for c in parts.values())
    assert len(set().union(*ids.values())) == total
    assert 0.7 < len(parts["train"]) / total < 0.9
    assert corpus.load("oneills", "test").ids == parts["test"].ids  # same order every time
    # machine independent: a pure function of the id
    assert corpus.split_of("bach/bwv10.7.mxl") == corpus.split_of("bach/bwv10.7.mxl")
    assert {corpus.split_of(f"x{i}") for i in range(100)} == set(corpus.SPLITS)
    # the pooled corpus agrees with the single collections
    folk_test = set(corpus.load("folk", "test").ids)
    assert ids["test"] <= folk_test and not (ids["train"] & folk_test)


def test_corpus_is_a_lazy_sequence(cache):
    c = corpus.load("ryans", "validation")
    assert isinstance(c, Sequence) and c.name == "ryans" and c.split == "validation"
    assert len(c) == len(c.ids) > 50
    assert not cache.exists() or not any(cache.rglob("*.npz"))  # nothing converted yet
    assert all(isinstance(i, str) for i in c.ids)
    with pytest.raises(IndexError):
        c[len(c)]
    assert c[-1] is c[len(c) - 1]


def test_chorale_is_polyphonic(cache):
    s = corpus.load("bach-chorales", "test")[0]
    assert isinstance(s, Score) and len(s) > 50
    assert s.name.startswith("bach/")
    assert s.frames(20).held.sum(axis=1).max() >= 3
    assert 21 <= s.pitches.min() and s.pitches.max() <= 108
    assert len(set(s.velocities.tolist())) > 1  # metrical accents


def test_folk_tune_is_monophonic_and_cached(cache):
    c = corpus.load("essen", "test")
    t0 = time.perf_counter()
    s = c[3]
    cold = time.perf_counter() - t0
    assert len(s) > 5 and s.frames(20).held.sum(axis=1).max() == 1
    files = list(cache.rglob("*.npz"))
    assert len(files) == 1 and "essen" in str(files[0])
    t0 = time.perf_counter()
    again = corpus.load("essen", "test")[3]  # fresh Corpus: from the disk cache
    warm = time.perf_counter() - t0
    assert again == s and again.name == s.name
    assert warm < cold
    assert not list(cache.rglob(".tmp-*"))  # atomic writes leave no temporaries


def test_bad_piece_falls_back_to_next_valid(cache, monkeypatch):
    real = corpus._convert_music21
    c = corpus.load("oneills", "test")
    bad_id = c.ids[0]

    def flaky(piece_id):
        if piece_id == bad_id:
            raise ScoreError("unparsable on purpose")
        return real(piece_id)

    monkeypatch.setattr(corpus, "_convert_music21", flaky)
    assert c.resolve(0) == 1
    assert c[0] is c[1]
    # the failure is recorded in the cache: a fresh corpus does not reparse the bad tune
    monkeypatch.setattr(corpus, "_convert_music21", lambda pid: pytest.fail(f"reparsed {pid}"))
    assert corpus.load("oneills", "test").resolve(0) == 1


def test_generic_fallback_wraps_and_errors():
    good = Score([60], [0], [1])
    c = corpus.Corpus("t", "train", ["a", "b", "c"], lambda pid: good if pid == "a" else None)
    assert [c.resolve(i) for i in range(3)] == [0, 0, 0]
    assert list(c) == [good, good, good]
    empty = corpus.Corpus("t", "train", ["a"], lambda pid: None)
    with pytest.raises(ScoreError, match="no valid piece"):
        empty[0]


def test_load_with_keys_restricts_pitches(cache):
    s = corpus.load("essen", "test", keys=(60, 72))[0]
    assert 60 <= s.pitches.min() and s.pitches.max() <= 72


# ------------------------------------------------------------------ exercises


@pytest.mark.parametrize("kind", corpus.EXERCISE_KINDS)
def test_exercises_deterministic_short_and_in_keys(kind):
    keys = (48, 72)
    a = corpus.exercises(kind, n=6, difficulty=3, seed=1, keys=keys)
    b = corpus.exercises(kind, n=6, difficulty=3, seed=1, keys=keys)
    c = corpus.exercises(kind, n=6, difficulty=3, seed=2, keys=keys)
    assert list(a) == list(b)
    assert list(a) != list(c)
    for s in a:
        assert len(s) >= 2
        assert 2.0 <= s.duration <= 8.0 + 1e-9
        assert keys[0] <= s.pitches.min() and s.pitches.max() <= keys[1]


def test_exercise_difficulty_knobs():
    easy = corpus.exercises("scale", n=5, difficulty=1)
    hard = corpus.exercises("scale", n=5, difficulty=5)
    rate = lambda c: np.mean([len(s) / s.duration for s in c])
    assert rate(hard) > 2 * rate(easy)
    assert all(set(s.velocities.tolist()) == {80} for s in easy)
    assert any(len(set(s.velocities.tolist())) > 3 for s in hard)
    chords_easy = corpus.exercises("chords", n=3, difficulty=0.0)
    chords_hard = corpus.exercises("chords", n=3, difficulty=1.0)
    poly = lambda s: s.frames(50).held.sum(axis=1).max()
    assert all(poly(s) == 2 for s in chords_easy)
    assert all(poly(s) >= 4 for s in chords_hard)
    for bad in (0, 6, 1.5, -0.1, True, "hard"):
        with pytest.raises(ValueError, match="difficulty"):
            corpus.exercises("scale", difficulty=bad)


def test_exercises_narrow_keyboard():
    for kind in corpus.EXERCISE_KINDS:
        for s in corpus.exercises(kind, n=4, difficulty=5, keys=(60, 64)):
            assert 60 <= s.pitches.min() and s.pitches.max() <= 64


def test_load_exercises_splits_differ():
    tr = corpus.load("exercises-mixed", "train")
    va = corpus.load("exercises-mixed", "validation", n=5, seed=3)
    assert len(tr) == 1000 and len(va) == 5 and va.split == "validation"
    assert not set(tr.ids) & set(va.ids)
    assert tr[0] != corpus.load("exercises-mixed", "test")[0]
    assert corpus.load("exercises-scale", "train", n=3)[2] == corpus.exercises("scale", n=3)[2]


def test_warm_converts_a_corpus_in_parallel_once_and_loads_never_convert_again(cache, monkeypatch, capsys):
    result = corpus.warm("bach-chorales", "test", workers=2, progress=False)
    assert result == {"pieces": 45, "cached": 0, "converted": 45, "bad": 0}
    assert len(list(cache.rglob("*.npz"))) == 45
    assert corpus.warm("bach-chorales", ["test"], workers=2, progress=False)["cached"] == 45  # nothing left to do

    def no_music21(piece_id):
        raise AssertionError(f"{piece_id} was converted again")

    monkeypatch.setattr(corpus, "_convert_music21", no_music21)
    c = corpus.load("bach-chorales", "test")
    assert all(len(c[i]) > 0 for i in range(len(c)))
    from lmm_env.agents.cli import main

    assert main(["warm", "bach-chorales", "--split", "test", "--workers", "1", "--no-progress"]) == 0
    assert "45 pieces, 45 were cached, 0 converted now" in capsys.readouterr().out


def test_warm_refuses_what_it_cannot_convert(cache):
    with pytest.raises(ValueError, match="exercises-scale.*real corpus: bach-chorales, folk"):
        corpus.warm("exercises-scale")
    with pytest.raises(ValueError, match="split"):
        corpus.warm("folk", "dev")
    with pytest.raises(ValueError, match=r"workers=0 .*int >= 1"):
        corpus.warm("folk", workers=0)
    with pytest.raises(ValueError, match="empty"):
        corpus.warm("folk", [])


_PARENT = os.getpid()
_REAL_WARM_CHUNK = corpus._warm_chunk


def _dies_in_workers(ids):  # module level: the pool pickles it by name
    if os.getpid() != _PARENT:
        os._exit(3)  # a worker that cannot run (e.g. a start method the caller's script breaks)
    return _REAL_WARM_CHUNK(ids)


def test_warm_finishes_in_process_when_its_workers_die(cache, monkeypatch):
    monkeypatch.setattr(corpus, "_warm_chunk", _dies_in_workers)
    with pytest.warns(RuntimeWarning, match="worker processes failed.*remaining"):
        result = corpus.warm("bach-chorales", "test", workers=2, progress=False)
    assert result["converted"] == 45 and len(list(cache.rglob("*.npz"))) == 45
