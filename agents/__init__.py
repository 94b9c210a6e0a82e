"""Agents of lmm_env (installed as ``lmm_env.agents``), laid out by role.

- `registry`: every agent by name; ``load_agent(name, env, pairs=, ear=, seed=)`` builds any of
  them (``lmm-env agents`` lists them).
- `baselines/`: agents that do not learn (random, oracles, the score reader, babble, the
  gradient search, repeat-prompt, the LM sampler) and the pairs-only methods.
- `learned/`: one module per learned agent (diff-g / diff-h, decipher-closed-loop, the
  `KeyConvPolicy` of the shipped PPO policies).
- `training/`: SB3 training and presets (``train``), checkpoints, discrete SAC, RLlib, training
  through the differentiable piano.
- `benchmark/`: the protocol, the runner, the tables, and ``evaluate``.
- `datasets`: episodes recorded as Minari datasets. `cli`: the ``lmm-env`` command.

``KeyConvPolicy`` (importing it registers the name ``"KeyConvPolicy"`` with SB3's PPO, A2C and
SAC), ``GradientAgent``, ``SAC`` and ``KeyLevelSACPolicy`` are imported lazily. Module paths
from before this layout (``lmm_env.agents.zoo``, ``.train``, ``.policies``, ...) still import.
"""
from lmm_env.agents import _moved
from lmm_env.agents.baselines.simple import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.agents.benchmark.evaluate import EvalTable, evaluate
from lmm_env.agents.registry import load_agent
from lmm_env.agents.training.sb3 import ALGOS, export_policy, hyperparams_path, load_trained, preset, train

__all__ = ["RandomAgent", "ScoreReaderAgent", "WrongPlayAgent", "EvalTable", "evaluate", "load_agent",
           "ALGOS", "train", "load_trained", "export_policy", "preset", "hyperparams_path", "KeyConvPolicy",
           "GradientAgent", "SAC", "KeyLevelSACPolicy"]

_moved.install()  # old module paths (lmm_env.agents.zoo, .train, .policies, ...) keep working


def __getattr__(name):
    if name == "KeyConvPolicy":
        from lmm_env.agents.learned.policies import KeyConvPolicy

        return KeyConvPolicy
    if name in ("SAC", "KeyLevelSACPolicy"):
        from lmm_env.agents.training import sac

        return getattr(sac, name)
    if name == "GradientAgent":
        from lmm_env.agents.baselines.gradient import GradientAgent

        return GradientAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
