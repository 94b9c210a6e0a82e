"""How well a performance matches its score.

Two families of metrics, both standard in the literature:

* `frame_f1`: key-press precision / recall / F1 per env step, averaged over steps, exactly
  as RoboPianist reports it (sklearn's ``precision_recall_fscore_support(average="binary",
  zero_division=1)`` per step, then the mean), computed in vectorized numpy.
* `note_metrics`: the note metrics transcription papers report, all from mir_eval with its
  standard tolerances: onset precision / recall / F1 (a note is found if its pitch is right
  and its onset is within ``onset_tolerance`` = 50 ms), onset+offset F1 (the offset also
  within 20 % of the reference note's duration, at least 50 ms) and onset+velocity F1
  (mir_eval's velocity-aware matching), plus the median signed onset deviation of the
  matched notes (``onset_lag_ms``) and their mean velocity error.
* `pedal_f1`: onset+offset F1 of the sustain pedal's presses, when the score has a pedal.
* `pitch_class_entropy`, `note_density` and `distinct_ngrams`: diversity diagnostics of what
  was played, so that a policy gaming a model reward (collapsing to one safe note, a loop, or
  silence) shows beside the reward (SMART, 2025, and RL-Tuner saw exactly that collapse);
  training logs them per episode (``episode/distinct_4grams`` and friends).

The reference the envs pass is the score's own notes (the MIDI's onset times, or a
recording's reference MIDI), never the score snapped to the frame grid: a note the agent
can only play a frame away from its true onset is judged at its true time, so a note the
grid moves more than 50 ms is a miss even for an agent that plays the grid perfectly.
The only change the envs make is `playable_notes` (a unison of two voices on one key is
one note); frame F1 alone stays on the frame grid (the target the agent is shown).

`episode_metrics` reports all of them for one episode.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmm_env._checks import check_int, check_real

__all__ = ["frame_f1", "note_metrics", "playable_notes", "pedal_f1", "pedal_intervals", "pitch_class_entropy",
           "distinct_ngrams",
           "note_density", "episode_metrics"]

UNISON_SECONDS = 1e-3  # notes of one pitch struck this close together are one key strike (`playable_notes`)


# --------------------------------------------------------------------------- frame level


def _as_bool_roll(name: str, a: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (T, K) array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be boolean (or 0/1 numbers), got dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        t, k = np.argwhere(bad)[0]
        raise ValueError(f"{name} must hold only 0/1 (or bools), got {arr[t, k]!r} at [{t}, {k}]")
    return arr.astype(bool)


def frame_f1(pressed: Any, target: Any) -> dict[str, float]:
    """Per-step key precision, recall and F1, averaged over the steps (RoboPianist's metric).

    Args:
        pressed: bool (T, K), the keys the agent held down at each step.
        target: bool (T, K), the keys the score wants held at each step.

    Returns:
        ``{"precision", "recall", "f1"}``: the mean over the T steps of each per-step value.

    Per step, with ``tp = |pressed & target|``, ``fp = |pressed & ~target|``,
    ``fn = |~pressed & target|`` (sklearn's ``average="binary", zero_division=1``):

    * precision = tp / (tp + fp), and 1.0 when nothing is pressed;
    * recall = tp / (tp + fn), and 1.0 when nothing is wanted;
    * F1 = 2 tp / (2 tp + fp + fn), and 1.0 when nothing is pressed and nothing is wanted.

    So a silent step of a silent score scores 1.0 on all three, pressing nothing while keys
    are wanted scores precision 1, recall 0, F1 0, and pressing keys while none are wanted
    scores precision 0, recall 1, F1 0.

    Raises:
        ValueError: the arrays are not 2-D, have different shapes, hold values other than
            0/1, or have no steps (T = 0).
    """
    p = _as_bool_roll("pressed", pressed)
    t = _as_bool_roll("target", target)
    if p.shape != t.shape:
        raise ValueError(f"pressed has shape {p.shape} but target has {t.shape}: shapes must match")
    if p.shape[0] == 0:
        raise ValueError(f"pressed and target have no steps (shape {p.shape}): the mean over steps is undefined")
    tp = np.count_nonzero(p & t, axis=1).astype(np.float64)
    n_pressed = np.count_nonzero(p, axis=1).astype(np.float64)
    n_wanted = np.count_nonzero(t, axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pressed > 0, tp / n_pressed, 1.0)
        recall = np.where(n_wanted > 0, tp / n_wanted, 1.0)
        denom = n_pressed + n_wanted  # = 2 tp + fp + fn
        f1 = np.where(denom > 0, 2.0 * tp / denom, 1.0)
    return {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())}


# --------------------------------------------------------------------------- note level


def _note_arrays(name: str, notes: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(pitches, onsets, offsets, velocities) as float64 1-D arrays, validated."""
    try:
        fields = [np.asarray(getattr(notes, f)) for f in ("pitches", "onsets", "offsets", "velocities")]
    except AttributeError:
        raise ValueError(
            f"{name} must be a Score (or have pitches/onsets/offsets/velocities arrays), got {type(notes).__name__}"
        ) from None
    n = fields[0].shape[0] if fields[0].ndim == 1 else -1
    for f, a in zip(("pitches", "onsets", "offsets", "velocities"), fields):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(
                f"{name}.{f} has shape {a.shape}; all four note arrays must be 1-D of the same length"
            )
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{name}.{f} must be numeric, got dtype {a.dtype}")
    p, on, off, v = (a.astype(np.float64) for a in fields)
    for f, a in (("pitches", p), ("onsets", on), ("offsets", off), ("velocities", v)):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{name}.{f} must be finite, got {a[i]!r} at index {i}")
    bad = (p < 0) | (p > 127)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}.pitches must be MIDI numbers 0..127, got {p[i]!r} at index {i}")
    return p, on, off, v


def _f_measure(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def _candidates(rp, ron, ep, eon, tol):
    """Indices (in order) of the reference and estimate notes that have a note of the other
    set at the same pitch within ``tol`` (plus a millisecond of slack: a superset of the
    notes mir_eval can match). Everything, when pitches are not whole MIDI numbers."""
    every = np.arange(len(rp)), np.arange(len(ep))
    if not (np.all(rp == np.round(rp)) and np.all(ep == np.round(ep))):
        return every
    if max(np.abs(ron).max(), np.abs(eon).max()) > 1e5:  # keys below need onsets << 1e6 s
        return every
    w = tol + 1e-3
    rk, ek = rp * 1e6 + ron, ep * 1e6 + eon  # pitch-major keys: pitches 1e6 apart

    def near(keys, other):
        other = np.sort(other)
        i = np.searchsorted(other, keys - w)
        ok = i < len(other)
        ok[ok] = other[i[ok]] <= keys[ok] + w
        return ok

    return np.flatnonzero(near(rk, ek)), np.flatnonzero(near(ek, rk))


def _velocity_matching(matching: np.ndarray, rv: np.ndarray, ev: np.ndarray, tol: float) -> np.ndarray:
    """The pairs of ``matching`` (k, 2) whose velocities agree: mir_eval's velocity step
    (``mir_eval.transcription_velocity.match_notes``), operation for operation.

    Reference velocities are scaled to [0, 1] by the range of the *whole* reference (at least
    1), the estimated velocities of the matched pairs are fitted to them by least squares
    (one slope and intercept), and a pair is kept if the fitted value is within ``tol``."""
    if matching.shape[0] == 0:
        return matching
    lo, hi = np.min(rv), np.max(rv)
    ref = (rv - lo) / float(max(1, hi - lo))
    r, e = ref[matching[:, 0]], ev[matching[:, 1]]
    slope, intercept = np.linalg.lstsq(np.vstack([e, np.ones(len(e))]).T, r, rcond=None)[0]
    return matching[np.abs(slope * e + intercept - r) < tol]


def note_metrics(reference: Any, estimate: Any, onset_tolerance: float = 0.05, offset_ratio: float = 0.2,
                 offset_min_tolerance: float = 0.05, velocity_tolerance: float = 0.1) -> dict[str, Any]:
    """Note precision / recall / F1 (onset, onset+offset, onset+velocity), onset lag and
    velocity error of ``estimate`` vs ``reference``.

    Args:
        reference: the score (a `lmm_env.score.Score`, or anything with 1-D ``pitches``,
            ``onsets``, ``offsets``, ``velocities`` arrays; times in seconds). Pass the
            score's own times, not a frame-snapped copy: the tolerances are about true times.
        estimate: the performance, same kind.
        onset_tolerance: seconds (default 50 ms, mir_eval's and the field's standard); an
            estimated note matches a reference note of the same pitch (within 50 cents) whose
            onset is at most this far away.
        offset_ratio: for the onset+offset metric, the offset must also be within
            ``offset_ratio`` times the reference note's duration (default 0.2) ...
        offset_min_tolerance: ... or within this many seconds (default 50 ms), whichever
            is larger.
        velocity_tolerance: for the onset+velocity metric, the largest difference of the
            rescaled velocities (mir_eval's default 0.1, on a [0, 1] scale).

    Returns:
        dict with

        * ``precision``, ``recall``, ``f1``: mir_eval's onset-only transcription metrics
          (``mir_eval.transcription.precision_recall_f1_overlap(..., offset_ratio=None)``),
          computed from one ``mir_eval.transcription.match_notes`` matching (a maximum
          bipartite matching, each note used at most once).
        * ``onset_offset_precision``, ``onset_offset_recall``, ``onset_offset_f1``: the same
          with offsets (``offset_ratio``, ``offset_min_tolerance``), i.e. mir_eval's
          ``precision_recall_f1_overlap`` with its default ``offset_ratio=0.2``.
        * ``onset_velocity_precision``, ``onset_velocity_recall``, ``onset_velocity_f1``:
          ``mir_eval.transcription_velocity.precision_recall_f1_overlap(...,
          offset_ratio=None)``: of the onset matches, those whose velocities agree after
          mir_eval's rescaling (reference velocities to [0, 1] over the reference's range,
          the estimate's fitted to them by one least-squares line, then within
          ``velocity_tolerance``). The fit makes it blind to a global velocity scale: it
          asks whether the *dynamics* (louder / softer notes) are right.
        * ``onset_lag_ms``: the median of ``onset_est - onset_ref`` over the onset matches,
          in milliseconds (positive: the estimate plays late); NaN when nothing matched.
        * ``velocity_error``: mean ``|v_est - v_ref|`` in MIDI velocity units (0..126) over
          the onset matches; ``float("nan")`` when no note matched (there is nothing to
          compare; check ``n_matched``).
        * ``n_ref``, ``n_est``, ``n_matched``: note counts (ints; ``n_matched`` of the onset
          matching).

        Empty cases, which mir_eval only warns about, are defined here: both note sets
        empty gives 1.0 for every precision / recall / F1; an empty reference with a
        non-empty estimate (or the reverse) gives 0.0.

    Offsets enter only the onset+offset metric; they are passed to mir_eval (which needs
    positive durations) after being lifted to at least ``onset + 1 ms``.

    Raises:
        ValueError: a malformed note set, or a tolerance or ratio that is not a finite
            number > 0.
    """
    import mir_eval.transcription
    import mir_eval.util

    tol = check_real("onset_tolerance", onset_tolerance, 0.0, math.inf, lo_open=True, hi_open=True)  # seconds
    ratio = check_real("offset_ratio", offset_ratio, 0.0, math.inf, lo_open=True, hi_open=True)
    off_tol = check_real("offset_min_tolerance", offset_min_tolerance, 0.0, math.inf, lo_open=True, hi_open=True)
    vel_tol = check_real("velocity_tolerance", velocity_tolerance, 0.0, math.inf, lo_open=True, hi_open=True)
    rp, ron, roff, rv = _note_arrays("reference", reference)
    ep, eon, eoff, ev = _note_arrays("estimate", estimate)
    n_ref, n_est = len(rp), len(ep)
    result: dict[str, Any] = {"n_ref": n_ref, "n_est": n_est}
    if n_ref == 0 or n_est == 0:
        score = 1.0 if n_ref == n_est else 0.0
        for pre in ("", "onset_offset_", "onset_velocity_"):
            result.update({f"{pre}precision": score, f"{pre}recall": score, f"{pre}f1": score})
        result.update(onset_lag_ms=float("nan"), velocity_error=float("nan"), n_matched=0)
        return result

    def intervals(on, off):
        return np.stack([on, np.maximum(off, on + 1e-3)], axis=1)

    # Only notes with a possible partner can be matched: hand mir_eval those (a random policy
    # plays thousands of notes an episode, and match_notes compares every pair). The
    # matching is the same: mir_eval's graph holds only notes with a hit, and keeping the
    # others' order keeps its search order. (The onset criterion holds in every matching
    # below, so the candidates serve them all.)
    r_idx, e_idx = _candidates(rp, ron, ep, eon, tol)

    def match(**offsets) -> np.ndarray:
        if not (len(r_idx) and len(e_idx)):
            return np.zeros((0, 2), np.int64)
        pairs = mir_eval.transcription.match_notes(
            intervals(ron[r_idx], roff[r_idx]), mir_eval.util.midi_to_hz(rp[r_idx]),
            intervals(eon[e_idx], eoff[e_idx]), mir_eval.util.midi_to_hz(ep[e_idx]),
            onset_tolerance=tol, **offsets,
        )
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return np.stack([r_idx[pairs[:, 0]], e_idx[pairs[:, 1]]], axis=1).astype(np.int64)

    def prf(n: int, pre: str) -> dict[str, float]:
        precision, recall = n / n_est, n / n_ref
        return {f"{pre}precision": precision, f"{pre}recall": recall, f"{pre}f1": _f_measure(precision, recall)}

    onset = match(offset_ratio=None)
    with_offset = match(offset_ratio=ratio, offset_min_tolerance=off_tol)
    with_velocity = _velocity_matching(onset, rv, ev, vel_tol)
    n_matched = onset.shape[0]
    if n_matched:
        velocity_error = float(np.mean(np.abs(ev[onset[:, 1]] - rv[onset[:, 0]])))
        onset_lag_ms = float(np.median(eon[onset[:, 1]] - ron[onset[:, 0]]) * 1000.0)
    else:
        velocity_error = onset_lag_ms = float("nan")
    result.update(prf(n_matched, ""))
    result.update(prf(with_offset.shape[0], "onset_offset_"))
    result.update(prf(with_velocity.shape[0], "onset_velocity_"))
    result.update(onset_lag_ms=onset_lag_ms, velocity_error=velocity_error, n_matched=n_matched)
    return result


def playable_notes(score):
    """``score`` (a `lmm_env.score.Score`) as one piano can play it, at its own times: the
    reference the envs measure note metrics against.

    A score's voices may share a key, which no piano (and so no agent) can follow, and
    mir_eval would charge every agent alike for it. Two rules, per pitch, in onset order:

    * unison: notes whose onset is within ``UNISON_SECONDS`` (1 ms) of the previous one (a
      chorale's alto and tenor on one note) are one key strike: one note, with the first
      onset, the latest offset (the key is held while either voice sounds) and the loudest
      velocity;
    * restrike: a note still sounding when its key is struck again ends there (offset
      ``min(offset, next onset)``): striking a key ends its previous note.

    Nothing else changes: onsets keep their own, unquantized times, and the score its name
    and pedal. Returns ``score`` itself when neither rule applies.
    """
    p, on, off, v = _note_arrays("score", score)
    if len(p) < 2:
        return score
    order = np.lexsort((on, p))  # by pitch, then onset
    ps, ons = p[order], on[order]
    first = np.r_[True, (ps[1:] != ps[:-1]) | (np.diff(ons) > UNISON_SECONDS)]
    starts = np.flatnonzero(first)
    keep = order[starts]
    kp, kon = p[keep], on[keep]
    koff = np.maximum.reduceat(off[order], starts)
    kv = np.maximum.reduceat(v[order], starts)
    again = np.r_[kp[1:] == kp[:-1], False]  # the key is struck again by the next note (onset > 1 ms later)
    nxt = np.r_[kon[1:], np.inf]
    cut = again & (koff > nxt)
    if first.all() and not cut.any():
        return score
    koff = np.where(cut, nxt, koff)
    from lmm_env.score import Score

    pedal = getattr(score, "pedal", None)
    extra = {"pedal": pedal} if pedal is not None and len(pedal) else {}
    return Score(kp.astype(np.int64), kon, koff, kv.astype(np.int64), name=getattr(score, "name", ""), **extra)


def _intervals(name: str, a: Any) -> np.ndarray:
    """(k, 2) float64 [start, end) seconds, validated."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (start, end) pairs in seconds, got {type(a).__name__}") from None
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (k, 2) (start, end pairs in seconds), got shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | (arr[:, 1] <= arr[:, 0])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} interval {i} is ({float(arr[i, 0])!r}, {float(arr[i, 1])!r}); each must be finite "
                         "with end > start")
    return arr


def pedal_intervals(down: Any, frame_rate: float) -> np.ndarray:
    """The sustain pedal's down intervals (k, 2) in seconds from a per-step bool ``down`` (T,):
    each run of down steps ``[a, b)`` becomes ``[a / frame_rate, b / frame_rate)``."""
    fr = check_real("frame_rate", frame_rate, 0.0, math.inf, lo_open=True, hi_open=True)
    d = np.asarray(down)
    if d.ndim != 1:
        raise ValueError(f"down must be a 1-D per-step array, got shape {d.shape}")
    change = np.flatnonzero(np.diff(np.r_[0, d.astype(bool).astype(np.int8), 0]))
    return change.reshape(-1, 2) / fr


def pedal_f1(reference: Any, estimate: Any, onset_tolerance: float = 0.05, offset_ratio: float = 0.2,
             offset_min_tolerance: float = 0.05) -> float:
    """Onset+offset F1 of sustain-pedal down intervals (``(k, 2)`` seconds, e.g. ``Score.pedal``):
    each press is a "note" of one pitch, matched by mir_eval as `note_metrics` matches notes
    (press within ``onset_tolerance``, release within ``offset_ratio`` of the press's length
    or ``offset_min_tolerance``, whichever is larger). Both empty: 1.0; one empty: 0.0."""
    ref, est = _intervals("reference pedal", reference), _intervals("estimate pedal", estimate)

    class _Presses:
        def __init__(self, iv):
            self.onsets, self.offsets = iv[:, 0], iv[:, 1]
            self.pitches = np.full(len(iv), 64.0)  # any one pitch: CC64
            self.velocities = np.full(len(iv), 127.0)

    m = note_metrics(_Presses(ref), _Presses(est), onset_tolerance=onset_tolerance, offset_ratio=offset_ratio,
                     offset_min_tolerance=offset_min_tolerance)
    return m["onset_offset_f1"]


def pitch_class_entropy(notes: Any) -> float:
    """Shannon entropy (bits) of the pitch-class histogram of ``notes`` (a Score or alike).

    0.0 for no notes or a single pitch class; at most log2(12) = 3.585 (all twelve equally).
    """
    p, _, _, _ = _note_arrays("notes", notes)
    if p.size == 0:
        return 0.0
    counts = np.bincount(p.astype(np.int64) % 12, minlength=12).astype(np.float64)
    prob = counts[counts > 0] / counts.sum()
    return float(-(prob * np.log2(prob)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def distinct_ngrams(notes: Any, n: int = 4) -> float:
    """Distinct pitch n-grams of ``notes`` over all of them (onset order; chords low to high):
    1.0 when no n-gram comes back, near 0 for a loop or a drone, NaN under ``n + 1`` notes.
    Logged beside model rewards in training: a policy that collapses onto what a judge likes
    shows here (it is ``1 - lmm_env.improv.repetition``)."""
    n = check_int("n", n, 1, 1000)
    p, on, _, _ = _note_arrays("notes", notes)
    if p.size < n + 1:
        return float("nan")
    p = p[np.lexsort((p, on))].astype(np.int64)
    grams = np.lib.stride_tricks.sliding_window_view(p, n)
    return float(len(np.unique(grams, axis=0)) / len(grams))


def note_density(notes: Any, duration: float) -> float:
    """Notes (onsets) per second over ``duration`` seconds (> 0)."""
    duration = check_real("duration", duration, 0.0, math.inf, lo_open=True, hi_open=True)  # seconds
    p, _, _, _ = _note_arrays("notes", notes)
    return float(p.size / duration)


def episode_metrics(pressed: Any, target_held: Any, performance: Any, reference: Any,
                    onset_tolerance: float = 0.05, duration: float | None = None,
                    played_pedal: Any = None) -> dict[str, Any]:
    """Frame and note metrics of one episode.

    Args:
        pressed: bool (T, K), keys held down by the agent at each step.
        target_held: bool (T, K), keys the score holds at each step (``FrameScore.held``).
        performance: the notes the agent played (a Score or note-array object).
        reference: the score it was asked to play, at its own (unquantized) times.
        onset_tolerance: see `note_metrics`.

    Returns:
        ``frame_precision``, ``frame_recall``, ``frame_f1`` (`frame_f1`, on the frame grid);
        from `note_metrics`: ``note_precision``, ``note_recall``, ``note_f1`` (onset only,
        50 ms), ``onset_offset_f1``, ``onset_velocity_f1``, ``onset_lag_ms`` (median signed
        onset deviation of the matched notes, ms) and ``velocity_error`` (the last two NaN
        when no note matched), the counts ``n_ref``, ``n_est``, ``n_matched``, and the diagnostics
        ``pitch_class_entropy`` / ``note_density`` of the performance beside
        ``target_pitch_class_entropy`` / ``target_note_density`` of the reference and
        ``distinct_4grams`` (`distinct_ngrams`) of the performance, over
        ``duration`` seconds (default: the reference's duration, or 1 s if it is empty).
        With ``played_pedal`` (the agent's pedal-down intervals, (k, 2) seconds: an env with
        a pedal) also ``pedal_f1`` (`pedal_f1` against ``reference.pedal``; NaN when the
        reference carries no pedal).
    """
    if duration is None:
        offsets = np.asarray(getattr(reference, "offsets", np.zeros(0)), dtype=np.float64)
        duration = float(offsets.max()) if offsets.size and offsets.max() > 0 else 1.0
    frame = frame_f1(pressed, target_held)
    notes = note_metrics(reference, performance, onset_tolerance=onset_tolerance)
    return {
        "frame_precision": frame["precision"],
        "frame_recall": frame["recall"],
        "frame_f1": frame["f1"],
        "note_precision": notes["precision"],
        "note_recall": notes["recall"],
        "note_f1": notes["f1"],
        "onset_offset_f1": notes["onset_offset_f1"],
        "onset_velocity_f1": notes["onset_velocity_f1"],
        "onset_lag_ms": notes["onset_lag_ms"],
        "velocity_error": notes["velocity_error"],
        "n_ref": notes["n_ref"],
        "n_est": notes["n_est"],
        "n_matched": notes["n_matched"],
        "pitch_class_entropy": pitch_class_entropy(performance),
        "target_pitch_class_entropy": pitch_class_entropy(reference),
        "distinct_4grams": distinct_ngrams(performance, 4),
        "note_density": note_density(performance, duration),
        "target_note_density": note_density(reference, duration),
    } | ({} if played_pedal is None else {"pedal_f1": _reference_pedal_f1(reference, played_pedal)})


def _reference_pedal_f1(reference: Any, played_pedal: Any) -> float:
    ref = getattr(reference, "pedal", None)
    if ref is None or len(ref) == 0:
        _intervals("played_pedal", played_pedal)
        return float("nan")  # nothing to compare to: not measured
    return pedal_f1(ref, played_pedal)
