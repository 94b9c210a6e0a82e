"""Real recordings: a reverberant, noisy take and its MIDI are accepted (LMMByEar-v0's reference=,
lmm_env.pairs.from_files), while a MIDI of another piece, a shifted one or one of part of the take is
still refused; fit_ear learns from the pairs made of recordings."""
import os
import warnings

import gymnasium as gym
import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve

import lmm_env  # noqa: F401  (registers the envs)
from lmm_env import pairs
from lmm_env.score import Score
from lmm_env.synth import PianoSynth

SR = 16000


def _tune(seed: int, seconds: float = 8.0, beat: float = 0.4) -> Score:
    """A melody on a steady beat (quarters, eighths, halves) with some bass notes: music-like, not random times."""
    rng = np.random.default_rng(seed)
    notes, t, p = [], 0.0, 67
    while t < seconds - beat:
        d = beat * float(rng.choice([0.5, 1, 1, 2]))
        p = int(np.clip(p + rng.integers(-4, 5), 55, 84))
        notes.append((p, t, t + 0.9 * d, int(rng.integers(60, 100))))
        if rng.random() < 0.3:
            notes.append((p - 12 - int(rng.integers(0, 8)), t, t + 0.9 * d, 70))
        t += d
    return Score.from_notes(notes)


def _room(audio, rt60: float = 1.8, noise_db: float = -50.0, room_tone: float = 6.0, seed: int = 0) -> np.ndarray:
    """``audio`` in a reverberant room: convolved with an exponentially decaying noise impulse response
    (``rt60`` s to -60 dB), ``room_tone`` s more recorded after it, and a noise floor ``noise_db`` below the
    recording's peak (peak 0.5)."""
    rng = np.random.default_rng(seed)
    n = int(1.5 * rt60 * SR)
    ir = rng.standard_normal(n) * np.exp(-6.91 * np.arange(n) / SR / rt60)
    ir[0] = 1.0
    y = np.concatenate([fftconvolve(audio, ir), np.zeros(int(room_tone * SR))])
    y = 0.5 * y / np.abs(y).max()
    y += 0.5 * 10 ** (noise_db / 20) * rng.standard_normal(len(y))
    return y.astype(np.float32)


def _shift(score: Score, seconds: float) -> Score:
    return Score(score.pitches, score.onsets + seconds, score.offsets + seconds, score.velocities)


@pytest.fixture(scope="module")
def take(tmp_path_factory):
    """(wav path, mid path, score, audio): a rendered tune recorded in a reverberant, noisy room."""
    folder = tmp_path_factory.mktemp("take")
    score = _tune(0)
    audio = _room(PianoSynth(SR).render(score, tail=0.5))
    wav, mid = folder / "take.wav", folder / "take.mid"
    sf.write(wav, audio, SR, subtype="FLOAT")
    score.to_pretty_midi().write(str(mid))
    return str(wav), str(mid), Score.from_midi(str(mid)), audio


def test_the_take_is_what_the_old_check_refused(take):
    # the old rule: refused when the audio stays above -60 dB of its peak for more than 2 s after the last note
    _, _, score, audio = take
    loud = np.flatnonzero(np.abs(audio) > 1e-3 * np.abs(audio).max())
    assert (loud[-1] + 1) / SR > score.duration + 2.0 + 5.0  # the noise floor never falls under -60 dB
    assert pairs.match_problem(audio, score, SR) is None


def test_a_reverberant_noisy_recording_plays_with_its_midi(take):
    wav, mid, score, _ = take
    env = gym.make("LMMByEar-v0", target=wav, reference=mid)
    _, info = env.reset(seed=0)
    ref = env.unwrapped.reference_score()
    np.testing.assert_array_equal(ref.pitches, score.pitches)
    assert info["n_steps"] * 800 >= len(sf.read(wav)[0])  # the whole take, room tone included


def test_a_longer_reverb_and_a_louder_noise_floor_pass_too():
    score = _tune(1)
    dry = PianoSynth(SR).render(score, tail=0.5)
    for rt60, noise_db in ((3.0, -40.0), (1.0, -35.0)):
        assert pairs.match_problem(_room(dry, rt60, noise_db, seed=1), score, SR) is None, (rt60, noise_db)


