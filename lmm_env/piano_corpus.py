"""The ``piano`` corpus: two-hand piano music with performed velocities and sustain pedal.

``lmm_env.corpus.load("piano", split)`` (and ``"piano-classical"``, ``"piano-generated"``)
returns a lazy :class:`lmm_env.corpus.Corpus` of :class:`~lmm_env.score.Score` objects whose
velocities vary like a pianist's and whose ``pedal`` holds sustain-pedal intervals. Nothing is
downloaded: every piece is made from what the installed packages carry.

Sources
-------
``piano-classical`` (music21's bundled corpus, converted on first use and cached on disk):

* keyboard works: Bach's C major prelude BWV 846, Mozart's K. 545 (first movement,
  exposition), Joplin's *Maple Leaf Rag*, a Chopin mazurka (op. 6/2), C.P.E. Bach H. 186,
  Schoenberg op. 19 nos. 2 and 6, Clara Schumann's polonaises op. 1 nos. 1-4;
* the piano parts (voice or strings left out) of Beach's *Prayer of a Tired Child*, Clara
  Schumann's trio op. 17 (III), Schumann's *Dichterliebe* no. 2, Schubert's *Der
  Lindenbaum*, Liliuokalani's *Aloha Oe* and Handel's *Lascia ch'io pianga*;
* two lead sheets (Berlin, Foster) whose chord symbols are realized as a left-hand
  accompaniment (the pattern is drawn from the work's id);
* four-part vocal music played as a keyboard reduction (soprano and alto in the right hand,
  tenor and bass in the left, unisons merged): J. R. Johnson's *Lift Every Voice* and the
  opening half (by bars) of each Bach chorale of music21's ``bach/`` folder.

Works are cut at barlines into excerpts of about ``EXCERPT_QUARTERS`` quarter notes (the
number of excerpts is read from the file's measures without parsing it); a chorale gives its
opening half.

``piano-generated`` (made on the fly, ``GENERATED_SIZES`` pieces per kind and split):

* ``accompanied``: a folk melody (music21's Essen / O'Neill / Ryan collections, a tune of the
  same split) in the right hand over a left-hand accompaniment (Alberti bass, broken chords,
  stride / waltz, block chords or arpeggios) on a diatonic harmonization of the tune (key by
  Krumhansl-Kessler profiles, one chord per bar chosen by the melody's chord tones);
* ``progression``: two-hand chord progressions (left-hand bass in octaves, right-hand
  voice-led triads and sevenths) in sustained, pulsed or oom-pah rhythms;
* ``arpeggios``: pedalled arpeggios over two to three octaves, one chord a bar, shaped by a
  crescendo to the top;
* ``two-hand-scales``: two-octave scales in parallel octaves, contrary motion or tenths, a
  crescendo up and a diminuendo down, ending on a pedalled chord.

Performance
-----------
Every piece, classical or generated, is then *performed* by one deterministic model, seeded
by the piece's id (same id, same performance, on any machine):

* velocity = a dynamic level for the piece (mp..f) + a phrase arch (crescendo to a peak then
  diminuendo, 2- or 4-bar phrases) + a slow trend over the piece + the metric accent
  (downbeats louder) + the voice's role (the melody, the top sounding note, is brought out;
  inner voices are softer) + the written hairpins of generated pieces + chord and per-note
  jitter; clipped to ``VELOCITY_RANGE``;
* timing: a tempo factor for the piece, phrase-level rubato (a slight push inside a phrase,
  a ritardando at its end, a larger one at the end of the piece), melody lead (the
  accompaniment of a chord a little after its top note), per-note onset jitter of a few
  milliseconds and a legato / detached articulation;
* sustain pedal: pressed just after each new harmony (syncopated pedalling) and lifted at the
  next one, harmonies being found from the bass line and the pitch classes of each beat
  (classical pieces) or taken from the generated chords; scales pedal their final chord only.

Splits: a classical piece's split is that of its work (:func:`lmm_env.corpus.split_of` of
the music21 path, so a chorale is in the same split as in ``"bach-chorales"``); a generated
piece's split is part of its id, and an ``accompanied`` piece takes its melody from the folk
tunes of the same split. Pieces last at most ``MAX_PIECE_SECONDS``.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmm_env import corpus as _corpus
from lmm_env._checks import check_bool
from lmm_env.score import HIGHEST_PITCH, LOWEST_PITCH, Score, ScoreError, _fold_into_range

__all__ = ["NAMES", "GENERATED_KINDS", "GENERATED_SIZES", "load", "warm", "piece_ids",
           "CLASSICAL_WORKS", "MAX_PIECE_SECONDS", "VELOCITY_RANGE", "EXCERPT_QUARTERS"]

NAMES = ("piano", "piano-classical", "piano-generated")
GENERATED_KINDS = ("accompanied", "progression", "arpeggios", "two-hand-scales")
GENERATED_SIZES = {"train": 80, "validation": 10, "test": 10}  # pieces per kind
EXCERPT_QUARTERS = 32  # a work is cut at barlines into excerpts of about this many quarter notes
MAX_PIECE_SECONDS = 30.0
VELOCITY_RANGE = (12, 120)
CACHE_FORMAT = 2  # of the classical works' cache entries (deadpan notes, bars, pedal plan)

# music21 corpus paths of the works played (besides the Bach chorales); the parts played are the
# piano's where a part is marked as a piano, all parts otherwise (keyboard works, vocal scores)
CLASSICAL_WORKS = (
    "bach/bwv846.mxl",
    "mozart/k545/movement1_exposition.mxl",
    "joplin/maple_leaf_rag.mxl",
    "chopin/mazurka06-2.krn",
    "cpebach/h186.mxl",
    "schoenberg/opus19/movement2.mxl",
    "schoenberg/opus19/movement6.mxl",
    "schumann_clara/polonaise_op1n1.mxl",
    "schumann_clara/polonaise_op1n2.mxl",
    "schumann_clara/polonaise_op1n3.mxl",
    "schumann_clara/polonaise_op1n4.mxl",
    "beach/prayer_of_a_tired_child.musicxml",
    "schumann_clara/opus17/movement3.xml",
    "schumann_robert/opus48no2.mxl",
    "schubert/Lindenbaum.xml",
    "liliuokalani/aloha_oe.mxl",
    "handel/rinaldo/Lascia_chio_pianga.mxl",
    "johnson_j_r/lift_every_voice.mxl",
    "leadSheet/berlinAlexandersRagtime.mxl",
    "leadSheet/fosterBrownHair.mxl",
)
_CLASSICAL_PREFIX = "piano-classical/"
_GENERATED_PREFIX = "piano-generated/"

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
_NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10)
# Krumhansl-Kessler key profiles (C major / C minor)
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_PROGRESSIONS = (  # scale degrees (0 = I), one chord a bar; a cadence is appended
    (0, 5, 3, 4), (0, 3, 4, 0), (0, 5, 1, 4), (0, 4, 5, 3), (0, 3, 0, 4), (5, 1, 4, 0),
    (0, 3, 6, 2, 5, 1, 4, 0), (0, 2, 3, 4), (3, 4, 2, 5), (0, 0, 3, 4),
)
ACCOMPANIMENTS = ("alberti", "broken", "stride", "block", "arpeggio")


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(_seed("/".join(map(str, parts))))


# --------------------------------------------------------------------------- drafts


class _Draft:
    """A piece before it is performed: deadpan notes (seconds), metric accents in [0, 1],
    written dynamics offsets (``shape``, velocity units), bar starts (the last entry: the
    end) and the pedal plan (deadpan ``(start, end)`` harmonies the pedal holds)."""

    def __init__(self, p, on, off, acc, bars, pedal, shape=None):
        self.p = np.asarray(p, dtype=np.int64)
        self.on = np.asarray(on, dtype=np.float64)
        self.off = np.asarray(off, dtype=np.float64)
        self.acc = np.clip(np.asarray(acc, dtype=np.float64), 0.0, 1.0)
        self.shape = np.zeros(len(self.p)) if shape is None else np.asarray(shape, dtype=np.float64)
        self.bars = np.asarray(bars, dtype=np.float64)
        self.pedal = np.asarray(pedal, dtype=np.float64).reshape(-1, 2)


def _playable(p, on, off, *rest):
    """One key plays one note at a time: a note struck while the same key still sounds cuts the
    earlier one just before it; a second note struck at the same moment is dropped."""
    order = np.lexsort((on, p))
    keep = np.ones(len(p), dtype=bool)
    off = off.copy()
    last = -1
    for j in order:
        if last >= 0 and p[last] == p[j] and on[j] < off[last]:
            if on[j] - on[last] < 0.02:
                off[last] = max(off[last], off[j])
                keep[j] = False
                continue
            off[last] = max(on[j] - 0.005, on[last] + 0.5 * (on[j] - on[last]))
        last = j
    return (p[keep], on[keep], off[keep]) + tuple(np.asarray(r)[keep] for r in rest)


def _phrases(bars: np.ndarray, end: float) -> np.ndarray:
    """Phrase boundaries (start times and the end): groups of 2 or 4 bars lasting 3..10 s."""
    starts = bars[:-1] if len(bars) > 1 else np.zeros(1)
    if len(starts) < 2:
        n = max(1, int(round(end / 6.0)))
        return np.linspace(0.0, end, n + 1)
    bar_len = float(np.median(np.diff(bars)))
    per = 4 if 4 * bar_len <= 10.0 else 2 if 2 * bar_len <= 10.0 else 1
    if per * bar_len < 3.0:
        per = max(per, int(math.ceil(3.0 / max(bar_len, 1e-3))))
    b = list(starts[::per])
    b[0] = 0.0
    if end - b[-1] < 0.4 * per * bar_len and len(b) > 1:  # a short last phrase joins the one before
        b.pop()
    return np.array(b + [max(end, b[-1] + 1e-3)])


# --------------------------------------------------------------------------- performing


def perform(draft: _Draft, rng: np.random.Generator, name: str) -> Score:
    """The deterministic performance model (see the module docstring) applied to ``draft``."""
    p, on, off, acc, shape = _playable(draft.p, draft.on, draft.off, draft.acc, draft.shape)
    n = len(p)
    if n == 0:
        raise ScoreError(f"{name}: no notes to perform")
    end = float(off.max())
    phr = _phrases(draft.bars, end)

    # ---- dynamics: level + trend + phrase arches (velocity units, as a function of deadpan time)
    level = rng.uniform(48, 84)
    trend = rng.uniform(-14, 14)
    amps = rng.uniform(8, 22, size=len(phr) - 1)
    peaks = rng.uniform(0.45, 0.75, size=len(phr) - 1)

    def dynamics(t: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(phr, t, side="right") - 1, 0, len(phr) - 2)
        x = (t - phr[k]) / np.maximum(phr[k + 1] - phr[k], 1e-6)
        arch = np.where(x < peaks[k], x / peaks[k], (1 - x) / (1 - peaks[k]))
        return level + trend * (t / max(end, 1e-6) - 0.5) + amps[k] * (arch - 0.5)

    # ---- roles: the melody is the top sounding note at its onset; the bass the lowest of a chord
    sounding = (on[None, :] <= on[:, None] + 1e-6) & (off[None, :] > on[:, None] + 1e-6)
    top = np.where(sounding, p[None, :], -1).max(axis=1)
    low = np.where(sounding, p[None, :], 999).min(axis=1)
    crowd = sounding.sum(axis=1)
    melody = (p >= top) & (crowd > 1)
    bass = (p <= low) & (crowd > 1) & ~melody
    inner = (crowd > 1) & ~melody & ~bass
    lift = rng.uniform(7, 15)
    role = np.where(melody, lift, 0.0) + np.where(bass, 1.0, 0.0) - np.where(inner, rng.uniform(4, 9), 0.0)

    groups = np.unique(np.round(on, 3), return_inverse=True)[1]
    chord_jitter = rng.normal(0, 3.0, size=groups.max() + 1)[groups]
    vel = dynamics(on) + 12.0 * (acc - 0.5) + role + shape + chord_jitter + rng.normal(0, 4.5, size=n)
    vel = np.clip(np.round(vel), *VELOCITY_RANGE).astype(np.int64)

    # ---- timing: tempo factor and phrase rubato as a time warp of the deadpan time
    tempo = rng.uniform(0.85, 1.15)
    push = rng.uniform(0.0, 0.05, size=len(phr) - 1)
    rit = rng.uniform(0.04, 0.14, size=len(phr) - 1)
    rit[-1] = rng.uniform(0.18, 0.32)
    horizon = max(end, float(draft.pedal.max(initial=0.0)), float(phr[-1])) + 1.0
    dt = 0.005
    grid = np.arange(0.0, horizon + dt, dt)
    k = np.clip(np.searchsorted(phr, grid, side="right") - 1, 0, len(phr) - 2)
    x = np.clip((grid - phr[k]) / np.maximum(phr[k + 1] - phr[k], 1e-6), 0, 1)
    slow = np.clip((x - 0.8) / 0.2, 0, 1) ** 2  # the last fifth of a phrase slows down
    speed = tempo * (1.0 + push[k] * np.sin(np.pi * x) - rit[k] * slow)
    warped = np.concatenate([[0.0], np.cumsum(dt / speed)[:-1]])

    def warp(t):
        return np.interp(t, grid, warped)

    delay = np.where(melody | (crowd <= 1), 0.0, np.abs(rng.normal(0.012, 0.006, size=n)))  # melody lead
    w_on = warp(on) + delay + rng.normal(0, 0.006, size=n)
    w_on = np.maximum(w_on, 0.0)
    legato = rng.uniform(0.85, 1.0)
    w_dur = (warp(off) - warp(on)) * legato + rng.normal(0, 0.01, size=n)
    w_off = w_on + np.maximum(w_dur, 0.03)

    # ---- pedal: down just after each harmony begins, up as the next one is struck
    ped = []
    plan = draft.pedal[np.argsort(draft.pedal[:, 0])] if len(draft.pedal) else draft.pedal
    downs = warp(plan[:, 0]) + rng.uniform(0.04, 0.12, size=len(plan))
    ups = warp(plan[:, 1]) + rng.uniform(-0.01, 0.03, size=len(plan))
    for i in range(len(plan)):
        up = ups[i] if i + 1 == len(plan) else min(ups[i], downs[i + 1] - 0.02)
        if up - downs[i] >= 0.05:
            ped.append((downs[i], up))
    p, w_on, w_off, vel = _playable(p, w_on, w_off, vel)
    score = Score(p, w_on, w_off, vel, name=name, pedal=ped)

    # ---- cap the length at a barline (or at MAX_PIECE_SECONDS)
    if score.duration > MAX_PIECE_SECONDS:
        w_bars = warp(draft.bars)
        ok = w_bars[(w_bars <= MAX_PIECE_SECONDS) & (w_bars >= MAX_PIECE_SECONDS / 2)]
        cut = float(ok.max()) if len(ok) else MAX_PIECE_SECONDS
        keep = score.onsets < cut - 0.02
        ped = score.pedal[score.pedal[:, 0] < cut]
        ped = np.stack([ped[:, 0], np.minimum(ped[:, 1], cut + 0.3)], axis=1)
        score = Score(score.pitches[keep], score.onsets[keep], np.minimum(score.offsets[keep], cut + 0.3),
                      score.velocities[keep], name=name, pedal=ped)
    return score


# --------------------------------------------------------------------------- harmony helpers


def _triad(key_pc: int, minor: bool, degree: int, seventh: bool = False) -> tuple[int, list[int]]:
    """(root pitch class, chord pitch classes) of a diatonic chord on ``degree`` (0 = tonic);
    minor keys use the harmonic minor (a major V), but the natural minor's III (not III+)."""
    scale = (_NATURAL_MINOR if degree % 7 == 2 else _HARMONIC_MINOR) if minor else _MAJOR
    steps = (0, 2, 4, 6) if seventh else (0, 2, 4)
    pcs = [(key_pc + scale[(degree + s) % 7]) % 12 for s in steps]
    return pcs[0], pcs


