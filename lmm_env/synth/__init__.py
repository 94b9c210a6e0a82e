"""Piano synthesizers: the world of lmm_env.

* `PianoSynth` ("piano"): fast additive piano, the default when stepping.
* `DifferentiablePianoSynth`: the same sound model in torch, with gradients.
* `GrandPianoSynth` ("grand"): a sampled concert grand shipped with lmm_env (MuseScore
  General's Splendid Grand), played through `PianoSynth`'s players: realistic and as fast.
* `SoundFontSynth` ("soundfont"): any SoundFont's piano through tinysoundfont (TimGM6mb by
  default, or a .sf2/.sf3 path), not differentiable.
"""
from __future__ import annotations

import os

from lmm_env._checks import short_repr
from lmm_env.synth.base import HIGHEST_PITCH, LOWEST_PITCH, N_KEYS, BlockPlayer, Synth, check_sample_rate
from lmm_env.synth.piano import PianoPlayer, PianoSynth
from lmm_env.synth.grand import GrandPianoSynth, GrandPlayer
from lmm_env.synth.soundfont import SoundFontPlayer, SoundFontSynth, default_soundfont


def __getattr__(name):
    # torch loads only when the differentiable synth is asked for (it costs ~0.5 s).
    if name == "DifferentiablePianoSynth":
        from lmm_env.synth.torch_piano import DifferentiablePianoSynth

        return DifferentiablePianoSynth
    raise AttributeError(f"module 'lmm_env.synth' has no attribute {name!r}")


SYNTHS = {"piano": PianoSynth, "grand": GrandPianoSynth, "soundfont": SoundFontSynth}
SOUNDFONT_SUFFIXES = (".sf2", ".sf3")  # such a path plays through SoundFontSynth (tinysoundfont reads both)


def is_soundfont_path(name) -> bool:
    """Whether ``name`` (a str or os.PathLike) names a SoundFont file by its suffix (.sf2 or .sf3)."""
    if not isinstance(name, (str, os.PathLike)):
        return False
    name = os.fspath(name)
    return isinstance(name, str) and name.lower().endswith(SOUNDFONT_SUFFIXES)


def make_synth(synth="piano", sample_rate: int = 16000, **kwargs) -> Synth:
    """A synth from a name ("piano", "grand", "soundfont"), a path to a .sf2/.sf3 file, or a `Synth`."""
    sample_rate = check_sample_rate(sample_rate)
    if isinstance(synth, Synth):
        if synth.sample_rate != sample_rate:
            raise ValueError(
                f"synth {synth.name!r} runs at {synth.sample_rate} Hz but sample_rate={sample_rate}; make them agree"
            )
        return synth
    if isinstance(synth, (str, os.PathLike)):
        name = os.fspath(synth)
        from lmm_env.synth.room import Room, in_room, split_room

        base, room = split_room(name)
        if room is not None:  # "piano@hall": the instrument heard in a named room (lmm_env.synth.room)
            return in_room(make_synth(base, sample_rate, **kwargs), Room.named(room))
        if name in SYNTHS:
            return SYNTHS[name](sample_rate=sample_rate, **kwargs)
        if is_soundfont_path(name):
            return SoundFontSynth(sample_rate=sample_rate, path=name, **kwargs)
    raise ValueError(
        f"unknown synth {short_repr(synth)}; use one of {sorted(SYNTHS)}, a path to a .sf2 or .sf3 file, "
        "or a lmm_env.synth.Synth"
    )


__all__ = [
    "BlockPlayer", "Synth", "PianoSynth", "PianoPlayer", "DifferentiablePianoSynth", "GrandPianoSynth", "GrandPlayer",
    "SoundFontSynth", "SoundFontPlayer", "default_soundfont", "make_synth", "SYNTHS", "SOUNDFONT_SUFFIXES",
    "is_soundfont_path", "N_KEYS", "LOWEST_PITCH", "HIGHEST_PITCH",
]
