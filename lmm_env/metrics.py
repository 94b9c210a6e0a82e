"""How well a performance matches its score.

Two families of metrics, both standard in the literature:

* `frame_f1`: key-press precision / recall / F1 per env step, averaged over steps, exactly
  as RoboPianist reports it (sklearn's ``precision_recall_fscore_support(average="binary",
  zero_division=1)`` per step, then the mean), computed in vectorized numpy.
* `note_metrics`: onset-only note precision / recall / F1 (mir_eval, the transcription
  convention: a note is found if its pitch is right and its onset is within
  ``onset_tolerance`` seconds; offsets are ignored), plus the mean velocity error of the
  matched notes.

* `pitch_class_entropy` and `note_density`: diversity diagnostics of what was played, so
  that a policy gaming a model reward (collapsing to one safe note, or to silence) shows
  beside the reward (SMART, 2025, and RL-Tuner saw exactly that collapse).

`episode_metrics` reports all of them for one episode.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from lmm_env._checks import check_real

__all__ = ["frame_f1", "note_metrics", "pitch_class_entropy", "note_density", "episode_metrics"]


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


def note_metrics(reference: Any, estimate: Any, onset_tolerance: float = 0.05) -> dict[str, Any]:
    """Onset-only note precision / recall / F1 and velocity error of ``estimate`` vs ``reference``.

    Args:
        reference: the score (a `lmm_env.score.Score`, or anything with 1-D ``pitches``,
            ``onsets``, ``offsets``, ``velocities`` arrays; times in seconds).
        estimate: the performance, same kind.
        onset_tolerance: seconds; an estimated note matches a reference note of the same pitch
            (within 50 cents) whose onset is at most this far away.

    Returns:
        dict with

        * ``precision``, ``recall``, ``f1``: mir_eval's onset-only transcription metrics
          (``mir_eval.transcription.precision_recall_f1_overlap(..., offset_ratio=None)``),
          computed from one ``mir_eval.transcription.match_notes`` matching (a maximum
          bipartite matching, each note used at most once). Empty cases, which mir_eval
          only warns about, are defined here: both scores empty gives 1.0 for all three;
          an empty reference with a non-empty estimate (or the reverse) gives 0.0.
        * ``velocity_error``: mean ``|v_est - v_ref|`` in MIDI velocity units (0..126) over
          the matched pairs; ``float("nan")`` when no note matched (there is nothing to
          compare; check ``n_matched``).
        * ``n_ref``, ``n_est``, ``n_matched``: note counts (ints).

    Offsets do not enter the metric; they are passed to mir_eval (which needs positive
    durations) after being lifted to at least ``onset + 1 ms``.

    Raises:
        ValueError: a malformed note set, or ``onset_tolerance`` not a finite number > 0.
    """
    import mir_eval.transcription
    import mir_eval.util

    tol = check_real("onset_tolerance", onset_tolerance, 0.0, math.inf, lo_open=True, hi_open=True)  # seconds
    rp, ron, roff, rv = _note_arrays("reference", reference)
    ep, eon, eoff, ev = _note_arrays("estimate", estimate)
    n_ref, n_est = len(rp), len(ep)
    result: dict[str, Any] = {"n_ref": n_ref, "n_est": n_est}
    if n_ref == 0 or n_est == 0:
        score = 1.0 if n_ref == n_est else 0.0
        result.update(precision=score, recall=score, f1=score, velocity_error=float("nan"), n_matched=0)
        return result

    def intervals(on, off):
        return np.stack([on, np.maximum(off, on + 1e-3)], axis=1)

    # Only notes with a possible partner can be matched: hand mir_eval those (a random policy
    # plays thousands of notes an episode, and match_notes compares every pair). The
    # matching is the same: mir_eval's graph holds only notes with a hit, and keeping the
    # others' order keeps its search order.
    r_idx, e_idx = _candidates(rp, ron, ep, eon, tol)
    matching = mir_eval.transcription.match_notes(
        intervals(ron[r_idx], roff[r_idx]), mir_eval.util.midi_to_hz(rp[r_idx]),
        intervals(eon[e_idx], eoff[e_idx]), mir_eval.util.midi_to_hz(ep[e_idx]),
        onset_tolerance=tol, offset_ratio=None,
    ) if len(r_idx) and len(e_idx) else []
    matching = [(int(r_idx[i]), int(e_idx[j])) for i, j in matching]
    n_matched = len(matching)
    precision = n_matched / n_est
    recall = n_matched / n_ref
    if n_matched:
        pairs = np.asarray(matching, dtype=np.int64)
        velocity_error = float(np.mean(np.abs(ev[pairs[:, 1]] - rv[pairs[:, 0]])))
    else:
        velocity_error = float("nan")
    result.update(precision=precision, recall=recall, f1=_f_measure(precision, recall),
                  velocity_error=velocity_error, n_matched=n_matched)
    return result


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


def note_density(notes: Any, duration: float) -> float:
    """Notes (onsets) per second over ``duration`` seconds (> 0)."""
    duration = check_real("duration", duration, 0.0, math.inf, lo_open=True, hi_open=True)  # seconds
    p, _, _, _ = _note_arrays("notes", notes)
    return float(p.size / duration)


def episode_metrics(pressed: Any, target_held: Any, performance: Any, reference: Any,
                    onset_tolerance: float = 0.05, duration: float | None = None) -> dict[str, Any]:
    """Frame and note metrics of one episode.

    Args:
        pressed: bool (T, K), keys held down by the agent at each step.
        target_held: bool (T, K), keys the score holds at each step (``FrameScore.held``).
        performance: the notes the agent played (a Score or note-array object).
        reference: the score it was asked to play.
        onset_tolerance: see `note_metrics`.

    Returns:
        ``frame_precision``, ``frame_recall``, ``frame_f1`` (`frame_f1`), ``note_precision``,
        ``note_recall``, ``note_f1``, ``velocity_error`` (`note_metrics`; NaN when no note
        matched), the counts ``n_ref``, ``n_est``, ``n_matched``, and the diagnostics
        ``pitch_class_entropy`` / ``note_density`` of the performance beside
        ``target_pitch_class_entropy`` / ``target_note_density`` of the reference, over
        ``duration`` seconds (default: the reference's duration, or 1 s if it is empty).
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
        "velocity_error": notes["velocity_error"],
        "n_ref": notes["n_ref"],
        "n_est": notes["n_est"],
        "n_matched": notes["n_matched"],
        "pitch_class_entropy": pitch_class_entropy(performance),
        "target_pitch_class_entropy": pitch_class_entropy(reference),
        "note_density": note_density(performance, duration),
        "target_note_density": note_density(reference, duration),
    }
