"""Reward models: the interface, a registry by name, and the built-in rewards.

    from lmm_env import rewards
    rewards.register("my_lm", MyLMReward)          # a factory: () -> RewardModel
    gym.make("LMMPiano-v0", reward="my_lm")
    gym.make("LMMPiano-v0", reward={"closed_loop": 1.0, "my_lm": 0.5})

Registered: "closed_loop" (the default: ear + score LM + audio LM on what was heard),
"ear_match", "score_lm", "audio_lm" (its terms alone), "audio_match" (log-mel distance to
the target's audio), "key_match" (motion space: reads the keys, for baselines only) and
"improvise" (LMMImprovise-v0's: LM^V and LM^A on what was heard, with no target, gated
against silence, one note and loops). Judges from the field (MusicGen, a causal LM over
MIDI tokens) register with `lmm_env.judges.register` and become rewards by that name
(`AudioJudgeReward`, `SymbolicJudgeReward`); "remi-judge" (the shipped GPT-2 over REMI
tokens, `lmm_env.judges.remi`, on the notes the ear hears) needs the 'judges' extra.
"""
from __future__ import annotations

from typing import Callable, Mapping

from lmm_env._checks import check_bool, short_repr
from lmm_env.rewards.base import (
    BatchStepContext, CompositeReward, EpisodeContext, RewardError, RewardModel, StepContext, call_model,
)
from lmm_env.rewards.builtin import AudioMatchReward, KeyMatchReward
from lmm_env.rewards.improvise import ImproviseReward
from lmm_env.rewards.judges import AudioJudgeReward, SymbolicJudgeReward
from lmm_env.rewards.lm import (
    AudioLMReward, ClosedLoopReward, EarMatchReward, ScoreLMReward, TorchLMReward,
)

_REGISTRY: dict[str, Callable[[], RewardModel]] = {}
_TAKES_EAR: set[str] = set()  # factories that accept ear= (the env's pairs=K / ear= choose it)


def register(name: str, factory: Callable[[], RewardModel], overwrite: bool = False, takes_ear: bool = False) -> None:
    """Make ``reward=name`` build ``factory()``. Re-registering a name needs ``overwrite=True``.

    ``takes_ear=True``: the factory accepts ``ear=`` (an ear object or name), so an env made
    with ``pairs=K`` or ``ear=`` can hand it the ear to listen with."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward name {short_repr(name)} must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for reward {name!r} must be callable, got {short_repr(factory)}")
    check_bool("overwrite", overwrite)
    check_bool("takes_ear", takes_ear)  # "no" would read as true
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"reward {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory
    _TAKES_EAR.discard(name)
    if takes_ear:
        _TAKES_EAR.add(name)


def names() -> list[str]:
    """Registered reward names."""
    return sorted(_REGISTRY)


def _given_ear(ear) -> str:
    """The ear a user gave, in words: a name as given; an object (the env hands one over for pairs=K) by its type."""
    if isinstance(ear, str):
        return f"ear={ear!r}"
    return f"{type(ear).__name__} (the ear of pairs=K or ear=)"


def make(spec, ear=None) -> RewardModel:
    """A reward model from a name, a ``{name: weight}`` dict, or a `RewardModel` (returned as is).

    A dict builds a `CompositeReward` whose terms are reported by name; a single name is
    also wrapped, so every env reports ``info["reward_terms"]`` the same way. ``ear`` (an
    ear object or name) is handed to every named part that listens with one
    (``takes_ear``); giving it when no part does is an error.
    """
    if isinstance(spec, RewardModel):
        if ear is not None:
            raise ValueError(f"{_given_ear(ear)} cannot be applied to the reward object "
                             f"{short_repr(spec)}; build it with that ear yourself, or pass a registered reward name")
        return spec
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if isinstance(spec, Mapping):
        parts = {}
        for name, weight in spec.items():
            if isinstance(name, RewardModel):
                model, name = name, name.name
            elif name in _REGISTRY:
                model = _REGISTRY[name](ear=ear) if (ear is not None and name in _TAKES_EAR) else _REGISTRY[name]()
                if not isinstance(model, RewardModel):  # a plug-in's factory: refuse now, not at the first step
                    hint = f": return {model.__name__}() instead" if isinstance(model, type) else ""
                    raise TypeError(f"reward {name!r}: its factory returned {short_repr(model)}, not a "
                                    f"lmm_env.rewards.RewardModel instance{hint}")
            else:
                raise ValueError(f"unknown reward {short_repr(name)}; registered rewards: {names()}")
            parts[name] = (model, weight)
        if ear is not None and not any(n in _TAKES_EAR for n in parts):
            raise ValueError(f"{_given_ear(ear)} was given, but none of the rewards {sorted(parts)} "
                             f"listens with an ear; rewards that do: {sorted(_TAKES_EAR)}")
        return CompositeReward(parts)
    raise TypeError(
        f"reward={short_repr(spec)} is not allowed; pass a registered name {names()}, a {{name: weight}} dict, "
        "or a lmm_env.rewards.RewardModel"
    )


register("key_match", KeyMatchReward)
register("audio_match", AudioMatchReward)
register("ear_match", EarMatchReward, takes_ear=True)
register("score_lm", ScoreLMReward, takes_ear=True)
register("audio_lm", AudioLMReward)
register("closed_loop", ClosedLoopReward, takes_ear=True)
register("improvise", ImproviseReward, takes_ear=True)


def _remi_judge_reward(ear=None):
    """The shipped symbolic judge (`lmm_env.judges.remi`) on the notes the ear hears."""
    from lmm_env.judges import make as make_judge

    return SymbolicJudgeReward(make_judge("remi-judge"), **({} if ear is None else {"ear": ear}))


register("remi-judge", _remi_judge_reward, takes_ear=True)

__all__ = [
    "RewardModel", "RewardError", "EpisodeContext", "StepContext", "BatchStepContext", "CompositeReward",
    "KeyMatchReward", "AudioMatchReward", "EarMatchReward", "ScoreLMReward", "AudioLMReward",
    "ClosedLoopReward", "TorchLMReward", "ImproviseReward", "AudioJudgeReward", "SymbolicJudgeReward",
    "register", "names", "make", "call_model",
]
