"""Agents of lmm_env (installed as ``lmm_env.agents``): baselines and evaluation."""
from lmm_env.agents.baselines import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.agents.evaluate import EvalTable, evaluate, load_agent

__all__ = ["RandomAgent", "ScoreReaderAgent", "WrongPlayAgent", "EvalTable", "evaluate", "load_agent"]