def _near(pc: int, target: float) -> int:
    """The pitch of pitch class ``pc`` nearest ``target``."""
    base = int(round(target)) - ((int(round(target)) - pc) % 12)
    return base if target - base <= 6 else base + 12


def _voice(pcs: list[int], prev: list[int] | None, centre: float) -> list[int]:
    """A close-position voicing of ``pcs`` around ``centre``, moving least from ``prev``."""
    best, cost = None, math.inf
    for inv in range(len(pcs)):
        order = pcs[inv:] + pcs[:inv]
        for base in (centre - 7, centre - 2, centre + 3):
            v = [_near(order[0], base)]
            for pc in order[1:]:
                nxt = v[-1] + ((pc - v[-1]) % 12 or 12)
                v.append(nxt)
            c = sum(abs(a - b) for a, b in zip(v, prev)) if prev and len(prev) == len(v) else abs(np.mean(v) - centre)
            if c < cost:
                best, cost = v, c
    return best


def _estimate_key(p: np.ndarray, on: np.ndarray, dur: np.ndarray) -> tuple[int, bool]:
    """(tonic pitch class, minor) by Krumhansl-Kessler correlation of the duration-weighted
    pitch-class histogram; near-ties favour the tune's last note as tonic."""
    hist = np.bincount(p % 12, weights=dur, minlength=12)
    best, arg = -math.inf, (0, False)
    last = int(p[np.argmax(on)] % 12)
    for minor, prof in ((False, _KK_MAJOR), (True, _KK_MINOR)):
        for t in range(12):
            r = float(np.corrcoef(hist, np.roll(prof, t))[0, 1]) + (0.05 if t == last else 0.0)
            if r > best:
                best, arg = r, (t, minor)
    return arg


