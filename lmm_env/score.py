"""Scores: what the agent is asked to play.

A :class:`Score` is a set of notes (pitch, onset, offset, velocity) held as numpy arrays,
sorted by (onset, pitch), plus the sustain pedal's down intervals (``pedal``, MIDI CC64). It
is built from tuples, from a MIDI file (pretty_midi) or from a music21 stream, and can be
transposed, re-timed and trimmed; every such operation returns a new Score (the arrays are
read-only).

A :class:`FrameScore` is the same score quantized to a frame grid: boolean ``held`` and
``onset`` rolls plus a ``velocity`` roll of shape (T, 88). It is what the env shows the agent
(``window`` gives the lookahead) and what a performance is scored against.

Pitches are MIDI numbers; roll columns are indexed by ``pitch - LOWEST_PITCH`` (A0 = 21 is
column 0, C8 = 108 is column 87).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Iterable

import numpy as np

from lmm_env._checks import check_bool, check_int, short_repr
from lmm_env.synth.base import HIGHEST_PITCH, LOWEST_PITCH, N_KEYS

__all__ = [
    "LOWEST_PITCH",
    "HIGHEST_PITCH",
    "N_KEYS",
    "ScoreError",
    "Score",
    "FrameScore",
    "OUT_OF_RANGE_POLICIES",
    "MAX_SECONDS",
    "MAX_FRAME_RATE",
    "MAX_FRAMES",
]

OUT_OF_RANGE_POLICIES = ("transpose", "reject", "drop")
DEFAULT_VELOCITY = 80
_TIME_ATOL = 1e-9
# Bounds on what a file or an argument may ask for (a 44-byte MIDI file can hold a note
# ending after 93 hours): a score lasts at most MAX_SECONDS, and a frame grid holds at most
# MAX_FRAMES frames (3 hours at 100 fps; ~1 KB a frame while quantizing).
MAX_SECONDS = 6 * 3600.0
MAX_FRAME_RATE = 1000.0
MAX_FRAMES = 3 * 3600 * 100
MIN_TEMPO, MAX_TEMPO = 0.01, 100.0  # with_tempo factors


class ScoreError(ValueError):
    """A score (or a file meant to hold one) is invalid or cannot be played."""


# --------------------------------------------------------------------------- helpers


def _check_keys(keys: Any) -> tuple[int, int]:
    """Validate an inclusive (lowest, highest) MIDI pitch range inside the piano's 88 keys."""
    try:
        lo, hi = keys
    except (TypeError, ValueError):
        raise ValueError(f"keys must be a (lowest, highest) pair of MIDI pitches, got {short_repr(keys)}") from None
    for v in (lo, hi):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"keys must hold integer MIDI pitches, got {short_repr(keys)}")
    lo, hi = int(lo), int(hi)
    if not LOWEST_PITCH <= lo <= hi <= HIGHEST_PITCH:
        raise ValueError(
            f"keys={short_repr(keys)} must satisfy {LOWEST_PITCH} <= lowest <= highest <= {HIGHEST_PITCH} "
            "(the piano's 88 keys)"
        )
    return lo, hi


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _number(what: str, v: Any) -> float:
    """``v`` as a float if it is a real number (not a bool, not a string), else a ValueError naming ``what``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, Real):
        raise ValueError(f"{what} must be a number, got {short_repr(v)}")
    return float(v)


def _check_frame_rate(frame_rate: Any) -> float:
    fr = _number("frame_rate", frame_rate)
    if not (math.isfinite(fr) and 0 < fr <= MAX_FRAME_RATE):
        raise ValueError(f"frame_rate must be a finite number in (0, {MAX_FRAME_RATE:g}] frames per second, "
                         f"got {short_repr(frame_rate)}")
    return fr


def _as_1d(name: str, values: Any, n: int | None = None) -> np.ndarray:
    if isinstance(values, (list, tuple)):  # numpy would read True as 1 and "60" as 60.0
        for i, x in enumerate(values):
            if isinstance(x, (bool, np.bool_, str, bytes)):
                raise ScoreError(f"{name} must be numbers, got {short_repr(x)} at index {i}")
    a = np.asarray(values)
    if a.ndim == 0 and a.size == 1 and n is None:
        raise ScoreError(f"{name} must be a 1-D sequence, got a scalar {short_repr(values)}")
    if a.ndim != 1:
        raise ScoreError(f"{name} must be 1-D, got shape {a.shape}")
    if a.dtype.kind in "SU":
        raise ScoreError(f"{name} must be numbers, got strings ({short_repr(a[0].item()) if a.size else ''})")
    if a.dtype == object or a.dtype.kind not in "biuf":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError):
            raise ScoreError(f"{name} must be numeric, got dtype {a.dtype}") from None
    if a.dtype.kind == "b":
        raise ScoreError(f"{name} must be numeric, got booleans")
    if n is not None and len(a) != n:
        raise ScoreError(f"{name} has {len(a)} values but pitches has {n}: lengths must match")
    return a


def _as_int(name: str, a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``a`` as int64 if every value is an integer in ``lo..hi``; checked before the cast (2**70 must not wrap)."""
    bad = (a < lo) | (a > hi)
    if a.dtype.kind == "f":
        bad |= ~np.isfinite(a) | (a != np.round(a))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreError(f"{name} must be integers in {lo}..{hi}, got {a[i].item()!r} at index {i}")
    return a.astype(np.int64)


