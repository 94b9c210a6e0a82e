"""Tests of the ``piano`` corpus (lmm_env.piano_corpus): listing, splits, determinism, two
hands, performed velocities, sustain pedal, and its use by the envs."""
import numpy as np
import pytest

from lmm_env import corpus, piano_corpus
from lmm_env.score import HIGHEST_PITCH, LOWEST_PITCH, Score


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMM_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def sample_ids(split="test"):
    """Two pieces of each generated kind (one accompanied) and two chorales of ``split``, and
    a keyboard work (Schoenberg op. 19/2, one of the quickest to convert)."""
    ids = piano_corpus.piece_ids("piano", split)
    out = []
    for kind in piano_corpus.GENERATED_KINDS:
        out += [i for i in ids if f"/{kind}/" in i][: 1 if kind == "accompanied" else 2]
    out += [i for i in ids if "/bach/" in i][:2]
    return out + ["piano-classical/schoenberg/opus19/movement2.mxl#0/1"]


def build(ids):
    """The pieces ``ids`` (of any split) as ``corpus.load`` gives them."""
    out = []
    for pid in ids:
        c = next(c for c in (corpus.load("piano", sp) for sp in corpus.SPLITS) if pid in c.ids)
        out.append(c[c.ids.index(pid)])
    return out


def two_hand_fraction(s: Score) -> float:
    """Share of the sounding frames where a key below middle C and one from middle C up are both held."""
    held = s.frames(50).held
    lo, hi = held[:, : 60 - LOWEST_PITCH].any(1), held[:, 60 - LOWEST_PITCH:].any(1)
    return float((lo & hi).sum() / max((lo | hi).sum(), 1))


def test_names_splits_and_sizes():
    for n in piano_corpus.NAMES:
        assert n in corpus.names()
    ids = {sp: corpus.load("piano", sp).ids for sp in corpus.SPLITS}
    assert all(not (set(ids[a]) & set(ids[b])) for a in ids for b in ids if a != b)  # disjoint
    for sp in corpus.SPLITS:
        gen = corpus.load("piano-generated", sp).ids
        cla = corpus.load("piano-classical", sp).ids
        assert len(gen) == len(piano_corpus.GENERATED_KINDS) * piano_corpus.GENERATED_SIZES[sp]
        assert ids[sp] == cla + gen and len(cla) > 30
        for pid in cla:  # a classical piece is in its work's split
            assert corpus.split_of(pid[len("piano-classical/"):].partition("#")[0]) == sp
    assert 500 < sum(map(len, ids.values())) < 2000  # a few hundred pieces, bounded
    assert corpus.load("piano", "test").ids == ids["test"]  # same listing every time
    # a chorale is in the same split as in "bach-chorales"
    chorales = {pid[len("piano-classical/"):].partition("#")[0] for pid in ids["test"] if "/bach/" in pid}
    assert chorales == set(corpus.load("bach-chorales", "test").ids)


def test_pieces_are_two_hand_performed_and_pedalled(cache):
    ids = sample_ids()
    scores = build(ids)
    fractions = []
    for pid, s in zip(ids, scores):
        assert s.name == pid and len(s) >= 8
        assert LOWEST_PITCH <= s.pitches.min() and s.pitches.max() <= HIGHEST_PITCH
        assert 3.0 < s.duration <= piano_corpus.MAX_PIECE_SECONDS + 0.5
        v = s.velocities
        assert v.max() - v.min() >= 15 and v.std() >= 4, pid  # performed dynamics, not one velocity
        lo, hi = piano_corpus.VELOCITY_RANGE
        assert lo <= v.min() and v.max() <= hi
        assert len(s.pedal) >= 1, pid
        assert np.all(np.diff(s.pedal, axis=1) > 0) and np.all(s.pedal[1:, 0] > s.pedal[:-1, 1])
        assert s.pedal[0, 0] >= 0 and s.pedal[-1, 1] <= s.duration + 1.0
        fractions.append(two_hand_fraction(s))
        # timing is performed: onsets are off the deadpan grid (chords spread, rubato)
        assert len(np.unique(np.round(s.onsets, 3))) > 0.5 * len(np.unique(np.round(s.onsets, 1)))
    assert np.mean(np.array(fractions) > 0.2) >= 0.8, fractions  # both hands sound together in most pieces
    # pieces that are not scales change the pedal with the harmony: several intervals
    assert all(len(s.pedal) >= 3 for pid, s in zip(ids, scores) if "scales" not in pid)


