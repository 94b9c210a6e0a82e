"""Judges from the field: language models of other people's making as reward LMs.

A *judge* scores music by how likely a language model finds it: the mean log-likelihood per
token of what it is given.

* `AudioJudge`: hears audio at its own ``sample_rate`` through a codec and a token LM.
  `CodecLMJudge` is any codec + token LM pair (MusicGen's delay pattern over codebooks);
  `MusicGenJudge` takes MusicGen's decoder and EnCodec from a
  ``MusicgenForConditionalGeneration`` (``from_pretrained(local_dir)``) or builds them from
  configs (``from_configs``), and drops the text encoder: it scores unconditionally.
* `SymbolicJudge`: reads notes. `CausalLMJudge` is any causal LM over a miditok tokenizer
  (REMI by default).

Rewards over judges (`lmm_env.rewards.AudioJudgeReward`, `SymbolicJudgeReward`) behave like
the built-in LM rewards: relative to the target's own score, in [0, 1], judged every K steps
over a window or once per episode. Register a judge factory by name and ``reward={name: w}``
works::

    from lmm_env import judges
    judges.register("musicgen", lambda: judges.MusicGenJudge.from_pretrained("/models/musicgen-small"))
    gym.make("LMMPiano-v0", reward={"closed_loop": 1.0, "musicgen": 0.5})

Shipped: ``"remi-judge"`` (`lmm_env.judges.remi`), a small GPT-2 over REMI tokens trained on the
package's own corpora, registered as a judge and as a reward by that name.

The judges need the optional extra ``pip install 'lmm_env[judges]'`` (transformers, miditok);
without it, building one raises an ImportError that names the extra. Nothing here downloads:
``from_pretrained`` takes a folder on disk (``HF_HUB_OFFLINE=1`` is set while it loads).
"""
from __future__ import annotations

from lmm_env.judges.base import (
    AudioJudge, CodecLMJudge, Judge, SymbolicJudge, make, names, register, require_extra, resample,
)

__all__ = ["Judge", "AudioJudge", "SymbolicJudge", "CodecLMJudge", "MusicGenJudge", "CausalLMJudge",
           "register", "names", "make", "require_extra", "resample"]


def __getattr__(name):
    # the classes that need transformers load on first use: `import lmm_env.judges` never needs the extra
    if name == "MusicGenJudge":
        from lmm_env.judges.musicgen import MusicGenJudge

        return MusicGenJudge
    if name == "CausalLMJudge":
        from lmm_env.judges.symbolic import CausalLMJudge

        return CausalLMJudge
    raise AttributeError(f"module 'lmm_env.judges' has no attribute {name!r}")