def _apply_range_policy(p, on, off, v, lo: int, hi: int, out_of_range: str):
    """The notes with ``out_of_range`` applied to the pitches outside ``lo..hi``."""
    outside = (p < lo) | (p > hi)
    if outside.any():
        if out_of_range == "reject":
            i = int(np.flatnonzero(outside)[0])
            raise ScoreError(
                f"pitch {int(p[i])} (note {i}) is outside the allowed keys {lo}..{hi} "
                "(out_of_range='reject')"
            )
        if out_of_range == "drop":
            keep = ~outside
            p, on, off, v = p[keep], on[keep], off[keep], v[keep]
        else:
            p = _fold_into_range(p, lo, hi)
    return p, on, off, v


def _check_policy(out_of_range: Any) -> str:
    if not isinstance(out_of_range, str) or out_of_range not in OUT_OF_RANGE_POLICIES:
        raise ValueError(
            f"unknown out_of_range policy {short_repr(out_of_range)}; allowed: {', '.join(OUT_OF_RANGE_POLICIES)}"
        )
    return out_of_range


def _fold_into_range(pitches: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Shift out-of-range pitches by whole octaves into [lo, hi]; ScoreError if one cannot fit."""
    p = pitches.astype(np.int64)
    up = np.where(p < lo, -((p - lo) // 12), 0)  # ceil((lo - p) / 12) octaves up
    down = np.where(p > hi, (p - hi + 11) // 12, 0)  # ceil((p - hi) / 12) octaves down
    q = p + 12 * up - 12 * down
    bad = (q < lo) | (q > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreError(
            f"pitch {int(p[i])} cannot be moved by whole octaves into keys ({lo}, {hi}): "
            "the range is narrower than an octave there; use out_of_range='drop' or 'reject', "
            "or widen keys"
        )
    return q


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


PEDAL_CC = 64  # MIDI control change number of the sustain (damper) pedal; values >= 64 mean down


def _merge_intervals(a: np.ndarray) -> np.ndarray:
    """(k, 2) intervals sorted by start, those that overlap or touch merged into one."""
    if len(a) < 2:
        return a
    a = a[np.argsort(a[:, 0], kind="stable")]
    reach = np.maximum.accumulate(a[:, 1])
    first = np.flatnonzero(np.r_[True, a[1:, 0] > reach[:-1]])  # a new interval starts after all before it end
    return np.stack([a[first, 0], np.maximum.reduceat(a[:, 1], first)], axis=1)


def _check_pedal(pedal: Any) -> np.ndarray | None:
    """Pedal intervals validated: a sorted, disjoint float64 (k, 2) array (None: no pedal)."""
    if pedal is None:
        return None
    if isinstance(pedal, (str, bytes)):
        raise ScoreError(f"pedal must be (start, end) pairs in seconds, got {short_repr(pedal)}")
    if isinstance(pedal, (list, tuple)):  # numpy would read True as 1 and "1.5" as a string array
        for i, iv in enumerate(pedal):
            items = iv if isinstance(iv, (list, tuple, np.ndarray)) else [iv]
            if any(isinstance(x, (bool, np.bool_, str, bytes)) for x in items):
                raise ScoreError(f"pedal interval {i} must be a (start, end) pair of numbers, got {short_repr(iv)}")
    try:
        a = np.asarray(pedal)
    except ValueError:  # ragged
        raise ScoreError(f"pedal must be (start, end) pairs in seconds, got {short_repr(pedal)}") from None
    if a.size == 0:
        return np.zeros((0, 2))
    if a.ndim != 2 or a.shape[1] != 2 or a.dtype.kind not in "iuf":
        raise ScoreError(f"pedal must be (start, end) pairs in seconds (shape (k, 2), numbers), got "
                         f"{short_repr(pedal)} (shape {a.shape}, dtype {a.dtype})")
    a = a.astype(np.float64)
    bad = ~np.isfinite(a).all(axis=1) | (a[:, 0] < 0) | (a[:, 1] <= a[:, 0]) | (a[:, 1] > MAX_SECONDS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreError(f"pedal interval {i} is ({float(a[i, 0])!r}, {float(a[i, 1])!r}); each must be finite with "
                         f"0 <= start < end <= MAX_SECONDS = {MAX_SECONDS:g} s")
    return _merge_intervals(a)


def _pedal_from_midi(instruments: list, end_time: float) -> np.ndarray:
    """The sustain pedal's down intervals of ``instruments`` (their CC64, >= 64 = down), merged
    over the instruments; a pedal still down at the end is lifted at ``end_time``."""
    out = []
    for inst in instruments:
        down_at = None
        for cc in sorted((c for c in inst.control_changes if c.number == PEDAL_CC), key=lambda c: c.time):
            t = min(max(float(cc.time), 0.0), MAX_SECONDS)
            if cc.value >= 64 and down_at is None:
                down_at = t
            elif cc.value < 64 and down_at is not None:
                if t > down_at:
                    out.append((down_at, t))
                down_at = None
        if down_at is not None and end_time > down_at:
            out.append((down_at, end_time))
    return _merge_intervals(np.array(out, dtype=np.float64).reshape(-1, 2))


# --------------------------------------------------------------------------- Score


class Score:
    """An immutable set of notes, sorted by (onset, pitch).

    Attributes:
        pitches: int16 MIDI pitches, inside ``keys``.
        onsets: float64 note starts in seconds (>= 0).
        offsets: float64 note ends in seconds (> onsets).
        velocities: int16 MIDI velocities, 1..127.
        name: a free-form label (piece id, file name, ...).
        pedal: float64 array of shape (k, 2): the sustain pedal's down intervals
            ``[start, end)`` in seconds (MIDI CC64 >= 64), sorted and disjoint; (0, 2) when
            the score has no pedal.

    Args:
        pitches, onsets, offsets: equal-length 1-D sequences. Pitches must be integral.
        velocities: 1..127 (no clipping: out-of-range values are an error); default 80.
        name: label of the score.
        out_of_range: what to do with pitches outside ``keys``: ``"transpose"`` (default)
            moves each such note by whole octaves into the range (a ScoreError if the range is
            narrower than an octave and a note cannot fit), ``"reject"`` raises a ScoreError
            naming the first offending pitch, ``"drop"`` removes those notes.
        keys: inclusive (lowest, highest) MIDI pitch range, inside the piano's 21..108.
        pedal: sustain-pedal down intervals, a sequence of ``(start, end)`` pairs in seconds
            (finite, ``0 <= start < end <= MAX_SECONDS``), or None (no pedal). They are sorted,
            and intervals that overlap or touch are merged (the pedal never lifted between
            them).

    An empty Score (no notes) is a valid object; ``from_midi`` however refuses MIDI files
    without notes. Equality compares the note arrays and the pedal intervals (times within
    1e-9 s), not the name.
    """

    __slots__ = ("pitches", "onsets", "offsets", "velocities", "name", "pedal")

    def __init__(
        self,
        pitches: Any,
        onsets: Any,
        offsets: Any,
        velocities: Any = None,
        *,
        name: str = "",
        out_of_range: str = "transpose",
        keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH),
        pedal: Any = None,
    ) -> None:
        _check_policy(out_of_range)
        lo, hi = _check_keys(keys)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}: {short_repr(name)}")
        p = _as_int("pitches", _as_1d("pitches", pitches), 0, 127)
        n = len(p)
        on = _as_1d("onsets", onsets, n).astype(np.float64)
        off = _as_1d("offsets", offsets, n).astype(np.float64)
        if velocities is None:
            v = np.full(n, DEFAULT_VELOCITY, dtype=np.int64)
        elif np.ndim(velocities) == 0:
            one = velocities.item() if isinstance(velocities, np.ndarray) else velocities
            v = _as_int("velocities", np.full(n, _number("velocities", one)), 1, 127)
        else:
            v = _as_int("velocities", _as_1d("velocities", velocities, n), 1, 127)

        for nm, a in (("onsets", on), ("offsets", off)):
            bad = ~np.isfinite(a)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ScoreError(f"{nm} must be finite, got {float(a[i])!r} at index {i}")
        bad = on < 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScoreError(f"onsets must be >= 0, got {float(on[i])!r} at index {i}")
        for nm, a in (("onsets", on), ("offsets", off)):
            bad = a > MAX_SECONDS
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ScoreError(f"{nm} must be at most MAX_SECONDS = {MAX_SECONDS:g} s (6 hours), got "
                                 f"{float(a[i])!r} at index {i}; trim the piece")
        bad = off <= on
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ScoreError(
                f"note {i} (pitch {int(p[i])}) has offset {float(off[i])!r} <= onset {float(on[i])!r}: "
                "every note must last a positive time"
            )
        ped = _check_pedal(pedal)
        p, on, off, v = _apply_range_policy(p, on, off, v, lo, hi, out_of_range)
        self._set(p, on, off, v, name, sort=True, pedal=ped)

    # internal fast constructor: arrays already valid (pedal: sorted, disjoint (k, 2) or None)
    @classmethod
    def _from_valid(cls, p, on, off, v, name: str, sort: bool = True, pedal=None) -> "Score":
        self = object.__new__(cls)
        self._set(np.asarray(p), np.asarray(on, dtype=np.float64), np.asarray(off, dtype=np.float64),
                  np.asarray(v), name, sort=sort, pedal=pedal)
        return self

    def _set(self, p, on, off, v, name: str, sort: bool, pedal=None) -> None:
        if sort and len(p) > 1:
            order = np.lexsort((off, p, on))
            p, on, off, v = p[order], on[order], off[order], v[order]
        set_ = object.__setattr__
        set_(self, "pitches", _readonly(np.array(p, dtype=np.int16)))
        set_(self, "onsets", _readonly(np.array(on, dtype=np.float64)))
        set_(self, "offsets", _readonly(np.array(off, dtype=np.float64)))
        set_(self, "velocities", _readonly(np.array(v, dtype=np.int16)))
        set_(self, "name", name)
        ped = np.zeros((0, 2)) if pedal is None else pedal
        set_(self, "pedal", _readonly(np.array(ped, dtype=np.float64).reshape(-1, 2)))

    def __setattr__(self, key, value):
        raise AttributeError(f"Score is immutable: cannot set {key!r}; build a new Score instead")

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_notes(cls, notes: Iterable[Any], **kw: Any) -> "Score":
        """Build a Score from ``(pitch, onset, offset[, velocity])`` tuples or note objects.

        Objects may name their fields ``pitch``/``onset``/``offset``/``velocity`` or, like
        ``pretty_midi.Note``, ``pitch``/``start``/``end``/``velocity``. Keyword arguments go
        to the constructor (``name``, ``out_of_range``, ``keys``).
        """
        if isinstance(notes, (str, bytes)) or not hasattr(notes, "__iter__"):
            raise TypeError(f"from_notes expects an iterable of (pitch, onset, offset[, velocity]) tuples or note "
                            f"objects, got {type(notes).__name__}: {short_repr(notes)}")
        ps, ons, offs, vs = [], [], [], []
        for i, nt in enumerate(notes):
            if isinstance(nt, (tuple, list, np.ndarray)):
                if len(nt) not in (3, 4):
                    raise ScoreError(
                        f"note {i} is {short_repr(nt)}: expected (pitch, onset, offset) or "
                        "(pitch, onset, offset, velocity)"
                    )
                p, on, off = nt[0], nt[1], nt[2]
                v = nt[3] if len(nt) == 4 else DEFAULT_VELOCITY
            else:
                try:
                    p = nt.pitch
                    on = nt.onset if hasattr(nt, "onset") else nt.start
                    off = nt.offset if hasattr(nt, "offset") else nt.end
                except AttributeError:
                    raise ScoreError(
                        f"note {i} ({short_repr(nt)}) has no pitch/onset/offset (or pitch/start/end) attributes"
                    ) from None
                v = getattr(nt, "velocity", DEFAULT_VELOCITY)
                if v is None:
                    v = DEFAULT_VELOCITY
            for what, x in (("pitch", p), ("onset", on), ("offset", off), ("velocity", v)):
                # numpy would read True as 1 and "60" as 60.0, and fail on "C4" without naming the note
                if isinstance(x, (bool, np.bool_)) or not isinstance(x, Real):
                    raise ScoreError(f"note {i}: {what} must be a number, got {short_repr(x)}")
            ps.append(p)
            ons.append(on)
            offs.append(off)
            vs.append(v)
        return cls(np.array(ps, dtype=np.float64), np.array(ons, dtype=np.float64),
                   np.array(offs, dtype=np.float64), np.array(vs, dtype=np.float64), **kw)

    @classmethod
    def from_midi(cls, path_or_prettymidi: Any, **kw: Any) -> "Score":
        """Read a MIDI file (path) or a ``pretty_midi.PrettyMIDI``, merging all non-drum tracks.

        Zero-length notes (offset <= onset, common in real MIDI files) are skipped. The name
        defaults to the file's stem. The sustain pedal (control change 64 of the same tracks,
        value >= 64 = down) becomes ``pedal``; a pedal still down at the end of the file is
        lifted at its last event.

        Raises:
            FileNotFoundError: the path does not exist.
            TypeError: neither a path (str or os.PathLike) nor a PrettyMIDI.
            ScoreError: the file is not a readable MIDI file, holds no (non-drum) notes, or
                lasts longer than ``MAX_SECONDS``.
        """
        import pretty_midi

        if isinstance(path_or_prettymidi, pretty_midi.PrettyMIDI):
            pm = path_or_prettymidi
            label = "the PrettyMIDI object"
            default_name = ""
        else:
            if not isinstance(path_or_prettymidi, (str, os.PathLike)) or isinstance(os.fspath(path_or_prettymidi),
                                                                                    bytes):
                raise TypeError(f"from_midi expects a MIDI file path (str or os.PathLike) or a pretty_midi.PrettyMIDI, "
                                f"got {type(path_or_prettymidi).__name__}: {short_repr(path_or_prettymidi)}")
            path = os.fspath(path_or_prettymidi)
            if not os.path.exists(path):
                raise FileNotFoundError(2, "MIDI file not found", path)
            if os.path.isdir(path):
                raise ScoreError(f"{path!r} is a directory, not a readable MIDI file")
            try:
                pm = pretty_midi.PrettyMIDI(path)
            except Exception as e:  # mido/pretty_midi raise many kinds (OSError, EOFError, KeyError...)
                raise ScoreError(f"{path!r} is not a readable MIDI file ({type(e).__name__}: {e})") from e
            label = repr(path)
            default_name = os.path.splitext(os.path.basename(path))[0]
        notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes if n.end > n.start]
        if not notes:
            raise ScoreError(f"{label} holds no (non-drum) notes")
        end = max(n.end for n in notes)
        if end > MAX_SECONDS:  # refused before any array the length of the piece is made
            raise ScoreError(f"{label} lasts {end:.0f} s ({end / 3600:.1f} hours), longer than MAX_SECONDS = "
                             f"{MAX_SECONDS:g} s (6 hours); cut the file to a shorter piece")
        kw.setdefault("name", default_name)
        if "pedal" not in kw:
            ccs = [c.time for inst in pm.instruments if not inst.is_drum for c in inst.control_changes]
            kw["pedal"] = _pedal_from_midi([inst for inst in pm.instruments if not inst.is_drum],
                                           min(max([end] + ccs), MAX_SECONDS))
        return cls(
            np.array([n.pitch for n in notes]),
            np.array([n.start for n in notes], dtype=np.float64),
            np.array([n.end for n in notes], dtype=np.float64),
            np.array([n.velocity for n in notes]),
            **kw,
        )

    @classmethod
    def from_music21(cls, stream: Any, *, velocity: str | int = "accent", **kw: Any) -> "Score":
        """Convert a music21 Stream (Score, Part, Opus-free stream...) to a Score.

        Ties are merged (``stripTies``), every Note and every Chord pitch becomes a note, with
        times in seconds from ``secondsMap`` (tempo marks honored; music21 assumes quarter =
        120 without one). Grace notes (zero duration), rests and unpitched notes are skipped.

        Velocity: a note's explicit ``volume.velocity`` if it has one; otherwise, with
        ``velocity="accent"`` (default), the deterministic metrical accent
        ``round(60 + 40 * beatStrength)`` (60..100, so velocity carries the meter; 80 where
        music21 knows no beat strength), or an int
        1..127 used for every note. The name defaults to the stream's title.
        """
        from music21 import chord as m21chord
        from music21 import harmony as m21harmony
        from music21 import note as m21note
        from music21 import stream as m21stream

        if not isinstance(stream, m21stream.Stream):
            raise TypeError(f"from_music21 expects a music21 Stream (e.g. music21.converter.parse(path)), got "
                            f"{type(stream).__name__}: {short_repr(stream)}; for a MIDI file use Score.from_midi")
        if isinstance(velocity, str):
            if velocity != "accent":
                raise ValueError(f"velocity must be 'accent' or an int 1..127, got {short_repr(velocity)}")
            const = None
        elif isinstance(velocity, (int, np.integer)) and not isinstance(velocity, (bool, np.bool_)):
            if not 1 <= int(velocity) <= 127:
                raise ValueError(f"velocity must be 'accent' or an int 1..127, got {short_repr(velocity)}")
            const = int(velocity)
        else:
            raise ValueError(f"velocity must be 'accent' or an int 1..127, got {short_repr(velocity)}")

        s = stream.stripTies(inPlace=False)
        accent: dict[int, float] = {}
        if const is None:
            for el in s.recurse().notes:
                try:
                    bs = float(el.beatStrength)
                except Exception:  # no meter context
                    bs = math.nan
                accent[id(el)] = bs if 0.0 <= bs <= 1.0 else 0.5  # NaN/odd meter: neutral

        def vel_of(nobj, el) -> int:
            for obj in (nobj, el):  # the note's own volume, then its chord's
                vol = getattr(obj, "_volume", None)
                if vol is not None and vol.velocity is not None:
                    return int(np.clip(round(vol.velocity), 1, 127))
            if const is not None:
                return const
            bs = accent.get(id(el), 0.5)
            return int(np.clip(round(60 + 40 * bs), 1, 127))

        ps: list[int] = []
        ons: list[float] = []
        offs: list[float] = []
        vs: list[int] = []
        for entry in s.flatten().secondsMap:
            el = entry["element"]
            dur = entry["durationSeconds"]
            start = entry["offsetSeconds"]
            if dur is None or not dur > 0 or el.duration.quarterLength <= 0 or el.duration.isGrace:
                continue
            if isinstance(el, m21note.Note):
                members = [(el.pitch, el)]
            elif isinstance(el, m21chord.Chord) and not isinstance(el, m21harmony.Harmony):
                members = [(n.pitch, n) for n in el.notes]
            else:
                continue
            for pitch, nobj in members:
                ps.append(int(round(pitch.ps)))
                ons.append(float(start))
                offs.append(float(start + dur))
                vs.append(vel_of(nobj, el))
        if "name" not in kw:
            title = ""
            md = getattr(stream, "metadata", None)
            if md is not None and md.title:
                title = str(md.title)
            kw["name"] = title
        return cls(np.array(ps, dtype=np.int64), ons, offs, np.array(vs, dtype=np.int64), **kw)

    # ------------------------------------------------------------------ conversions

    def to_pretty_midi(self, program: int = 0):
        """One-instrument ``pretty_midi.PrettyMIDI`` (General MIDI ``program``, 0 = piano), with the
        sustain pedal as control change 64 (127 down at each interval's start, 0 up at its end)."""
        import pretty_midi

        program = check_int("program", program, 0, 127)  # a General MIDI program
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(program=int(program), name=self.name or "piano")
        inst.notes = [
            pretty_midi.Note(velocity=int(v), pitch=int(p), start=float(a), end=float(b))
            for p, a, b, v in zip(self.pitches, self.onsets, self.offsets, self.velocities)
        ]
        for a, b in self.pedal:
            inst.control_changes.append(pretty_midi.ControlChange(PEDAL_CC, 127, float(a)))
            inst.control_changes.append(pretty_midi.ControlChange(PEDAL_CC, 0, float(b)))
        pm.instruments.append(inst)
        return pm

    def transpose(
        self,
        semitones: int,
        *,
        out_of_range: str = "transpose",
        keys: tuple[int, int] = (LOWEST_PITCH, HIGHEST_PITCH),
    ) -> "Score":
        """Shift every pitch by ``semitones`` (an int), then apply ``out_of_range`` within ``keys``."""
        semitones = check_int("semitones", semitones, -127, 127)
        _check_policy(out_of_range)
        lo, hi = _check_keys(keys)
        # the shifted pitches may leave 0..127 (which the constructor refuses): apply the policy here
        p, on, off, v = _apply_range_policy(self.pitches.astype(np.int64) + semitones, self.onsets, self.offsets,
                                            self.velocities, lo, hi, out_of_range)
        return Score._from_valid(p, on, off, v, self.name, sort=True, pedal=self.pedal)

    def with_tempo(self, factor: float) -> "Score":
        """Play ``factor`` times as fast: all times are divided by ``factor`` (in [0.01, 100]).

        The result must last at most ``MAX_SECONDS``."""
        f = _number("tempo factor", factor)
        if not (math.isfinite(f) and MIN_TEMPO <= f <= MAX_TEMPO):
            raise ValueError(f"tempo factor must be a finite number in [{MIN_TEMPO:g}, {MAX_TEMPO:g}], "
                             f"got {short_repr(factor)}")
        if self.duration / f > MAX_SECONDS:
            raise ValueError(f"tempo factor {f:g} would make score {short_repr(self.name)} last "
                             f"{self.duration / f:.0f} s, "
                             f"longer than MAX_SECONDS = {MAX_SECONDS:g} s; trim it first")
        return Score._from_valid(self.pitches, self.onsets / f, self.offsets / f, self.velocities,
                                 self.name, sort=False, pedal=self.pedal / f)

    def trim(self, start: float, end: float | None = None) -> "Score":
        """Keep the notes sounding in ``[start, end)``, clipped to it, shifted so ``start`` is 0.

        ``end=None`` means the end of the score. A note overlaps the window if
        ``onset < end`` and ``offset > start``; the pedal intervals are clipped the same way.
        """
        start = _number("trim start", start)
        if not (math.isfinite(start) and start >= 0):
            raise ValueError(f"trim start must be a finite time >= 0, got {start!r}")
        stop = math.inf if end is None else _number("trim end", end)
        if math.isnan(stop) or stop <= start:
            raise ValueError(f"trim end must be > start ({start}), got {end!r}")
        keep = (self.onsets < stop) & (self.offsets > start)
        on = np.maximum(self.onsets[keep], start) - start
        off = np.minimum(self.offsets[keep], stop) - start
        ped = self.pedal[(self.pedal[:, 0] < stop) & (self.pedal[:, 1] > start)]
        ped = np.stack([np.maximum(ped[:, 0], start), np.minimum(ped[:, 1], stop)], axis=1) - start
        return Score._from_valid(self.pitches[keep], on, off, self.velocities[keep], self.name, sort=True,
                                 pedal=ped)

    def frames(self, frame_rate: float) -> "FrameScore":
        """Quantize to a frame grid; see :class:`FrameScore` for the rule.

        ``frame_rate`` is at most ``MAX_FRAME_RATE``, and the grid at most ``MAX_FRAMES`` frames."""
        return FrameScore.from_score(self, frame_rate)

    def sustained(self, keep_pedal: bool = False) -> "Score":
        """The notes as they sound under the sustain pedal, with no pedal left to apply.

        A note whose key is released while the pedal is down (``start <= offset < end`` of
        a pedal interval; touching intervals count as one) sounds until the pedal lifts, or
        until its key is struck again, whichever is first; no note is shortened. This is
        what the renderers play (``synth.render`` of a pedalled score) and the note times a
        listener can hear, as transcription datasets extend MAESTRO's notes. The pedal
        intervals are dropped (already applied) unless ``keep_pedal`` (to score pedal F1
        against). Returns ``self`` when there is no pedal."""
        check_bool("keep_pedal", keep_pedal)
        if not len(self.pedal) or not len(self):
            return self
        ped = self.pedal[np.argsort(self.pedal[:, 0], kind="stable")]
        # merge overlapping or touching intervals: the damper never falls between them
        run_end = np.maximum.accumulate(ped[:, 1])
        new = np.r_[True, ped[1:, 0] > run_end[:-1]]
        starts = ped[new, 0]
        ends = np.maximum.reduceat(ped[:, 1], np.flatnonzero(new))
        off = self.offsets
        j = np.searchsorted(starts, off, side="right") - 1
        inside = (j >= 0) & (off < ends[np.maximum(j, 0)])
        sounding = np.where(inside, ends[np.maximum(j, 0)], off)
        order = np.lexsort((self.onsets, self.pitches))  # by key, then onset
        same = self.pitches[order[1:]] == self.pitches[order[:-1]]
        cur, nxt = order[:-1][same], order[1:][same]
        sounding[cur] = np.maximum(off[cur], np.minimum(sounding[cur], self.onsets[nxt]))
        return Score._from_valid(self.pitches, self.onsets, sounding, self.velocities, self.name, sort=False,
                                 pedal=self.pedal if keep_pedal else None)

    def pedal_frames(self, frame_rate: float, n_frames: int | None = None) -> np.ndarray:
        """The sustain pedal on a frame grid: bool (n_frames,), True where it is down.

        Quantized like the notes of :meth:`frames`: an interval covers frames
        ``[round(start * fr), max(round(end * fr), that + 1))``, rounding halves up.
        ``n_frames`` defaults to the notes' frame count (``self.frames(frame_rate).T``
        without the release rule: the last rounded offset)."""
        fr = _check_frame_rate(frame_rate)
        if n_frames is None:
            n_frames = int(max(_round_half_up(self.offsets * fr).max(initial=0),
                               _round_half_up(self.onsets * fr).max(initial=-1) + 1))
        n = check_int("n_frames", n_frames, 0, MAX_FRAMES)
        out = np.zeros(n + 1, dtype=np.int32)
        if len(self.pedal):
            a = _round_half_up(self.pedal[:, 0] * fr)
            b = np.maximum(_round_half_up(self.pedal[:, 1] * fr), a + 1)
            np.add.at(out, np.minimum(a, n), 1)
            np.add.at(out, np.minimum(b, n), -1)
        return np.cumsum(out)[:n] > 0

    # ------------------------------------------------------------------ protocol

    @property
    def duration(self) -> float:
        """The last offset in seconds (0.0 for an empty score)."""
        return float(self.offsets.max()) if len(self.offsets) else 0.0

    def __len__(self) -> int:
        return len(self.pitches)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Score):
            return NotImplemented
        return (
            len(self) == len(other)
            and np.array_equal(self.pitches, other.pitches)
            and np.array_equal(self.velocities, other.velocities)
            and np.allclose(self.onsets, other.onsets, rtol=0, atol=_TIME_ATOL)
            and np.allclose(self.offsets, other.offsets, rtol=0, atol=_TIME_ATOL)
            and self.pedal.shape == other.pedal.shape
            and np.allclose(self.pedal, other.pedal, rtol=0, atol=_TIME_ATOL)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if len(self):
            rng = f", pitches {int(self.pitches.min())}..{int(self.pitches.max())}"
        else:
            rng = ""
        ped = f", {len(self.pedal)} pedal intervals" if len(self.pedal) else ""
        return f"Score(name={self.name!r}, {len(self)} notes, {self.duration:.3f} s{rng}{ped})"

    def __getstate__(self):
        return (self.pitches, self.onsets, self.offsets, self.velocities, self.name, self.pedal)

    def __setstate__(self, state):
        p, on, off, v, name = state[:5]
        self._set(p, on, off, v, name, sort=False, pedal=state[5] if len(state) > 5 else None)


# --------------------------------------------------------------------------- FrameScore


@dataclass(eq=False)
class FrameScore:
    """A score quantized to a frame grid (``frame_rate`` frames per second).

    Arrays, all of shape (T, 88), column = ``pitch - 21``:
        held: bool, the key is down on that frame.
        onset: bool, the key is struck on that frame (the first frame of a note).
        velocity: uint8, the note's velocity on every held frame of it, 0 elsewhere.

    Quantization rule (``from_score``): a note's onset frame is ``round(onset * fr)`` and its
    end frame (exclusive) ``round(offset * fr)``, rounding halves up, and it lasts at least
    one frame: held frames are ``[on, max(end, on + 1))``. A key must be released for at least
    one frame before it is struck again: when a note of the same pitch starts at frame ``s``,
    an earlier note still held at frame ``s - 1`` or later is cut to end (exclusive) at
    ``s - 1``, i.e. its last held frame becomes ``s - 2``; if that would leave it shorter than
    one frame, the *later* note is dropped instead (it is unplayable at this frame rate) and
    the earlier one is held until the later would have ended, if that is later (the key is
    down while either note sounds), at the louder velocity when both start on one frame (a
    unison: two voices on one key, as `lmm_env.metrics.playable_notes` merges them).
    ``T`` is the last end frame, so the final frame holds a key down.
    """

    frame_rate: float
    held: np.ndarray
    onset: np.ndarray
    velocity: np.ndarray
    name: str = ""
    _pad_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.frame_rate = _check_frame_rate(self.frame_rate)
        held = np.asarray(self.held)
        if held.ndim != 2 or held.shape[1] != N_KEYS:
            raise ValueError(f"held must have shape (T, {N_KEYS}), got {held.shape}")
        for nm in ("onset", "velocity"):
            a = np.asarray(getattr(self, nm))
            if a.shape != held.shape:
                raise ValueError(f"{nm} has shape {a.shape} but held has {held.shape}: shapes must match")
        self.held = _readonly(np.array(held, dtype=bool))
        self.onset = _readonly(np.array(self.onset, dtype=bool))
        vel = np.asarray(self.velocity)
        if vel.dtype.kind not in "biuf":
            raise ValueError(f"velocity must hold integers 0..127, got dtype {vel.dtype}")
        if vel.size and (vel.min() < 0 or vel.max() > 127):
            raise ValueError("velocity values must be in 0..127")
        if vel.dtype.kind == "f" and (vel != np.round(vel)).any():  # a cast would truncate 64.7 to 64
            raise ValueError("velocity values must be whole numbers (MIDI velocities 0..127), got fractions or NaN")
        self.velocity = _readonly(np.array(vel, dtype=np.uint8))

    @classmethod
    def from_score(cls, score: Score, frame_rate: float) -> "FrameScore":
        """Quantize ``score`` at ``frame_rate`` frames per second (see the class docstring).

        Raises ValueError for a frame rate outside (0, ``MAX_FRAME_RATE``] or a grid of more
        than ``MAX_FRAMES`` frames."""
        fr = _check_frame_rate(frame_rate)
        n = len(score)
        if n == 0:
            z = np.zeros((0, N_KEYS), dtype=bool)
            return cls(fr, z, z.copy(), np.zeros((0, N_KEYS), np.uint8), score.name)
        key = score.pitches.astype(np.int64) - LOWEST_PITCH
        on = _round_half_up(score.onsets * fr)
        end = np.maximum(_round_half_up(score.offsets * fr), on + 1)
        vel = score.velocities.astype(np.int64)

        # Release rule: per key, in onset order.
        order = np.lexsort((end, score.onsets, on, key))  # ties in frame: real onset order
        keep = np.ones(n, dtype=bool)
        ks, os_, es = key[order], on[order], end[order]
        new_end = es.copy()
        vs = vel[order].copy()
        # only keys with several notes need the sequential pass
        starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
        stops = np.r_[starts[1:], n]
        for a, b in zip(starts, stops):
            if b - a < 2:
                continue
            last = a  # index of the last kept note of this key
            for j in range(a + 1, b):
                s = os_[j]
                if new_end[last] > s - 1:
                    if s - 1 - os_[last] >= 1:
                        new_end[last] = s - 1
                        last = j
                    else:
                        # the later note is unplayable: the kept strike holds the key while either
                        # sounds, at the louder velocity when both start in one frame (a unison)
                        keep[j] = False
                        new_end[last] = max(new_end[last], es[j])
                        if s == os_[last]:
                            vs[last] = max(vs[last], vs[j])
                else:
                    last = j
        end_sorted = new_end
        k, o, e, v = ks[keep], os_[keep], end_sorted[keep], vs[keep]

        T = int(e.max())
        if T > MAX_FRAMES:
            raise ValueError(
                f"score {short_repr(score.name)} lasts {score.duration:.0f} s: at {fr:g} frames per second that is "
                f"{T} frames, "
                f"more than MAX_FRAMES = {MAX_FRAMES}; trim it (Score.trim) or lower the frame rate")
        held_d = np.zeros((T + 1, N_KEYS), dtype=np.int32)
        vel_d = np.zeros((T + 1, N_KEYS), dtype=np.int32)
        np.add.at(held_d, (o, k), 1)
        np.add.at(held_d, (e, k), -1)
        np.add.at(vel_d, (o, k), v)
        np.add.at(vel_d, (e, k), -v)
        held = np.cumsum(held_d, axis=0)[:T] > 0
        velocity = np.cumsum(vel_d, axis=0)[:T].astype(np.uint8)
        onset = np.zeros((T, N_KEYS), dtype=bool)
        onset[o, k] = True
        return cls(fr, held, onset, velocity, score.name)

    @property
    def T(self) -> int:
        """Number of frames."""
        return self.held.shape[0]

    def __len__(self) -> int:
        return self.held.shape[0]

    @property
    def duration(self) -> float:
        """Length in seconds (``T / frame_rate``)."""
        return self.T / self.frame_rate

    def to_score(self) -> Score:
        """The quantized notes as a Score: onset ``on / fr``, offset ``end / fr``.

        A note starts on a held frame that is an onset or follows an unheld frame, and lasts
        until the next unheld frame or onset of its key. ``fs.to_score().frames(fr) == fs``.
        """
        T = self.T
        if T == 0:
            return Score._from_valid(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), self.name)
        # key-major layout with one unheld guard row per key at index T
        held = np.zeros((N_KEYS, T + 1), dtype=bool)
        held[:, :T] = self.held.T
        ons = np.zeros((N_KEYS, T + 1), dtype=bool)
        ons[:, :T] = self.onset.T
        prev = np.zeros_like(held)
        prev[:, 1:] = held[:, :-1]
        start = held & (ons | ~prev)
        boundary = ~held | start
        s_idx = np.flatnonzero(start)
        b_idx = np.flatnonzero(boundary)
        e_idx = b_idx[np.searchsorted(b_idx, s_idx, side="right")]
        k, t0 = np.divmod(s_idx, T + 1)
        t1 = e_idx - k * (T + 1)
        v = self.velocity.T[k, t0].astype(np.int64)
        if v.size and v.min() < 1:
            raise ScoreError("a held frame that starts a note has velocity 0; velocities must be 1..127")
        fr = self.frame_rate
        # Score order is (onset, pitch, offset); a key starts at most one note a frame, so
        # (t0, k) is unique and one integer sort gives it (a 3-key lexsort cost 3x as much).
        order = np.argsort(t0 * N_KEYS + k, kind="stable")
        k, t0, t1, v = k[order], t0[order], t1[order], v[order]
        return Score._from_valid(k + LOWEST_PITCH, t0 / fr, t1 / fr, v, self.name, sort=False)

    def window(self, t: int, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frames ``t .. t+length-1`` of (held, onset, velocity), zero past the end.

        Returns read-only views into cached zero-padded copies (built once per ``length``).
        """
        pad = self._pad_cache.get(length) if type(length) is int else None  # True and 8.0 hash as 1 and 8
        if pad is None:
            length = check_int("window length", length, 1, MAX_FRAMES)  # it sizes the padded copies
            pad = self._pad_cache.get(length)
        if pad is None:
            z = lambda a: _readonly(np.concatenate([a, np.zeros((length,) + a.shape[1:], a.dtype)]))
            pad = (z(self.held), z(self.onset), z(self.velocity))
            self._pad_cache[length] = pad
        if type(t) is not int and (isinstance(t, (bool, np.bool_)) or not isinstance(t, np.integer)) or t < 0:
            raise ValueError(f"window start t={short_repr(t)} is not allowed; use an int >= 0")
        T = self.held.shape[0]
        if t > T:
            t = T
        e = t + length
        return pad[0][t:e], pad[1][t:e], pad[2][t:e]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FrameScore):
            return NotImplemented
        return (
            self.frame_rate == other.frame_rate
            and np.array_equal(self.held, other.held)
            and np.array_equal(self.onset, other.onset)
            and np.array_equal(self.velocity, other.velocity)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"FrameScore(name={self.name!r}, T={self.T}, frame_rate={self.frame_rate:g}, "
            f"{int(self.onset.sum())} notes)"
        )