def _accompany(chords, bars, beats, pulses, style: str, rng, register: int):
    """Left-hand notes (pitch, onset, offset, accent) of ``style`` under ``chords``:
    ``(start, end, root_pc, pcs)`` in seconds; ``bars``: bar starts and the end; ``beats``
    beats a bar, ``pulses`` pulses a beat. ``register``: the bass's lowest pitch (~36..43)."""
    out = []
    for start, stop, root, pcs in chords:
        if stop - start < 1e-3:
            continue
        bass = register + (root - register) % 12
        close = _voice(list(pcs), None, bass + 12 + 4)
        close = [x for x in close if x > bass] or [bass + 12]
        fifth = bass + 7 if (root + 7) % 12 in pcs else close[-1]
        i = np.searchsorted(bars, start + 1e-6, side="right") - 1
        bar0 = bars[max(i, 0)]
        bar_len = (bars[min(i + 1, len(bars) - 1)] - bar0) if len(bars) > 1 else stop - start
        beat = (bar_len / beats) if bar_len > 0 else 0.5
        pulse = beat / pulses
        if style == "block":
            ts = np.arange(start, stop - 1e-6, beat * (2 if beats % 2 == 0 else beats))
            for t in ts:
                d = min(stop, t + beat * 2) - t
                for x in [bass] + close[:2]:
                    out.append((x, t, t + 0.95 * d, 1.0 if abs(t - bar0) < 1e-6 else 0.5))
            continue
        ts = np.arange(start, stop - 1e-6, pulse)
        for j, t in enumerate(ts):
            pos = (t - bar0) / beat  # beats into the bar
            acc = 1.0 if abs(pos) < 1e-6 else 0.5 if abs(pos - round(pos)) < 1e-6 else 0.25
            d = min(stop, t + pulse) - t
            if style == "alberti":
                x = (bass, close[-1], close[0] if len(close) > 1 else bass + 12, close[-1])[j % 4]
                out.append((x, t, t + 0.95 * d, acc))
            elif style == "broken":
                seq = [bass, fifth, bass + 12] + [c + 12 for c in close if c + 12 > bass + 12][:1]
                out.append((seq[j % len(seq)], t, t + 0.95 * d, acc))
            elif style == "arpeggio":
                seq = [bass, fifth] + [c for c in close if c > fifth] + [bass + 12]
                seq = seq + seq[-2:0:-1]
                out.append((seq[j % len(seq)], t, t + 0.95 * d, acc))
            elif style == "stride":
                if abs(pos - round(pos)) > 1e-6:
                    continue  # on the beats only
                b = int(round(pos)) % beats
                bd = min(stop, t + beat) - t
                if b == 0 or (beats == 4 and b == 2):  # the bass: the root, then the fifth
                    out.append((bass if b == 0 else fifth - 12 if fifth - 12 >= bass else fifth, t, t + 0.9 * bd, acc))
                else:
                    for x in close[:3]:
                        out.append((x, t, t + 0.6 * bd, acc))
    return out


