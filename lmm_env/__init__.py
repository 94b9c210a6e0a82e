"""lmm_env: a piano as a reinforcement-learning world for Language Model Mapping (LMM).

``import lmm_env`` registers the Gymnasium ids (it imports no env code: the core never
imports ``lmm_env.envs`` or ``lmm_env.agents``)::

    import gymnasium as gym, lmm_env
    env = gym.make("LMMPiano-v0")                       # a folk tune from the train split
    venv = gym.make_vec("LMMPiano-v0", num_envs=64)     # natively batched twin
"""
from __future__ import annotations

__version__ = "0.1.0"


def _register() -> None:
    from gymnasium.envs.registration import register, registry

    if "LMMPiano-v0" not in registry:
        register(
            id="LMMPiano-v0",
            entry_point="lmm_env.envs.piano:LMMPianoEnv",
            vector_entry_point="lmm_env.envs.piano_vector:LMMPianoVectorEnv",
            disable_env_checker=False,
        )


_register()
