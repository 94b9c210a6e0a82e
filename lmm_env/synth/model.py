"""The piano sound model shared by `PianoSynth` (numpy) and `DifferentiablePianoSynth` (torch).

One note of key ``k`` (MIDI pitch ``p = 21 + k``) struck at velocity ``v`` and released
``r`` samples after its onset sounds as::

    note[j] = (a_soft(v) * T_soft[k, j] + a_bright(v) * T_bright[k, j]) * release(j - r)

* ``T_soft`` and ``T_bright`` are per-key tables built once by `build_tables`: a sum of
  partials ``f_h = h f0 sqrt((1 + B h^2) / (1 + B))`` (stiff-string inharmonicity ``B``
  rising with pitch; the fundamental stays exactly on ``f0``), each with a two-stage
  exponential decay that is faster for higher keys and higher partials. The soft layer
  rolls partials off steeply, the bright one gently: velocity moves the mix between them
  (louder is brighter, as on a piano).
* ``a_soft(v) = loud(v) (1 - bright(v))``, ``a_bright(v) = loud(v) bright(v)`` with
  ``loud(v)`` spanning 36 dB from v = 1 to v = 127.
* ``release`` is 1 while the key is held and falls to exactly 0 within
  ``RELEASE_SECONDS`` after it (the damper). A voice ends then, or when its table ends.
* A new strike of a key damps that key's older voices at the same instant (the hammer
  meets the string again), so at most ``1 + ceil(R / block)`` voices per key ever sound
  when strikes come at block starts.

The formulas for velocity are written once, with operators that numpy arrays and torch
tensors share, so both synths compute the same numbers.
"""
from __future__ import annotations

import functools
import math
from numbers import Real

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.synth.base import LOWEST_PITCH, N_KEYS, check_sample_rate

TABLE_SECONDS = 3.0  # how long a held note rings before its table ends (it has faded by then)
# table_seconds bounds: longer than the attack and end fade; at most 20 s (A0 rings ~12 s),
# as the tables take 2 * 88 * 4 bytes a sample (1.35 GB for 20 s at 96 kHz)
MIN_TABLE_SECONDS, MAX_TABLE_SECONDS = 0.2, 20.0
RELEASE_SECONDS = 0.1  # damper: a released note is silent this long after key-up
RELEASE_TAU = 0.025  # time constant of the damper's exponential
ATTACK_SECONDS = 0.003  # raised-cosine onset ramp: no click at the hammer strike
END_FADE_SECONDS = 0.1  # the tables fade to exactly zero over their last part
MAX_PARTIALS = 40
LOUDNESS_RANGE_DB = 36.0
MASTER_GAIN = 0.2