# --------------------------------------------------------------------------- classical works


def _music21_path(rel: str) -> Path:
    return _corpus._music21_root() / rel


def _file_text(path: Path) -> str:
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            root = None
            if "META-INF/container.xml" in names:
                m = re.search(r'full-path="([^"]+)"', z.read("META-INF/container.xml").decode("utf-8", "replace"))
                root = m.group(1) if m else None
            if root is None:
                root = next(nm for nm in names if nm.endswith((".xml", ".musicxml")) and not nm.startswith("META-INF"))
            return z.read(root).decode("utf-8", "replace")
    return path.read_text(encoding="utf-8", errors="replace")


def _scan_quarters(path: Path) -> float:
    """A work's length in quarter notes, estimated from its file without parsing it: the first
    part's measure count times the first time signature's quarters a bar."""
    text = _file_text(path)
    if path.suffix == ".krn":
        lines = text.splitlines()
        n = sum(1 for ln in lines if ln.startswith("=") and not ln.startswith("=="))
        m = re.search(r"\*M(\d+)/(\d+)", text)
        q = int(m.group(1)) * 4 / int(m.group(2)) if m else 4.0
        return max(n, 1) * q
    i = text.find("<part ", max(text.find("</part-list>"), 0))
    j = text.find("</part>", i)
    part = text[i:j] if i >= 0 else text
    n = len(re.findall(r"<measure[\s>]", part))
    m = re.search(r"<beats>\s*([\d+]+)\s*</beats>\s*<beat-type>\s*(\d+)", part)
    q = sum(int(x) for x in m.group(1).split("+")) * 4 / int(m.group(2)) if m else 4.0
    return max(n, 1) * q


@functools.lru_cache(maxsize=None)
def _classical_listing() -> tuple[str, ...]:
    """Piece ids ``piano-classical/<music21 path>#<k>/<K>`` (excerpt k of K)."""
    ids = []
    for rel in CLASSICAL_WORKS:
        path = _music21_path(rel)
        if not path.is_file():  # a music21 without this work: the corpus simply lacks it
            continue
        try:
            k = max(1, int(round(_scan_quarters(path) / EXCERPT_QUARTERS)))
        except (OSError, ValueError, StopIteration, zipfile.BadZipFile):
            k = 1
        ids += [f"{_CLASSICAL_PREFIX}{rel}#{i}/{k}" for i in range(k)]
    ids += [f"{_CLASSICAL_PREFIX}{rel}#0/2" for rel in _corpus._list_bach()]  # chorales: the opening half
    return tuple(ids)


def _is_piano(part) -> bool:
    from music21 import instrument

    inst = part.getInstrument(returnDefault=False)
    names = " ".join(str(x or "") for x in (part.partName, getattr(inst, "instrumentName", None))).lower()
    return isinstance(inst, instrument.Piano) or "piano" in names


def _quarters_to_seconds(stream):
    """A function mapping quarter-note offsets of ``stream`` to seconds by its tempo marks
    (quarter = 120 without one), as music21's ``secondsMap`` does."""
    knots_q, knots_s, spq = [0.0], [0.0], []
    bounds = []
    try:
        bounds = stream.flatten().metronomeMarkBoundaries()
    except Exception:  # a stream music21 cannot time: quarter = 120
        pass
    for a, b, mm in bounds:
        if b <= a:
            continue
        try:
            s = float(mm.secondsPerQuarter())
        except Exception:
            s = 0.5
        s = s if math.isfinite(s) and 0.2 <= s <= 3.0 else 0.5  # 20..300 quarters a minute
        if a > knots_q[-1]:  # a gap: the previous tempo
            knots_s.append(knots_s[-1] + (a - knots_q[-1]) * (spq[-1] if spq else 0.5))
            knots_q.append(a)
            spq.append(spq[-1] if spq else 0.5)
        knots_s.append(knots_s[-1] + (b - max(a, knots_q[-1])) * s)
        knots_q.append(b)
        spq.append(s)
    last = spq[-1] if spq else 0.5
    kq, ks = np.array(knots_q), np.array(knots_s)

    def to_seconds(q):
        q = np.asarray(q, dtype=np.float64)
        return np.where(q <= kq[-1], np.interp(q, kq, ks), ks[-1] + (q - kq[-1]) * last)

    return to_seconds


def _harmony_plan(p, on, beat_times: np.ndarray, bar_beats: set[int], end: float) -> np.ndarray:
    """Deadpan pedal plan of a classical work: a new harmony where the bass steps (or leaps
    below the harmony's bass) to another pitch class, where a beat brings two pitch classes
    foreign to the harmony's (the lower voices' pitch classes of its first beats, at most
    four), or one at a barline; a harmony held over two bars is re-pedalled at the next
    barline with notes. Harmonies last at least 0.25 s."""
    changes = [float(beat_times[0]) if len(beat_times) else 0.0]
    cur_pcs: set[int] | None = None
    cur_bass, bars_held = 0, 0
    for i, t in enumerate(beat_times):
        t2 = beat_times[i + 1] if i + 1 < len(beat_times) else end
        inb = (on >= t - 1e-6) & (on < t2 - 1e-6)
        at_bar = i in bar_beats
        bars_held += at_bar
        if not inb.any():
            continue
        low = inb & (p < 64)
        pcs = set((p[low if low.any() else inb] % 12).tolist())
        bass = int(p[inb].min())
        if cur_pcs is None:
            cur_pcs, cur_bass, bars_held = pcs, bass, 0
            continue
        new = len(pcs - cur_pcs)
        moved = bass % 12 != cur_bass % 12 and bass <= cur_bass + 2
        if (moved or new >= 2 or (at_bar and (new >= 1 or bars_held > 2))) and t - changes[-1] >= 0.25:
            changes.append(float(t))
            cur_pcs, cur_bass, bars_held = pcs, bass, int(at_bar)
        else:
            if len(cur_pcs) < 4:
                cur_pcs |= pcs
            cur_bass = min(cur_bass, bass)
    changes.append(end + 0.3)
    return np.array([(a, b) for a, b in zip(changes[:-1], changes[1:]) if b > a]).reshape(-1, 2)


