"""lmm_env: a piano as a reinforcement-learning world for Language Model Mapping (LMM).

``import lmm_env`` registers the Gymnasium ids (it imports no env code: the core never
imports ``lmm_env.envs`` or ``lmm_env.agents``): ``LMMPiano-v0`` (read a score and play it:
g), ``LMMDecipher-v0`` (the same on a hidden keyboard), ``LMMByEar-v0`` (play what you hear:
h) and ``LMMImprovise-v0`` (music with no target: LM^M)::

    import gymnasium as gym, lmm_env
    env = gym.make("LMMPiano-v0")                       # a folk tune from the train split
    venv = gym.make_vec("LMMPiano-v0", num_envs=64)     # natively batched twin
"""
from __future__ import annotations

__version__ = "0.1.0"

# id -> (module, env class, vector module, vector entry point), under lmm_env.envs
_TASKS = {
    "LMMPiano-v0": ("piano", "LMMPianoEnv", "torch_vector", "make_vector_env"),
    "LMMDecipher-v0": ("decipher", "LMMDecipherEnv", "decipher", "LMMDecipherVectorEnv"),
    "LMMByEar-v0": ("by_ear", "LMMByEarEnv", "by_ear", "LMMByEarVectorEnv"),
    "LMMImprovise-v0": ("improvise", "LMMImproviseEnv", "improvise", "LMMImproviseVectorEnv"),
}
TASK_IDS = tuple(_TASKS)  # the Gymnasium ids this package registers


def _register() -> None:
    from gymnasium.envs.registration import register, registry

    for env_id, (module, cls, vmodule, vcls) in _TASKS.items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=f"lmm_env.envs.{module}:{cls}",
                vector_entry_point=f"lmm_env.envs.{vmodule}:{vcls}",
                disable_env_checker=False,
            )


_register()
