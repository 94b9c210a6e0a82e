"""Tests of lmm_env.metrics against the reference implementations (sklearn, mir_eval)."""
import math
import warnings

import numpy as np
import pytest

from lmm_env.metrics import episode_metrics, frame_f1, note_metrics
from lmm_env.score import Score


# --------------------------------------------------------------------------- frame_f1


def _sklearn_frame_f1(pressed, target):
    metrics = pytest.importorskip("sklearn.metrics")
    ps, rs, fs = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for t in range(pressed.shape[0]):
            p, r, f, _ = metrics.precision_recall_fscore_support(
                y_true=target[t], y_pred=pressed[t], average="binary", zero_division=1
            )
            ps.append(p)
            rs.append(r)
            fs.append(f)
    return {"precision": np.mean(ps), "recall": np.mean(rs), "f1": np.mean(fs)}


@pytest.mark.parametrize("seed", range(5))
def test_frame_f1_matches_sklearn_on_random_rolls(seed):
    rng = np.random.default_rng(seed)
    T, K = 300, 88
    density = rng.uniform(0.0, 0.1, size=(T, 1))
    target = rng.random((T, K)) < density
    pressed = np.where(rng.random((T, K)) < 0.8, target, rng.random((T, K)) < density)
    # Force every kind of empty row: both empty, only pressed empty, only target empty.
    target[:20] = False
    pressed[:10] = False
    pressed[20:30] = False
    target[30:40] = False
    pressed[30:40, :3] = True
    ours = frame_f1(pressed, target)
    ref = _sklearn_frame_f1(pressed, target)
    for k in ("precision", "recall", "f1"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-12), k


def test_frame_f1_edge_rows_match_sklearn_one_by_one():
    # Each single-row case against sklearn, so a wrong convention cannot hide in a mean.
    cases = [
        ([0, 0, 0], [0, 0, 0]),  # nothing pressed, nothing wanted
        ([0, 0, 0], [1, 0, 0]),  # nothing pressed
        ([1, 0, 0], [0, 0, 0]),  # nothing wanted
        ([1, 0, 0], [0, 1, 0]),  # all wrong
        ([1, 1, 0], [0, 1, 1]),  # partial
        ([1, 1, 1], [1, 1, 1]),  # perfect
    ]
    for p, t in cases:
        p = np.array([p], dtype=bool)
        t = np.array([t], dtype=bool)
        ours = frame_f1(p, t)
        ref = _sklearn_frame_f1(p, t)
        for k in ours:
            assert ours[k] == pytest.approx(ref[k]), (p, t, k)


def test_frame_f1_documented_conventions():
    silent = np.zeros((4, 88), dtype=bool)
    assert frame_f1(silent, silent) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    wanted = silent.copy()
    wanted[:, 40] = True
    assert frame_f1(silent, wanted) == {"precision": 1.0, "recall": 0.0, "f1": 0.0}
    assert frame_f1(wanted, silent) == {"precision": 0.0, "recall": 1.0, "f1": 0.0}
    assert frame_f1(wanted, wanted) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    # 0/1 ints are accepted like bools.
    assert frame_f1(wanted.astype(np.int8), wanted.astype(float))["f1"] == 1.0


def test_frame_f1_rejects_bad_input():
    a = np.zeros((3, 88), dtype=bool)
    with pytest.raises(ValueError, match=r"\(3, 87\)"):
        frame_f1(a, np.zeros((3, 87), dtype=bool))
    with pytest.raises(ValueError, match="2-D"):
        frame_f1(np.zeros(88, dtype=bool), np.zeros(88, dtype=bool))
    with pytest.raises(ValueError, match="0.5"):
        frame_f1(np.full((3, 88), 0.5), a)
    with pytest.raises(ValueError, match="no steps"):
        frame_f1(np.zeros((0, 88), bool), np.zeros((0, 88), bool))


# --------------------------------------------------------------------------- note_metrics


def _random_score(rng, n, t_max=20.0):
    on = np.sort(rng.uniform(0, t_max, n))
    return Score(rng.integers(40, 80, n), on, on + rng.uniform(0.05, 1.0, n), rng.integers(1, 128, n))