def _timed_notes(part):
    """(element, offset in quarters, beat strength) of the notes and chords of ``part``.

    The beat strength is music21's ``beatStrength`` (the time signature's accent weight at
    the note's place in its measure), computed once per (meter, place) rather than per note."""
    from music21 import stream as m21stream

    measures = list(part.getElementsByClass(m21stream.Measure))
    if not measures:  # no measures: music21's own (slower) path
        for el in part.recurse().notes:
            try:
                bs = float(el.beatStrength)
            except Exception:
                bs = 0.5
            yield el, float(el.getOffsetInHierarchy(part)), bs
        return
    memo: dict[tuple, float] = {}
    ts = None
    for m in measures:
        ts = m.timeSignature or ts or m.getContextByClass("TimeSignature")
        m_off, pad = float(m.offset), float(m.paddingLeft or 0.0)
        for cont, base in [(m, 0.0)] + [(v, float(v.offset)) for v in m.voices]:
            for el in cont.notes:
                pos = base + float(el.offset)
                key = (None if ts is None else ts.ratioString, round(pos + pad, 6))
                if key not in memo:
                    try:
                        memo[key] = float(ts.getAccentWeight(pos + pad, forcePositionMatch=True,
                                                             permitMeterModulus=False))
                    except Exception:  # no meter, or a place it does not know
                        memo[key] = 0.5
                bs = memo[key]
                yield el, m_off + pos, bs if 0.0 <= bs <= 1.0 else 0.5


