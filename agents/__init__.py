"""Agents of lmm_env (installed as ``lmm_env.agents``)."""
from lmm_env.agents.baselines import RandomAgent, ScoreReaderAgent, WrongPlayAgent

__all__ = ["RandomAgent", "ScoreReaderAgent", "WrongPlayAgent"]
