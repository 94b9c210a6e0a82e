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
  instrument (``synth``: "piano", "soundfont" or a .sf2 path), so a pair costs the same
  everywhere.
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
is the learned ear of K = 16 pairs, and ``ear_for(K, synth)`` (in ``lm/ear.py``) the ear an env
made with ``pairs=K`` listens with: the analytic ear for K = 0; for K > 0 ``fit_ear`` on
``load(K, synth)``, loaded from the weights shipped for the built-in piano (K = 4, 16, 64,
seed 0) or fitted once and cached on disk.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from lmm_env._checks import check_int, check_real, check_seed, short_repr
from lmm_env.score import Score

__all__ = ["ALLOWED_K", "CORPORA", "CLIP_SECONDS", "Pair", "Pairs", "load", "check_k", "check_pair",
           "train_order", "PAIR_TOLERANCE_SECONDS", "PAIR_TAIL_SECONDS", "PAIR_TAIL_SILENCE"]

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
    """One score-audio pair: ``score`` (seconds) and the ``audio`` it sounds as (float32 mono)."""

    score: Score
    audio: np.ndarray
    sample_rate: int
    name: str


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


def _check_synth(synth, sample_rate: int) -> None:
    """A ValueError now for a synth spec `lmm_env.synth.make_synth` would refuse at the first pair."""
    from lmm_env.synth import SYNTHS, Synth

    if isinstance(synth, Synth):
        if synth.sample_rate != sample_rate:
            raise ValueError(f"synth {synth.name!r} runs at {synth.sample_rate} Hz but sample_rate={sample_rate}; "
                             "make them agree")
        return
    name = os.fspath(synth) if isinstance(synth, (str, os.PathLike)) else None
    if name in SYNTHS:
        return
    if isinstance(name, str) and name.lower().endswith(".sf2"):
        if not os.path.isfile(name):
            raise ValueError(f"synth={name!r}: SoundFont file does not exist; pass the path of a .sf2 file")
        return
    raise ValueError(f"synth={short_repr(synth)} is not allowed; use one of {sorted(SYNTHS)}, a path to a .sf2 file, "
                     "or a lmm_env.synth.Synth")


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

    Attributes: ``K``, ``synth`` (the instrument's name), ``seed``, ``clip_seconds``,
    ``sample_rate``.
    """

    def __init__(self, K, synth="piano", seed: int = 0, clip_seconds: float = CLIP_SECONDS,
                 sample_rate: int = 16000):
        self.K = check_k(K)
        if seed is None:
            raise ValueError("seed=None is not allowed; use an int >= 0 (the pairs are the same for everyone who uses it)")
        check_seed(seed)
        sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)  # the synths' range
        _check_synth(synth, sample_rate)  # the spec only: building a SoundFont synth is slow
        clip_seconds = check_real("clip_seconds", clip_seconds, 1.0, 600.0)  # seconds
        self.seed, self.clip_seconds, self.sample_rate = int(seed), clip_seconds, int(sample_rate)
        self.synth = synth if isinstance(synth, str) else type(synth).__name__
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
        return Pair(score=clip, audio=audio, sample_rate=self.sample_rate, name=f"{name}:{piece.name}")

    def __repr__(self) -> str:
        return f"Pairs(K={self.K!r}, synth={self.synth!r}, seed={self.seed}, clip_seconds={self.clip_seconds:g})"


def load(K, synth="piano", seed: int = 0, clip_seconds: float = CLIP_SECONDS, sample_rate: int = 16000) -> Pairs:
    """K score-audio pairs from the train split (nested over K, deterministic in ``seed``)."""
    return Pairs(K, synth=synth, seed=seed, clip_seconds=clip_seconds, sample_rate=sample_rate)