def _convert_work(rel: str) -> dict[str, np.ndarray]:
    """Parse a music21 work into deadpan arrays: notes (accent-coded velocities 60..100),
    ``bars`` ((n + 1, 2): each barline's seconds and quarters, then the end) and the pedal
    plan. Lead-sheet chord symbols are realized as a left hand here."""
    from music21 import converter, harmony
    from music21 import note as m21note
    from music21 import stream as m21stream

    path = _music21_path(rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = converter.parse(str(path), forceSource=True)
        if type(s).__name__ == "Opus":
            s = s.scores[0]
        to_sec = _quarters_to_seconds(s)
        parts = list(s.parts) or [s]
        chosen = [pt for pt in parts if _is_piano(pt)] or parts
        ps, ons, offs, acc = [], [], [], []
        for part in chosen:
            part.stripTies(inPlace=True)  # our own parse: no copy needed
            for el, q0, bs in _timed_notes(part):
                ql = float(el.duration.quarterLength)
                if ql <= 0 or el.duration.isGrace or isinstance(el, harmony.Harmony):
                    continue
                pitches = [el.pitch] if isinstance(el, m21note.Note) else list(el.pitches)
                for ptc in pitches:
                    ps.append(int(round(ptc.ps)))
                    ons.append(q0)
                    offs.append(q0 + ql)
                    acc.append(bs)
        first = chosen[0]
        measures = list(first.getElementsByClass(m21stream.Measure))
        bar_q = [float(m.offset) for m in measures]
        beat_q = []
        ts = None
        for m in measures:
            ts = m.timeSignature or ts
            if ts is None:
                ts = m.getContextByClass("TimeSignature")
            bd = float(ts.beatDuration.quarterLength) if ts is not None else 1.0
            stop = float(m.offset) + float(m.duration.quarterLength)
            beat_q += list(np.arange(float(m.offset), stop - 1e-6, bd if bd > 0 else 1.0))
        end_q = max(float(s.highestTime), max(offs, default=0.0))
        chords = []
        for part in chosen:  # lead sheets: chord symbols
            for cs in part.recurse().getElementsByClass(harmony.ChordSymbol):
                if isinstance(cs, harmony.NoChord) or not cs.pitches:
                    continue
                chords.append((float(cs.getOffsetInHierarchy(part)), cs.root().pitchClass,
                               sorted({pp.pitchClass for pp in cs.pitches})))
    if not ps:
        raise ScoreError(f"{rel} holds no notes")
    p = np.array(ps, dtype=np.int64)
    on_q, off_q = np.array(ons), np.array(offs)
    acc = np.array(acc)
    if not bar_q:
        bar_q = list(np.arange(0.0, end_q, 4.0))
    bars_q = np.array(bar_q + [end_q])
    if chords:  # realize the chord symbols as a left hand under the melody
        chords.sort()
        rng = _rng("leadsheet", rel)
        style = ("alberti", "broken", "stride", "arpeggio")[int(rng.integers(0, 4))]
        spans = [(a, (chords[i + 1][0] if i + 1 < len(chords) else end_q), r, pcs)
                 for i, (a, r, pcs) in enumerate(chords)]
        beats = max(1, int(round(np.median(np.diff(bars_q)) / 1.0))) if len(bars_q) > 1 else 4
        lh = _accompany(spans, bars_q, beats, 2, style, rng, 36 + int(rng.integers(0, 6)))
        top = int(p.min())
        lh = [(x - 12 if x >= top else x, a, b, c) for x, a, b, c in lh]
        if lh:
            lp, la, lb, lc = map(np.array, zip(*lh))
            p, on_q, off_q, acc = (np.concatenate([p, lp]), np.concatenate([on_q, la]),
                                   np.concatenate([off_q, lb]), np.concatenate([acc, lc]))
    on, off = to_sec(on_q), to_sec(off_q)
    ok = off > on
    p, on, off, acc = _fold_into_range(p[ok], LOWEST_PITCH, HIGHEST_PITCH), on[ok], off[ok], acc[ok]
    beat_s = np.unique(to_sec(np.array(beat_q)) if beat_q else to_sec(bars_q[:-1]))
    bar_beats = set(np.searchsorted(beat_s, to_sec(bars_q[:-1]) - 1e-6).tolist())
    plan = _harmony_plan(p, on, beat_s, bar_beats, float(off.max()))
    return {"pitches": p, "onsets": on, "offsets": off, "velocities": np.round(60 + 40 * acc).astype(np.int64),
            "bars": np.stack([to_sec(bars_q), bars_q], axis=1), "pedal": plan}


def _work_cache_path(rel: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", rel)
    digest = hashlib.sha1(rel.encode("utf-8")).hexdigest()[:8]
    return (_corpus.cache_dir() / f"corpus-v{_corpus.CACHE_FORMAT}" / f"music21-{_corpus._music21_version()}"
            / f"piano-classical-v{CACHE_FORMAT}" / f"{safe}-{digest}.npz")


def _read_work(path: Path) -> dict[str, np.ndarray] | None:
    with zipfile.ZipFile(path) as zf:
        if bool(_corpus._read_member(zf, "bad")):
            return None
        out = {k: _corpus._read_member(zf, k) for k in ("pitches", "onsets", "offsets", "velocities", "bars", "pedal")}
    if out["bars"].shape[1:] != (2,) or out["pedal"].shape[1:] != (2,):
        raise ValueError("bars and pedal must have 2 columns")
    Score(out["pitches"], out["onsets"], out["offsets"], out["velocities"], out_of_range="reject")  # validates
    return out


@functools.lru_cache(maxsize=16)
def _work(rel: str, cache_root: str) -> dict[str, np.ndarray] | None:
    """A work's deadpan arrays via the disk cache (None: the work cannot be converted)."""
    path = _work_cache_path(rel)
    try:
        return _read_work(path)
    except FileNotFoundError:
        pass
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        warnings.warn(f"piano corpus cache entry {str(path)!r} is not valid ({type(exc).__name__}: "
                      f"{str(exc)[:200]}); converting {rel!r} again", UserWarning, stacklevel=3)
    try:
        arrays = _convert_work(rel)
    except _corpus.TRANSIENT_ERRORS:
        raise
    except Exception as e:  # music21 raises many kinds on malformed files
        _corpus._write_npz_atomic(path, bad=np.array(True), error=np.array(f"{type(e).__name__}: {e}"))
        return None
    _corpus._write_npz_atomic(path, bad=np.array(False), name=np.array(rel), **arrays)
    return arrays


def _classical_draft(piece_id: str) -> _Draft | None:
    rel, _, frac = piece_id[len(_CLASSICAL_PREFIX):].partition("#")
    k, _, n = frac.partition("/")
    k, n = int(k), int(n)
    w = _work(rel, str(_corpus.cache_dir()))
    if w is None:
        return None
    bars = w["bars"][:, 0]
    nb = len(bars) - 1
    if nb < n:
        return None
    a, b = int(round(k * nb / n)), int(round((k + 1) * nb / n))
    t0, t1 = float(bars[a]), float(bars[b])
    on, off = w["onsets"], w["offsets"]
    sel = (on >= t0 - 1e-6) & (on < t1 - 1e-6)
    if not sel.any():
        return None
    ped = w["pedal"]
    ped = ped[(ped[:, 1] > t0) & (ped[:, 0] < t1)]
    ped = np.stack([np.maximum(ped[:, 0], t0), np.minimum(ped[:, 1], t1 + 0.3)], axis=1) - t0
    return _Draft(w["pitches"][sel], on[sel] - t0, np.minimum(off[sel], t1) - t0,
                  (w["velocities"][sel] - 60) / 40.0, bars[a:b + 1] - t0, ped)


# --------------------------------------------------------------------------- generated pieces


def _generated_ids(split: str) -> list[str]:
    return [f"{_GENERATED_PREFIX}{kind}/{split}/{i}" for kind in GENERATED_KINDS
            for i in range(GENERATED_SIZES[split])]


@functools.lru_cache(maxsize=None)
def _folk_ids(split: str) -> tuple[str, ...]:
    return tuple(pid for c in ("essen", "oneills", "ryans") for pid in _corpus._all_ids(c)
                 if _corpus._split_of(pid) == split)


def _melody_bars(mel: Score) -> tuple[np.ndarray, int] | None:
    """Bar starts of a folk tune (from its accent-coded velocities: downbeats are 100) and
    its beats a bar (2 or 3); None if the meter cannot be read."""
    v = mel.velocities
    down = np.unique(np.round(mel.onsets[v == 100], 6))
    if len(down) < 3:
        return None
    d = np.diff(down)
    vals, counts = np.unique(np.round(d, 3), return_counts=True)
    period = float(vals[np.argmax(counts)])
    if not 0.5 <= period <= 4.0:
        return None
    mid = mel.onsets[v == 80]
    frac = ((mid - down[0]) / period) % 1.0
    triple = bool(np.any(np.abs(frac - 1 / 3) < 0.02) or np.any(np.abs(frac - 2 / 3) < 0.02))
    beats = 3 if triple else 2
    start = down[0] - period * math.ceil(down[0] / period - 1e-9)
    bars = np.arange(start, mel.duration + period - 1e-6, period)
    return bars, beats


def _gen_accompanied(rng, split: str, name: str) -> _Draft:
    tunes = _folk_ids(split)
    start = int(rng.integers(0, len(tunes)))
    for t in range(64):
        mel = _corpus._load_cached(tunes[(start + t) % len(tunes)])
        if mel is None or len(mel) < 8:
            continue
        got = _melody_bars(mel)
        if got is None:
            continue
        bars, beats = got
        break
    else:
        raise ScoreError(f"{name}: no folk tune of split {split!r} with a readable meter near index {start}")
    n_bars = int(rng.integers(6, 11))
    pickup = bars[0] < 0  # an anacrusis: a partial first bar, without accompaniment
    stop = float(bars[min(n_bars + int(pickup), len(bars) - 1)])
    keep = mel.onsets < stop - 1e-6
    p = mel.pitches[keep].astype(np.int64)
    on, off = mel.onsets[keep], np.minimum(mel.offsets[keep], stop)
    acc = (mel.velocities[keep] - 60) / 40.0
    bars = np.append(np.maximum(bars[bars < stop - 1e-6], 0.0), stop)
    # the melody an octave band above middle C
    p = p + 12 * int(round((74 - float(np.median(p))) / 12))
    p = p + 12 * max(0, int(math.ceil((62 - int(p.min())) / 12)))
    p = np.where(p > 100, p - 12, p)
    key, minor = _estimate_key(p, on, off - on)
    # one chord a bar: the diatonic triad covering most of the bar's melody (on-beat notes count double)
    degrees = (0, 3, 4, 5, 1) if not minor else (0, 3, 4, 5, 2)
    spans = []
    nb = len(bars) - 1
    for b in range(int(pickup), nb):
        sel = (on >= bars[b] - 1e-6) & (on < bars[b + 1] - 1e-6)
        w = (off[sel] - on[sel]) * (1 + (acc[sel] >= 0.5))
        best, arg = -math.inf, 0
        for d in degrees:
            root, pcs = _triad(key, minor, d)
            sc = float(np.sum(w[np.isin(p[sel] % 12, pcs)])) + {0: 0.3, 4: 0.15, 3: 0.1}.get(d, 0.0) * float(w.sum())
            if b == nb - 1:
                sc += 10.0 * (d == 0)
            elif b == nb - 2:
                sc += 0.5 * float(w.sum()) * (d == 4)
            if sc > best:
                best, arg = sc, d
        root, pcs = _triad(key, minor, arg, seventh=(arg == 4 and rng.random() < 0.4))
        spans.append((float(bars[b]), float(bars[b + 1]), root, pcs))
    style = ACCOMPANIMENTS[int(rng.integers(0, len(ACCOMPANIMENTS)))]
    if style == "stride" and beats == 2 and rng.random() < 0.5:
        style = "alberti"
    bar_len = float(np.median(np.diff(bars[int(pickup):])))
    beat = bar_len / beats
    pulses = min((2, 3, 4), key=lambda m: abs(beat / m - 0.25))
    lh = _accompany(spans, bars, beats, pulses, style, rng, 36 + int(rng.integers(0, 7)))
    ceiling = int(p.min()) - 1
    lh = [(x - 12 if x > ceiling else x, a, b_, c) for x, a, b_, c in lh]
    lp, la, lb, lc = map(np.array, zip(*lh))
    plan = np.array([(a, b_) for a, b_, _, _ in spans])
    plan[-1, 1] = max(plan[-1, 1], float(max(off.max(), lb.max()))) + 0.3
    return _Draft(np.concatenate([p, lp]), np.concatenate([on, la]), np.concatenate([off, lb]),
                  np.concatenate([acc, lc]), bars, plan)


def _progression(rng, n_bars: int) -> list[int]:
    seq: list[int] = []
    while len(seq) < n_bars - 2:
        seq += list(_PROGRESSIONS[int(rng.integers(0, len(_PROGRESSIONS)))])
    return seq[: n_bars - 2] + [4, 0]


def _setup(rng):
    key = int(rng.integers(0, 12))
    minor = bool(rng.random() < 0.3)
    beats = 3 if rng.random() < 0.3 else 4
    beat = float(rng.uniform(0.45, 0.7))
    return key, minor, beats, beat


def _gen_progression(rng, name: str) -> _Draft:
    key, minor, beats, beat = _setup(rng)
    n_bars = int(rng.integers(6, 11))
    bar = beats * beat
    style = ("sustained", "pulsed", "oompah")[int(rng.integers(0, 3))]
    degs = _progression(rng, n_bars)
    ps, ons, offs, acc = [], [], [], []
    prev = None
    centre = float(rng.uniform(64, 72))
    low = 31 + int(rng.integers(0, 8))
    plan = []
    for b, d in enumerate(degs):
        t0 = b * bar
        root, pcs = _triad(key, minor, d, seventh=(d in (4, 1) and rng.random() < 0.5))
        rh = _voice(pcs, prev, centre)
        prev = rh
        bass = low + (root - low) % 12
        lhs = [bass, bass + 12] if rng.random() < 0.7 else [bass]
        last = b == len(degs) - 1
        if style == "sustained" or last:
            ev = [(t0, bar, lhs + rh, 1.0)]
        elif style == "pulsed":
            ev = [(t0 + k * beat, beat, (lhs if k % 2 == 0 else []) + rh, 1.0 if k == 0 else 0.5) for k in range(beats)]
        else:
            ev = [(t0, beat, lhs, 1.0)] + [(t0 + k * beat, beat, rh, 0.5) for k in range(1, beats)]
        for t, dur, notes, a in ev:
            for x in notes:
                ps.append(x)
                ons.append(t)
                offs.append(t + 0.95 * dur)
                acc.append(a)
        plan.append((t0, t0 + bar))
    plan[-1] = (plan[-1][0], plan[-1][1] + 0.3)
    return _Draft(ps, ons, offs, acc, np.arange(n_bars + 1) * bar, plan)


def _gen_arpeggios(rng, name: str) -> _Draft:
    key, minor, _, beat = _setup(rng)
    beats = 4
    beat = float(rng.uniform(0.5, 0.8))
    pulses = 4 if beat >= 0.6 else 3
    pulse = beat / pulses
    n_bars = int(rng.integers(4, 9))
    bar = beats * beat
    degs = _progression(rng, n_bars)
    up_down = rng.random() < 0.6
    low = 33 + int(rng.integers(0, 8))
    span = int(rng.integers(28, 40))  # semitones from the bass to the top
    ps, ons, offs, acc, shape, plan = [], [], [], [], [], []
    for b, d in enumerate(degs):
        t0 = b * bar
        root, pcs = _triad(key, minor, d, seventh=(d == 4 and rng.random() < 0.5))
        bass = low + (root - low) % 12
        tones = [x for x in range(bass, bass + span + 1) if x % 12 in pcs]
        seq = tones + tones[-2:0:-1] if up_down else tones
        n = beats * pulses
        for j in range(n):
            x = seq[j % len(seq)]
            t = t0 + j * pulse
            ps.append(x)
            ons.append(t)
            offs.append(t + (bar - j * pulse if j == 0 else 0.95 * pulse))  # the bass is held
            acc.append(1.0 if j == 0 else 0.5 if j % pulses == 0 else 0.25)
            shape.append(12.0 * (x - bass) / span - 6.0)  # a crescendo to the top of each arpeggio
        plan.append((t0, t0 + bar))
    last = n_bars * bar
    root, pcs = _triad(key, minor, 0)
    bass = low + (root - low) % 12
    final = [bass, bass + 12] + _voice(pcs, None, 67)
    for x in final:
        ps.append(x)
        ons.append(last)
        offs.append(last + 2 * beat)
        acc.append(1.0)
        shape.append(0.0)
    plan.append((last, last + 2 * beat + 0.3))
    return _Draft(ps, ons, offs, acc, np.append(np.arange(n_bars + 1) * bar, last + 2 * beat), plan, shape)


def _gen_scales(rng, name: str) -> _Draft:
    key, minor, _, _ = _setup(rng)
    scale = _HARMONIC_MINOR if minor else _MAJOR
    motion = ("parallel", "contrary", "tenths")[int(rng.integers(0, 3))]
    octaves = 2
    pulse = float(rng.uniform(0.14, 0.28))
    per_beat = 4 if pulse < 0.2 else 2
    beat = pulse * per_beat
    tonic = 48 + key if key < 6 else 36 + key  # the left hand's tonic, C3..F3 or F#2..B2

    def degree(d: int) -> int:  # semitones above the tonic of scale degree d (negative: below)
        return 12 * (d // 7) + scale[d % 7]

    top = 7 * octaves
    path = list(range(top + 1)) + list(range(top - 1, -1, -1))  # degrees up and down
    n = len(path)
    ps, ons, offs, acc, shape = [], [], [], [], []
    for j, d in enumerate(path):
        t = j * pulse
        a = 1.0 if j % (per_beat * 4) == 0 else 0.5 if j % per_beat == 0 else 0.25
        cresc = 14.0 * (1 - abs(j - top) / top) - 7.0  # louder going up, softer coming down
        if motion == "parallel":
            hands = [tonic + degree(d), tonic + 12 + degree(d)]
        elif motion == "contrary":
            hands = [tonic + degree(-d), tonic + 12 + degree(d)]
        else:  # the right hand a tenth above
            hands = [tonic + degree(d), tonic + 12 + degree(d + 2)]
        for x in hands:
            ps.append(x)
            ons.append(t)
            offs.append(t + 0.9 * pulse)
            acc.append(a)
            shape.append(cresc)
    end = n * pulse
    root, pcs = _triad(key, minor, 0)
    for x in [tonic, tonic + 7] + _voice(pcs, None, tonic + 24):
        ps.append(x)
        ons.append(end)
        offs.append(end + 2 * beat)
        acc.append(1.0)
        shape.append(0.0)
    bars = np.unique(np.append(np.arange(0.0, end, 4 * beat), [end, end + 2 * beat]))
    return _Draft(ps, ons, offs, acc, bars, [(end, end + 2 * beat + 0.3)], shape)


def _generated_draft(piece_id: str) -> _Draft:
    kind, split, _ = piece_id[len(_GENERATED_PREFIX):].split("/")
    rng = _rng(piece_id, "draft")
    if kind == "accompanied":
        return _gen_accompanied(rng, split, piece_id)
    if kind == "progression":
        return _gen_progression(rng, piece_id)
    if kind == "arpeggios":
        return _gen_arpeggios(rng, piece_id)
    return _gen_scales(rng, piece_id)


# --------------------------------------------------------------------------- corpus


def _build(piece_id: str) -> Score | None:
    """Piece ``piece_id`` performed (None: a classical excerpt that cannot be made)."""
    if piece_id.startswith(_CLASSICAL_PREFIX):
        draft = _classical_draft(piece_id)
        if draft is None:
            return None
    else:
        draft = _generated_draft(piece_id)
    return perform(draft, _rng(piece_id, "performance"), piece_id)


def piece_ids(name: str, split: str) -> list[str]:
    """The ids of corpus ``name``'s ``split`` (cheap: no piece is built)."""
    _check_name(name)
    _corpus._check_split(split)
    ids: list[str] = []
    if name in ("piano", "piano-classical"):
        ids += [pid for pid in _classical_listing()
                if _corpus._split_of(pid[len(_CLASSICAL_PREFIX):].partition("#")[0]) == split]
    if name in ("piano", "piano-generated"):
        ids += _generated_ids(split)
    return ids


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or name not in NAMES:
        raise ValueError(f"unknown piano corpus {name!r}; allowed: {', '.join(NAMES)}")
    return name


def load(name: str = "piano", split: str = "train", *, keys=None, out_of_range: str = "transpose"):
    """The ``split`` of piano corpus ``name`` as a lazy :class:`lmm_env.corpus.Corpus` (use
    :func:`lmm_env.corpus.load`, which checks the arguments and lands here)."""
    return _corpus.Corpus(name, split, piece_ids(name, split), _build, keys=keys, out_of_range=out_of_range)


def _warm_chunk(ids: list[str]) -> int:
    return sum(_build(pid) is None for pid in ids)


def warm(name: str = "piano", splits: str | Sequence[str] = _corpus.SPLITS, *, workers: int | None = None,
         progress: bool = True) -> dict[str, int]:
    """Build every piece of ``name``'s ``splits`` now, so that episodes never wait for music21:
    the classical works are converted into the disk cache (a work already there is skipped),
    the generated pieces built (which converts the folk melodies of ``accompanied`` pieces),
    on ``workers`` processes (default: the cores this process may use; 1: this process).

    Returns ``{"pieces": n, "cached": classical pieces whose work was already cached,
    "converted": pieces built now, "bad": of those, pieces that could not be made}``."""
    _check_name(name)
    try:
        splits = (splits,) if isinstance(splits, str) else tuple(splits)
    except TypeError:
        raise ValueError(f"splits={splits!r} is not allowed; use a split or a sequence of {_corpus.SPLITS}") from None
    if not splits:
        raise ValueError(f"splits={splits!r} is empty; use one or more of {_corpus.SPLITS}")
    for sp in splits:
        _corpus._check_split(sp)
    check_bool("progress", progress)
    if workers is None:
        import os

        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers={workers!r} is not allowed; use an int >= 1 (or None: every core)")
    ids = [pid for sp in splits for pid in piece_ids(name, sp)]

    def work_of(pid: str) -> str:
        return pid[len(_CLASSICAL_PREFIX):].partition("#")[0]

    todo = [pid for pid in ids if not (pid.startswith(_CLASSICAL_PREFIX) and _work_cache_path(work_of(pid)).is_file())]
    groups: dict[str, list[str]] = {}  # a work's excerpts in one chunk (it is parsed once); ten generated pieces
    for pid in todo:
        head, _, tail = pid.rpartition("/")
        groups.setdefault(work_of(pid) if pid.startswith(_CLASSICAL_PREFIX) else f"{head}/{int(tail) // 10}",
                          []).append(pid)
    chunks = list(groups.values())
    from tqdm import tqdm

    bad = 0
    with tqdm(total=len(todo), desc=f"warm {name}", unit="piece", disable=not (progress and todo),
              mininterval=1.0) as bar:
        if workers == 1 or len(chunks) <= 1:
            for c in chunks:
                bad += _warm_chunk(c)
                bar.update(len(c))
        else:
            import multiprocessing
            import sys
            from concurrent.futures import ProcessPoolExecutor, as_completed

            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ProcessPoolExecutor(int(workers), mp_context=ctx) as pool:
                futs = {pool.submit(_warm_chunk, c): len(c) for c in chunks}
                for f in as_completed(futs):
                    bad += f.result()
                    bar.update(futs[f])
    return {"pieces": len(ids), "cached": len(ids) - len(todo), "converted": len(todo), "bad": bad}
