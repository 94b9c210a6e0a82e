"""The K-pairs protocol: how many score-audio pairs a method learned from, the same for everyone.

The seed's basic setup: scores and audio are abundant, *paired* score-audio data are scarce.
Everything in lmm_env that learns from paired data takes its pairs from here::

    from lmm_env import pairs
    train = pairs.load(16)                 # 16 (score, audio) clips from the train split
    train[0].score, train[0].audio         # a Score and float32 audio at 16 kHz
    ear = lmm_env.lm.fit_ear(train)        # the learned ear of K = 16 pairs

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

`ear_for(K, synth)` is the ear an env made with ``pairs=K`` listens with: the analytic ear
for K = 0; for K > 0 `lmm_env.lm.fit_ear` on ``load(K, synth)``, loaded from the weights
shipped for the built-in piano (K = 4, 16, 64, seed 0) or fitted once and cached on disk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lmm_env.score import Score

__all__ = ["ALLOWED_K", "CORPORA", "CLIP_SECONDS", "Pair", "Pairs", "load", "check_k", "ear_for", "train_order"]

ALLOWED_K = (0, 4, 16, 64, "all")
CORPORA = ("folk", "bach-chorales")
CLIP_SECONDS = 15.0
SHIPPED_EAR_K = (4, 16, 64)  # learned ears shipped for synth="piano", seed 0 (lmm_env/lm/weights/)
_EAR_FORMAT = 1  # bump when fit_ear's recipe changes, so cached ears are refitted


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


def train_order(seed: int = 0) -> list[tuple[str, int]]:
    """(corpus, index in its train split) of every pair "all" holds, in the protocol's order."""
    from lmm_env import corpus

    rng = np.random.default_rng(seed)
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
        if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)):
            raise ValueError(f"seed={seed!r} must be an int")
        if not (isinstance(clip_seconds, (int, float)) and 1.0 <= clip_seconds <= 600.0):
            raise ValueError(f"clip_seconds={clip_seconds!r} must be a number of seconds in [1, 600]")
        self.seed, self.clip_seconds, self.sample_rate = int(seed), float(clip_seconds), int(sample_rate)
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
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
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


def _synth_tag(synth) -> str:
    if synth in ("piano", "soundfont"):
        return synth
    path = os.fspath(synth)
    return "sf2-" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]


_EARS: dict[tuple, object] = {}


def ear_for(K, synth="piano", seed: int = 0, progress: bool = True):
    """The ear of K pairs: analytic for K = 0, else `lmm_env.lm.fit_ear` on ``load(K, synth, seed)``.

    Shipped for the built-in piano (K = 4, 16, 64, seed 0); otherwise fitted once (at most
    about two minutes on 2 cores for K <= 64) and cached under the corpus cache dir.
    """
    from lmm_env.lm import load_pretrained
    from lmm_env.lm.checkpoint import WEIGHTS_DIR, load_checkpoint, save_checkpoint

    K = check_k(K)
    if K == 0:
        return load_pretrained("ear-analytic")
    key = (K, _synth_tag(synth), int(seed))
    if key in _EARS:
        return _EARS[key]
    shipped = WEIGHTS_DIR / f"ear_pairs{K}.safetensors"
    if key[1] == "piano" and seed == 0 and K in SHIPPED_EAR_K and shipped.is_file():
        ear = load_checkpoint(shipped)
    else:
        from lmm_env.corpus import cache_dir
        from lmm_env.lm.ear import fit_ear

        path = Path(cache_dir()) / "ears" / f"pairs{K}-{key[1]}-seed{seed}-v{_EAR_FORMAT}.safetensors"
        if path.is_file():
            ear = load_checkpoint(path)
        else:
            ear = fit_ear(load(K, synth=synth, seed=seed), seed=seed, progress=progress)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ear, path, extra={"pairs": K, "synth": key[1], "seed": seed})
    ear.eval()
    _EARS[key] = ear
    return ear