def _perturbed(rng, ref, jitter=0.04, drop=0.2, extra=5, wrong_pitch=0.1):
    keep = rng.random(len(ref)) > drop
    p = ref.pitches[keep].astype(int)
    p = np.where(rng.random(len(p)) < wrong_pitch, p + 1, p)
    on = np.maximum(ref.onsets[keep] + rng.uniform(-jitter, jitter, keep.sum()), 0.0)
    off = on + 0.2
    v = np.clip(ref.velocities[keep] + rng.integers(-20, 21, keep.sum()), 1, 127)
    ex = _random_score(rng, extra)
    return Score(np.r_[p, ex.pitches], np.r_[on, ex.onsets], np.r_[off, ex.offsets], np.r_[v, ex.velocities])


@pytest.mark.parametrize("seed", range(4))
def test_note_metrics_match_mir_eval(seed):
    import mir_eval.transcription
    import pretty_midi

    rng = np.random.default_rng(seed)
    ref = _random_score(rng, 60)
    est = _perturbed(rng, ref)

    def hz(s):
        return np.array([pretty_midi.note_number_to_hz(int(p)) for p in s.pitches])

    ri = np.stack([ref.onsets, ref.offsets], 1)
    ei = np.stack([est.onsets, est.offsets], 1)
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(
        ri, hz(ref), ei, hz(est), onset_tolerance=0.05, offset_ratio=None
    )
    m = note_metrics(ref, est)
    assert m["precision"] == pytest.approx(p)
    assert m["recall"] == pytest.approx(r)
    assert m["f1"] == pytest.approx(f)
    assert (m["n_ref"], m["n_est"]) == (len(ref), len(est))
    assert 0 < m["n_matched"] < len(ref)
    assert m["n_matched"] == round(p * len(est))

    matching = mir_eval.transcription.match_notes(ri, hz(ref), ei, hz(est), onset_tolerance=0.05, offset_ratio=None)
    expect = np.mean([abs(int(est.velocities[j]) - int(ref.velocities[i])) for i, j in matching])
    assert m["velocity_error"] == pytest.approx(expect)


def test_note_metrics_tolerance_and_velocity_by_hand():
    ref = Score.from_notes([(60, 0.0, 0.5, 100), (64, 1.0, 1.5, 50), (67, 2.0, 2.5, 80)])
    est = Score.from_notes([
        (60, 0.04, 0.3, 90),  # matched, |dv| = 10
        (64, 1.06, 1.2, 50),  # 60 ms late: miss
        (67, 2.0, 2.1, 110),  # matched, |dv| = 30
        (72, 2.0, 2.1, 80),  # wrong pitch
    ])
    m = note_metrics(ref, est)
    assert m["n_matched"] == 2
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert m["velocity_error"] == pytest.approx(20.0)
    # A wider tolerance picks up the late note.
    m2 = note_metrics(ref, est, onset_tolerance=0.1)
    assert m2["n_matched"] == 3
    assert m2["velocity_error"] == pytest.approx(40 / 3)
    assert note_metrics(ref, ref) == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "velocity_error": 0.0, "n_ref": 3, "n_est": 3, "n_matched": 3,
        "onset_offset_precision": 1.0, "onset_offset_recall": 1.0, "onset_offset_f1": 1.0,
        "onset_velocity_precision": 1.0, "onset_velocity_recall": 1.0, "onset_velocity_f1": 1.0, "onset_lag_ms": 0.0,
    }


