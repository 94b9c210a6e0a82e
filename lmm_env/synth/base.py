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

import numpy as np

N_KEYS = 88
LOWEST_PITCH = 21  # A0
HIGHEST_PITCH = 108  # C8


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

        ``tail`` seconds of audio follow the last note-off so that releases ring out.
        """

    @abc.abstractmethod
    def player(self, n_envs: int, block_size: int) -> BlockPlayer:
        """A fresh batched player at this synth's sample rate."""
