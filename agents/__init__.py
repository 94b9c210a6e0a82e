"""Agents of lmm_env (installed as ``lmm_env.agents``): baselines, evaluation, training."""
from lmm_env.agents.baselines import RandomAgent, ScoreReaderAgent, WrongPlayAgent
from lmm_env.agents.evaluate import EvalTable, evaluate, load_agent
from lmm_env.agents.train import ALGOS, hyperparams_path, load_trained, preset, train

__all__ = ["RandomAgent", "ScoreReaderAgent", "WrongPlayAgent", "EvalTable", "evaluate", "load_agent",
           "ALGOS", "train", "load_trained", "preset", "hyperparams_path"]
