"""Agents of lmm_env (installed as ``lmm_env.agents``): baselines, evaluation, training.

``KeyConvPolicy`` (an SB3 policy, in `lmm_env.agents.learned.policies`) and ``GradientAgent``
(playing by ear through the differentiable synth, in `lmm_env.agents.baselines.gradient`) are imported
lazily; importing the policy registers the name ``"KeyConvPolicy"`` with SB3's PPO, A2C and
SAC (``KeyConvSACPolicy`` in SAC). ``SAC`` (in `lmm_env.agents.training.sac`, what ``algo="sac"`` means)
is SB3's SAC that also trains ``"KeyLevelPolicy"`` (`KeyLevelSACPolicy`: per-key categorical
actions, discrete SAC with a factored critic; SAC's preset).
"""
from lmm_env.agents import _moved
from lmm_env.agents.baselines.simple import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.agents.benchmark.evaluate import EvalTable, evaluate, load_agent
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
