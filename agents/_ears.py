"""How every listening agent gets its ear: ``pairs=K`` (the ear of K protocol pairs) or ``ear=``.

One rule for all of them (babble, decipher-closed-loop, gradient, ear-reader, diff-h), so an
ear of a new instrument (fitted with ``lmm_env.lm.fit_ear`` on pairs rendered by it) is handed
over the same way everywhere:

- ``ear=`` an ear object (``activations(audio)``, ``transcribe(audio)``, ``sample_rate``,
  ``block_size``: `lmm_env.lm.ear.AnalyticEar` or `LearnedEar`), or the path of a saved ear
  (``.safetensors`` written by ``lmm_env.lm.save_checkpoint``; loading never runs code);
- else ``pairs=K``: the ear of K pairs of the env's ``sim.pairs_instrument`` (the world's; the target's for LMMByEar-v0
  rendered targets) (K = 0: the analytic ear).

Giving both is refused: they name two different ears.
"""
from __future__ import annotations

import os

from lmm_env._checks import short_repr

_EAR_METHODS = ("activations", "transcribe")


def load_ear(path):
    """The ear saved at ``path`` (a ``LearnedEar`` checkpoint); ValueError naming the file otherwise."""
    from lmm_env.lm.checkpoint import CheckpointError, load_checkpoint

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"ear={p!r} does not exist; give an ear object or the .safetensors file of a "
                                "LearnedEar (lmm_env.lm.save_checkpoint(fit_ear(pairs), path))")
    try:
        return load_checkpoint(p, expect="LearnedEar")
    except CheckpointError as exc:
        raise ValueError(f"ear={p!r} is not an ear: {exc}") from None


def check_ear(ear, sample_rate: int | None = None):
    """``ear`` itself if it is an ear (and hears at ``sample_rate`` when given); a ValueError naming it if not."""
    if isinstance(ear, (str, os.PathLike)):
        ear = load_ear(ear)
    missing = [m for m in _EAR_METHODS if not callable(getattr(ear, m, None))]
    if missing or not isinstance(getattr(ear, "sample_rate", None), int):
        raise ValueError(f"ear={short_repr(ear)} is not an ear (it lacks {missing or ['an int sample_rate']}); give "
                         "an lmm_env.lm.ear.AnalyticEar / LearnedEar (e.g. lmm_env.lm.fit_ear(pairs)) or the path "
                         "of a saved one")
    if sample_rate is not None and int(ear.sample_rate) != int(sample_rate):
        raise ValueError(f"ear={short_repr(ear)} hears at {ear.sample_rate} Hz, but this env's audio is at "
                         f"{sample_rate} Hz; fit an ear on pairs at the env's sample rate")
    return ear


def resolve_ear(pairs=None, ear=None, synth="piano", sample_rate: int | None = None, progress: bool = False,
                default_pairs=0):
    """The ear a listening agent uses: ``ear`` (checked) if given, else the ear of ``pairs`` K of ``synth``.

    ``pairs=None`` means ``default_pairs``. Both given: a ValueError (they name two ears)."""
    if ear is not None:
        if pairs is not None:
            raise ValueError(f"pairs={short_repr(pairs)} and ear={short_repr(ear)} were both given; they name two "
                             "ears: give pairs=K (the ear of K protocol pairs) or ear= (your own), not both")
        return check_ear(ear, sample_rate)
    from lmm_env.lm.ear import ear_for

    return ear_for(default_pairs if pairs is None else pairs, synth=synth, progress=progress)
