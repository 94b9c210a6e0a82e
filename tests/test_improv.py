"""lmm_env.improv: the judge LM and the statistics of a free improvisation."""
import math
import subprocess
import sys

import numpy as np
import pytest

from lmm_env import corpus, improv
from lmm_env.lm import PRETRAINED, load_pretrained, read_metadata
from lmm_env.lm.checkpoint import WEIGHTS_DIR
from lmm_env.lm.score_lm import ScoreLM, train_main
from lmm_env.metrics import note_density, pitch_class_entropy
from lmm_env.score import Score


def line(pitches, step=0.25, start=0.0):
    """A monophonic line, one note every ``step`` seconds, each held for the whole step."""
    on = start + np.arange(len(pitches)) * step
    return Score(np.asarray(pitches), on, on + step)


C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]
LOOP = [60, 62, 64, 65, 67, 65, 64, 62]


@pytest.fixture(scope="module")
def judge():
    return load_pretrained("judge")


@pytest.fixture(scope="module")
def folk_pieces():
    c = corpus.load("folk", "test")
    return [c[i].trim(0, 30) for i in range(4)]


@pytest.fixture(scope="module")
def bach_piece():
    return corpus.load("bach-chorales", "test")[0].trim(0, 20)


# --------------------------------------------------------------------------- the judge


def test_judge_is_a_scorelm_independent_of_the_reward_lm(judge):
    assert "judge" in PRETRAINED
    assert isinstance(judge, ScoreLM) and not judge.training
    reward = load_pretrained("score")
    assert judge is not reward
    # different weights: another width, and no tensor of a shared shape is equal
    assert judge.config != reward.config
    own, other = judge.state_dict(), reward.state_dict()
    shared = [k for k in own if k in other and own[k].shape == other[k].shape]
    assert all(not np.allclose(own[k].numpy(), other[k].numpy()) for k in shared if own[k].abs().sum() > 0)
    # different data: the judge never saw the train split, and was scored on the test split
    meta = read_metadata(WEIGHTS_DIR / PRETRAINED["judge"])["extra"]
    assert meta["train_split"] == "validation" and meta["eval_split"] == "test"
    assert "--train-split validation --eval-split test" in meta["command"]
    nll = meta["nll_nats_per_frame"]
    for c in ("bach-chorales", "folk"):
        # a real model: far better than the per-channel "repeat the last frame" baseline
        assert 0 < nll["model"][c] < 0.5 * nll["repeat_last"][c]
        assert math.isfinite(meta["compare_nll_nats_per_frame"]["score"][c])


def test_judge_nll_is_the_mean_nll_per_frame_of_the_scorelm(judge, bach_piece):
    fs = bach_piece.frames(20)
    expected = judge.piece_nll(fs.held, fs.onset) / fs.T
    assert improv.judge_nll(bach_piece) == pytest.approx(expected, rel=1e-4)
    assert improv.judge_nll(bach_piece, judge=judge) == improv.judge_nll(bach_piece)
    # another model gives another number
    assert improv.judge_nll(bach_piece, judge="score") != pytest.approx(expected, rel=1e-3)


def test_judge_nll_duration_pads_with_silence_or_cuts(bach_piece):
    d = bach_piece.duration
    assert improv.judge_nll(bach_piece, duration=d) == pytest.approx(improv.judge_nll(bach_piece))
    longer = improv.judge_nll(bach_piece, duration=d + 10)
    assert longer < improv.judge_nll(bach_piece)  # silent frames are cheap, so the mean drops
    assert improv.judge_nll(bach_piece, duration=d / 2) == pytest.approx(
        improv.judge_nll(bach_piece.trim(0, d / 2)), rel=0.02)
    empty = Score([], [], [])
    assert math.isnan(improv.judge_nll(empty))
    assert 0 < improv.judge_nll(empty, duration=5.0) < 0.5


def test_real_music_beats_random_pitches_in_the_same_rhythm(folk_pieces, bach_piece):
    rng = np.random.default_rng(0)
    for piece in folk_pieces + [bach_piece]:
        real = improv.judge_nll(piece)
        anywhere = Score(rng.integers(21, 109, len(piece)), piece.onsets, piece.offsets)
        lo, hi = int(piece.pitches.min()), int(piece.pitches.max())
        in_range = Score(rng.integers(lo, hi + 1, len(piece)), piece.onsets, piece.offsets)
        assert 2 * real < improv.judge_nll(anywhere)
        assert real < improv.judge_nll(in_range)
    # a tune's real note order beats its own pitches shuffled (on average; for one piece the
    # gap can be tiny, and for 4-voice chorales the small judge does not reliably prefer the
    # real voice leading, so only melodies are asserted)
    gaps = [improv.judge_nll(Score(rng.permutation(p.pitches), p.onsets, p.offsets)) - improv.judge_nll(p)
            for p in folk_pieces]
    assert np.mean(gaps) > 0.02


