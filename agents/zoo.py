"""The named baselines of each LMM task, and which task each one plays.

    from lmm_env.agents.zoo import AGENTS, make_agent, agents_for
    agent = make_agent("babble", env, pairs=16)   # builds the agent for this env
    agents_for("LMMDecipher-v0")                  # ['random', 'score-reader', 'babble']

Every entry says which tasks it plays and whether it is an *oracle* (reads what the task
hides: the hidden score, the hidden layout); the benchmark runner labels oracles in its
tables and refuses the hidden layout to every agent that is not one.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from lmm_env import TASK_IDS as TASKS  # the registered task ids, in the protocol's order


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """``factory(env, pairs, seed)`` builds the agent for ``env``; ``tasks`` it plays; ``oracle`` if it reads hidden state."""

    factory: Callable
    tasks: tuple
    oracle: bool
    description: str


def _random(env, pairs, seed):
    from lmm_env.agents.baselines import RandomAgent

    return RandomAgent(env, seed=seed)


def _score_reader(env, pairs, seed):
    from lmm_env.agents.baselines import ScoreReaderAgent

    return ScoreReaderAgent(env)


def _shipped(name):
    def build(env, pairs, seed):
        from lmm_env.agents.evaluate import load_agent

        return load_agent(name, env)

    return build


def _babble(env, pairs, seed):
    from lmm_env.agents.decipher import BabbleAgent

    return BabbleAgent(env, pairs=pairs or 0)


def _decipher_closed_loop(env, pairs, seed):
    from lmm_env.agents.decipher_learn import ListeningDecipherAgent
    from lmm_env.agents.differentiable import DiffPolicy, shipped_path

    # the learned g (diff-g) decides what to play over score pitches; the learned map puts it on keys
    return ListeningDecipherAgent(env, pairs=pairs or 0, seed=seed, actor=DiffPolicy.load(shipped_path("g")))


def _reference_oracle(env, pairs, seed):
    from lmm_env.agents.by_ear import ReferenceOracle

    return ReferenceOracle(env)


def _gradient(env, pairs, seed):
    from lmm_env.agents.by_ear import ByEarGradientAgent

    return ByEarGradientAgent(env, pairs=pairs or 0)


def _diff(kind):
    def build(env, pairs, seed):
        from lmm_env.agents.differentiable import make_diff_agent

        return make_diff_agent(kind, env)

    return build


def _repeat_prompt(env, pairs, seed):
    from lmm_env.agents.improvise import RepeatPromptAgent

    return RepeatPromptAgent(env)


def _lm_sampler(env, pairs, seed):
    from lmm_env.agents.improvise import ScoreLMSamplerAgent

    return ScoreLMSamplerAgent(env, seed=seed)


def _ppo_improvise(env, pairs, seed):
    from lmm_env.agents.evaluate import load_agent

    return load_agent("ppo-improvise", env, seed=seed)


AGENTS: dict[str, AgentSpec] = {
    "random": AgentSpec(_random, TASKS, False, "uniform random actions"),
    "score-reader": AgentSpec(_score_reader, ("LMMPiano-v0", "LMMDecipher-v0"), True,
                              "reads the score (and, on the hidden keyboard, the hidden layout): plays perfectly"),
    "ppo-closed-loop": AgentSpec(_shipped("ppo-closed-loop"), ("LMMPiano-v0",), False,
                                 "shipped PPO + KeyConvPolicy trained on the closed-loop reward"),
    "babble": AgentSpec(_babble, ("LMMDecipher-v0",), False,
                        "presses each key once alone, reads its pitch with the ear of K pairs, then reads the score"),
    "decipher-closed-loop": AgentSpec(_decipher_closed_loop, ("LMMDecipher-v0",), False,
                                      "learns key -> heard pitch from its own strikes while it plays (ear of K pairs) and "
                                      "puts the learned g (diff-g) on keys through the inverted map"),
    "reference-oracle": AgentSpec(_reference_oracle, ("LMMByEar-v0",), True,
                                  "plays the hidden reference notes of the target"),
    "gradient": AgentSpec(_gradient, ("LMMByEar-v0",), False,
                          "transcribes the whole target by gradient descent through the differentiable piano"),
    "diff-g": AgentSpec(_diff("g"), ("LMMPiano-v0",), False,
                        "g (score -> keys) learned by backpropagation through the differentiable piano and the ear"),
    "diff-h": AgentSpec(_diff("h"), ("LMMByEar-v0",), False,
                        "h (heard target -> keys) learned by backpropagation through the differentiable piano and the ear"),
    "repeat-prompt": AgentSpec(_repeat_prompt, ("LMMImprovise-v0",), False, "plays the prompt again and again"),
    "lm-sampler": AgentSpec(_lm_sampler, ("LMMImprovise-v0",), False,
                            "samples frames from LM^V (the score LM) and plays them on the known keyboard"),
    "ppo-improvise": AgentSpec(_ppo_improvise, ("LMMImprovise-v0",), False,
                               "shipped PPO + KeyConvPolicy trained on the improvise reward, played by sampling"),
}


def agents_for(task: str) -> list[str]:
    """Names of the registered agents that play ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks: {list(TASKS)}")
    return [n for n, s in AGENTS.items() if task in s.tasks]


_TASK_CLASSES = {"LMMPianoEnv": "LMMPiano-v0", "LMMDecipherEnv": "LMMDecipher-v0", "LMMByEarEnv": "LMMByEar-v0",
                 "LMMImproviseEnv": "LMMImprovise-v0"}


def task_of(env) -> str | None:
    """The lmm_env task id ``env`` plays (from its spec, or its class when made without gym.make); None if unknown."""
    for e in (env, getattr(env, "unwrapped", None)):
        spec_id = getattr(getattr(e, "spec", None), "id", None)
        if spec_id in TASKS:
            return spec_id
    return _TASK_CLASSES.get(type(getattr(env, "unwrapped", env)).__name__)


def check_env(env) -> None:
    """Refuse what is not an lmm_env task env (agents read its world), naming what was given."""
    if env is None or not hasattr(getattr(env, "unwrapped", None), "sim"):
        from lmm_env._checks import short_repr

        raise ValueError(f"env={short_repr(env)} is not an lmm_env task env; give gym.make(task) of one of {list(TASKS)}")


def check_task(agent: str, tasks, env) -> None:
    """Refuse to build ``agent`` (which plays ``tasks``) for an env of another task, naming both."""
    task = task_of(env)
    if task is not None and task not in tasks:
        raise ValueError(f"agent {agent!r} does not play {task}; it plays {list(tasks)}")


def make_agent(name: str, env, pairs=None, seed: int = 0):
    """Agent ``name`` built for ``env`` (ear of ``pairs`` K where it listens). ValueError if it cannot play it."""
    from lmm_env._checks import check_seed, short_repr
    from lmm_env.pairs import check_k

    if not isinstance(name, str) or name not in AGENTS:
        raise ValueError(f"unknown agent {short_repr(name)}; registered: {sorted(AGENTS)} (or a .safetensors checkpoint)")
    spec = AGENTS[name]
    check_env(env)
    check_task(name, spec.tasks, env)
    if pairs is not None:
        pairs = check_k(pairs)
    if seed is None or check_seed(seed) is None:
        raise ValueError("seed=None is not allowed; use an int >= 0")
    return spec.factory(env, pairs, seed)
