"""`SoundFontSynth`: a realistic, non-differentiable piano (the seed's advanced setup).

It plays a General MIDI SoundFont (.sf2, or .sf3 with Ogg Vorbis samples: tinysoundfont
reads both) through tinysoundfont (an MIT wheel with no system library). The default is the
piano of TimGM6mb.sf2, which pretty_midi's wheel carries. tinysoundfont ignores most
SoundFont 2.01 modulators (e.g. a velocity-controlled filter), so fonts that rely on them
sound plainer than in FluidSynth; the shipped grand (`GrandPianoSynth`) plays them.
"""
from __future__ import annotations

import math
import os
from numbers import Real

import numpy as np

from lmm_env._checks import check_int, short_repr
from lmm_env.synth.base import (LOWEST_PITCH, N_KEYS, BlockPlayer, Synth, check_player_args, check_sample_rate,
                                render_samples)

MIN_GAIN_DB, MAX_GAIN_DB = -100.0, 30.0  # beyond these the output is silent or clips throughout


def default_soundfont() -> str:
    """Path of TimGM6mb.sf2 inside the installed pretty_midi package."""
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


def _import_tinysoundfont():
    try:
        import tinysoundfont
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "synth='soundfont' needs the tinysoundfont package: pip install --no-deps tinysoundfont"
        ) from exc
    return tinysoundfont


class SoundFontSynth(Synth):
    """A SoundFont instrument: realistic sound, no gradients.

    Args:
        sample_rate: audio rate in Hz (8000..96000).
        path: a .sf2 or .sf3 file; default TimGM6mb.sf2 from pretty_midi.
        preset: General MIDI program 0..127 (0 = Acoustic Grand Piano), bank 0; the file must have it.
        gain: output gain in dB passed to tinysoundfont, a finite number in [-100, 30]
            (negative values are quieter, not an error: the default is -6 dB).
    """

    name = "soundfont"
    differentiable = False

    def __init__(self, sample_rate: int = 16000, path: str | None = None, preset: int = 0, gain: float = -6.0):
        self.sample_rate = check_sample_rate(sample_rate)
        if path is not None and (not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes)):
            raise TypeError(f"path must be the path (str or os.PathLike) of a .sf2/.sf3 file, got "
                            f"{type(path).__name__}: {short_repr(path)}")
        self.path = default_soundfont() if path is None else os.fspath(path)
        if os.path.isdir(self.path):
            raise ValueError(f"SoundFont path {self.path!r} is a directory; pass the path of a .sf2/.sf3 file")
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"SoundFont file {self.path!r} does not exist; pass the path of a .sf2/.sf3 file")
        self.preset = check_int("preset", preset, 0, 127)  # a General MIDI program
        if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, Real) or not (
                math.isfinite(gain) and MIN_GAIN_DB <= gain <= MAX_GAIN_DB):
            raise ValueError(f"gain={short_repr(gain)} is not allowed; use a number of dB in "
                             f"[{MIN_GAIN_DB:g}, {MAX_GAIN_DB:g}]")
        self.gain = float(gain)
        with open(self.path, "rb") as f:
            self._data = f.read()
        self._new_synth()  # fail early on a file that is not a SoundFont

    def _new_synth(self):
        tsf = _import_tinysoundfont()
        synth = tsf.Synth(gain=self.gain, samplerate=self.sample_rate)
        try:
            sfid = synth.sfload(self._data)
        except Exception as exc:
            raise ValueError(f"{self.path!r} is not a readable SoundFont (.sf2/.sf3) file: {exc}") from exc
        try:
            synth.program_select(0, sfid, 0, self.preset)
        except RuntimeError as exc:  # tinysoundfont says only "Error in channel_set_preset_number"
            raise ValueError(f"{self.path!r} has no preset {self.preset} in bank 0 ({exc})") from exc
        return synth

    @staticmethod
    def _mono(buf) -> np.ndarray:
        stereo = np.frombuffer(buf, dtype=np.float32)
        return 0.5 * (stereo[0::2] + stereo[1::2])

    def player(self, n_envs: int, block_size: int) -> "SoundFontPlayer":
        return SoundFontPlayer(self, n_envs, block_size)

    def render(self, score, tail: float = 1.0) -> np.ndarray:
        from lmm_env.synth.piano import _as_score

        score = _as_score(score)
        sr = self.sample_rate
        synth = self._new_synth()
        on = np.round(score.onsets * sr).astype(np.int64)
        off = np.maximum(np.round(score.offsets * sr).astype(np.int64), on + 1)
        # Events sorted by time; at equal times note-offs come first so a re-strike sounds.
        times = np.concatenate([off, on])
        kinds = np.concatenate([np.zeros(len(off), int), np.ones(len(on), int)])
        pitches = np.concatenate([score.pitches, score.pitches]).astype(int)
        vels = np.concatenate([score.velocities, score.velocities]).astype(int)
        order = np.lexsort((kinds, times))
        total = render_samples(score, tail, sr, off.max() if len(score) else 0)
        out = np.zeros(total, dtype=np.float32)
        now = 0
        for i in order:
            t = min(int(times[i]), total)
            if t > now:
                out[now:t] = self._mono(synth.generate(t - now))
                now = t
            if kinds[i]:
                synth.noteon(0, int(pitches[i]), int(vels[i]))
            else:
                synth.noteoff(0, int(pitches[i]))
        if total > now:
            out[now:] = self._mono(synth.generate(total - now))
        return out


class SoundFontPlayer(BlockPlayer):
    """One tinysoundfont synth per env, driven by the same key events as `PianoPlayer`."""

    def __init__(self, synth: SoundFontSynth, n_envs: int, block_size: int):
        self.synth = synth
        self.n_envs, self.block_size = check_player_args(synth, n_envs, block_size)
        self.sample_rate = synth.sample_rate
        self._synths = [synth._new_synth() for _ in range(self.n_envs)]
        self._sounding = np.zeros((self.n_envs, N_KEYS), dtype=bool)

    def reset(self, env_ids=None) -> None:
        ids = range(self.n_envs) if env_ids is None else np.atleast_1d(env_ids)
        for i in ids:
            self._synths[int(i)].sounds_off()
            self._sounding[int(i)] = False

    def step(self, onset: np.ndarray, velocity: np.ndarray, damped: np.ndarray) -> np.ndarray:
        out = np.empty((self.n_envs, self.block_size), dtype=np.float32)
        offs = self._sounding & damped & ~onset
        for e, synth in enumerate(self._synths):
            for k in np.flatnonzero(offs[e]):
                synth.noteoff(0, int(k) + LOWEST_PITCH)
            for k in np.flatnonzero(onset[e]):
                synth.noteon(0, int(k) + LOWEST_PITCH, int(velocity[e, k]))
            out[e] = SoundFontSynth._mono(synth.generate(self.block_size))
        self._sounding = (self._sounding & ~offs) | onset
        return out