def test_note_metrics_empty_cases_without_warnings():
    empty = Score([], [], [])
    one = Score.from_notes([(60, 0.0, 0.5, 100)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = note_metrics(empty, empty)
        no_est = note_metrics(one, empty)
        no_ref = note_metrics(empty, one)
        miss = note_metrics(one, Score.from_notes([(61, 0.0, 0.5, 100)]))
    assert (both["precision"], both["recall"], both["f1"]) == (1.0, 1.0, 1.0)
    for m in (no_est, no_ref, miss):
        assert (m["precision"], m["recall"], m["f1"]) == (0.0, 0.0, 0.0)
        assert m["n_matched"] == 0 and math.isnan(m["velocity_error"])
    assert math.isnan(both["velocity_error"])


def test_note_metrics_accepts_duck_typed_notes_and_rejects_bad_ones():
    class Notes:
        def __init__(self, p, on, off, v):
            self.pitches, self.onsets, self.offsets, self.velocities = map(np.asarray, (p, on, off, v))

    ref = Notes([60, 62], [0.0, 1.0], [0.5, 1.0], [80, 80])  # zero-length note: offsets are ignored
    est = Notes([60, 62], [0.01, 1.02], [0.5, 1.5], [70, 100])
    m = note_metrics(ref, est)
    assert m["f1"] == 1.0 and m["velocity_error"] == pytest.approx(15.0)
    with pytest.raises(ValueError, match="pitches/onsets/offsets/velocities"):
        note_metrics(object(), est)
    with pytest.raises(ValueError, match="onsets"):
        note_metrics(Notes([60], [float("nan")], [1.0], [80]), est)
    with pytest.raises(ValueError, match="same length"):
        note_metrics(Notes([60, 61], [0.0], [1.0], [80]), est)
    with pytest.raises(ValueError, match="onset_tolerance"):
        note_metrics(ref, est, onset_tolerance=0)


# --------------------------------------------------------------------------- episode_metrics


def test_episode_metrics_combines_both():
    ref = Score.from_notes([(60, 0.0, 0.5, 100), (64, 0.5, 1.0, 60)])
    fs = ref.frames(20)
    pressed = np.array(fs.held)
    pressed[5:, 64 - 21] = False  # the second note never played
    perf = Score.from_notes([(60, 0.0, 0.5, 90)])
    m = episode_metrics(pressed, fs.held, perf, ref)
    assert set(m) >= {"frame_precision", "frame_recall", "frame_f1", "note_precision", "note_recall",
                      "note_f1", "velocity_error"}
    f = frame_f1(pressed, fs.held)
    assert (m["frame_precision"], m["frame_recall"], m["frame_f1"]) == (f["precision"], f["recall"], f["f1"])
    assert m["frame_precision"] == 1.0 and m["frame_recall"] == pytest.approx(0.5)
    assert m["note_precision"] == 1.0 and m["note_recall"] == 0.5
    assert m["note_f1"] == pytest.approx(2 / 3)
    assert m["velocity_error"] == 10.0


@pytest.mark.parametrize("seed", range(3))
def test_note_metrics_match_mir_eval_on_dense_play_on_the_frame_grid(seed):
    # what a random policy plays: thousands of notes on the 20 fps grid, many exactly 50 ms
    # (the tolerance) from a reference onset; only notes with a possible partner go to
    # mir_eval, and the matching (so the velocity error) must be mir_eval's own
    import mir_eval.transcription
    import mir_eval.util

    rng = np.random.default_rng(seed)

    def grid_score(n, keys):
        on = rng.integers(0, 400, n) / 20.0
        p = rng.integers(keys[0], keys[1], n)
        return Score(p, on, on + rng.integers(1, 6, n) / 20.0, rng.integers(1, 128, n))

    ref, est = grid_score(150, (55, 80)), grid_score(2500, (21, 109))
    m = note_metrics(ref, est)
    ri = np.stack([ref.onsets, np.maximum(ref.offsets, ref.onsets + 1e-3)], 1)
    ei = np.stack([est.onsets, np.maximum(est.offsets, est.onsets + 1e-3)], 1)
    matching = mir_eval.transcription.match_notes(ri, mir_eval.util.midi_to_hz(ref.pitches.astype(float)), ei,
                                                  mir_eval.util.midi_to_hz(est.pitches.astype(float)),
                                                  onset_tolerance=0.05, offset_ratio=None)
    assert m["n_matched"] == len(matching) > 10
    expect = np.mean([abs(float(est.velocities[j]) - float(ref.velocities[i])) for i, j in matching])
    assert m["velocity_error"] == expect
    assert (m["n_ref"], m["n_est"]) == (150, 2500)


# --------------------------------------------------------------------------- onset+offset, onset+velocity, lag


def _mir_eval_trio(ref, est):
    """mir_eval's own onset, onset+offset (0.2) and onset+velocity F1 on the full note sets."""
    import mir_eval.transcription
    import mir_eval.transcription_velocity
    import mir_eval.util

    ri = np.stack([ref.onsets, np.maximum(ref.offsets, ref.onsets + 1e-3)], 1)
    ei = np.stack([est.onsets, np.maximum(est.offsets, est.onsets + 1e-3)], 1)
    rh, eh = (mir_eval.util.midi_to_hz(s.pitches.astype(float)) for s in (ref, est))
    rv, ev = ref.velocities.astype(float), est.velocities.astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onset = mir_eval.transcription.precision_recall_f1_overlap(ri, rh, ei, eh, offset_ratio=None)[:3]
        offset = mir_eval.transcription.precision_recall_f1_overlap(ri, rh, ei, eh, offset_ratio=0.2)[:3]
        velocity = mir_eval.transcription_velocity.precision_recall_f1_overlap(ri, rh, rv, ei, eh, ev,
                                                                                offset_ratio=None)[:3]
        matching = mir_eval.transcription.match_notes(ri, rh, ei, eh, offset_ratio=None)
    return onset, offset, velocity, matching


@pytest.mark.parametrize("seed", range(4))
def test_transcription_trio_matches_mir_eval(seed):
    # the three F1s transcription papers report, each equal to mir_eval's own on the full sets
    rng = np.random.default_rng(seed)
    ref = _random_score(rng, 60)
    est = _perturbed(rng, ref)
    m = note_metrics(ref, est)
    onset, offset, velocity, matching = _mir_eval_trio(ref, est)
    for pre, want in (("", onset), ("onset_offset_", offset), ("onset_velocity_", velocity)):
        got = (m[f"{pre}precision"], m[f"{pre}recall"], m[f"{pre}f1"])
        assert got == pytest.approx(want, abs=1e-12), pre
    assert 0 < m["onset_offset_f1"] < m["f1"]
    lag = np.median([est.onsets[j] - ref.onsets[i] for i, j in matching]) * 1000
    assert m["onset_lag_ms"] == pytest.approx(lag, abs=1e-9)


@pytest.mark.parametrize("seed", range(2))
def test_transcription_trio_matches_mir_eval_on_dense_play(seed):
    # a random policy's thousands of notes: only candidates go to mir_eval, the trio must not move
    rng = np.random.default_rng(seed)
    ron = rng.uniform(0, 20, 150)
    ref = Score(rng.integers(55, 80, 150), ron, ron + rng.uniform(0.05, 0.5, 150), rng.integers(30, 110, 150))
    eon = rng.integers(0, 400, 2500) / 20.0
    est = Score(rng.integers(21, 109, 2500), eon, eon + rng.integers(1, 6, 2500) / 20.0, rng.integers(1, 128, 2500))
    m = note_metrics(ref, est)
    onset, offset, velocity, _ = _mir_eval_trio(ref, est)
    assert m["n_matched"] > 10
    for pre, want in (("", onset), ("onset_offset_", offset), ("onset_velocity_", velocity)):
        assert (m[f"{pre}precision"], m[f"{pre}recall"], m[f"{pre}f1"]) == pytest.approx(want, abs=1e-12), pre


def test_onset_offset_velocity_and_lag_by_hand():
    ref = Score.from_notes([(60, 0.0, 1.0, 40), (62, 1.0, 2.0, 80), (64, 2.0, 2.2, 120), (65, 3.0, 3.5, 80)])
    est = Score.from_notes([
        (60, 0.02, 1.15, 40),   # onset +20 ms; offset +150 ms <= 20 % of 1 s: both match
        (62, 1.04, 1.5, 80),    # onset +40 ms; offset -500 ms: onset only
        (64, 1.99, 2.24, 120),  # onset -10 ms; offset +40 ms < 50 ms floor: both match
        (65, 3.0, 3.5, 96),     # on time, but as loud as the forte where the score is mezzo: velocity misses
    ])
    m = note_metrics(ref, est)
    assert m["f1"] == 1.0 and m["n_matched"] == 4
    assert m["onset_offset_f1"] == pytest.approx(3 / 4)
    # dynamics: after mir_eval's line fit the 96 is 0.14 off its reference (tolerance 0.1), the others < 0.08
    assert m["onset_velocity_precision"] == m["onset_velocity_recall"] == pytest.approx(3 / 4)
    assert m["onset_lag_ms"] == pytest.approx(10.0)  # median of +20, +40, -10, 0
    # a global velocity scale is not a velocity error for on+vel F1 (mir_eval rescales), it is for velocity_error
    loud = Score(ref.pitches, ref.onsets, ref.offsets, np.minimum(ref.velocities.astype(int) // 2 + 60, 127))
    m2 = note_metrics(ref, loud)
    assert m2["onset_velocity_f1"] == 1.0 and m2["velocity_error"] > 10
    # the wider offset window and the velocity tolerance are arguments
    assert note_metrics(ref, est, offset_ratio=0.6)["onset_offset_f1"] == 1.0
    assert note_metrics(ref, est, velocity_tolerance=1.0)["onset_velocity_f1"] == 1.0


def test_transcription_trio_rejects_bad_tolerances():
    one = Score.from_notes([(60, 0.0, 0.5, 100)])
    for name in ("offset_ratio", "offset_min_tolerance", "velocity_tolerance"):
        for bad in (0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=name):
                note_metrics(one, one, **{name: bad})


def test_transcription_trio_empty_cases():
    empty = Score([], [], [])
    one = Score.from_notes([(60, 0.0, 0.5, 100)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both, miss = note_metrics(empty, empty), note_metrics(one, empty)
    for pre in ("onset_offset_", "onset_velocity_"):
        assert both[f"{pre}f1"] == 1.0 and miss[f"{pre}f1"] == 0.0
    assert math.isnan(both["onset_lag_ms"]) and math.isnan(miss["onset_lag_ms"])


# --------------------------------------------------------------------------- playable reference, pedal


def test_playable_notes_merges_unisons_and_ends_a_note_where_its_key_is_struck_again():
    from lmm_env.metrics import playable_notes

    score = Score.from_notes([
        (57, 0.5, 0.75, 60), (57, 0.5004, 1.0, 90),  # alto and tenor on one key: one strike
        (60, 0.0, 1.0, 80), (60, 0.52, 0.9, 70),     # the C is struck again at 0.52 s while held
        (64, 0.013, 0.4, 80),                         # off any frame grid: kept as it is
    ], name="voices")
    got = playable_notes(score)
    assert got.name == "voices"
    assert sorted(zip(got.pitches.tolist(), got.onsets.tolist(), got.offsets.tolist(), got.velocities.tolist())) == [
        (57, 0.5, 1.0, 90), (60, 0.0, 0.52, 80), (60, 0.52, 0.9, 70), (64, 0.013, 0.4, 80)]
    plain = Score.from_notes([(60, 0.0, 0.5, 80), (60, 0.5, 1.0, 80), (62, 0.013, 0.3, 80)])
    assert playable_notes(plain) is plain  # nothing to change: the score itself


def test_pedal_f1_by_hand():
    from lmm_env.metrics import pedal_f1, pedal_intervals

    down = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1], bool)
    played = pedal_intervals(down, 20)
    np.testing.assert_allclose(played, [[0.05, 0.2], [0.3, 0.4], [0.45, 0.5]])
    ref = np.array([[0.06, 0.21], [0.3, 0.6]])  # the first press right; the second lifted 200 ms early
    assert pedal_f1(ref, played) == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert pedal_f1(ref, ref) == 1.0 and pedal_f1(np.zeros((0, 2)), []) == 1.0 and pedal_f1(ref, []) == 0.0
    with pytest.raises(ValueError, match=r"reference pedal interval 0 is \(0.5, 0.5\)"):
        pedal_f1([[0.5, 0.5]], played)
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        pedal_f1([0.1, 0.2, 0.3], played)
    with pytest.raises(ValueError, match="frame_rate"):
        pedal_intervals(down, 0)
