"""``world-transcriber``: h (LMMByEar-v0) as a transcriber learned from the world's pianos, adapted on K pairs.

The agent hears the whole target at the start of an episode, writes it down with
`lmm_env.lm.transcriber.NoteTranscriber` (pitch, onset, release, velocity) and plays the
notes, as the outside transcribers do. What it learned from is the LMM question: the
shipped net was pretrained only on the world's own pianos (the built-in piano and the
sampled grand, train-split scores, random colour and rooms: unlimited pairs of its own
world), and ``pairs=K`` adapts it on the K protocol pairs of the target's instrument
(`lmm_env.lm.transcriber.transcriber_for`: a few minutes once, then cached), so an
instrument it never heard costs K pairs, not hundreds of hours of them. ``pairs=0`` plays
with the pretrained net as shipped.
"""
from __future__ import annotations

from collections import OrderedDict

from lmm_env.agents.baselines.transcribers import TranscriberAgent


class WorldTranscriberAgent(TranscriberAgent):
    """Plays what the world-pretrained `NoteTranscriber`, adapted on K pairs of the target's instrument, writes down."""

    name = "world-transcriber"

    def __init__(self, env, pairs=None, transcriber=None, seed: int | None = None):
        super().__init__(env)
        if transcriber is not None and pairs is not None:
            raise ValueError(f"pairs={pairs!r} and transcriber= were both given; they name two transcribers: give one")
        if transcriber is None:
            from lmm_env.lm.transcriber import transcriber_for

            instrument = getattr(self.sim, "pairs_instrument", None) or "piano"
            transcriber = transcriber_for(16 if pairs is None else pairs, instrument, seed=seed or 0)
        elif not callable(getattr(transcriber, "transcribe", None)):
            raise ValueError(f"transcriber={transcriber!r} has no transcribe(audio, sample_rate); give a "
                             "lmm_env.lm.transcriber.NoteTranscriber")
        self.transcriber = transcriber
        self._memo = OrderedDict()

    def transcribe(self, audio, sample_rate):
        return self.transcriber.transcribe(audio, sample_rate, name=self.name)

    def _memo_store(self):
        return self._memo  # per agent: its transcriber is its own, not one model shared by the class
