"""Argument and file checks of the score, corpus, synth, improv and tasks modules.

Every bad value is refused when it is given, with a short message naming it and what is
allowed; nothing an argument or a small file says may allocate without a bound. Size bounds
are tested by lowering the module constant (so a regression fails fast instead of
allocating gigabytes).
"""
from __future__ import annotations

import numpy as np
import pretty_midi
import pytest

from lmm_env import corpus, improv, tasks
from lmm_env import score as score_mod
from lmm_env.score import FrameScore, Score, ScoreError
from lmm_env.synth import PianoSynth, make_synth
from lmm_env.synth import base as synth_base

SHORT = 400  # no message may be longer (a 100k-element argument must not be echoed)


def _msg(exc_info) -> str:
    text = str(exc_info.value)
    assert len(text) < SHORT, text[:500]
    return text


def small() -> Score:
    return Score([60, 64, 67], [0.0, 0.5, 1.0], [0.5, 1.0, 2.0], name="small")


# ------------------------------------------------------------------ Score: sizes


def test_frames_bounds_frame_rate_and_frame_count(monkeypatch):
    s = small()
    for bad in (2000, float("inf"), 0, "20", True):
        with pytest.raises(ValueError, match="frame_rate") as e:
            s.frames(bad)
        _msg(e)
    assert score_mod.MAX_FRAMES >= 3 * 3600 * 100  # a 3-hour piece at 100 fps fits
    monkeypatch.setattr(score_mod, "MAX_FRAMES", 100)
    with pytest.raises(ValueError, match=r"lasts 2 s.*MAX_FRAMES.*trim it .*lower the frame rate"):
        s.frames(100)  # 200 frames
    assert s.frames(20).T == 40


def test_window_length_is_bounded(monkeypatch):
    fs = small().frames(20)
    monkeypatch.setattr(score_mod, "MAX_FRAMES", 1000)
    with pytest.raises(ValueError, match=r"window length=5000 .*\[1, 1000\]"):
        fs.window(0, 5000)
    with pytest.raises(ValueError, match="window length"):
        fs.window(0, "8")
    assert fs.window(0, 8)[0].shape == (8, 88)


def test_with_tempo_factor_in_range():
    s = small()
    for bad in (1e-300, 1e-3, 1e3, "2", True, None):
        with pytest.raises(ValueError, match="tempo factor"):
            s.with_tempo(bad)
    assert s.with_tempo(0.01).duration == pytest.approx(200.0)
    long = Score([60], [0.0], [3 * 3600.0])
    with pytest.raises(ValueError, match="MAX_SECONDS"):
        long.with_tempo(0.25)  # 12 hours


# ------------------------------------------------------------------ Score: notes


@pytest.mark.parametrize(
    "notes, fragment",
    [
        ([(True, 0, 1)], "note 0: pitch must be a number, got True"),
        ([(60, 0, 1), ("C4", 0, 1)], "note 1: pitch must be a number, got 'C4'"),
        ([(60, "0.5", 1)], "note 0: onset must be a number, got '0.5'"),
        ([(60, 0, 1, None)], "note 0: velocity must be a number, got None"),
        ([(2**70, 0, 1)], "pitches must be integers in 0..127"),
        ([(128, 0, 1)], "pitches must be integers in 0..127, got 128"),
        ([(-1, 0, 1)], "pitches must be integers in 0..127, got -1"),
        ([(60, 1e300, 1e300 + 1)], "MAX_SECONDS"),
        ([(60, 0, 6 * 3600 + 1)], "offsets must be at most MAX_SECONDS"),
        ([(60, 0, 1, 2**70)], "velocities must be integers in 1..127"),
    ],
)
def test_from_notes_refuses_bad_values(notes, fragment):
    with pytest.raises(ScoreError) as e:
        Score.from_notes(notes)
    assert fragment in _msg(e)


def test_from_notes_argument_and_name_types():
    with pytest.raises(TypeError, match="iterable of .*got int: 5"):
        Score.from_notes(5)
    with pytest.raises(TypeError, match="iterable"):
        Score.from_notes("60 0 1")
    with pytest.raises(TypeError, match="name must be a str, got list"):
        Score.from_notes([(60, 0, 1)], name=["x"])
    with pytest.raises(ScoreError, match="expected") as e:
        Score.from_notes([tuple(range(100_000))])
    _msg(e)
    huge = type("Note", (), {"__repr__": lambda self: "x" * 100_000})()
    with pytest.raises(ScoreError, match="no pitch") as e:
        Score.from_notes([huge])
    _msg(e)
    # what was valid stays valid
    s = Score.from_notes([(60, 0, 1), (np.int64(62), np.float64(0.5), 1.5, np.int16(90))])
    assert s.pitches.tolist() == [60, 62] and s.velocities.tolist() == [80, 90]


