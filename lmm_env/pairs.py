"""The K-pairs protocol: how many score-audio pairs a method learned from, the same for everyone.

The seed's basic setup: scores and audio are abundant, *paired* score-audio data are scarce.
Everything in lmm_env that learns from paired data takes its pairs from here::

    from lmm_env import pairs
    train = pairs.load(16)                 # 16 (score, audio) clips from the train split
    train[0].score, train[0].audio         # a Score and float32 audio at 16 kHz

- ``K`` is one of ``ALLOWED_K`` = 0, 4, 16, 64, "all". The sets are **nested**: the 4 are
  the first 4 of the 16, which are the first 16 of the 64, which are the first 64 of "all"
  (for one ``seed``). ``load(0)`` is empty: K = 0 means "no pairs" (the analytic ear).
- Pieces come from the train split of ``folk`` and ``bach-chorales``, alternating (folk,
  Bach, folk, ...; folk alone once the chorales run out), each corpus in an order drawn
  from ``seed``. Each pair is the piece's first ``clip_seconds`` (15 s by default, exactly
  that many samples of audio, zero-padded if the piece is shorter) rendered through the named
  ``instrument`` (a world synth's name: "piano", "soundfont", ...; the path of any SoundFont
  file; or a `lmm_env.synth.Synth`; ``synth=`` is its old name and still works), so a pair costs the
  same everywhere: ``load(16, instrument="soundfont")`` are the same 16 scores as ``load(16)``,
  heard through another instrument.
- Your own recordings: ``from_files(wavs, midis)`` makes a pair of each WAV (FLAC, OGG) and
  the MIDI file of its notes (two lists matched in order, or a folder of ``name.wav`` beside
  ``name.mid``), resampled to 16 kHz; every MIDI is checked against its recording
  (`match_problem`), and room tone or a long release tail after the last note is cut
  ``PAIR_TAIL_SECONDS`` after it. ``fit_ear(from_files(...))`` is the ear of your instrument.
- Nothing here re-renders transposed or re-timed copies of a pair: a method that wants
  augmentation does it on the pair's audio, so K stays the number of pairs it saw.
- Unpaired data (corpus scores; corpus audio rendered through the SoundFont, as LM^A was
  trained) are free and are not counted.

Pairs made by hand (``Pair(score=..., audio=..., sample_rate=16000, name=...)``) must pass
`check_pair`, which the ear's ``fit_ear`` applies to every pair before it computes anything:
``audio`` a non-empty 1-D float numpy array (int16 PCM: divide by 32768), all finite, at the
ear's sample rate; it may end at most ``PAIR_TOLERANCE_SECONDS`` (0.5 s) before the score's
last note ends, and from ``PAIR_TAIL_SECONDS`` (5 s) after that end on it must be near silent
(peak at most ``PAIR_TAIL_SILENCE`` = 1e-2, -40 dB, of the pair's peak), so padding and ringing
are fine but audio of more than the score is not. Every pair `load` gives passes.

This module builds the data and nothing else: the ears that learn from it live in the ``lm``
package, which imports this module (never the reverse). There, ``fit_ear(pairs.load(16))``
is the learned ear of K = 16 pairs, and ``ear_for(K, instrument)`` (in ``lm/ear.py``) the ear an
env made with ``pairs=K`` listens with: the analytic ear for K = 0; for K > 0 ``fit_ear`` on
``load(K, instrument)``, loaded from the weights shipped for the built-in piano (K = 4, 16, 64,
seed 0) or fitted once and cached on disk. The instrument is the world's ``synth``, except in
LMMByEar-v0 with rendered targets, where it is the target's (``target_synth``).

A recording and the MIDI of its notes are a pair too (LMMByEar-v0's ``target=`` and
``reference=``): `match_problem` says whether a MIDI can be the notes of a recording. It
compares note onsets, not loudness, so reverberation, release tails and a steady noise floor
(what every real recording has) never count against a MIDI; it refuses one whose notes line up
with the recording only when shifted in time, or no better than at a random offset (another
piece, another file), one whose last note ends after the recording, and a recording with
notes well after the MIDI's last note (the MIDI of part of it). A MIDI of a similar piece in
the same rhythm can pass: the check catches the wrong file, not every wrong note.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from lmm_env._checks import check_int, check_real, check_seed, short_repr
from lmm_env.score import Score

__all__ = ["ALLOWED_K", "CORPORA", "CLIP_SECONDS", "Pair", "Pairs", "load", "from_files", "check_k", "check_pair",
           "instrument_name", "is_named_instrument", "match_problem", "train_order", "PAIR_TOLERANCE_SECONDS",
           "PAIR_TAIL_SECONDS",
           "PAIR_TAIL_SILENCE", "AUDIO_EXTENSIONS", "MIDI_EXTENSIONS"]

ALLOWED_K = (0, 4, 16, 64, "all")
CORPORA = ("folk", "bach-chorales")
CLIP_SECONDS = 15.0
PAIR_TOLERANCE_SECONDS = 0.5  # a pair's audio may end at most this long before its score's last note ends
PAIR_TAIL_SECONDS = 5.0  # audio from this long after the score's end on must be near silent ...
PAIR_TAIL_SILENCE = 1e-2  # ... its peak at most this fraction of the pair's peak (-40 dB)


def check_k(K) -> int | str:
    """``K`` if it is allowed (0, 4, 16, 64 or "all"), else a ValueError naming it."""
    if isinstance(K, str):
        if K == "all":
            return K
        if K.strip().isdigit():
            K = int(K)
    if isinstance(K, (bool, np.bool_)) or not isinstance(K, (int, np.integer)) or int(K) not in ALLOWED_K:
        raise ValueError(f"pairs K={K!r} is not allowed; use one of {list(ALLOWED_K)} (score-audio pairs from the "
                         "train split; 0 = none, the analytic ear)")
    return int(K)


@dataclasses.dataclass(frozen=True)
class Pair:
    """One score-audio pair: ``score`` (seconds) and the ``audio`` it sounds as (float32 mono).

    ``instrument``: what the audio was played on, in words (`load`'s instrument, "recording"
    for `from_files`; "" if not said); ``fit_ear`` records it."""

    score: Score
    audio: np.ndarray
    sample_rate: int
    name: str
    instrument: str = ""


_MAKE_PAIR = ("build one with lmm_env.pairs.Pair(score=Score, audio=1-D float32 numpy array, "
              "sample_rate=16000, name=str), or take them from lmm_env.pairs.load(K)")


def check_pair(pair, index: int, sample_rate: int = 16000) -> Pair:
    """``pair`` if the ear's ``fit_ear`` can learn from it (the rule is in the module docstring).

    Else a ValueError naming the pair (``index`` and name) and what is allowed."""
    if not isinstance(pair, Pair):
        raise ValueError(f"pair {index} is a {type(pair).__name__} ({short_repr(pair)}), not a Pair; {_MAKE_PAIR}")
    what = f"pair {index} ({short_repr(pair.name)})"
    if not isinstance(pair.score, Score):
        raise ValueError(f"{what}: score is a {type(pair.score).__name__}, not a lmm_env.score.Score "
                         "(build one with Score.from_notes([(pitch, onset, offset), ...]))")
    audio = pair.audio
    if not isinstance(audio, np.ndarray):
        raise ValueError(f"{what}: audio is a {type(audio).__name__}; give a 1-D float32 numpy array "
                         "(np.asarray(audio, np.float32))")
    if np.issubdtype(audio.dtype, np.integer):
        raise ValueError(f"{what}: audio is {audio.dtype}; give float audio in [-1, 1] "
                         "(int16 PCM: audio.astype(np.float32) / 32768)")
    if not np.issubdtype(audio.dtype, np.floating) or audio.ndim != 1:
        raise ValueError(f"{what}: audio is {short_repr(audio)}; give a 1-D (mono) float32 numpy array")
    if len(audio) == 0:
        raise ValueError(f"{what}: audio is empty")
    if not np.isfinite(audio).all():
        bad = int(np.flatnonzero(~np.isfinite(audio))[0])
        raise ValueError(f"{what}: audio is not finite (sample {bad} is {audio[bad]}); every sample must be finite")
    if isinstance(pair.sample_rate, (bool, np.bool_)) or pair.sample_rate != sample_rate:
        raise ValueError(f"{what}: sample_rate={short_repr(pair.sample_rate)} but the ear works at {sample_rate} Hz; "
                         "resample the audio")
    seconds, end = len(audio) / sample_rate, pair.score.duration
    if seconds < end - PAIR_TOLERANCE_SECONDS:
        raise ValueError(f"{what}: audio is {seconds:g} s long but the score's last note ends at {end:g} s; the audio "
                         f"may end at most {PAIR_TOLERANCE_SECONDS:g} s (PAIR_TOLERANCE_SECONDS) before it")
    tail = audio[int(np.ceil((end + PAIR_TAIL_SECONDS) * sample_rate)):]
    if len(tail) and np.abs(tail).max() > PAIR_TAIL_SILENCE * np.abs(audio).max():
        raise ValueError(f"{what}: audio is {seconds:g} s long and still sounds more than {PAIR_TAIL_SECONDS:g} s "
                         f"(PAIR_TAIL_SECONDS) after the score ends at {end:g} s; give the score of all of the audio "
                         "or trim the audio")
    return pair


def _check_synth(synth, sample_rate: int, what: str = "synth") -> None:
    """A ValueError now for a synth spec `lmm_env.synth.make_synth` would refuse at the first pair
    (``what``: the argument's name in the message)."""
    from lmm_env.synth import SYNTHS, Synth
    from lmm_env.synth.room import split_room

    if isinstance(synth, str) and split_room(synth)[1] is not None:  # "piano@hall": the instrument in a named room
        synth = split_room(synth)[0]
    if isinstance(synth, Synth):
        if synth.sample_rate != sample_rate:
            raise ValueError(f"{what} {synth.name!r} runs at {synth.sample_rate} Hz but sample_rate={sample_rate}; "
                             "make them agree")
        return
    name = os.fspath(synth) if isinstance(synth, (str, os.PathLike)) else None
    if name in SYNTHS:
        return
    kinds = " or ".join(_soundfont_suffixes())
    if isinstance(name, str) and name.lower().endswith(_soundfont_suffixes()):
        if not os.path.isfile(name):
            raise ValueError(f"{what}={name!r}: SoundFont file does not exist; pass the path of a {kinds} file")
        return
    raise ValueError(f"{what}={short_repr(synth)} is not allowed; use one of {sorted(SYNTHS)}, a path to a {kinds} "
                     "file, or a lmm_env.synth.Synth")


def _soundfont_suffixes() -> tuple[str, ...]:
    """The file suffixes `lmm_env.synth.make_synth` plays as SoundFonts."""
    from lmm_env import synth as synth_mod

    return tuple(getattr(synth_mod, "SOUNDFONT_SUFFIXES", (".sf2",)))


def is_named_instrument(name) -> bool:
    """Whether ``name`` (an `instrument_name`) names an instrument pairs can be rendered through again:
    a world synth's name or a SoundFont path (what ``ear_for`` caches ears by), not a synth class of yours."""
    from lmm_env.synth import SYNTHS
    from lmm_env.synth.room import split_room

    name = split_room(name)[0]  # "piano@hall" names the piano heard in the named room "hall"
    return isinstance(name, str) and (name in SYNTHS or name.lower().endswith(_soundfont_suffixes()))


def instrument_name(instrument) -> str:
    """The name pairs of ``instrument`` are known by (what ``ear_for`` caches their ear under and
    result rows record): a world synth's name ("piano", "soundfont", ...), the path of a SoundFont
    file as given, or for a `lmm_env.synth.Synth` object its instrument (a built-in synth's name;
    "soundfont" for the default SoundFont, else its file), or its class name for a synth of your
    own. Nothing is loaded."""
    if isinstance(instrument, (str, os.PathLike)):
        return os.fspath(instrument)
    from lmm_env.synth import SYNTHS, SoundFontSynth, default_soundfont
    from lmm_env.synth.room import RoomSynth, _is_named_room

    if type(instrument) is RoomSynth:  # heard in a room: "<instrument>@<room>" for a named room
        inner = instrument_name(instrument.synth)
        return f"{inner}@{instrument.room.name}" if _is_named_room(instrument.room) else type(instrument).__name__

    if type(instrument) is SoundFontSynth:
        same = os.path.abspath(instrument.path) == os.path.abspath(default_soundfont())
        return "soundfont" if same and getattr(instrument, "preset", 0) == 0 else instrument.path
    name = getattr(instrument, "name", None)
    if isinstance(name, str) and type(instrument) is SYNTHS.get(name):  # a subclass of your own is another instrument
        return name
    return type(instrument).__name__


class _Default:
    """The default of ``instrument=`` / ``synth=`` (given neither: the built-in piano)."""

    def __repr__(self) -> str:
        return "'piano'"


DEFAULT_INSTRUMENT = _Default()


def _instrument_arg(instrument, synth) -> tuple:
    """(instrument, the argument's name): ``instrument=`` or its old name ``synth=`` (not both); "piano" if neither."""
    given_i, given_s = instrument is not DEFAULT_INSTRUMENT, synth is not DEFAULT_INSTRUMENT
    if given_i and given_s:
        raise ValueError(f"instrument={short_repr(instrument)} and synth={short_repr(synth)} were both given; "
                         "synth= is the old name of instrument=: give one")
    if given_s:
        return synth, "synth"
    return (instrument if given_i else "piano"), "instrument"


def train_order(seed: int = 0) -> list[tuple[str, int]]:
    """(corpus, index in its train split) of every pair "all" holds, in the protocol's order."""
    from lmm_env import corpus

    rng = np.random.default_rng(check_seed(seed))
    orders = []
    for name in CORPORA:
        n = len(corpus.load(name, "train"))
        orders.append([(name, int(i)) for i in rng.permutation(n)])
    out = []
    for j in range(max(len(o) for o in orders)):
        for o in orders:
            if j < len(o):
                out.append(o[j])
    return out


class Pairs(Sequence):
    """K score-audio pairs, rendered lazily on first access (see the module docstring).

    Attributes: ``K``, ``instrument`` (the instrument's name, `instrument_name`; ``synth`` is
    the same), ``seed``, ``clip_seconds``, ``sample_rate``.
    """

    def __init__(self, K, instrument=DEFAULT_INSTRUMENT, seed: int = 0, clip_seconds: float = CLIP_SECONDS,
                 sample_rate: int = 16000, *, synth=DEFAULT_INSTRUMENT):
        self.K = check_k(K)
        if seed is None:
            raise ValueError("seed=None is not allowed; use an int >= 0 (the pairs are the same for everyone who uses it)")
        check_seed(seed)
        sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)  # the synths' range
        synth, what = _instrument_arg(instrument, synth)
        _check_synth(synth, sample_rate, what)  # the spec only: building a SoundFont synth is slow
        clip_seconds = check_real("clip_seconds", clip_seconds, 1.0, 600.0)  # seconds
        self.seed, self.clip_seconds, self.sample_rate = int(seed), clip_seconds, int(sample_rate)
        self.instrument = self.synth = instrument_name(synth)
        self._synth_spec = synth
        self._synth = None
        order = train_order(self.seed) if self.K != 0 else []
        if self.K != "all" and self.K > len(order):
            raise ValueError(f"pairs K={self.K} is larger than the train split ({len(order)} pieces)")
        self._order = order if self.K == "all" else order[: self.K]
        self._cache: dict[int, Pair] = {}

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"pair index {short_repr(i)} is not allowed; use an int (or a slice)")
        if not -n <= i < n:
            raise IndexError(f"pair index {i!r} out of range for {n} pairs")
        i = int(i) % n
        if i not in self._cache:
            self._cache[i] = self._render(i)
        return self._cache[i]

    def _render(self, i: int) -> Pair:
        from lmm_env import corpus
        from lmm_env.synth import make_synth

        if self._synth is None:
            self._synth = make_synth(self._synth_spec, self.sample_rate)
        name, idx = self._order[i]
        piece = corpus.load(name, "train")[idx]
        clip = piece.trim(0.0, self.clip_seconds) if piece.duration > self.clip_seconds else piece
        n = int(round(self.clip_seconds * self.sample_rate))
        audio = np.asarray(self._synth.render(clip, tail=0.5), np.float32)[:n]
        audio = np.pad(audio, (0, n - len(audio)))
        return Pair(score=clip, audio=audio, sample_rate=self.sample_rate, name=f"{name}:{piece.name}",
                    instrument=self.instrument)

    def __repr__(self) -> str:
        return (f"Pairs(K={self.K!r}, instrument={self.instrument!r}, seed={self.seed}, "
                f"clip_seconds={self.clip_seconds:g})")


