"""Tests of lmm_env.score: Score construction and operations, MIDI/music21 input, FrameScore."""
import pickle
import timeit

import numpy as np
import pytest

from lmm_env.score import (
    HIGHEST_PITCH,
    LOWEST_PITCH,
    N_KEYS,
    FrameScore,
    Score,
    ScoreError,
)


def simple():
    return Score.from_notes([(64, 0.5, 1.0, 90), (60, 0.0, 0.5), (67, 0.5, 1.5, 100)], name="s")


# ------------------------------------------------------------------ construction


def test_constants_reexported():
    assert (LOWEST_PITCH, HIGHEST_PITCH, N_KEYS) == (21, 108, 88)
    assert issubclass(ScoreError, ValueError)


def test_sorted_dtypes_defaults_and_readonly():
    s = simple()
    assert s.pitches.tolist() == [60, 64, 67]
    assert s.onsets.tolist() == [0.0, 0.5, 0.5]
    assert s.velocities.tolist() == [80, 90, 100]
    assert s.pitches.dtype == np.int16 and s.velocities.dtype == np.int16
    assert s.onsets.dtype == np.float64 and s.offsets.dtype == np.float64
    assert len(s) == 3 and s.duration == 1.5 and s.name == "s"
    with pytest.raises(ValueError):
        s.pitches[0] = 1
    with pytest.raises(AttributeError):
        s.name = "x"
    assert "3 notes" in repr(s)


def test_empty_score_allowed():
    s = Score([], [], [])
    assert len(s) == 0 and s.duration == 0.0
    fs = s.frames(10)
    assert fs.T == 0 and fs.held.shape == (0, 88)
    assert fs.to_score() == s


@pytest.mark.parametrize(
    "args, kwargs, fragment",
    [
        (([60, 61], [0.0], [1.0]), {}, "lengths must match"),
        (([60], [0.0], [np.inf]), {}, "inf"),
        (([60], [np.nan], [1.0]), {}, "nan"),
        (([60], [1.0], [1.0]), {}, "offset 1.0 <= onset 1.0"),
        (([60], [2.0], [1.0]), {}, "offset 1.0 <= onset 2.0"),
        (([60], [-0.5], [1.0]), {}, "-0.5"),
        (([60], [0.0], [1.0], [0]), {}, "got 0"),
        (([60], [0.0], [1.0], [128]), {}, "got 128"),
        (([60.5], [0.0], [1.0]), {}, "60.5"),
    ],
)
def test_validation_errors_name_the_bad_value(args, kwargs, fragment):
    with pytest.raises(ScoreError, match=None) as e:
        Score(*args, **kwargs)
    assert fragment in str(e.value)


def test_float_integral_pitches_accepted():
    assert Score([60.0], [0], [1]).pitches.tolist() == [60]


def test_unknown_policy_lists_allowed():
    with pytest.raises(ValueError) as e:
        Score([60], [0], [1], out_of_range="wrap")
    msg = str(e.value)
    assert "wrap" in msg and "transpose" in msg and "reject" in msg and "drop" in msg


def test_bad_keys():
    with pytest.raises(ValueError, match="keys"):
        Score([60], [0], [1], keys=(10, 60))
    with pytest.raises(ValueError, match="keys"):
        Score([60], [0], [1], keys=(70, 60))


# ------------------------------------------------------------------ out of range


def test_out_of_range_transpose_by_octaves():
    s = Score([15, 60, 120, 9], [0, 1, 2, 3], [1, 2, 3, 4])
    # 15 -> 27, 120 -> 108, 9 -> 21; order by onset is kept
    assert s.pitches.tolist() == [27, 60, 108, 21]


def test_out_of_range_reject_names_pitch_and_range():
    with pytest.raises(ScoreError) as e:
        Score([60, 110], [0, 0], [1, 1], out_of_range="reject")
    assert "110" in str(e.value) and "21" in str(e.value) and "108" in str(e.value)


def test_out_of_range_drop():
    s = Score([60, 110, 20], [0, 0, 0], [1, 1, 1], out_of_range="drop")
    assert s.pitches.tolist() == [60]


def test_keys_restricted_range():
    s = Score([48, 60, 75], [0, 1, 2], [1, 2, 3], keys=(55, 70))
    assert s.pitches.tolist() == [60, 60, 63]
    with pytest.raises(ScoreError, match="octave"):
        Score([55], [0], [1], keys=(60, 65))  # 67 misses a 6-key range


# ------------------------------------------------------------------ constructors