def test_constructor_refuses_strings_bools_and_huge_values():
    with pytest.raises(ScoreError, match="pitches must be numbers, got '60'"):
        Score(["60"], [0], [1])
    with pytest.raises(ScoreError, match="pitches must be numbers, got True at index 0"):
        Score([True, 60], [0, 0], [1, 1])
    with pytest.raises(ScoreError, match="pitches must be integers in 0..127"):
        Score([2**70], [0], [1])
    with pytest.raises(ScoreError, match="onsets must be numbers"):
        Score([60], np.array(["0"]), [1])
    with pytest.raises(ScoreError, match="velocities must be integers in 1..127"):
        Score([60], [0], [1], 2**70)
    with pytest.raises(ValueError, match="velocities must be a number, got '80'"):
        Score([60], [0], [1], "80")
    assert Score([60, 61], [0, 0], [1, 1], np.array(70)).velocities.tolist() == [70, 70]


# ------------------------------------------------------------------ Score: files and conversions


def test_from_midi_refuses_non_paths_and_over_long_files(tmp_path):
    with pytest.raises(TypeError, match="MIDI file path .*NoneType"):
        Score.from_midi(None)
    with pytest.raises(TypeError, match="got bytes") as e:
        Score.from_midi(b"MThd" * 10_000)
    _msg(e)
    with pytest.raises(ScoreError, match="is a directory"):
        Score.from_midi(tmp_path)
    pm = pretty_midi.PrettyMIDI(resolution=1, initial_tempo=60)  # a 65-byte file, a note of 8.3 hours
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(80, 60, 0.0, 30000.0))
    pm.instruments.append(inst)
    path = tmp_path / "long.mid"
    pm.write(str(path))
    with pytest.raises(ScoreError, match=r"long.mid' lasts 30000 s \(8.3 hours\), longer than MAX_SECONDS"):
        Score.from_midi(path)
    with pytest.raises(ScoreError, match="MAX_SECONDS"):
        PianoSynth().render(path)


def test_trim_to_pretty_midi_and_transpose_check_types():
    s = small()
    with pytest.raises(ValueError, match="trim start must be a number, got 'a'"):
        s.trim("a")
    with pytest.raises(ValueError, match="trim end must be a number, got 'b'"):
        s.trim(0, "b")
    with pytest.raises(ValueError, match="trim start"):
        s.trim(True)
    for bad in (1.7, "a", 128, -1, True):
        with pytest.raises(ValueError, match=r"program=.* use an int in \[0, 127\]"):
            s.to_pretty_midi(bad)
    assert s.to_pretty_midi(np.int64(5)).instruments[0].program == 5
    with pytest.raises(ValueError, match="semitones"):
        s.transpose(2**70)
    with pytest.raises(ValueError, match="out_of_range"):
        s.transpose(1, out_of_range="wrap")
    # a shift that leaves 0..127 is folded, dropped or refused as before
    assert Score([100, 60], [0, 1], [1, 2]).transpose(100).pitches.tolist() == [104, 100]
    assert len(Score([100], [0], [1]).transpose(100, out_of_range="drop")) == 0
    with pytest.raises(ScoreError, match="200"):
        Score([100], [0], [1]).transpose(100, out_of_range="reject")


def test_framescore_refuses_fractional_velocities():
    held = np.ones((2, 88), bool)
    with pytest.raises(ValueError, match="whole numbers"):
        FrameScore(20, held, held, np.full((2, 88), 64.7))
    with pytest.raises(ValueError, match="whole numbers"):
        FrameScore(20, held, held, np.full((2, 88), np.nan))
    with pytest.raises(ValueError, match="frame_rate"):
        FrameScore(5000, held, held, np.full((2, 88), 64))
    assert FrameScore(20, held, held, np.full((2, 88), 64.0)).velocity.max() == 64


# ------------------------------------------------------------------ synths


def test_render_tail_and_length_bounded(monkeypatch):
    piano = PianoSynth()
    s = small()
    for bad in (-5, float("nan"), float("inf"), "1", True, None):
        with pytest.raises(ValueError, match="tail=") as e:
            piano.render(s, tail=bad)
        _msg(e)
    with pytest.raises(ValueError, match="tail="):
        piano.render(s, tail=synth_base.MAX_TAIL_SECONDS + 1)
    monkeypatch.setattr(synth_base, "MAX_RENDER_SAMPLES", 16000)
    with pytest.raises(ValueError, match=r"'small' \(2 s\) with a 1 s tail at 16000 Hz makes 48000 samples.*trim"):
        piano.render(s, tail=1.0)
    assert len(piano.render(Score([60], [0], [0.5]), tail=0.25)) == 12000


