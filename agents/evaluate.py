"""Evaluate any agent with SB3's ``predict`` signature on held-out scores.

    from lmm_env.agents import evaluate
    table = evaluate("score-reader", split="test", episodes=10)
    print(table.markdown())

One loop serves Stable-Baselines3 models and the baseline agents. Episodes play the
first ``episodes`` scores of the split's pool in order (``reset(options={"score_index": i})``),
so two agents evaluated with the same arguments hear the same pieces.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from lmm_env._checks import check_bool, check_int, check_seed, short_repr
from lmm_env.agents.baselines import RandomAgent, ScoreReaderAgent

BASELINES = {"random": RandomAgent, "score-reader": ScoreReaderAgent}
# Trained policies shipped in the package (safetensors; see BENCHMARKS.md for how they were made).
SHIPPED = {"ppo-closed-loop": "ppo-closed-loop.safetensors", "ppo-improvise": "ppo-improvise.safetensors"}

# Columns of the summary, in order: metrics first, then the return and reward terms.
METRIC_COLUMNS = ("frame_f1", "note_precision", "note_recall", "note_f1", "velocity_error",
                  "pitch_class_entropy", "note_density")


def _policy_agent(path, seed: int = 0):
    """The policy of a checkpoint; one trained on LMMImprovise-v0 is played by sampling it
    (`lmm_env.agents.improvise.PolicySamplerAgent`, seeded), since its mean alone loops."""
    from lmm_env.agents.train import IMPROVISE_ID, load_policy

    policy = load_policy(path)
    if policy.env_id == IMPROVISE_ID:
        from lmm_env.agents.improvise import PolicySamplerAgent

        sampler = PolicySamplerAgent(policy, seed=seed)
        sampler.env_id, sampler.world = policy.env_id, policy.world
        return sampler
    return policy


def check_spaces(agent, env, what) -> None:
    """A trained policy acts in the spaces it was trained in: refuse an env whose observations differ."""
    space = getattr(agent, "observation_space", None)
    want = env.observation_space
    if space is None or not hasattr(space, "spaces") or not hasattr(want, "spaces"):
        return
    mine = {k: tuple(v.shape) for k, v in space.spaces.items()}
    theirs = {k: tuple(v.shape) for k, v in want.spaces.items()}
    if mine != theirs:
        raise ValueError(f"agent {what!r} was trained on observations {mine}, but this env gives {theirs} "
                         "(a different key range, lookahead or task); train it with this env's arguments")


def load_agent(name_or_path, env=None, seed: int = 0):
    """An agent: a baseline name ("random", "score-reader"), a shipped policy ("ppo-closed-loop":
    PPO + KeyConvPolicy trained on the closed-loop reward only), a training checkpoint
    (``.safetensors`` written by `lmm_env.agents.train`), or an object with ``predict`` (returned as is).
    "ppo-improvise" (and any checkpoint trained on LMMImprovise-v0) samples its policy with ``seed``.

    Baselines need the ``env`` they will play (they read its keyboard); a checkpoint rebuilds
    its own model and never unpickles or imports anything. Given an ``env``, a policy or
    baseline that does not play its task (or a policy trained on other observation shapes)
    is refused here, naming both, not at its first ``predict``.
    """
    import os

    from lmm_env.agents.zoo import AGENTS, check_env, check_task

    if hasattr(name_or_path, "predict"):
        return name_or_path
    check_seed(seed)
    if env is not None:
        check_env(env)
    path = None
    if isinstance(name_or_path, (str, os.PathLike)) and os.fspath(name_or_path).lower().endswith(".safetensors"):
        path = os.fspath(name_or_path)
        if os.path.isdir(path):
            raise ValueError(f"agent checkpoint {path!r} is a directory, not a file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"agent checkpoint {path!r} does not exist")
    elif isinstance(name_or_path, str) and name_or_path in SHIPPED:
        from pathlib import Path

        path = Path(__file__).resolve().parent / "weights" / SHIPPED[name_or_path]
        if not path.is_file():
            raise FileNotFoundError(f"the shipped weights of {name_or_path!r} are missing: {path}")
    if path is not None:
        agent = _policy_agent(path, seed)
        if env is not None:
            label = name_or_path if isinstance(name_or_path, str) else os.fspath(name_or_path)
            check_task(label, (agent.env_id,), env)
            check_spaces(getattr(agent, "policy", agent), env, label)
            sim = env.unwrapped.sim
            here = {"frame_rate": float(sim.frame_rate), "sample_rate": int(sim.sample_rate)}
            if agent.world != here:
                raise ValueError(f"agent {label!r} was trained at {agent.world}, but this env runs at {here}; its "
                                 "observations would mean other things: make the env at the policy's rates")
        return agent
    if isinstance(name_or_path, str) and name_or_path in BASELINES:
        if env is None:
            raise ValueError(f"load_agent({name_or_path!r}) needs the env it will play")
        check_task(name_or_path, AGENTS[name_or_path].tasks, env)
        return BASELINES[name_or_path](env)
    raise ValueError(f"agent {short_repr(name_or_path)} is not allowed; use one of {sorted(BASELINES) + sorted(SHIPPED)}, "
                     "a training checkpoint (.safetensors), or an object with predict(obs, deterministic=True) -> "
                     "(action, state) (e.g. an SB3 model)")


def act(agent, obs, state, episode_start, deterministic: bool = True):
    """``agent.predict(...)``, checked: SB3's signature returns ``(action, state)``."""
    out = agent.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{type(agent).__name__}.predict returned {short_repr(out)}; it must return (action, state) "
                        "as Stable-Baselines3's predict does (state may be None)")
    return out