def test_from_notes_objects_both_naming_styles():
    import pretty_midi

    class N:
        def __init__(self, pitch, onset, offset):
            self.pitch, self.onset, self.offset = pitch, onset, offset

    s1 = Score.from_notes([pretty_midi.Note(velocity=70, pitch=62, start=0.0, end=0.25)])
    assert (s1.pitches.tolist(), s1.velocities.tolist(), s1.offsets.tolist()) == ([62], [70], [0.25])
    s2 = Score.from_notes([N(62, 0.0, 0.25)])
    assert s2.velocities.tolist() == [80] and s2.offsets.tolist() == [0.25]
    with pytest.raises(ScoreError, match="pitch"):
        Score.from_notes([object()])
    with pytest.raises(ScoreError, match="expected"):
        Score.from_notes([(60, 0)])


def test_from_midi_round_trip(tmp_path):
    s = simple()
    path = tmp_path / "piece.mid"
    s.to_pretty_midi().write(str(path))
    back = Score.from_midi(path)
    assert back.name == "piece"
    assert np.array_equal(back.pitches, s.pitches) and np.array_equal(back.velocities, s.velocities)
    np.testing.assert_allclose(back.onsets, s.onsets, atol=2e-3)
    np.testing.assert_allclose(back.offsets, s.offsets, atol=2e-3)
    assert Score.from_midi(s.to_pretty_midi()) == s  # in memory: exact


def test_from_midi_merges_instruments_skips_drums():
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    for prog, drum, pitch in [(0, False, 60), (40, False, 72), (0, True, 36)]:
        inst = pretty_midi.Instrument(program=prog, is_drum=drum)
        inst.notes.append(pretty_midi.Note(velocity=64, pitch=pitch, start=0, end=1))
        pm.instruments.append(inst)
    assert Score.from_midi(pm).pitches.tolist() == [60, 72]


def test_from_midi_missing_file(tmp_path):
    path = tmp_path / "nope.mid"
    with pytest.raises(FileNotFoundError) as e:
        Score.from_midi(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"MThd\x00\x00\x00\x06garbage", b"hello, not midi at all\n" * 10])
def test_from_midi_unreadable(tmp_path, content):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(ScoreError) as e:
        Score.from_midi(path)
    assert str(path) in str(e.value) and "not a readable MIDI file" in str(e.value)


def test_from_midi_no_notes(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(program=0))
    path = tmp_path / "empty.mid"
    pm.write(str(path))
    with pytest.raises(ScoreError, match="no"):
        Score.from_midi(path)


def test_from_music21_tempo_ties_chords_accents():
    from music21 import chord, meter, note, stream, tempo

    p = stream.Part()
    p.append(meter.TimeSignature("4/4"))
    p.append(tempo.MetronomeMark(number=60))  # quarter = 1 s
    a = note.Note("C4", quarterLength=1)
    a.tie = __import__("music21").tie.Tie("start")
    b = note.Note("C4", quarterLength=1)
    b.tie = __import__("music21").tie.Tie("stop")
    p.append([a, b])
    p.append(chord.Chord(["E4", "G4"], quarterLength=1))
    loud = note.Note("D5", quarterLength=1)
    loud.volume.velocity = 111
    p.append(loud)
    grace = note.Note("F5").getGrace()
    p.append(grace)
    p.append(note.Rest(quarterLength=1))
    s = Score.from_music21(p.makeMeasures())
    assert s.pitches.tolist() == [60, 64, 67, 74]
    assert s.onsets.tolist() == [0.0, 2.0, 2.0, 3.0]
    assert s.offsets.tolist() == [2.0, 3.0, 3.0, 4.0]
    # beat 1 has strength 1 -> 100, beat 3 has 0.5 -> 80; explicit velocity kept
    assert s.velocities.tolist() == [100, 80, 80, 111]
    assert Score.from_music21(p, velocity=50).velocities.tolist() == [50, 50, 50, 111]
    with pytest.raises(ValueError, match="accent"):
        Score.from_music21(p, velocity="loud")


def test_from_music21_default_tempo_120():
    from music21 import note, stream

    p = stream.Stream([note.Note("A4", quarterLength=2)])
    s = Score.from_music21(p)
    assert s.onsets.tolist() == [0.0] and s.offsets.tolist() == [1.0]


# ------------------------------------------------------------------ operations


def test_transpose():
    s = simple()
    assert s.transpose(2).pitches.tolist() == [62, 66, 69]
    up = Score([100, 60], [0, 1], [1, 2]).transpose(12)
    assert up.pitches.tolist() == [100, 72]  # 112 folded back by an octave
    with pytest.raises(ScoreError, match="112"):
        Score([100], [0], [1]).transpose(12, out_of_range="reject")
    assert len(Score([100], [0], [1]).transpose(12, out_of_range="drop")) == 0
    with pytest.raises(ValueError, match="semitones"):
        s.transpose(1.5)