def test_one_note_collapse_fools_the_judge_but_not_the_other_statistics(folk_pieces):
    """Per-frame NLL rewards predictability: a one-note line in the tune's rhythm scores about
    as well as the tune itself (and silence better still). That is why improv_metrics reports
    repetition and pitch-class entropy beside it."""
    tune = folk_pieces[0]
    drone = Score(np.full(len(tune), 67), tune.onsets, tune.offsets)
    assert improv.judge_nll(drone) < 1.5 * improv.judge_nll(tune)
    assert improv.judge_nll(Score([], [], []), duration=30.0) < improv.judge_nll(tune, duration=30.0)
    d, t = improv.improv_metrics(drone, 30.0), improv.improv_metrics(tune, 30.0)
    assert d["pitch_class_entropy"] == 0.0 < t["pitch_class_entropy"] - 1.5
    assert d["repetition"] > 0.9 > 0.5 > t["repetition"]


# --------------------------------------------------------------------------- repetition


def test_repetition_of_a_loop_is_near_one_and_of_real_tunes_lower(folk_pieces):
    loop = line(LOOP * 10)
    assert improv.repetition(loop) == pytest.approx(1 - 8 / (80 - 4 + 1))  # all but the first period
    assert improv.repetition(loop) > 0.85
    assert improv.repetition(line(C_MAJOR)) == 0.0  # no 4-gram comes back
    for tune in folk_pieces:
        assert improv.repetition(tune) < 0.6
    assert improv.repetition(corpus.load("folk", "test")[0]) < improv.repetition(loop)
    # exact pitches: the loop a tone higher in its second half repeats only within each half
    shifted = line(LOOP * 5 + [p + 2 for p in LOOP * 5])
    assert improv.repetition(shifted) < improv.repetition(loop)


def test_repetition_is_nan_below_n_plus_one_notes_and_checks_n():
    assert math.isnan(improv.repetition(line([60, 62, 64, 65])))  # 4 notes: one 4-gram
    assert improv.repetition(line([60, 60]), n=1) == 0.5
    assert math.isnan(improv.repetition(Score([], [], [])))
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            improv.repetition(line(C_MAJOR), n=bad)


# --------------------------------------------------------------------------- key


def test_key_of_scales_and_an_a_minor_passage():
    assert improv.key_of(line(C_MAJOR)) == (0, "major")
    for k in range(-6, 6):  # transposition moves the tonic
        assert improv.key_of(line([p + k for p in C_MAJOR])) == (k % 12, "major")
    # A minor, harmonic: Am - E - Am chords, then the harmonic minor scale with its G#
    chords = [(0, (57, 60, 64)), (1, (56, 59, 64)), (2, (57, 60, 64))]
    notes = [(p, t, t + 1) for t, ch in chords for p in ch]
    notes += [(p, 3 + 0.5 * i, 3.5 + 0.5 * i) for i, p in enumerate([69, 71, 72, 74, 76, 77, 80, 81])]
    a_minor = Score.from_notes(notes)
    assert improv.key_of(a_minor) == (9, "minor")
    assert improv.key_name(improv.key_of(a_minor)) == "A minor"
    assert improv.in_key_share(a_minor) == 1.0  # the leading tone G# counts as in key
    assert improv.in_key_share(a_minor, (0, "major")) == pytest.approx(15 / 17)  # the 2 G#s are not


def test_key_of_is_duration_weighted():
    # the same seven white notes, one each: the long ones decide the key (C-E-G: C major,
    # A-C-E: A minor, D-F-A: D minor, G-B-D: G major)
    def white_notes(long):
        t, notes = 0.0, []
        for p in (60, 62, 64, 65, 67, 69, 71):
            d = 2.0 if p in long else 0.25
            notes.append((p, t, t + d))
            t += d
        return Score.from_notes(notes)

    assert improv.key_of(white_notes({60, 64, 67})) == (0, "major")
    assert improv.key_of(white_notes({69, 60, 64})) == (9, "minor")
    assert improv.key_of(white_notes({62, 65, 69})) == (2, "minor")
    assert improv.key_of(white_notes({67, 71, 62})) == (7, "major")


def test_key_of_rejects_empty_and_flat_histograms():
    with pytest.raises(ValueError, match="at least one note"):
        improv.key_of(Score([], [], []))
    chromatic = line(list(range(60, 72)))
    with pytest.raises(ValueError, match="equally long"):
        improv.key_of(chromatic)
    assert math.isnan(improv.in_key_share(chromatic))
    assert improv.in_key_share(chromatic, (0, "major")) == pytest.approx(7 / 12)


def test_in_key_share():
    assert improv.in_key_share(line(C_MAJOR), (0, "major")) == 1.0
    assert improv.in_key_share(line(C_MAJOR)) == 1.0
    assert improv.in_key_share(line([p + 3 for p in C_MAJOR]), (3, "major")) == 1.0
    # D-flat major shares only C and F with C major: C, F and the top C of the eight notes
    assert improv.in_key_share(line(C_MAJOR), (1, "major")) == pytest.approx(3 / 8)
    assert math.isnan(improv.in_key_share(Score([], [], [])))
    for bad in ((12, "major"), (-1, "minor"), (0, "dorian"), "C", (0.0, "major"), (True, "major")):
        with pytest.raises(ValueError, match="key"):
            improv.in_key_share(line(C_MAJOR), bad)


