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
from lmm_env.agents.baselines.simple import RandomAgent, ScoreReaderAgent

# Kept for older code: the registry (`lmm_env.agents.registry`) is where agents are named now.
from lmm_env.agents.registry import SHIPPED, check_spaces, load_agent  # noqa: E402,F401

BASELINES = {"random": RandomAgent, "score-reader": ScoreReaderAgent}

# Columns of the summary, in order: metrics first, then the return and reward terms.
METRIC_COLUMNS = ("frame_f1", "note_precision", "note_recall", "note_f1", "onset_offset_f1", "onset_velocity_f1",
                  "onset_lag_ms", "velocity_error", "pedal_f1", "pitch_class_entropy", "note_density")


def act(agent, obs, state, episode_start, deterministic: bool = True):
    """``agent.predict(...)``, checked: SB3's signature returns ``(action, state)``."""
    out = agent.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"{type(agent).__name__}.predict returned {short_repr(out)}; it must return (action, state) "
                        "as Stable-Baselines3's predict does (state may be None)")
    return out


def play_episode(agent, env, seed: int, index: int, deterministic: bool = True):
    """Piece ``index`` of ``env``'s pool played to its end by ``agent`` (env seed ``seed``): what the
    benchmark and `evaluate` both run. Returns (reset info, last step's info, steps, return, summed
    reward terms)."""
    obs, info = env.reset(seed=seed, options={"score_index": index})
    if callable(getattr(agent, "reset", None)):
        agent.reset()
    state, start = None, np.ones((1,), dtype=bool)
    total, terms, steps = 0.0, {}, 0
    while True:
        action, state = act(agent, obs, state, start, deterministic)
        start = np.zeros((1,), dtype=bool)
        action = np.asarray(action, dtype=np.float32)
        if action.ndim == 2 and action.shape[0] == 1:  # a policy that answers in batches
            action = action[0]
        obs, reward, terminated, truncated, step_info = env.step(action)
        total += float(reward)
        steps += 1
        for k, v in step_info.get("reward_terms", {}).items():
            terms[k] = terms.get(k, 0.0) + float(v)
        if terminated or truncated:
            return info, step_info, steps, total, terms


def episode_rolls(env) -> tuple[np.ndarray, np.ndarray]:
    """(target, played) velocity rolls (T, 88) of an LMMPiano env's episode so far, same length."""
    u = env.unwrapped
    fr = u.sim.frame_rate
    target, played = u.target_score().frames(fr).velocity, u.performance_score().frames(fr).velocity
    t = max(len(target), len(played))
    return tuple(np.pad(r, ((0, t - len(r)), (0, 0))) for r in (target, played))


@dataclasses.dataclass
class EvalTable:
    """Per-episode rows and their means. ``rows[i]`` maps column -> value (plus "score").

    ``summary`` is the same row the benchmark writes for an agent on a task (its `COLUMNS`:
    note and frame F1, velocity error, keys deciphered, the improvisation statistics, env
    steps, wall time, return); ``table()`` prints it as the benchmark's markdown table."""

    rows: list[dict[str, Any]]
    first: dict[str, Any] | None = None  # with keep_first: the first episode's audio and rolls
    summary: dict[str, Any] | None = None

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
        """One row of means of every metric and reward term, as a markdown table (header included)."""
        if not isinstance(label, str):
            raise TypeError(f"label={short_repr(label)} must be a str (the agent's name in the table)")
        m = self.mean()
        head = "| " + label + " | episodes | " + " | ".join(self.columns) + " |"
        sep = "|---" * (len(self.columns) + 2) + "|"
        row = f"| {label} | {len(self.rows)} | " + " | ".join(f"{m[c]:.3f}" for c in self.columns) + " |"
        return "\n".join([head, sep, row])

    def table(self) -> str:
        """The benchmark's markdown table of this evaluation (`lmm_env.agents.benchmark.markdown_table`)."""
        from lmm_env.agents.benchmark.tables import markdown_table

        return markdown_table([self.summary] if self.summary else [])


def _label(agent) -> str:
    import os

    if isinstance(agent, str):
        return agent
    if isinstance(agent, os.PathLike):
        return os.path.basename(os.fspath(agent))
    return type(agent).__name__