def test_latency_and_a_loose_performance_pass():
    score = _tune(2)
    rng = np.random.default_rng(0)
    jitter = rng.normal(0, 0.03, len(score))  # played 30 ms off the MIDI's times, 80 ms late
    played = Score(score.pitches, score.onsets + jitter + 0.08, score.offsets + jitter + 0.1, score.velocities)
    assert pairs.match_problem(_room(PianoSynth(SR).render(played, tail=0.5), seed=2), score, SR) is None


def test_coughs_after_the_last_note_are_not_notes():
    score = _tune(3)
    y = _room(PianoSynth(SR).render(score, tail=0.5), seed=3)
    rng = np.random.default_rng(3)
    for at in (score.duration + 2.0, score.duration + 3.5):  # two loud broadband bursts in the room tone
        i = int(at * SR)
        y[i: i + 800] += (0.1 * rng.standard_normal(800) * np.hanning(800)).astype(np.float32)
    assert pairs.match_problem(y, score, SR) is None


@pytest.mark.parametrize("case, match", [
    ("another piece", r"another piece"),  # (a tune of the same style: see the next test for how often)
    ("2 s late", r"better when shifted 2\.0\d s earlier than at their own times"),
    ("1 s early", r"better when shifted 1\.0\d s later than at their own times"),
    ("first half", r"note onsets after"),
    ("too long", r"its last note ends at \d+\.\d\d s, but the audio lasts"),
])
def test_a_wrong_midi_is_still_refused(take, tmp_path, case, match):
    wav, _, score, _ = take
    wrong = {
        "another piece": _tune(1),
        "2 s late": _shift(score, 2.0),
        "1 s early": Score(score.pitches, np.maximum(score.onsets - 1.0, 0), np.maximum(score.offsets - 1.0, 0.05),
                           score.velocities),
        "first half": score.trim(0, score.duration / 2),
        "too long": _shift(score, 12.0),
    }[case]
    mid = tmp_path / "wrong.mid"
    wrong.to_pretty_midi().write(str(mid))
    with pytest.raises(ValueError, match=f"reference='.*wrong.mid' does not match the target audio: .*{match}"):
        gym.make("LMMByEar-v0", target=wav, reference=str(mid))
    audio = sf.read(wav, dtype="float32")[0]
    assert pairs.match_problem(audio, Score.from_midi(str(mid)), SR) is not None


def test_other_pieces_on_the_same_beat_are_refused():
    # tunes of the same kind (one beat, one range): the onsets tell most apart, not all (28 of 29 here)
    refused = []
    for seed in range(4):
        score = _tune(10 + seed)
        audio = _room(PianoSynth(SR).render(score, tail=0.5), seed=seed)
        assert pairs.match_problem(audio, score, SR) is None
        for other in range(3):
            problem = pairs.match_problem(audio, _tune(100 + 10 * seed + other), SR)
            refused.append(problem is not None and "another piece" in problem)
    assert sum(refused) >= 11, refused


def test_a_piece_that_repeats_itself_exactly_passes():
    bar = _tune(4, seconds=2.4)
    loop = Score.from_notes([(int(p), float(a) + 2.4 * k, float(b) + 2.4 * k, int(v)) for k in range(4)
                             for p, a, b, v in zip(bar.pitches, bar.onsets, bar.offsets, bar.velocities)])
    assert pairs.match_problem(_room(PianoSynth(SR).render(loop, tail=0.5), seed=4), loop, SR) is None


def test_match_problem_checks_its_arguments():
    with pytest.raises(ValueError, match="not a lmm_env.score.Score"):
        pairs.match_problem(np.zeros(SR, np.float32), [(60, 0, 1)], SR)
    with pytest.raises(ValueError, match="sample_rate"):
        pairs.match_problem(np.zeros(SR, np.float32), _tune(0), 0)


# --------------------------------------------------------------------------- from_files


def _write_take(folder, name, score, sr=SR, seed=0, room_tone=6.0):
    audio = _room(PianoSynth(sr).render(score, tail=0.5), room_tone=room_tone, seed=seed)
    if sr != SR:  # _room's impulse response is in samples of SR; fine for a test
        pass
    sf.write(os.path.join(folder, f"{name}.wav"), audio, sr)
    score.to_pretty_midi().write(os.path.join(folder, f"{name}.mid"))
    return os.path.join(folder, f"{name}.wav"), os.path.join(folder, f"{name}.mid")


