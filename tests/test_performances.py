"""Tests of lmm_env.performances (MAESTRO layout, MIDI folders) and of Score's sustain pedal.

Every fixture is written here (pretty_midi MIDI with a CC64 pedal, soundfile WAVs, a CSV):
nothing is downloaded."""
import csv
import json
import pickle

import numpy as np
import pretty_midi
import pytest
import soundfile

from lmm_env import corpus
from lmm_env.performances import (Performance, load_maestro, load_midi_folder, maestro_index, maestro_pairs,
                                  midi_folder_index)
from lmm_env.score import Score, ScoreError

COLUMNS = ["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"]


def write_midi(path, pitches, pedal=(), start=0.0, velocity=None):
    """A one-piano MIDI file: a note every 0.5 s, velocities rising, and CC64 pedal intervals."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    for i, p in enumerate(pitches):
        v = velocity if velocity is not None else 40 + 10 * i
        inst.notes.append(pretty_midi.Note(velocity=v, pitch=p, start=start + 0.5 * i, end=start + 0.5 * i + 0.4))
    for a, b in pedal:
        inst.control_changes += [pretty_midi.ControlChange(64, 100, a), pretty_midi.ControlChange(64, 10, b)]
    pm.instruments.append(inst)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def write_wav(path, seconds=2.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(str(path), (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)
    return path


ROWS = [  # composer, title, split, year, midi, audio, duration
    ("Frédéric Chopin", "Nocturne", "train", 2018, "2018/a.midi", "2018/a.wav", 2.0),
    ("Claude Debussy", "Rêverie", "validation", 2017, "2017/b.midi", "2017/b.wav", 2.0),
    ("Johann Sebastian Bach", "Prelude", "test", 2018, "2018/c.midi", "2018/c.wav", 2.0),
    ("Franz Liszt", "Étude", "test", 2018, "2018/d.midi", "2018/d.wav", 2.0),
]


@pytest.fixture
def maestro(tmp_path):
    root = tmp_path / "maestro-v3.0.0"
    for k, row in enumerate(ROWS):
        write_midi(root / row[4], [60 + k, 64 + k, 48 + k, 72 + k], pedal=[(0.1, 0.9), (1.05, 1.8)])
        write_wav(root / row[5])
    with open(root / "maestro-v3.0.0.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(ROWS)
    return root


def test_load_maestro_reads_velocities_and_pedal(maestro):
    scores = load_maestro(maestro, "test")
    assert [s.name for s in scores] == ["2018/c.midi", "2018/d.midi"]
    s = scores[0]
    assert sorted(s.pitches.tolist()) == [50, 62, 66, 74]
    assert s.velocities.tolist() == [40, 50, 60, 70]  # in onset order
    np.testing.assert_allclose(s.pedal, [[0.1, 0.9], [1.05, 1.8]], atol=1e-3)
    assert [s.name for s in load_maestro(maestro, "train")] == ["2018/a.midi"]
    assert len(load_maestro(maestro, "all")) == 4 and len(load_maestro(maestro, "all", limit=3)) == 3
    rows = maestro_index(maestro, "test")
    assert isinstance(rows[0], Performance) and rows[0].composer == "Johann Sebastian Bach"
    assert rows[0].year == 2018 and rows[0].duration == 2.0 and rows[0].audio_path == maestro / "2018/c.wav"
    assert load_maestro(maestro / "maestro-v3.0.0.csv", "test") == scores  # the CSV itself as the root


def test_maestro_json_metadata(maestro):
    (maestro / "maestro-v3.0.0.csv").unlink()
    table = {c: {str(i): row[j] for i, row in enumerate(ROWS)} for j, c in enumerate(COLUMNS)}
    (maestro / "maestro-v3.0.0.json").write_text(json.dumps(table), encoding="utf-8")  # MAESTRO's own layout
    assert [s.name for s in load_maestro(maestro, "test")] == ["2018/c.midi", "2018/d.midi"]
    assert [p.title for p in maestro_index(maestro, "validation")] == ["Rêverie"]


def test_maestro_pairs_for_by_ear(maestro):
    pairs = maestro_pairs(maestro, "test")
    assert len(pairs) == 2
    score, wav = pairs[0]
    assert isinstance(score, Score) and len(score.pedal) == 2 and wav == maestro / "2018/c.wav" and wav.is_file()
    (maestro / "2018/d.wav").unlink()
    with pytest.raises(FileNotFoundError, match="WAV") as e:
        maestro_pairs(maestro, "test")
    assert "d.wav" in str(e.value)
    assert len(load_maestro(maestro, "test")) == 2  # scores need no audio (the MIDI-only download)
    assert maestro_index(maestro, "test")[1].audio_path is None
    (maestro / "2018/c.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="c.wav.*not a readable audio file"):
        maestro_pairs(maestro, "test", limit=1)


def test_maestro_errors_name_the_problem(maestro, tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_maestro(tmp_path / "nowhere")
    assert "nowhere" in str(e.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="maestro-v3.0.0.csv"):
        load_maestro(empty)
    with pytest.raises(ValueError) as e:
        load_maestro(maestro, "dev")
    assert "'dev'" in str(e.value) and "validation" in str(e.value) and "all" in str(e.value)
    with pytest.raises(TypeError, match="path"):
        load_maestro(42)
    with pytest.raises(ValueError, match="limit"):
        load_maestro(maestro, limit=0)
    with pytest.raises(ValueError, match="segment_seconds"):
        load_maestro(maestro, segment_seconds=0.1)
    (maestro / "2018/d.midi").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_maestro(maestro, "test")
    assert "line 5" in str(e.value) and "d.midi" in str(e.value)
    assert len(load_maestro(maestro, "train")) == 1  # rows of other splits are not read
    csv_path = maestro / "maestro-v3.0.0.csv"
    csv_path.write_text("canonical_title,split\nX,test\n", encoding="utf-8")
    with pytest.raises(ValueError, match="lacks the column.*midi_filename"):
        load_maestro(maestro)
    csv_path.write_text("split,midi_filename\ndev,2018/c.midi\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: split 'dev'"):
        load_maestro(maestro)


def test_segments_split_a_performance(maestro):
    whole = load_maestro(maestro, "test", limit=1)[0]
    parts = load_maestro(maestro, "test", limit=1, segment_seconds=1.0)
    assert [p.name for p in parts] == ["2018/c.midi@0", "2018/c.midi@1"]
    assert sum(len(p) for p in parts) == len(whole)
    assert parts[1].onsets.min() == pytest.approx(0.0) and parts[1].velocities.tolist() == [60, 70]
    np.testing.assert_allclose(parts[1].pedal, [[0.05, 0.8]], atol=1e-3)


def test_midi_folder(tmp_path):
    root = tmp_path / "giant"
    names = [f"Composer {i}, Piece {i}, id{i}.mid" for i in range(30)]
    for i, n in enumerate(names):
        write_midi(root / ("sub" if i % 2 else "") / n, [60, 64, 43], pedal=[(0.0, 1.2)] if i % 3 else ())
    (root / "notes.txt").write_text("not midi")
    everything = midi_folder_index(root, "all")
    assert len(everything) == 30 and all(p.audio_path is None for p in everything)
    ids = [p.id for p in everything]
    assert ids == sorted(ids) and "sub/Composer 1, Piece 1, id1.mid" in ids
    by_split = {sp: [p.id for p in midi_folder_index(root, sp)] for sp in ("train", "validation", "test")
                if any(corpus.split_of(i) == sp for i in ids)}
    for sp, got in by_split.items():
        assert got == [i for i in ids if corpus.split_of(i) == sp]  # the corpus's hash split of the path
    assert sum(map(len, by_split.values())) == 30
    scores = load_midi_folder(root, "all", limit=4)
    assert [s.name for s in scores] == ids[:4]
    for s in scores:
        i = int(s.name.split(", id")[1].split(".")[0])
        assert len(s.pedal) == (1 if i % 3 else 0)
    assert len(midi_folder_index(root, "all", recursive=False)) == 15
    assert load_midi_folder(root, "all") == load_midi_folder(root, "all")  # deterministic


def test_midi_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="MIDI folder"):
        load_midi_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no MIDI files"):
        load_midi_folder(tmp_path / "empty")
    one = write_midi(tmp_path / "one" / "x.mid", [60])
    with pytest.raises(NotADirectoryError):
        load_midi_folder(one)
    sp = corpus.split_of("x.mid")
    other = next(s for s in ("train", "validation", "test") if s != sp)
    with pytest.raises(ValueError, match=f"split '{other}'.*split='all'"):
        load_midi_folder(tmp_path / "one", other)
    with pytest.raises(ValueError, match="unknown split"):
        load_midi_folder(tmp_path / "one", "testing")
    (tmp_path / "one" / "broken.mid").write_bytes(b"MThd junk")
    with pytest.raises(ScoreError, match="broken.mid"):
        load_midi_folder(tmp_path / "one", "all")
    with pytest.warns(UserWarning, match="broken.mid"):
        assert [s.name for s in load_midi_folder(tmp_path / "one", "all", skip_unreadable=True)] == ["x.mid"]


def test_scores_feed_the_envs(maestro):
    import gymnasium as gym

    import envs  # noqa: F401  (registers the tasks)

    env = gym.make("LMMPiano-v0", score=load_maestro(maestro, "test"), max_seconds=2.0, reward="key_match")
    obs, info = env.reset(seed=0)
    assert info["score_name"] in ("2018/c.midi", "2018/d.midi")
    env.close()
    score, wav = maestro_pairs(maestro, "test", limit=1)[0]
    import soundfile as sf

    from lmm_env.synth import PianoSynth

    # the recording of its MIDI (the fixture's placeholder WAV is not: LMMByEar-v0 checks the pair by onsets)
    sf.write(wav, PianoSynth(16000).render(score), 16000)
    env = gym.make("LMMByEar-v0", target=wav, reference=score, reward="key_match")
    env.reset(seed=0)
    env.close()


# --------------------------------------------------------------------------- Score.pedal


def test_score_pedal_roundtrip_and_operations():
    s = Score([60, 64], [0.0, 0.5], [1.0, 1.5], [70, 90], pedal=[(0.2, 0.8), (0.7, 1.0), (1.2, 1.4)])
    np.testing.assert_allclose(s.pedal, [[0.2, 1.0], [1.2, 1.4]])  # overlaps merged
    assert not s.pedal.flags.writeable
    pm = s.to_pretty_midi()
    cc = [(c.number, c.value, round(c.time, 3)) for c in pm.instruments[0].control_changes]
    assert cc == [(64, 127, 0.2), (64, 0, 1.0), (64, 127, 1.2), (64, 0, 1.4)]
    assert Score.from_midi(pm) == s
    assert Score([60], [0], [1]) != Score([60], [0], [1], pedal=[(0, 1)])  # equality sees the pedal
    np.testing.assert_allclose(s.trim(0.5).pedal, [[0.0, 0.5], [0.7, 0.9]])
    np.testing.assert_allclose(s.with_tempo(2).pedal, [[0.1, 0.5], [0.6, 0.7]])
    np.testing.assert_array_equal(s.transpose(3).pedal, s.pedal)
    assert pickle.loads(pickle.dumps(s)) == s
    assert s.pedal_frames(10).astype(int).tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0]
    assert Score([60], [0], [1]).pedal.shape == (0, 2) and "pedal" not in repr(Score([60], [0], [1]))
    assert "2 pedal intervals" in repr(s)


@pytest.mark.parametrize("bad, msg", [([(1.0, 0.5)], "pedal interval 0 is \\(1.0, 0.5\\)"), ("ab", "pairs"),
                                      ([(True, 1)], "pair of numbers"), ([[0, 1, 2]], "shape"),
                                      ([(0, float("nan"))], "finite"), ([(-1, 1)], "0 <= start")])
def test_score_pedal_errors(bad, msg):
    with pytest.raises(ScoreError, match=msg):
        Score([60], [0], [1], pedal=bad)


def test_from_midi_pedal_conventions(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    inst.notes.append(pretty_midi.Note(80, 60, 0.0, 2.0))
    # half-pedal values: >= 64 is down; a repeated "down" is no new interval; a pedal never lifted ends with the file
    for t, v in [(0.1, 64), (0.3, 90), (0.5, 63), (0.6, 127), (0.9, 0), (1.0, 0), (1.5, 100)]:
        inst.control_changes.append(pretty_midi.ControlChange(64, v, t))
    inst.control_changes.append(pretty_midi.ControlChange(67, 127, 0.0))  # soft pedal: ignored
    pm.instruments.append(inst)
    np.testing.assert_allclose(Score.from_midi(pm).pedal, [[0.1, 0.5], [0.6, 0.9], [1.5, 2.0]])