# --------------------------------------------------------------------------- all together


def test_improv_metrics_collects_the_statistics(folk_pieces):
    tune = folk_pieces[1]
    m = improv.improv_metrics(tune, 30.0)
    assert tuple(m) == improv.STATS
    assert m["judge_nll"] == improv.judge_nll(tune, duration=30.0)
    assert m["pitch_class_entropy"] == pitch_class_entropy(tune)
    assert m["note_density"] == note_density(tune, 30.0)
    assert m["repetition"] == improv.repetition(tune, 4)
    assert m["in_key_share"] == improv.in_key_share(tune)
    assert m["n_notes"] == len(tune)
    assert improv.improv_metrics(tune, 30.0, key=(1, "major"))["in_key_share"] < m["in_key_share"]
    silent = improv.improv_metrics(Score([], [], []), 10.0)
    assert silent["n_notes"] == 0 and silent["note_density"] == 0.0
    assert math.isnan(silent["repetition"]) and math.isnan(silent["in_key_share"])
    assert math.isfinite(silent["judge_nll"])


def test_bad_arguments_raise_value_errors_naming_them(bach_piece):
    cases = [
        (lambda: improv.judge_nll([60, 62]), "Score"),
        (lambda: improv.judge_nll(bach_piece, frame_rate=10), "frame_rate=10"),
        (lambda: improv.judge_nll(bach_piece, frame_rate=0), "frame_rate"),
        (lambda: improv.judge_nll(bach_piece, judge="no-such-model"), "no-such-model"),
        (lambda: improv.judge_nll(bach_piece, judge="audio"), "ScoreLM"),
        (lambda: improv.judge_nll(bach_piece, judge=object()), "ScoreLM"),
        (lambda: improv.judge_nll(bach_piece, duration=0), "duration"),
        (lambda: improv.improv_metrics(bach_piece, -1.0), "duration"),
        (lambda: improv.improv_metrics(bach_piece, float("nan")), "duration"),
        (lambda: improv.improv_metrics(bach_piece, 10.0, key=(0, "lydian")), "lydian"),
        (lambda: improv.key_of(None), "Score"),
        (lambda: improv.corpus_reference(split="dev"), "'dev'"),
        (lambda: improv.corpus_reference(n=0), "n must be"),
        (lambda: improv.corpus_reference(seconds=float("inf")), "seconds"),
        (lambda: improv.corpus_reference(names="folk"), "names"),
        (lambda: improv.corpus_reference(names=("jazz",)), "'jazz'"),
        (lambda: improv.corpus_reference(pick="random"), "pick"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_corpus_reference_ranges_and_cache():
    ref = improv.corpus_reference(n=6, seconds=20.0)
    assert set(ref) == {"folk", "bach-chorales"}
    for c, stats in ref.items():
        assert tuple(stats) == improv.STATS
        for stat, r in stats.items():
            assert set(r) == {"mean", "p10", "p90"}
            assert r["p10"] <= r["mean"] <= r["p90"], (c, stat, r)
    # the ranges say something: chorales are denser and harder to predict than folk tunes
    assert ref["bach-chorales"]["note_density"]["p10"] > ref["folk"]["note_density"]["p90"]
    assert ref["bach-chorales"]["judge_nll"]["mean"] > ref["folk"]["judge_nll"]["mean"]
    assert ref["folk"]["in_key_share"]["mean"] > 0.85
    # cached per arguments; callers get their own copy
    ref["folk"]["judge_nll"]["mean"] = -1.0
    again = improv.corpus_reference(n=6, seconds=20.0)
    assert again["folk"]["judge_nll"]["mean"] > 0
    assert improv.corpus_reference(n=6, seconds=20.0, names=("folk",))["folk"] == again["folk"]
    # "spread" reaches past the slow Essen songs that open the folk split
    first = improv.corpus_reference(n=6, seconds=20.0, names=("folk",), pick="first")["folk"]
    assert first["note_density"]["mean"] < ref["folk"]["note_density"]["mean"]


# --------------------------------------------------------------------------- plumbing


def test_improv_is_core_and_light():
    code = ("import sys, lmm_env.improv; "
            "bad = [m for m in sys.modules if m.startswith(('lmm_env.envs', 'lmm_env.agents', 'torch'))]; "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_score_trainer_refuses_to_evaluate_on_its_training_split(capsys):
    with pytest.raises(SystemExit) as exc:
        train_main(["--train-split", "test", "--eval-split", "test"])
    assert exc.value.code == 2
    assert "--train-split and --eval-split are both 'test'" in capsys.readouterr().err