def test_piano_synth_arguments():
    with pytest.raises(ValueError, match=r"table_seconds=-1 .*\[0.2, 20\]"):
        PianoSynth(table_seconds=-1)
    for bad in (1e5, float("nan"), "3", [3.0]):
        with pytest.raises(ValueError, match="table_seconds"):
            PianoSynth(table_seconds=bad)
    for bad in ("x", 16000.5, 10**7, 0):
        with pytest.raises(ValueError, match=r"sample_rate=.*\[8000, 96000\]"):
            PianoSynth(sample_rate=bad)
    piano = PianoSynth()
    with pytest.raises(ValueError, match="n_envs=0"):
        piano.player(0, 800)
    with pytest.raises(ValueError, match="block_size='x'"):
        piano.player(1, "x")
    with pytest.raises(ValueError, match=r"block_size=.*\[1, 16000\]"):
        piano.player(1, 10**9)


def test_soundfont_synth_arguments(tmp_path):
    pytest.importorskip("tinysoundfont")
    from lmm_env.synth import SoundFontSynth

    for bad in (float("nan"), float("inf"), 1e9, "-6", True):
        with pytest.raises(ValueError, match="gain="):
            SoundFontSynth(gain=bad)
    assert SoundFontSynth(gain=-20).gain == -20.0  # dB: negative is quieter, not an error
    for bad in (500, -1, 1.5, "0"):
        with pytest.raises(ValueError, match=r"preset=.*\[0, 127\]"):
            SoundFontSynth(preset=bad)
    with pytest.raises(ValueError, match="is a directory"):
        SoundFontSynth(path=tmp_path)
    with pytest.raises(TypeError, match="got bytes"):
        SoundFontSynth(path=b"x.sf2")
    with pytest.raises(ValueError, match="tail="):
        SoundFontSynth().render(small(), tail=-1)


def test_make_synth_messages_are_short_and_name_the_rate():
    with pytest.raises(ValueError, match="unknown synth") as e:
        make_synth(["piano"] * 100_000)
    _msg(e)
    with pytest.raises(ValueError, match=r"sample_rate='x' is not allowed; use an int in \[8000, 96000\]"):
        make_synth("piano", sample_rate="x")
    with pytest.raises(ValueError, match="sample_rate=1000"):
        make_synth("soundfont", sample_rate=1000)


# ------------------------------------------------------------------ corpus


def test_corpus_load_checks_name_n_and_policy_up_front(monkeypatch):
    for bad in (None, 5, ["folk"]):
        with pytest.raises(TypeError, match="corpus name must be a str.*allowed: bach-chorales") as e:
            corpus.load(bad)
        _msg(e)
    monkeypatch.setattr(corpus, "MAX_EXERCISES", 100)
    with pytest.raises(ValueError, match=r"n=101 is not allowed; use an int in \[1, 100\]"):
        corpus.load("exercises-scale", n=101)
    monkeypatch.undo()
    assert corpus.MAX_EXERCISES >= 1_000_000
    with pytest.raises(ValueError, match="n="):
        corpus.load("exercises-scale", n=10**9)
    for name, kw in (("exercises-scale", {}), ("exercises-chords", {"keys": (48, 72)}), ("folk", {"keys": (21, 108)})):
        with pytest.raises(ValueError, match="out_of_range policy 'bogus'; allowed: transpose, reject, drop"):
            corpus.load(name, out_of_range="bogus", **kw)
    with pytest.raises(ValueError, match="unknown split") as e:
        corpus.load("exercises-scale", list(range(100_000)))
    _msg(e)


# ------------------------------------------------------------------ tasks and improv


def test_probe_score_and_probe_keyboard_check_arguments():
    for bad in ((60, 10), (10, 60), (60,), None, (60.5, 62)):
        with pytest.raises(ValueError, match="keys"):
            tasks.probe_score(bad)
    with pytest.raises(ValueError, match="lead_seconds"):
        tasks.probe_score((60, 62), lead_seconds=float("nan"))
    with pytest.raises(ValueError, match="frame_rate"):
        tasks.probe_score((60, 62), frame_rate=0)
    score, slots = tasks.probe_score((60, 62))
    assert len(score) == 12 and len(slots) == 6
    with pytest.raises(TypeError, match=r"agent must have predict\(obs\) -> \(action, state\)"):
        tasks.probe_keyboard(None, None)
    with pytest.raises(TypeError, match="not an lmm_env task"):
        tasks.probe_keyboard(type("A", (), {"predict": lambda self, obs: (0, None)})(), None)


def test_improv_durations_bounded():
    s = small()
    with pytest.raises(ValueError, match=r"duration must be a finite number of seconds in \(0, 21600\]"):
        improv._positive_seconds("duration", 1e7)
    with pytest.raises(ValueError, match="duration"):
        improv.judge_nll(s, duration=1e7)  # refused before the judge loads or 16 GiB of frames
    with pytest.raises(ValueError, match="duration"):
        improv.improv_metrics(s, 1e7)
    with pytest.raises(ValueError, match="seconds"):
        improv.corpus_reference(seconds=1e9)
    with pytest.raises(ValueError, match="key") as e:
        improv.in_key_share(s, key=list(range(100_000)))
    _msg(e)