def test_with_tempo():
    s = simple()
    fast = s.with_tempo(2.0)
    assert fast.onsets.tolist() == [0.0, 0.25, 0.25]
    assert fast.offsets.tolist() == [0.25, 0.5, 0.75]
    assert fast.duration == s.duration / 2
    assert s.with_tempo(0.5).duration == 3.0
    for bad in (0, -1, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="factor"):
            s.with_tempo(bad)


def test_trim():
    s = Score([60, 62, 64, 65], [0.0, 1.0, 2.0, 3.0], [1.5, 2.0, 3.5, 4.0])
    t = s.trim(1.2, 3.2)
    assert t.pitches.tolist() == [60, 62, 64, 65]
    np.testing.assert_allclose(t.onsets, [0.0, 0.0, 0.8, 1.8])
    np.testing.assert_allclose(t.offsets, [0.3, 0.8, 2.0, 2.0])
    # half-open window: a note ending exactly at start or starting exactly at end is out
    t2 = s.trim(2.0, 3.0)
    assert t2.pitches.tolist() == [64]
    t3 = s.trim(2.5)
    assert t3.pitches.tolist() == [64, 65] and t3.duration == 1.5
    with pytest.raises(ValueError, match="end"):
        s.trim(2.0, 1.0)
    with pytest.raises(ValueError, match="start"):
        s.trim(-1.0)


def test_equality_and_pickle():
    s = simple()
    same = Score(s.pitches, s.onsets + 1e-12, s.offsets, s.velocities, name="other")
    assert s == same
    assert s != s.transpose(1)
    assert s != Score(s.pitches, s.onsets, s.offsets, s.velocities + 1)
    assert pickle.loads(pickle.dumps(s)) == s


# ------------------------------------------------------------------ frames


def test_frames_basic_quantization():
    s = Score([60, 64], [0.0, 0.26], [0.5, 0.31], [70, 90])
    fs = s.frames(10)
    assert isinstance(fs, FrameScore) and fs.frame_rate == 10.0
    k60, k64 = 60 - 21, 64 - 21
    assert fs.T == 5 and fs.held.shape == (5, 88)
    assert fs.held[:, k60].tolist() == [True] * 5
    assert fs.onset[:, k60].tolist() == [True, False, False, False, False]
    # 0.26 s -> frame 3, 0.31 -> 3: lasts at least one frame
    assert fs.held[:, k64].tolist() == [False, False, False, True, False]
    assert fs.velocity[:, k60].tolist() == [70] * 5
    assert fs.velocity[:, k64].tolist() == [0, 0, 0, 90, 0]
    assert fs.velocity.dtype == np.uint8 and fs.held.dtype == bool and fs.onset.dtype == bool


def test_frames_repeated_note_gets_release_frame():
    # legato repeated notes: the first is cut so the key is up for one frame
    s = Score([60, 60], [0.0, 0.5], [0.5, 1.0], [60, 100])
    col = s.frames(10).held[:, 60 - 21].astype(int).tolist()
    assert col == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    fs = s.frames(10)
    assert fs.onset[:, 60 - 21].nonzero()[0].tolist() == [0, 5]
    assert fs.velocity[:, 60 - 21].tolist() == [60] * 4 + [0] + [100] * 5


def test_frames_overlapping_same_pitch_cut():
    # a long note overlapped by a later strike of the same key is cut before it
    s = Score([60, 60], [0.0, 0.5], [2.0, 1.0])
    col = s.frames(10).held[:, 60 - 21].astype(int).tolist()
    assert col == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1]


def test_frames_unplayable_later_note_dropped():
    # second strike one frame after the first: cutting the first would leave 0 frames
    s = Score([60, 60], [0.0, 0.1], [0.5, 0.4], [50, 120])
    fs = s.frames(10)
    assert fs.onset[:, 60 - 21].nonzero()[0].tolist() == [0]
    assert fs.held[:, 60 - 21].astype(int).tolist() == [1, 1, 1, 1, 1]
    assert set(fs.velocity[:, 60 - 21].tolist()) == {50}
    # same onset frame (a unison): the later (in real time) note is dropped, but the key is held
    # while either sounds, at the louder velocity
    s2 = Score([60, 60], [0.0, 0.01], [0.3, 0.8], [50, 120])
    fs2 = s2.frames(10)
    assert fs2.onset[:, 60 - 21].nonzero()[0].tolist() == [0]
    assert fs2.held[:, 60 - 21].sum() == 8
    assert set(fs2.velocity[:, 60 - 21].tolist()) == {120}
    # a chorale's alto and tenor on one note, the tenor longer: the score reader holds it as long
    # as the reference (`playable_notes`) does, so a perfect player keeps its onset+offset F1
    from lmm_env.metrics import note_metrics, playable_notes
    s3 = Score([60, 60, 64], [0.0, 0.0, 0.0], [0.5, 1.0, 1.0], [70, 70, 70])
    played = s3.frames(20).to_score()
    assert len(played) == 2 and played.offsets.max() == 1.0
    assert note_metrics(playable_notes(s3), played)["onset_offset_f1"] == 1.0