def evaluate(agent, env_id: str = "LMMPiano-v0", split: str = "test", episodes: int = 10,
             env_kwargs: dict | None = None, deterministic: bool = True, seed: int = 0,
             progress: bool = True, keep_first: bool = False, **options) -> EvalTable:
    """Play ``episodes`` held-out scores with ``agent`` and tabulate metrics and reward terms.

    Args:
        agent: any registered agent name (`lmm_env.agents.registry.AGENTS`, including agents
            bound to their env: they are built for the env made here), a ``.safetensors``
            checkpoint, or an object with ``predict`` (an SB3 model, your agent).
        env_id: a registered env id; made with ``split`` and ``env_kwargs``.
        split: corpus split of the scores ("test" by default).
        episodes: how many scores (the first of the split's pool, in order; at most its size).
        deterministic: passed to ``predict``.
        seed: env seed of episode ``i`` is ``seed + i``; an agent that takes a seed gets ``seed``.
        keep_first: also return the first episode's audio (``first["audio"]``,
            ``first["sample_rate"]``) and target / played velocity rolls (T, 88), for logging.
        **options: ``pairs=K`` sets the reward's ear (the env's ``pairs``) and, as in the
            benchmark, the ear of an agent that listens; ``ear=`` goes to an agent that
            listens (refused by one that does not); nothing else is allowed.

    The returned table's ``summary`` is the benchmark's row for this agent and task; on the
    hidden keyboard (LMMDecipher-v0) only a registered oracle may read the layout, as there.
    """
    import time

    from lmm_env.agents.benchmark.runner import summary_row
    from lmm_env.agents.registry import AGENTS, OPTIONS, TASKS, check_options

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
    unknown = sorted(k for k in options if k not in OPTIONS or k == "seed")
    if unknown:
        raise ValueError(f"evaluate got unknown option(s) {unknown}; it takes pairs=K and ear= for the agent "
                         "(seed is evaluate's own argument)")
    kwargs = dict(env_kwargs or {})
    pairs = options.get("pairs")
    if pairs is not None:
        if "pairs" in kwargs and kwargs["pairs"] != pairs:
            raise ValueError(f"pairs={short_repr(pairs)} and env_kwargs['pairs']={short_repr(kwargs['pairs'])} "
                             "differ; give one")
        kwargs["pairs"] = pairs
    spec = AGENTS.get(agent) if isinstance(agent, str) else None
    agent_options = {"ear": options.get("ear")}
    if spec is not None:
        agent_options["pairs"] = pairs if "pairs" in spec.options else None
        agent_options["seed"] = seed if "seed" in spec.options else None
        check_options(agent, agent_options, spec.options)  # before the env is made
    elif hasattr(agent, "predict"):
        check_options(_label(agent), agent_options, ())
    env = gym.make(env_id, split=split, **kwargs)
    counter = [0]
    inner = env.unwrapped.step

    def counted(action):
        counter[0] += 1
        return inner(action)

    env.unwrapped.step = counted
    t0 = time.perf_counter()
    try:
        oracle = bool(spec.oracle) if spec is not None else False
        if spec is not None:  # as in the benchmark: only a registered oracle may reveal() a hidden layout
            env.unwrapped.keyboard._reveal_allowed = oracle
        if agent == "random":
            agent_options["seed"] = seed
        built = load_agent(agent, env, **agent_options)
        n = min(episodes, len(env.unwrapped.sim.pool))
        rows, first, probe = [], None, {}
        for i in tqdm(range(n), desc="evaluate", unit="episode", disable=not progress):
            info, step_info, steps, total, terms = play_episode(built, env, seed + i, i, deterministic)
            metrics = {k: float(v) for k, v in step_info["metrics"].items()}
            if keep_first and i == 0:
                target, played = episode_rolls(env)
                first = {"audio": env.unwrapped.episode_audio(), "sample_rate": env.unwrapped.sim.sample_rate,
                         "target_roll": target, "played_roll": played}
            rows.append(dict(metrics, score=info["score_name"], steps=steps, **{"return": total}, **terms))
        env_steps = counter[0]
        if env_id == "LMMDecipher-v0":
            from lmm_env.tasks import probe_keyboard

            probe = dict(probe_keyboard(built, env))
        kind = "oracle" if oracle else (spec.kind if spec is not None else "agent")
        synth = kwargs.get("target_synth" if env_id == "LMMByEar-v0" else "synth", "piano")
        summary = summary_row(_label(agent), kind, oracle, env_id, kwargs.get("pairs", 0),
                              synth if isinstance(synth, str) else type(synth).__name__, rows, probe,
                              env_steps, 0, time.perf_counter() - t0,
                              pairs_instrument=(getattr(env.unwrapped.sim, "pairs_instrument", None) or "-")
                              if kwargs.get("pairs") else "-")
    finally:
        env.close()
    return EvalTable(rows, first, summary)
