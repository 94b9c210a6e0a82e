"""Statistics of a free improvisation: a performance with no target score to compare it to.

A task such as "LMMImprovise-v0" asks an agent to play *something musical*. Its reward
comes from the score LM (``load_pretrained("score")``), so the reward alone cannot tell good
music from a policy that found what that one model likes. The functions here describe a
performance (a `lmm_env.score.Score`) from other angles, and `corpus_reference` gives the
same numbers for real held-out music, so a benchmark can print both side by side:

* `judge_nll`: mean negative log-likelihood (nats per frame) under the *judge* LM, a
  ScoreLM trained on different data (the corpus validation split) from different initial
  weights than the reward's LM (trained on the train split), so an agent that overfits its
  reward model does not automatically fool the judge.
* `repetition`: how loopy the onset pitch sequence is (share of pitch n-grams that repeat
  an earlier one).
* `key_of` (Krumhansl-Schmuckler) and `in_key_share`: tonal focus.
* `lmm_env.metrics.pitch_class_entropy` and `note_density`: diversity and activity.

`improv_metrics` reports all of them for one performance. This is a core module: it never
imports ``lmm_env.envs`` or ``lmm_env.agents``; torch is imported only when the judge is.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.metrics import note_density, pitch_class_entropy
from lmm_env.score import MAX_SECONDS, N_KEYS, Score, _round_half_up

__all__ = ["judge_nll", "repetition", "key_of", "key_name", "in_key_share", "improv_metrics", "corpus_reference",
           "KEY_PROFILES", "SCALES", "STATS", "JUDGE"]

JUDGE = "judge"  # the load_pretrained name of the default judge LM
STATS = ("judge_nll", "pitch_class_entropy", "note_density", "repetition", "in_key_share", "n_notes")

# Krumhansl & Kessler (1982) probe-tone profiles, index 0 = the tonic.
KEY_PROFILES = {
    "major": np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
    "minor": np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
}
# Pitch classes above the tonic counted as "in key". Minor is the natural minor plus the
# raised leading tone (the 7th of the harmonic minor), which minor-key music uses constantly.
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10, 11),
}
MODES = tuple(KEY_PROFILES)
_PC_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


# --------------------------------------------------------------------------- argument checks


def _as_score(name: str, score: Any) -> Score:
    if not isinstance(score, Score):
        raise ValueError(f"{name} must be a lmm_env.score.Score, got {type(score).__name__}: {short_repr(score)}")
    return score


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, Integral) or v < 1:
        raise ValueError(f"{name} must be an int >= 1, got {short_repr(v)}")
    return int(v)


def _positive_seconds(name: str, v: Any) -> float:
    # at most a score's length (MAX_SECONDS): judge_nll pads its frame grid to the duration
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, Real) or not (math.isfinite(v) and 0 < v <= MAX_SECONDS):
        raise ValueError(f"{name} must be a finite number of seconds in (0, {MAX_SECONDS:g}], got {short_repr(v)}")
    return float(v)


def _check_key(key: Any) -> tuple[int, str]:
    try:
        tonic, mode = key
    except (TypeError, ValueError):
        raise ValueError(f"key must be a (tonic_pc, mode) pair such as (0, 'major'), got {short_repr(key)}") from None
    if isinstance(tonic, (bool, np.bool_)) or not isinstance(tonic, Integral) or not 0 <= tonic <= 11:
        raise ValueError(f"key tonic must be a pitch class 0..11 (0 = C), got {short_repr(tonic)} in "
                         f"key={short_repr(key)}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"key mode must be one of {', '.join(map(repr, MODES))}, got {short_repr(mode)} in "
                         f"key={short_repr(key)}")
    return int(tonic), str(mode)


def key_name(key: Any) -> str:
    """``(9, "minor")`` -> ``"A minor"``."""
    tonic, mode = _check_key(key)
    return f"{_PC_NAMES[tonic]} {mode}"


# --------------------------------------------------------------------------- judge


def _load_judge(judge: Any):
    from lmm_env.lm.checkpoint import CheckpointError, load_pretrained
    from lmm_env.lm.score_lm import ScoreLM

    if judge is None:
        judge = JUDGE
    if isinstance(judge, str):
        try:
            judge = load_pretrained(judge)
        except CheckpointError as exc:
            raise ValueError(f"judge={judge!r} could not be loaded: {exc}") from exc
    if not isinstance(judge, ScoreLM):
        raise ValueError(f"judge must be a ScoreLM, a load_pretrained name or a .safetensors path "
                         f"(default {JUDGE!r}), got {type(judge).__name__}")
    return judge


def judge_nll(score: Score, judge: Any = None, frame_rate: float = 20, duration: float | None = None) -> float:
    """Mean negative log-likelihood of ``score`` under the judge LM, in nats per frame.

    The performance is quantized to ``frame_rate`` frames per second (`Score.frames`: held and
    onset rolls over the 88 keys). With ``duration`` given, the rolls cover exactly
    ``round(duration * frame_rate)`` frames (silence appended after the last note, notes past
    ``duration`` cut off), so pauses and a silent ending count; without it they end at the last
    note's offset. Then, with frame -1 taken as silence,

        judge_nll = -(1/T) * sum_{t<T} log p_judge(frame_t | frames_<t)

    where each frame's probability is the product of the judge's 2 x 88 independent Bernoulli
    bits (`ScoreLM.next_frame_logits` and `ScoreLM.frame_log_prob`). Lower means the judge
    finds the music more predictable, i.e. more like the corpus it was trained on. For scale
    (test split, ``judge_lm.json`` and `corpus_reference`): folk tunes about 1.25 (slow Essen
    songs 0.3-0.5, dense reels up to 2), Bach chorales about 3.1; random pitches in the same
    rhythms 2-10 times higher. It is *not* a quality score on its own: the per-frame NLL
    falls with predictability, so silence (~0.07) and a one-note drone score as well as real
    music or better; read it beside ``note_density``, ``pitch_class_entropy`` and
    ``repetition``. An empty frame grid (no notes and no ``duration``) gives NaN.

    Args:
        score: the performance.
        judge: a ScoreLM, or a name / path for `lmm_env.lm.load_pretrained`; default
            ``"judge"`` (trained on the validation split, independent of the reward's LM).
        frame_rate: must equal the judge's own frame rate (20 for the shipped models).
        duration: seconds of performance to score (see above), or None.

    Raises:
        ValueError: a non-Score ``score``, an unknown or non-ScoreLM judge, a frame rate other
            than the judge's, or a ``duration`` that is not a number of seconds in (0, MAX_SECONDS] (6 hours).
    """
    score = _as_score("score", score)
    if isinstance(frame_rate, (bool, np.bool_)) or not isinstance(frame_rate, Real) or not (
            math.isfinite(frame_rate) and frame_rate > 0):
        raise ValueError(f"frame_rate must be a finite number > 0, got {short_repr(frame_rate)}")
    if duration is not None:
        duration = _positive_seconds("duration", duration)
    lm = _load_judge(judge)
    if float(frame_rate) != lm.frame_rate:
        raise ValueError(f"frame_rate={short_repr(frame_rate)} does not match the judge's frame rate "
                         f"{lm.frame_rate:g}: a ScoreLM only scores frames on the grid it was trained on")
    fs = score.frames(frame_rate)
    held, onset = fs.held, fs.onset
    if duration is not None:
        T = max(int(_round_half_up(np.array(duration * frame_rate))), 1)
        if held.shape[0] >= T:
            held, onset = held[:T], onset[:T]
        else:
            pad = np.zeros((T - held.shape[0], N_KEYS), dtype=bool)
            held, onset = np.concatenate([held, pad]), np.concatenate([onset, pad])
    T = held.shape[0]
    if T == 0:
        return float("nan")
    logits = lm.next_frame_logits(held, onset)
    return float(-lm.frame_log_prob(logits, held, onset).sum() / T)


# --------------------------------------------------------------------------- repetition


def repetition(score: Score, n: int = 4) -> float:
    """How loopy the onset pitch sequence is: the share of its pitch n-grams that repeat an earlier one.

    The sequence is the notes' MIDI pitches in the Score's order (by onset, then pitch, so a
    chord contributes its notes low to high). Of its ``m = len - n + 1`` n-grams (windows of
    ``n`` consecutive pitches), ``repetition`` is the fraction that equal some earlier window:
    ``(m - distinct n-grams) / m``. 0.0 means no n-gram ever comes back; a phrase of ``p``
    notes looped gives ``1 - p / m`` (if its ``p`` cyclic n-grams differ), close to 1 after a
    few rounds; silence-free one-note drones approach 1 too; real tunes lie in between
    (repeated sections and motifs). It is exact-pitch: a sequence repeated a tone higher does
    not count.

    Returns NaN when there are fewer than ``n + 1`` notes (at most one n-gram: nothing can
    repeat, and 0.0 would read as "maximally varied").

    Raises:
        ValueError: ``score`` is not a Score, or ``n`` is not an int >= 1.
    """
    score = _as_score("score", score)
    n = _positive_int("n", n)
    p = np.asarray(score.pitches, dtype=np.int64)
    if p.size < n + 1:
        return float("nan")
    grams = np.lib.stride_tricks.sliding_window_view(p, n)  # (m, n)
    m = grams.shape[0]
    distinct = np.unique(grams, axis=0).shape[0]
    return float((m - distinct) / m)


# --------------------------------------------------------------------------- key


def _pc_weights(score: Score) -> np.ndarray:
    """Duration-weighted pitch-class histogram (12,), seconds."""
    pcs = np.asarray(score.pitches, dtype=np.int64) % 12
    dur = np.asarray(score.offsets, dtype=np.float64) - np.asarray(score.onsets, dtype=np.float64)
    return np.bincount(pcs, weights=dur, minlength=12)


def _key_correlations(hist: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``hist`` with the 24 rotated profiles: (2, 12), [mode, tonic]."""
    profiles = np.stack([KEY_PROFILES[m] for m in MODES])  # (2, 12)
    idx = (np.arange(12)[None, :] - np.arange(12)[:, None]) % 12  # [tonic, pc] -> degree above tonic
    rot = profiles[:, idx]  # (2, 12 tonics, 12 pcs)
    x = hist - hist.mean()
    y = rot - rot.mean(axis=-1, keepdims=True)
    return (y @ x) / (np.linalg.norm(y, axis=-1) * np.linalg.norm(x))


def key_of(score: Score) -> tuple[int, str]:
    """Estimate the key: ``(tonic_pc, "major" | "minor")``, tonic 0 = C ... 11 = B.

    Krumhansl-Schmuckler: the pitch-class histogram of the notes, each weighted by its
    duration in seconds, is correlated (Pearson) with the Krumhansl-Kessler major and minor
    profiles rotated to each of the 12 tonics; the best of the 24 wins (ties: major before
    minor, then the lower tonic). A relative major and minor (C major / A minor) share their
    notes, so short or ambiguous passages can land on either.

    Raises:
        ValueError: ``score`` is not a Score, has no notes, or its histogram is flat (all twelve
            pitch classes equally long), which correlates with no key.
    """
    score = _as_score("score", score)
    if len(score) == 0:
        raise ValueError("key_of needs at least one note; the score is empty")
    hist = _pc_weights(score)
    if np.ptp(hist) <= 1e-12 * max(hist.max(), 1.0):
        raise ValueError("key_of: all twelve pitch classes sound equally long, so no key fits better than "
                         "another")
    r = _key_correlations(hist)
    mode_i, tonic = np.unravel_index(int(np.argmax(r)), r.shape)
    return int(tonic), MODES[int(mode_i)]


def in_key_share(score: Score, key: Any = None) -> float:
    """Share of the notes (by count) whose pitch class is in the scale of ``key``.

    The scale is `SCALES` [mode] above the tonic: the major scale, or for minor the natural
    minor plus the raised leading tone (so an A-minor piece's G# counts as in key).

    Args:
        score: the notes.
        key: ``(tonic_pc, "major" | "minor")``, or None for the key `key_of` estimates from the
            same notes (so the value says how tonally focused the notes are around their own
            best key).

    Returns:
        A value in [0, 1]; NaN if there are no notes, or if ``key`` is None and no key can be
        estimated (a flat pitch-class histogram).

    Raises:
        ValueError: ``score`` is not a Score, or ``key`` is malformed.
    """
    score = _as_score("score", score)
    if key is not None:
        key = _check_key(key)
    if len(score) == 0:
        return float("nan")
    if key is None:
        hist = _pc_weights(score)
        if np.ptp(hist) <= 1e-12 * max(hist.max(), 1.0):
            return float("nan")
        key = key_of(score)
    tonic, mode = key
    member = np.zeros(12, dtype=bool)
    member[(tonic + np.asarray(SCALES[mode])) % 12] = True
    return float(member[np.asarray(score.pitches, dtype=np.int64) % 12].mean())


# --------------------------------------------------------------------------- all together


def improv_metrics(performance: Score, duration: float, key: Any = None, judge: Any = None) -> dict[str, float]:
    """All improvisation statistics of one performance of ``duration`` seconds.

    Returns a dict with (`STATS`):

    * ``judge_nll``: `judge_nll` over exactly ``duration`` seconds (trailing silence included);
    * ``pitch_class_entropy``: bits, `lmm_env.metrics.pitch_class_entropy`;
    * ``note_density``: onsets per second over ``duration``, `lmm_env.metrics.note_density`;
    * ``repetition``: `repetition` with 4-grams (NaN under 5 notes);
    * ``in_key_share``: `in_key_share` for ``key`` (None: the key estimated from the notes;
      NaN without notes);
    * ``n_notes``: the number of notes (a float, like the rest).

    Raises:
        ValueError: a non-Score performance, a ``duration`` outside (0, MAX_SECONDS], a malformed ``key``
            or an unusable ``judge``.
    """
    performance = _as_score("performance", performance)
    duration = _positive_seconds("duration", duration)
    if key is not None:
        key = _check_key(key)
    return {
        "judge_nll": judge_nll(performance, judge=judge, duration=duration),
        "pitch_class_entropy": pitch_class_entropy(performance),
        "note_density": note_density(performance, duration),
        "repetition": repetition(performance, 4),
        "in_key_share": in_key_share(performance, key),
        "n_notes": float(len(performance)),
    }


_REFERENCE_CACHE: dict[tuple, dict] = {}


def corpus_reference(split: str = "test", n: int = 20, seconds: float = 30.0,
                     names: tuple[str, ...] = ("folk", "bach-chorales"), judge: Any = None,
                     pick: str = "spread") -> dict:
    """The `improv_metrics` statistics of real, held-out music, as ranges to print beside a performance.

    For each corpus in ``names``, ``n`` pieces of its ``split`` (all of them if it has no more)
    are trimmed to their first ``seconds`` seconds and measured with `improv_metrics` over
    ``min(seconds, piece length)`` seconds, each in its own estimated key. Which pieces:
    ``pick="spread"`` (default) takes ``n`` indices evenly spaced over the split, ``"first"``
    the first ``n`` (``corpus[i]``, i < n; a broken piece falls back to the next, see
    `lmm_env.corpus`). Spread matters for "folk": its ids are sorted by collection, so its
    first pieces are all slow Essen songs from one file (about 0.75 notes/s), while O'Neill's
    and Ryan's reels and jigs further on are several times denser.

    Returns:
        ``{corpus: {stat: {"mean": .., "p10": .., "p90": ..}}}`` for every stat in `STATS`,
        over the pieces (NaN values, e.g. the repetition of a piece under 5 notes, are left
        out). Results are cached in memory per arguments (a fresh copy is returned each time);
        a judge passed as a model object is not cached.

    The default test split is held out from both the reward LM (train) and the judge
    (validation). Cost: about 10 ms a piece once the corpus is converted (the first run
    converts pieces with music21, ~0.1-0.3 s each, cached on disk).

    Raises:
        ValueError: an unknown split or corpus name, ``n`` not an int >= 1, or ``seconds`` not
            a number in (0, MAX_SECONDS].
    """
    from lmm_env import corpus as _corpus

    if split not in _corpus.SPLITS:
        raise ValueError(f"unknown split {short_repr(split)}; allowed: {', '.join(_corpus.SPLITS)}")
    n = _positive_int("n", n)
    seconds = _positive_seconds("seconds", seconds)
    if isinstance(names, str) or not all(isinstance(c, str) for c in names) or not names:
        raise ValueError(f"names must be a non-empty sequence of corpus names such as ('folk', 'bach-chorales'), "
                         f"got {short_repr(names)}")
    names = tuple(names)
    if pick not in ("spread", "first"):
        raise ValueError(f"pick must be 'spread' or 'first', got {short_repr(pick)}")
    for c in names:
        if c not in _corpus.names():
            raise ValueError(f"unknown corpus {short_repr(c)}; allowed: {', '.join(_corpus.names())}")
    from lmm_env.lm.checkpoint import _cache_key

    # a judge file is keyed as load_pretrained keys it (real path, mtime, size), so another file of the same name is
    # another judge; an unreadable one is not cached (loading it names the error)
    judge_key = _cache_key(judge) if isinstance(judge, str) else None
    cacheable = judge is None or judge_key is not None
    cache_key = (split, n, seconds, names, judge_key, pick)
    if cacheable and cache_key in _REFERENCE_CACHE:
        return _copy(_REFERENCE_CACHE[cache_key])
    lm = _load_judge(judge)
    out = {}
    for c in names:
        corp = _corpus.load(c, split)
        rows = []
        if pick == "first" or n >= len(corp):
            idx = range(min(n, len(corp)))
        else:
            idx = np.unique(np.linspace(0, len(corp) - 1, n).round().astype(np.int64))
        for i in idx:
            piece = corp[int(i)].trim(0.0, seconds)
            if len(piece) == 0:
                continue
            rows.append(improv_metrics(piece, min(seconds, piece.duration), judge=lm))
        if not rows:
            raise ValueError(f"corpus {c!r} ({split}) has no piece with notes in its first {seconds} s")
        out[c] = {}
        for stat in STATS:
            v = np.array([r[stat] for r in rows], dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size == 0:
                out[c][stat] = {"mean": float("nan"), "p10": float("nan"), "p90": float("nan")}
            else:
                p10, p90 = np.percentile(v, [10, 90])
                out[c][stat] = {"mean": float(v.mean()), "p10": float(p10), "p90": float(p90)}
    if cacheable:
        _REFERENCE_CACHE[cache_key] = out
    return _copy(out)


def _copy(ref: dict) -> dict:
    return {c: {s: dict(v) for s, v in stats.items()} for c, stats in ref.items()}
