"""Reward models: the interface, a registry by name, and the built-in rewards.

    from lmm_env import rewards
    rewards.register("my_lm", MyLMReward)          # a factory: () -> RewardModel
    gym.make("LMMPiano-v0", reward="my_lm")
    gym.make("LMMPiano-v0", reward={"closed_loop": 1.0, "my_lm": 0.5})

Registered: "closed_loop" (the default: ear + score LM + audio LM on what was heard),
"ear_match", "score_lm", "audio_lm" (its terms alone), "audio_match" (log-mel distance to
the target's audio) and "key_match" (motion space: reads the keys, for baselines only).
"""
from __future__ import annotations

from typing import Callable, Mapping

from lmm_env.rewards.base import (
    BatchStepContext, CompositeReward, EpisodeContext, RewardError, RewardModel, StepContext, call_model,
)
from lmm_env.rewards.builtin import AudioMatchReward, KeyMatchReward
from lmm_env.rewards.lm import (
    AudioLMReward, ClosedLoopReward, EarMatchReward, ScoreLMReward, TorchLMReward,
)

_REGISTRY: dict[str, Callable[[], RewardModel]] = {}


def register(name: str, factory: Callable[[], RewardModel], overwrite: bool = False) -> None:
    """Make ``reward=name`` build ``factory()``. Re-registering a name needs ``overwrite=True``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"reward name {name!r} must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for reward {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"reward {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered reward names."""
    return sorted(_REGISTRY)


def make(spec) -> RewardModel:
    """A reward model from a name, a ``{name: weight}`` dict, or a `RewardModel` (returned as is).

    A dict builds a `CompositeReward` whose terms are reported by name; a single name is
    also wrapped, so every env reports ``info["reward_terms"]`` the same way.
    """
    if isinstance(spec, RewardModel):
        return spec
    if isinstance(spec, str):
        spec = {spec: 1.0}
    if isinstance(spec, Mapping):
        parts = {}
        for name, weight in spec.items():
            if isinstance(name, RewardModel):
                model, name = name, name.name
            elif name in _REGISTRY:
                model = _REGISTRY[name]()
            else:
                raise ValueError(f"unknown reward {name!r}; registered rewards: {names()}")
            parts[name] = (model, weight)
        return CompositeReward(parts)
    raise TypeError(
        f"reward={spec!r} is not allowed; pass a registered name {names()}, a {{name: weight}} dict, "
        "or a lmm_env.rewards.RewardModel"
    )


register("key_match", KeyMatchReward)
register("audio_match", AudioMatchReward)
register("ear_match", EarMatchReward)
register("score_lm", ScoreLMReward)
register("audio_lm", AudioLMReward)
register("closed_loop", ClosedLoopReward)

__all__ = [
    "RewardModel", "RewardError", "EpisodeContext", "StepContext", "BatchStepContext", "CompositeReward",
    "KeyMatchReward", "AudioMatchReward", "EarMatchReward", "ScoreLMReward", "AudioLMReward",
    "ClosedLoopReward", "TorchLMReward", "register", "names", "make", "call_model",
]
