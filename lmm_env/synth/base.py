"""The interface every synthesizer of lmm_env implements.

A synthesizer has two jobs:

* ``render(score_or_midi) -> np.ndarray``: a whole piece to mono float32 audio, offline.
* ``player(n_envs, block_size) -> BlockPlayer``: a stateful, batched player that the env
  steps block by block. Each block starts with key events that all happen at the block's
  first sample (the env acts once per block), then the player renders ``block_size``
  samples for every env. Voices carry over block boundaries: notes ring on past the step
  that started them, and no block boundary clicks.

Key arrays are indexed by ``pitch - 21`` (88 piano keys, A0 = MIDI 21 ... C8 = MIDI 108).
"""
from __future__ import annotations

import abc
import math
from numbers import Real

import numpy as np

from lmm_env._checks import check_int, short_repr

N_KEYS = 88
LOWEST_PITCH = 21  # A0
HIGHEST_PITCH = 108  # C8
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 96000
# ``render``'s tail: the rewards and ByEar pass a whole episode's length as the tail, so the
# bound is a score's (score.MAX_SECONDS); the audio itself is bounded by MAX_RENDER_SAMPLES
# (2 GiB of float32: 9.3 hours at 16 kHz, 1.5 hours at 96 kHz).
MAX_TAIL_SECONDS = 6 * 3600.0
MAX_RENDER_SAMPLES = 1 << 29


def check_sample_rate(sample_rate) -> int:
    """``sample_rate`` as an int in [8000, 96000] Hz, else a ValueError naming it."""
    return check_int("sample_rate", sample_rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)


def check_player_args(synth, n_envs, block_size) -> tuple[int, int]:
    """(n_envs, block_size) of a player: ints, at most 2**20 envs, blocks of at most a second."""
    return (check_int("n_envs", n_envs, 1, 1 << 20),
            check_int("block_size", block_size, 1, synth.sample_rate))


def render_samples(score, tail, sample_rate: int, end: int) -> int:
    """Samples ``render`` makes: ``end`` (the last note-off sample) plus ``tail`` seconds.

    A ValueError for a tail that is not a number in [0, MAX_TAIL_SECONDS], or a total over
    ``MAX_RENDER_SAMPLES`` (checked before any audio is allocated)."""
    if isinstance(tail, (bool, np.bool_)) or not isinstance(tail, Real) or not (
            math.isfinite(tail) and 0 <= tail <= MAX_TAIL_SECONDS):
        raise ValueError(f"tail={short_repr(tail)} is not allowed; use a number of seconds in "
                         f"[0, {MAX_TAIL_SECONDS:g}]")
    total = int(end) + int(round(tail * sample_rate))
    if total > MAX_RENDER_SAMPLES:
        raise ValueError(
            f"rendering score {short_repr(score.name)} ({score.duration:.0f} s) with a {float(tail):g} s tail at "
            f"{sample_rate} Hz makes {total} samples, more than MAX_RENDER_SAMPLES = {MAX_RENDER_SAMPLES}; "
            "trim the score (Score.trim) or render it in parts")
    return total


class BlockPlayer(abc.ABC):
    """Batched, stateful block renderer for ``n_envs`` independent pianos."""

    n_envs: int
    block_size: int
    sample_rate: int

    @abc.abstractmethod
    def reset(self, env_ids: np.ndarray | None = None) -> None:
        """Silence the given envs (all if None): every voice stops at once."""

    @abc.abstractmethod
    def step(self, onset: np.ndarray, velocity: np.ndarray, damped: np.ndarray) -> np.ndarray:
        """Apply key events at the block start, then render one block.

        Args:
            onset: bool (n_envs, 88): a hammer strikes this key now.
            velocity: integer (n_envs, 88), 1..127, read where ``onset`` is true.
            damped: bool (n_envs, 88): the key's damper is down (key up and no pedal);
                every sounding voice of a damped key is released now.

        Returns:
            float32 (n_envs, block_size) audio.
        """


class Synth(abc.ABC):
    """A piano synthesizer: offline rendering plus a batched block player."""

    name: str
    sample_rate: int
    differentiable: bool = False

    @abc.abstractmethod
    def render(self, score, tail: float = 1.0) -> np.ndarray:
        """Render a Score, a PrettyMIDI or a MIDI path to mono float32 audio.

        ``tail`` seconds of audio follow the last note-off so that releases ring out; it is a
        number in [0, MAX_TAIL_SECONDS], and the audio at most MAX_RENDER_SAMPLES long
        (`render_samples` checks both).
        """

    @abc.abstractmethod
    def player(self, n_envs: int, block_size: int) -> BlockPlayer:
        """A fresh batched player at this synth's sample rate."""