def load(K, instrument=DEFAULT_INSTRUMENT, seed: int = 0, clip_seconds: float = CLIP_SECONDS, sample_rate: int = 16000,
         *, synth=DEFAULT_INSTRUMENT) -> Pairs:
    """K score-audio pairs from the train split (nested over K, deterministic in ``seed``).

    ``instrument``: what the K scores are rendered through: "piano" (the default), any other
    world synth's name ("soundfont", ...), the path of a SoundFont file, or a `lmm_env.synth.Synth`.
    ``synth=`` is its old name (giving both is refused). Checked now; nothing is rendered until
    a pair is read."""
    return Pairs(K, instrument, seed=seed, clip_seconds=clip_seconds, sample_rate=sample_rate, synth=synth)


def _paths(arg, what: str) -> list[str]:
    """``arg`` as a list of path strings (a list or tuple of str / os.PathLike), else a ValueError naming it."""
    if isinstance(arg, (str, bytes, os.PathLike)) or not isinstance(arg, (list, tuple)):
        raise ValueError(f"{what}={short_repr(arg)} is not allowed; give a list of file paths (or, for wavs, a folder)")
    if not arg:
        raise ValueError(f"{what}=[] is empty; give at least one file")
    for i, a in enumerate(arg):
        if not isinstance(a, (str, os.PathLike)) or isinstance(os.fspath(a), bytes):
            raise ValueError(f"{what}[{i}]={short_repr(a)} is not a file path (str or os.PathLike)")
    return [os.fspath(a) for a in arg]