def test_melody_is_louder_than_the_inner_voices(cache):
    ids = [i for i in piano_corpus.piece_ids("piano", "test") if "/bach/" in i or "/progression/" in i][:6]
    top, inner = [], []
    for s in build(ids):
        groups = np.round(s.onsets, 1)
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            if len(idx) >= 3:
                order = idx[np.argsort(s.pitches[idx])]
                top.append(s.velocities[order[-1]])
                inner += s.velocities[order[1:-1]].tolist()
    assert np.mean(top) > np.mean(inner) + 4


def test_deterministic_across_caches_and_processes(cache, tmp_path, monkeypatch):
    ids = [piano_corpus.piece_ids("piano-generated", "test")[k * 10] for k in range(4)]
    ids += [i for i in piano_corpus.piece_ids("piano", "test") if "/bach/" in i][:1]
    first = build(ids)
    again = build(ids)  # from the disk cache
    monkeypatch.setenv("LMM_ENV_CACHE", str(tmp_path / "other-cache"))
    fresh = build(ids)  # converted again from scratch
    for a, b, c in zip(first, again, fresh):
        assert a == b == c
        assert np.array_equal(a.velocities, c.velocities) and np.array_equal(a.pedal, c.pedal)
    # different pieces differ
    assert not np.array_equal(first[0].velocities[:10], first[1].velocities[:10])


def test_pedal_goes_to_midi_and_survives_keys(cache):
    pid = piano_corpus.piece_ids("piano-generated", "test")[10]
    s = build([pid])[0]
    pm = s.to_pretty_midi()
    cc = [c for c in pm.instruments[0].control_changes if c.number == 64]
    assert len(cc) == 2 * len(s.pedal)
    assert Score.from_midi(pm, name=s.name) == s
    narrow = corpus.load("piano", "test", keys=(36, 96))
    t = narrow[narrow.ids.index(pid)]
    assert 36 <= t.pitches.min() and t.pitches.max() <= 96
    np.testing.assert_array_equal(t.pedal, s.pedal)


def test_perform_caps_length_and_follows_the_pedal_plan():
    n = 240  # a 60 s draft: a chord every half second
    p = np.tile([48, 60, 64, 67], n)
    on = np.repeat(np.arange(n) * 0.25, 4)
    draft = piano_corpus._Draft(p, on, on + 0.24, np.full(4 * n, 0.5), np.arange(0, 61, 2.0),
                                [(t, t + 2.0) for t in np.arange(0, 60, 2.0)])
    s = piano_corpus.perform(draft, np.random.default_rng(0), "draft")
    assert s.duration <= piano_corpus.MAX_PIECE_SECONDS + 0.5 and len(s) > 100
    assert 10 <= len(s.pedal) <= 18  # one interval per 2 s harmony (tempo 0.85..1.15), down just after its start
    assert s == piano_corpus.perform(draft, np.random.default_rng(0), "draft")
    assert s != piano_corpus.perform(draft, np.random.default_rng(1), "draft")


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError) as e:
        corpus.load("piano", "dev")
    assert "'dev'" in str(e.value) and "validation" in str(e.value)
    with pytest.raises(ValueError, match="exercises"):
        corpus.load("piano", "test", n=3)
    with pytest.raises(ValueError, match="unknown piano corpus 'pianos'.*piano-generated"):
        piano_corpus.piece_ids("pianos", "test")
    with pytest.raises(ValueError, match="split"):
        piano_corpus.warm("piano", "dev")
    with pytest.raises(ValueError, match="workers"):
        piano_corpus.warm("piano", "test", workers=0)
    with pytest.raises(ValueError, match="empty"):
        corpus.warm("piano", [])


def test_env_plays_the_piano_corpus(cache):
    import gymnasium as gym

    import envs  # noqa: F401  (registers the tasks)

    env = gym.make("LMMPiano-v0", score="piano", split="test", reward="key_match", max_seconds=4.0)
    _, info = env.reset(seed=0, options={"score_index": len(piano_corpus.piece_ids("piano", "test")) - 1})
    assert info["score_name"].startswith("piano-generated/")
    env.close()