def key_frequency(pitch):
    """Equal-tempered fundamental in Hz for MIDI pitch(es)."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def loudness(velocity):
    """Linear gain for MIDI velocity (numpy or torch, 1..127): 0 dB at 127, -36 dB at 0."""
    return 10.0 ** ((velocity / 127.0 - 1.0) * (LOUDNESS_RANGE_DB / 20.0))


def brightness(velocity):
    """Share of the bright layer for MIDI velocity (numpy or torch): 0 at 0, 1 at 127."""
    return (velocity / 127.0) ** 1.5


def layer_gains(velocity):
    """(soft, bright) amplitudes for MIDI velocity; works on numpy arrays and torch tensors."""
    loud = loudness(velocity)
    b = brightness(velocity)
    return loud * (1.0 - b), loud * b


def release_envelope(sample_rate: int) -> np.ndarray:
    """Damper gain from the key-up sample on; exactly 0 at and after ``RELEASE_SECONDS``."""
    n = int(round(RELEASE_SECONDS * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    env = np.exp(-t / RELEASE_TAU) * (1.0 - t / RELEASE_SECONDS)
    return env.astype(np.float32)


def voice_slots(sample_rate: int, block_size: int) -> int:
    """Voices a key needs so that no sounding voice is ever cut, even with a strike every block.

    A strike damps the key's previous voice, which then needs ``R`` samples to fall
    silent, so ``1 + ceil(R / block)`` slots always suffice.
    """
    r = int(round(RELEASE_SECONDS * sample_rate))
    return 1 + math.ceil(r / block_size)


def check_table_seconds(seconds) -> float:
    """``seconds`` as a float in [MIN_TABLE_SECONDS, MAX_TABLE_SECONDS], else a ValueError naming it."""
    if isinstance(seconds, (bool, np.bool_)) or not isinstance(seconds, Real) or not (
            MIN_TABLE_SECONDS <= seconds <= MAX_TABLE_SECONDS):  # NaN fails the comparison too
        raise ValueError(f"table_seconds={short_repr(seconds)} is not allowed; use a number of seconds in "
                         f"[{MIN_TABLE_SECONDS:g}, {MAX_TABLE_SECONDS:g}]")
    return float(seconds)


def build_tables(sample_rate: int, seconds: float = TABLE_SECONDS) -> np.ndarray:
    """Per-key waveforms of the sound model: float32 array (2, 88, L), [soft, bright].

    Cached per (sample_rate, seconds); treat the result as read-only.
    """
    # checked before the cache: an unhashable argument must get this message, not lru_cache's
    return _build_tables(check_sample_rate(sample_rate), check_table_seconds(seconds))


@functools.lru_cache(maxsize=4)
def _build_tables(sample_rate: int, seconds: float) -> np.ndarray:
    length = int(round(seconds * sample_rate))
    t = np.arange(length, dtype=np.float64) / sample_rate
    nyquist_guard = 0.45 * sample_rate
    tables = np.zeros((2, N_KEYS, length), dtype=np.float32)
    attack = np.ones(length)
    n_att = int(round(ATTACK_SECONDS * sample_rate))
    attack[:n_att] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_att) / n_att)
    n_end = int(round(END_FADE_SECONDS * sample_rate))
    end_fade = np.ones(length)
    end_fade[length - n_end :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, n_end + 1) / n_end)
    shape = attack * end_fade
    for k in range(N_KEYS):
        p = LOWEST_PITCH + k
        f0 = float(key_frequency(p))
        inharm = 1e-4 * 10.0 ** (2.0 * k / (N_KEYS - 1))  # 1e-4 (A0) .. 1e-2 (C8)
        h = np.arange(1, MAX_PARTIALS + 1, dtype=np.float64)
        f = h * f0 * np.sqrt((1.0 + inharm * h**2) / (1.0 + inharm))
        h, f = h[f < nyquist_guard], f[f < nyquist_guard]
        # Hammer strikes at about 1/7.5 of the string: a comb over the partials.
        comb = 0.25 + np.abs(np.sin(np.pi * h / 7.5))
        soft = comb * h**-2.2
        bright = comb * h**-0.9
        soft /= np.sqrt(np.sum(soft**2))
        bright /= np.sqrt(np.sum(bright**2))
        # T60 of the fundamental: ~12 s at A0 down to ~0.45 s at C8; partials decay faster.
        t60 = 12.0 * 2.0 ** (-k / 18.0) / (1.0 + 0.12 * (h - 1.0))
        tau1 = t60 / 6.9
        tau2 = 3.0 * tau1
        # (partials, samples) in chunks keeps the peak memory small.
        acc_soft = np.zeros(length)
        acc_bright = np.zeros(length)
        for c in range(0, len(h), 8):
            sl = slice(c, c + 8)
            env = 0.7 * np.exp(-t[None, :] / tau1[sl, None]) + 0.3 * np.exp(-t[None, :] / tau2[sl, None])
            wave = np.sin(2.0 * np.pi * f[sl, None] * t[None, :]) * env
            acc_soft += soft[sl] @ wave
            acc_bright += bright[sl] @ wave
        tables[0, k] = MASTER_GAIN * acc_soft * shape
        tables[1, k] = MASTER_GAIN * acc_bright * shape
    tables.setflags(write=False)
    return tables