def _folder_files(wavs, midis) -> tuple[list[str], list[str]]:
    """The audio files of folder ``wavs`` (sorted) and the MIDI file of the same name of each, in folder
    ``midis`` (default: the same folder)."""
    folder = os.fspath(wavs)
    mfolder = folder if midis is None else midis
    if not isinstance(mfolder, (str, os.PathLike)) or not os.path.isdir(mfolder):
        raise ValueError(f"wavs={folder!r} is a folder, so midis= must be a folder too (or None: the same folder); "
                         f"got midis={short_repr(midis)}")
    mfolder = os.fspath(mfolder)
    audio = sorted(f for f in os.listdir(folder) if f.lower().endswith(AUDIO_EXTENSIONS)
                   and os.path.isfile(os.path.join(folder, f)))
    if not audio:
        raise ValueError(f"wavs={folder!r} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    by_stem = {}
    for f in os.listdir(mfolder):
        stem, ext = os.path.splitext(f)
        if ext.lower() in MIDI_EXTENSIONS:
            by_stem.setdefault(stem, os.path.join(mfolder, f))
    missing = [f for f in audio if os.path.splitext(f)[0] not in by_stem]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(audio)} recordings in {folder!r} have no MIDI file of the same "
                         f"name in {mfolder!r} (e.g. {missing[0]!r} needs "
                         f"{os.path.splitext(missing[0])[0] + '.mid'!r}); "
                         "every recording needs the MIDI of its notes")
    return ([os.path.join(folder, f) for f in audio], [by_stem[os.path.splitext(f)[0]] for f in audio])