def test_from_files_makes_pairs_of_recordings(tmp_path):
    a = _write_take(tmp_path, "a", _tune(0, 5.0), seed=0)
    b = _write_take(tmp_path, "b", _tune(1, 5.0), seed=1)
    got = pairs.from_files([a[0], b[0]], [a[1], b[1]])
    assert [p.name for p in got] == ["a", "b"] and all(p.instrument == "recording" for p in got)
    for i, p in enumerate(got):
        assert p.sample_rate == SR and p.audio.dtype == np.float32 and pairs.check_pair(p, i) is p
        # 6 s of room tone after the tail: cut PAIR_TAIL_SECONDS after the last note
        assert len(p.audio) == int(np.ceil((p.score.duration + pairs.PAIR_TAIL_SECONDS) * SR))
    again = pairs.from_files(str(tmp_path), instrument="my upright")  # a folder: name.wav beside name.mid
    assert [p.name for p in again] == ["a", "b"] and again[0].instrument == "my upright"
    assert np.array_equal(again[1].audio, got[1].audio) and again[1].score == got[1].score


def test_from_files_resamples_other_rates(tmp_path):
    wav, mid = _write_take(tmp_path, "hi", _tune(0, 4.0), sr=22050)
    with pytest.warns(UserWarning, match="1 of the 1 recordings were resampled to 16000 Hz"):
        (p,) = pairs.from_files([wav], [mid])
    assert p.sample_rate == SR and pairs.match_problem(p.audio, p.score, SR) is None


def test_from_files_names_what_is_wrong(tmp_path):
    wav, mid = _write_take(tmp_path, "ok", _tune(0, 4.0))
    (tmp_path / "notes.txt").write_text("not audio")
    empty = tmp_path / "empty.mid"
    import pretty_midi

    pretty_midi.PrettyMIDI().write(str(empty))
    wrong = tmp_path / "wrong.mid"
    _shift(Score.from_midi(mid), 2.0).to_pretty_midi().write(str(wrong))
    cases = [
        (([str(tmp_path / "missing.wav")], [mid]), "missing.wav' does not exist"),
        (([wav], [str(tmp_path / "missing.mid")]), r"midis\[0\] '.*missing.mid' does not exist"),
        (([wav, wav], [mid]), "2 recordings .* but 1 MIDI files"),
        (([wav], None), "midis= is missing"),
        ((wav, [mid]), "wavs='.*ok.wav' is not allowed; give a list"),
        (([], []), r"wavs=\[\] is empty"),
        (([str(tmp_path / "notes.txt")], [mid]), "notes.txt' is not audio"),
        (([wav], [str(empty)]), r"midis\[0\] '.*empty.mid': .*holds no \(non-drum\) notes"),
        (([wav], [str(wrong)]), r"midis\[0\] '.*wrong.mid' does not match its recording wavs\[0\] .*shifted"),
        (([wav], [mid]), None),
    ]
    for (w, m), match in cases:
        if match is None:
            assert len(pairs.from_files(w, m)) == 1
            continue
        with pytest.raises(ValueError, match=match):
            pairs.from_files(w, m)
    os.remove(mid)
    with pytest.raises(ValueError, match="have no MIDI file of the same name"):
        pairs.from_files(str(tmp_path))
    with pytest.raises(ValueError, match="instrument=3"):
        pairs.from_files([wav], [str(wrong)], instrument=3)


def test_from_files_refuses_notes_off_the_keyboard(tmp_path):
    score = _tune(0, 4.0)
    wav, _ = _write_take(tmp_path, "t", score)
    low = tmp_path / "low.mid"
    pm = score.to_pretty_midi()
    import pretty_midi

    pm.instruments[0].notes.append(pretty_midi.Note(velocity=80, pitch=12, start=0.0, end=1.0))  # C0: no piano key
    pm.write(str(low))
    with pytest.raises(ValueError, match=r"low.mid': pitch 12 .* outside the allowed keys 21..108.*88 piano keys"):
        pairs.from_files([wav], [str(low)])


def test_fit_ear_learns_from_recordings_and_says_so(tmp_path):
    from lmm_env.lm import fit_ear

    got = pairs.from_files(*zip(*[_write_take(tmp_path, n, _tune(i, 4.0), seed=i) for i, n in enumerate("ab")]),
                           instrument="room piano")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ear = fit_ear(list(got), steps=3, batch=8, progress=False)
    assert ear.fit_info["pairs"] == 2 and ear.fit_info["instrument"] == "room piano"
    held, _ = ear.transcribe(got[0].audio)
    assert held.shape[1] == 88