def test_frames_to_score_round_trip():
    rng = np.random.default_rng(0)
    n = 200
    on = rng.uniform(0, 10, n)
    s = Score(rng.integers(55, 67, n), on, on + rng.uniform(0.01, 1.0, n), rng.integers(1, 128, n))
    for fr in (10, 31.25, 100):
        fs = s.frames(fr)
        q = fs.to_score()
        assert q.frames(fr) == fs
        assert len(q) == int(fs.onset.sum())
        # held always implies a velocity, and only on held frames
        assert np.array_equal(fs.velocity > 0, fs.held)
        # every onset frame is preceded by a released key (or is frame 0)
        prev = np.vstack([np.zeros((1, 88), bool), fs.held[:-1]])
        assert not (fs.onset & prev).any()


def test_frames_bad_rate():
    with pytest.raises(ValueError, match="frame_rate"):
        simple().frames(0)


def test_window_padding_and_speed():
    s = Score([60, 72], [0.0, 0.2], [0.3, 0.4])
    fs = s.frames(10)
    assert fs.T == 4
    held, onset, vel = fs.window(2, 5)
    assert held.shape == onset.shape == vel.shape == (5, 88)
    assert held[:, 72 - 21].tolist() == [True, True, False, False, False]
    assert onset[:, 72 - 21].tolist() == [True, False, False, False, False]
    assert not held[2:].any() and not vel[2:].any()
    h, o, v = fs.window(100, 3)  # entirely past the end: zeros
    assert h.shape == (3, 88) and not h.any() and not o.any() and not v.any()
    with pytest.raises(ValueError):
        held[0, 0] = True  # read-only views of the cache
    with pytest.raises(ValueError):
        fs.window(-1, 3)
    per_call = min(timeit.repeat(lambda: fs.window(1, 16), number=2000, repeat=5)) / 2000
    assert per_call < 20e-6  # ~1 us on a desktop; generous bound for slow CI


def test_framescore_equality_and_validation():
    fs = simple().frames(20)
    assert fs == simple().frames(20)
    assert fs != simple().frames(21)
    with pytest.raises(ValueError, match="shape"):
        FrameScore(10, np.zeros((3, 88), bool), np.zeros((3, 87), bool), np.zeros((3, 88), np.uint8))


def test_sustained_pedal_holds_released_notes_until_it_lifts_or_the_key_is_struck_again():
    # C4 released at 0.5 under a pedal held 0.2..1.5 sounds to 1.5; E4 released before the pedal
    # keeps its offset; G4 (released under the pedal) is cut by its own re-strike at 1.0; touching
    # intervals 0.2..1.5 and 1.5..2.0 are one: C5 released at 1.6 rings to 2.0.
    s = Score([60, 64, 67, 67, 72], [0.0, 0.0, 0.0, 1.0, 0.0], [0.5, 0.1, 0.4, 1.2, 1.6], [80] * 5,
              pedal=[[0.2, 1.5], [1.5, 2.0]])
    t = s.sustained()
    got = {(int(p), round(float(a), 3)): round(float(b), 3) for p, a, b in zip(t.pitches, t.onsets, t.offsets)}
    assert got == {(60, 0.0): 2.0, (64, 0.0): 0.1, (67, 0.0): 1.0, (67, 1.0): 2.0, (72, 0.0): 2.0}
    assert len(t.pedal) == 0 and s.sustained(keep_pedal=True).pedal.tolist() == s.pedal.tolist()
    assert Score([60], [0.0], [1.0]).sustained() is not None
    with pytest.raises(ValueError, match="keep_pedal='yes'.*True or False"):
        s.sustained(keep_pedal="yes")
    # the renderers play what sustained() says: a pedalled note rings like the same note held
    from lmm_env.synth import PianoSynth

    synth = PianoSynth()
    pedalled = Score([60], [0.0], [0.2], [90], pedal=[[0.1, 1.0]])
    held = Score([60], [0.0], [1.0], [90])
    np.testing.assert_array_equal(synth.render(pedalled, tail=0.5), synth.render(held, tail=0.5))
