"""The benchmark: every agent on every task under one protocol, in one table; and `evaluate`.

    from lmm_env.agents import benchmark
    rows = benchmark.run(["baselines"], pairs=(0, 16), episodes=10, out="out/bench")
"""
from lmm_env.agents.benchmark.runner import *  # noqa: F401,F403
from lmm_env.agents.benchmark.runner import __all__ as _runner_all

__all__ = list(_runner_all)