def episode_rolls(env) -> tuple[np.ndarray, np.ndarray]:
    """(target, played) velocity rolls (T, 88) of an LMMPiano env's episode so far, same length."""
    u = env.unwrapped
    fr = u.sim.frame_rate
    target, played = u.target_score().frames(fr).velocity, u.performance_score().frames(fr).velocity
    t = max(len(target), len(played))
    return tuple(np.pad(r, ((0, t - len(r)), (0, 0))) for r in (target, played))


@dataclasses.dataclass
class EvalTable:
    """Per-episode rows and their means. ``rows[i]`` maps column -> value (plus "score")."""

    rows: list[dict[str, Any]]
    first: dict[str, Any] | None = None  # with keep_first: the first episode's audio and rolls

    @property
    def columns(self) -> list[str]:
        cols = [c for c in METRIC_COLUMNS if self.rows and c in self.rows[0]]
        extra = sorted({k for r in self.rows for k in r} - set(cols) - {"score", "return", "steps"})
        return cols + ["return"] + extra

    def mean(self) -> dict[str, float]:
        """Column means over episodes (NaNs, e.g. velocity error with no matched note, skipped)."""
        out = {}
        for c in self.columns:
            vals = np.array([r[c] for r in self.rows if c in r], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            out[c] = float(vals.mean()) if vals.size else math.nan
        return out

    def markdown(self, label: str = "agent") -> str:
        """One row of means as a markdown table (header included)."""
        if not isinstance(label, str):
            raise TypeError(f"label={short_repr(label)} must be a str (the agent's name in the table)")
        m = self.mean()
        head = "| " + label + " | episodes | " + " | ".join(self.columns) + " |"
        sep = "|---" * (len(self.columns) + 2) + "|"
        row = f"| {label} | {len(self.rows)} | " + " | ".join(f"{m[c]:.3f}" for c in self.columns) + " |"
        return "\n".join([head, sep, row])


def evaluate(agent, env_id: str = "LMMPiano-v0", split: str = "test", episodes: int = 10,
             env_kwargs: dict | None = None, deterministic: bool = True, seed: int = 0,
             progress: bool = True, keep_first: bool = False) -> EvalTable:
    """Play ``episodes`` held-out scores with ``agent`` and tabulate metrics and reward terms.

    Args:
        agent: an SB3 model, a baseline agent, or a baseline name ("random", "score-reader").
        env_id: a registered env id; made with ``split`` and ``env_kwargs``.
        split: corpus split of the scores ("test" by default).
        episodes: how many scores (the first of the split's pool, in order; at most its size).
        deterministic: passed to ``predict``.
        seed: env seed of episode ``i`` is ``seed + i`` (a RandomAgent gets ``seed``).
        keep_first: also return the first episode's audio (``first["audio"]``,
            ``first["sample_rate"]``) and target / played velocity rolls (T, 88), for logging.
    """
    from lmm_env.agents.zoo import TASKS

    if env_id not in TASKS:
        raise ValueError(f"env_id={short_repr(env_id)} is not allowed; evaluate plays lmm_env's tasks {list(TASKS)}")
    check_int("episodes", episodes, 1, 1_000_000)
    check_seed(seed)
    for name, flag in (("deterministic", deterministic), ("progress", progress), ("keep_first", keep_first)):
        check_bool(name, flag)
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs={short_repr(env_kwargs)} must be a dict of env arguments (or None)")
    if "split" in (env_kwargs or {}):
        raise ValueError(f"env_kwargs holds split={short_repr(env_kwargs['split'])}; the split is evaluate's own "
                         f"argument (split={split!r})")
    env = gym.make(env_id, split=split, **(env_kwargs or {}))
    try:
        if isinstance(agent, str) and agent == "random":
            agent = RandomAgent(env, seed=seed)
        agent = load_agent(agent, env)
        n = min(episodes, len(env.unwrapped.sim.pool))
        rows, first = [], None
        for i in tqdm(range(n), desc="evaluate", unit="episode", disable=not progress):
            obs, info = env.reset(seed=seed + i, options={"score_index": i})
            if hasattr(agent, "reset"):
                agent.reset()
            state, start = None, np.ones((1,), dtype=bool)
            total, terms, steps = 0.0, {}, 0
            while True:
                action, state = act(agent, obs, state, start, deterministic)
                start = np.zeros((1,), dtype=bool)
                obs, reward, terminated, truncated, step_info = env.step(action)
                total += float(reward)
                steps += 1
                for k, v in step_info["reward_terms"].items():
                    terms[k] = terms.get(k, 0.0) + float(v)
                if terminated or truncated:
                    break
            metrics = {k: float(v) for k, v in step_info["metrics"].items()}
            if keep_first and i == 0:
                target, played = episode_rolls(env)
                first = {"audio": env.unwrapped.episode_audio(), "sample_rate": env.unwrapped.sim.sample_rate,
                         "target_roll": target, "played_roll": played}
            rows.append(dict(metrics, score=info["score_name"], steps=steps, **{"return": total}, **terms))
    finally:
        env.close()
    return EvalTable(rows, first)