def from_files(wavs, midis=None, *, instrument: str = "recording", sample_rate: int = 16000) -> list[Pair]:
    """Score-audio pairs from your own recordings: each WAV (FLAC, OGG) with the MIDI file of its notes.

    ``wavs`` and ``midis``: two lists of paths of the same length, matched in order; or ``wavs``
    a folder and ``midis`` None (the same folder) or another folder: each ``name.wav`` with
    ``name.mid`` (``.midi``). Each recording is read as `lmm_env.audio.load_audio` reads a
    target (mixed to mono, resampled to ``sample_rate``, 16 kHz, the ears' rate: one warning says
    how many were), each MIDI with `lmm_env.score.Score.from_midi` (all non-drum tracks). Then
    every pair is checked: its notes must lie on the 88 keys (MIDI 21..108; others are refused,
    not folded) and match the
    recording (`match_problem`: by note onsets, so reverberation and room tone are fine); room
    tone or a release tail more than ``PAIR_TAIL_SECONDS`` (5 s) after the last note is cut, so
    every pair passes `check_pair`. ``instrument`` says what was recorded (``Pair.instrument``,
    recorded by ``fit_ear``). A ValueError names the file (and its index) of any problem: a
    missing file, not audio or not MIDI, a MIDI with no notes, unequal lists, a MIDI that does
    not match its recording.

    ``lmm_env.lm.fit_ear(from_files(...))`` is the ear of your instrument; hand it to a task or
    an agent with ``ear=``."""
    import warnings

    from lmm_env.audio import load_audio
    from lmm_env.score import ScoreError

    if not isinstance(instrument, str) or not instrument.strip():
        raise ValueError(f"instrument={short_repr(instrument)} is not allowed; give a name (str) for what was recorded")
    sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)
    if isinstance(wavs, (str, os.PathLike)) and os.path.isdir(wavs):
        wav_paths, midi_paths = _folder_files(wavs, midis)
        wname = [f"{p!r}" for p in wav_paths]
        mname = [f"{p!r}" for p in midi_paths]
    else:
        if isinstance(wavs, (str, os.PathLike)) and not os.path.exists(wavs):
            raise ValueError(f"wavs={os.fspath(wavs)!r} does not exist; give a list of recordings or a folder of them")
        wav_paths = _paths(wavs, "wavs")
        if midis is None:
            raise ValueError("midis= is missing: give the MIDI file of each recording (a list as long as wavs, in the "
                             "same order), or pass a folder as wavs with name.mid beside each name.wav")
        midi_paths = _paths(midis, "midis")
        if len(midi_paths) != len(wav_paths):
            raise ValueError(f"{len(wav_paths)} recordings (wavs) but {len(midi_paths)} MIDI files (midis); give one "
                             "MIDI per recording, in the same order")
        wname = [f"wavs[{i}] {p!r}" for i, p in enumerate(wav_paths)]
        mname = [f"midis[{i}] {p!r}" for i, p in enumerate(midi_paths)]
    out, resampled = [], 0
    for i, (wav, mid) in enumerate(zip(wav_paths, midi_paths)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            audio, seconds = load_audio(wav, sample_rate, "recording", return_seconds=True)
        resampled += any("resampled" in str(w.message) for w in caught)
        for w in caught:
            if "resampled" not in str(w.message):
                warnings.warn(w.message, w.category, stacklevel=2)
        if not os.path.isfile(mid):
            raise ValueError(f"{mname[i]} does not exist (the MIDI of {wname[i]})")
        try:  # a note off the 88 keys is refused, not folded onto them: the ear would learn a wrong pitch
            score = Score.from_midi(mid, out_of_range="reject")
        except (ScoreError, ValueError) as exc:
            hint = (" (the ears hear the 88 piano keys, MIDI 21..108: transpose or drop it)"
                    if "outside" in str(exc) else "")
            raise ValueError(f"{mname[i]}: {exc}{hint}") from None
        problem = match_problem(audio, score, sample_rate, seconds=seconds)
        if problem is not None:
            raise ValueError(f"{mname[i]} does not match its recording {wname[i]}: {problem}")
        keep = int(np.ceil((score.duration + PAIR_TAIL_SECONDS) * sample_rate))
        audio = np.ascontiguousarray(audio[:keep], dtype=np.float32)  # room tone past the tail: cut
        name = os.path.splitext(os.path.basename(wav))[0]
        out.append(check_pair(Pair(score=score, audio=audio, sample_rate=sample_rate, name=name,
                                   instrument=instrument), i, sample_rate))
    if resampled:
        warnings.warn(f"{resampled} of the {len(out)} recordings were resampled to {sample_rate} Hz", UserWarning,
                      stacklevel=2)
    return out


# --------------------------------------------------------------------------- recordings and their MIDI

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
MIDI_EXTENSIONS = (".mid", ".midi")
MATCH_HOP_SECONDS = 0.02  # onset analysis: one frame per 20 ms ...
MATCH_WINDOW_SECONDS = 0.128  # ... of a 128 ms window
MATCH_TOLERANCE_SECONDS = 0.1  # a MIDI whose notes line up within this of the recording's onsets is on time
MATCH_MIN_ONSETS = 4  # fewer onsets than this in the MIDI: too few to judge the alignment (lengths still are)
MATCH_SHIFT_RATIO = 1.25  # refused: another offset lines the notes up this much better than their own times
MATCH_CHANCE_RATIO = 2.0  # refused: the notes line up no better than this many times a random offset's
MATCH_CLEAR_RATIO = 1.2  # refused: the notes line up less than this much better than at the best other offset ...
MATCH_CLEAR_FIT = 0.12  # ... and their match (a cosine) is low: a loop that repeats exactly still passes
MATCH_MAX_LAG_SECONDS = 10.0  # offsets tried, each way
MATCH_AFTER_SECONDS = 1.0  # notes this long after the MIDI's last note ends mean the MIDI is of less
MATCH_AFTER_SHARE = 0.6  # an onset this share as strong as the MIDI's typical note counts as a note (a cough: < 0.5)
_HARMONICS = ((1, 1.0), (2, 0.7), (3, 0.5), (4, 0.4), (5, 0.3), (6, 0.3))  # partials a note's onset lifts
_LOW_BAND, _HIGH_BAND = 36, 117  # semitone bands analysed (MIDI numbers; lower notes count by their partials)


def _band_map(sample_rate: int, n_fft: int):
    """(FFT bins used, their semitone band, number of bands, the first band's MIDI number)."""
    f = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    high = min(_HIGH_BAND, int(np.floor(69 + 12 * np.log2(0.45 * sample_rate / 440.0))))
    midi = np.full(len(f), -1.0)
    midi[1:] = np.round(69 + 12 * np.log2(f[1:] / 440.0))
    keep = np.flatnonzero((midi >= _LOW_BAND) & (midi <= high))
    return keep, (midi[keep] - _LOW_BAND).astype(np.int64), high - _LOW_BAND + 1, _LOW_BAND


def _onset_map(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(onsets, loud): (T, bands) pitched onset strength of ``audio``, one frame per `MATCH_HOP_SECONDS`,
    and where a band is loud (within 40 dB of the loudest band) just after.

    The power in each semitone band, on a log scale floored at -60 dB of the loudest band and
    at the band's own noise floor (its 20th percentile over time), rises at a note's onset and
    stays up: the rise of the quietest of this frame and the next two over the loudest of the
    three before is kept. A decay (reverberation, a release tail) never rises, and a steady
    noise floor sits under the floor or flickers (it does not stay up). A rise shared by every
    band (a click, a cough, a broadband noise burst) is removed by subtracting each frame's
    median rise."""
    hop = max(1, int(round(sample_rate * MATCH_HOP_SECONDS)))
    n_fft = 1 << int(np.ceil(np.log2(MATCH_WINDOW_SECONDS * sample_rate)))
    bins, band, n_bands, _ = _band_map(sample_rate, n_fft)
    to_bands = np.zeros((len(bins), n_bands), np.float32)
    to_bands[np.arange(len(bins)), band] = 1.0
    x = np.asarray(audio, np.float32)
    T = 1 + (len(x) - 1) // hop
    padded = np.concatenate([np.zeros(n_fft // 2, np.float32), x, np.zeros(n_fft, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:T]
    win = np.hanning(n_fft).astype(np.float32)
    power = np.empty((T, n_bands), np.float32)
    for s in range(0, T, 2048):  # bounded memory for long recordings
        spec = np.fft.rfft(frames[s: s + 2048] * win, axis=1)[:, bins]
        power[s: s + 2048] = (spec.real ** 2 + spec.imag ** 2).astype(np.float32) @ to_bands
    top = float(power.max())
    floor = np.float32(1e-6 * top) + np.percentile(power, 20, axis=0, keepdims=True) + np.float32(1e-20)
    level = np.log(power + floor)
    before = np.full_like(level, np.inf)  # the loudest of the 3 frames before
    before[1:] = level[:-1]
    for d in (2, 3):
        before[d:] = np.maximum(before[d:], level[:-d])
    stays = level.copy()  # the quietest of this frame and the 2 after
    for d in (1, 2):
        stays[:-d] = np.minimum(stays[:-d], level[d:])
    rise = np.maximum(stays - before, 0.0)
    rise = np.maximum(rise - np.median(rise, axis=1, keepdims=True), 0.0)
    return rise, stays >= np.log(np.float32(1e-4 * top) + floor)


def _note_map(score: Score, T: int, n_bands: int) -> np.ndarray:
    """(T, bands) the onsets ``score`` says there are: each note at its onset frame, in its partials' bands."""
    out = np.zeros((T, n_bands), np.float32)
    t = np.round(score.onsets / MATCH_HOP_SECONDS).astype(np.int64)
    for h, w in _HARMONICS:
        b = score.pitches.astype(np.int64) + int(round(12 * np.log2(h))) - _LOW_BAND
        ok = (t >= 0) & (t < T) & (b >= 0) & (b < n_bands)
        np.add.at(out, (t[ok], b[ok]), np.float32(w))
    return out


def _pitched_strength(onsets: np.ndarray, n_bands: int) -> np.ndarray:
    """(T,) the strongest pitched onset of each frame: over the 88 keys, the rise in a key's partials'
    bands less the rise a tritone above each (a note lifts its partials; a click, a cough or a noise
    burst lifts every band alike, which cancels)."""
    keys = np.arange(21, 109)
    comb = np.zeros((len(onsets), len(keys)), np.float32)
    for h, w in _HARMONICS:
        for off, sign in ((int(round(12 * np.log2(h))), 1.0), (int(round(12 * np.log2(h))) + 6, -1.0)):
            b = keys + off - _LOW_BAND
            ok = (b >= 0) & (b < n_bands)
            comb[:, ok] += np.float32(sign * w) * onsets[:, b[ok]]
    return comb.max(axis=1)


def match_problem(audio, score: Score, sample_rate: int = 16000, seconds: float | None = None) -> str | None:
    """Why ``score`` cannot be the notes of the recording ``audio``, in words; None if it can.

    ``audio``: 1-D float samples at ``sample_rate`` (the part of the recording that was read);
    ``seconds``: the whole recording's length (default: ``audio``'s). The reasons, in order:

    - the score's last note ends more than ``PAIR_TOLERANCE_SECONDS`` (0.5 s) after the
      recording does;
    - (with at least ``MATCH_MIN_ONSETS`` note onsets in the part read) its notes line up with
      the recording's note onsets (a cosine between where its notes' partials are and where
      the recording's pitched onsets are, over offsets up to ``MATCH_MAX_LAG_SECONDS`` each way;
      onsets within ``MATCH_TOLERANCE_SECONDS`` count as on time, so latency and a loose
      performance pass) ``MATCH_SHIFT_RATIO`` times as well at another offset as at their own
      times (a shifted file, another take); or hardly better at their own times than at the
      best other offset (``MATCH_CLEAR_RATIO``) while matching poorly (below
      ``MATCH_CLEAR_FIT``; a piece that repeats itself exactly matches well), or no better than
      ``MATCH_CHANCE_RATIO`` times a typical offset of a second or more (another piece);
    - the recording has two or more note onsets (pitched rises as strong as
      ``MATCH_AFTER_SHARE`` of the score's typical note) more than ``MATCH_AFTER_SECONDS``
      after the score's last note ends: the score is of part of it.

    Onsets are rises of the power in semitone bands (`_onset_map`), so reverberation, a release
    tail and a steady noise floor, which only decay or stay, never count against a score.
    """
    if not isinstance(score, Score):
        raise ValueError(f"score={short_repr(score)} is not a lmm_env.score.Score (read a MIDI file with "
                         "Score.from_midi(path))")
    sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)
    x = np.asarray(audio, np.float32).reshape(-1)
    seconds = len(x) / sample_rate if seconds is None else float(seconds)
    end = score.duration
    if end > seconds + PAIR_TOLERANCE_SECONDS:
        return (f"its last note ends at {end:.2f} s, but the audio lasts {seconds:.2f} s; the notes may end at most "
                f"{PAIR_TOLERANCE_SECONDS:g} s after the recording")
    if len(x) < 2 * int(MATCH_WINDOW_SECONDS * sample_rate) or not np.any(x):
        return None  # too short to find onsets in
    onsets, loud = _onset_map(x, sample_rate)
    T, n_bands = onsets.shape
    fr = 1.0 / MATCH_HOP_SECONDS
    notes = _note_map(score, T, n_bands)
    on_time = np.unique(np.round(score.onsets[score.onsets * fr < T] * fr))
    if len(on_time) >= MATCH_MIN_ONSETS and notes.any() and onsets.any():
        # how well the notes shifted by each lag line up with the onsets (cosine, onsets widened by a frame)
        wide = onsets.copy()
        wide[1:] = np.maximum(wide[1:], onsets[:-1])
        wide[:-1] = np.maximum(wide[:-1], onsets[1:])
        n = 1 << int(np.ceil(np.log2(2 * T)))
        corr = np.fft.irfft((np.fft.rfft(wide, n, axis=0) * np.conj(np.fft.rfft(notes, n, axis=0))).sum(axis=1), n)
        max_lag = int(min(MATCH_MAX_LAG_SECONDS * fr, T // 2))
        lags = np.arange(-max_lag, max_lag + 1)
        fit = corr[lags % n] / (np.linalg.norm(wide) * np.linalg.norm(notes))
        tol = int(round(MATCH_TOLERANCE_SECONDS * fr))
        own = float(fit[np.abs(lags) <= tol].max())
        away = np.abs(lags) > tol + 3
        if away.any():
            best = int(np.argmax(np.where(away, fit, -np.inf)))
            if fit[best] >= MATCH_SHIFT_RATIO * own:
                lag = lags[best] / fr
                return (f"its notes line up with the recording's note onsets {fit[best] / max(own, 1e-9):.1f} times "
                        f"better when shifted {abs(lag):.2f} s {'later' if lag > 0 else 'earlier'} than at their own "
                        "times (is it the MIDI of another piece or take, or does the recording start earlier or later?)")
            elif own < MATCH_CLEAR_RATIO * fit[best] and own < MATCH_CLEAR_FIT:
                return (f"its notes line up with the recording's note onsets hardly better at their own times (match "
                        f"{own:.3f}) than {abs(lags[best] / fr):.2f} s off ({fit[best]:.3f}): is it the MIDI of another "
                        "piece?")
        far = np.abs(lags) >= fr  # a second or more off
        if far.sum() >= fr:
            typical = float(np.median(fit[far]))
            if own < MATCH_CHANCE_RATIO * typical + 0.02:
                return (f"its notes line up with the recording's note onsets no better at their own times "
                        f"(match {own:.3f}) than at a random offset (typical {typical:.3f}): is it the MIDI of "
                        "another piece?")
    # notes of the recording after the score's last note (the MIDI of part of the recording)
    after = int(np.ceil((end + MATCH_AFTER_SECONDS) * fr))
    if after < T and len(on_time):
        strength = _pitched_strength(onsets * loud, n_bands)  # loud pitched onsets: notes, not the noise floor
        t = np.clip(on_time.astype(np.int64), 0, T - 1)
        near = np.max([strength[np.clip(t + d, 0, T - 1)] for d in range(-2, 3)], axis=0)
        typical = float(np.median(near))
        tail = strength[after:]
        peaks = np.flatnonzero((tail > MATCH_AFTER_SHARE * typical) & (tail >= np.roll(tail, 1))
                               & (tail >= np.roll(tail, -1))) if typical > 0 else np.zeros(0, np.int64)
        if len(peaks) >= 2:
            times = ", ".join(f"{(after + p) / fr:.2f} s" for p in peaks[:3])
            return (f"its last note ends at {end:.2f} s, but the recording has {len(peaks)} note onsets after "
                    f"{end + MATCH_AFTER_SECONDS:.2f} s (at {times}{', ...' if len(peaks) > 3 else ''}); give the "
                    "MIDI of all of the recording, or cut the recording")
    return None
