"""The lmm_env benchmark: every agent on every task under one fixed protocol, in one table.

    from lmm_env.agents.benchmark import runner as benchmark
    rows = benchmark.run(["baselines"], pairs=(0, 16), episodes=10, out="out/bench")
    # lmm-env benchmark --agent baselines --pairs 0,16 --out out/bench

One row per (agent, task, K, synth): note / frame F1 and velocity error (Piano, Decipher,
ByEar), ``keys_deciphered`` / ``probe_steps`` (Decipher, from
`lmm_env.tasks.probe_keyboard`), the improvisation statistics (Improvise, beside the same
statistics of held-out corpus pieces in ``corpus:<name>`` rows), the env steps the agent
took, the wall time and the mean return. ``out`` gets ``results.md`` (protocol, command,
table; oracles marked), ``results.csv``, ``results.json`` (rows, per-episode rows,
protocol, notes) and ``summary.png``.

## A sweep that survives a kill

``out`` is checked (a writable folder) before anything runs. Each row is written the moment
it finishes (``results.md`` / ``.csv`` / ``.json``, each replaced atomically, as checkpoints
are), marked ``partial`` until the last row is in (``summary.png`` then); SIGINT, SIGTERM or
SIGKILL lose at most the row in flight. ``resume=True`` (``--resume``) continues a folder:
rows already there (same agent, task, K, synth; a checkpoint also by its file's hash) are
kept and skipped, and a folder of another protocol (episodes, quick, seed, training) is
refused. A folder that already holds results is never silently replaced: resume it, or
pass ``overwrite=True`` (``--overwrite``).

## Protocol (fixed: two runs with the same arguments play the same music)

* Split ``"test"``; episode ``i`` plays the ``i``-th piece of the split's pool
  (``reset(seed=seed + i, options={"score_index": i})``), ``i = 0 .. episodes - 1``
  (at most the pool's size). Pieces come from ``"folk"`` (the Improvise prompts too).
* Lengths (`PROTOCOL`): LMMPiano-v0, LMMDecipher-v0 and LMMByEar-v0 play the first
  ``max_seconds = 20`` s of each piece (plus the env's 0.5 s tail); LMMImprovise-v0 has a
  4 s prompt (played by the world) and 20 s of free play.
* LMMDecipher-v0 plays on ``keys = (48, 84)`` (C3..C6, 37 keys: the range of the folk
  melodies, folded by octaves; deciphering all 88 keys would mostly measure how long an
  agent spends on keys no test piece uses), ``relayout = "never"`` and
  ``layout_seed = seed``: one hidden permutation for the whole row, so what an agent
  worked out in episode 0 still holds in episode 9.
* ``pairs=K`` chooses the ear of the reward (`lmm_env.pairs`); K-aware agents get the same
  K. ``synths``: the world's ``synth=`` for Piano, Decipher and Improvise; for
  LMMByEar-v0 it is ``target_synth=`` (the instrument the *target* is rendered through)
  while the world stays the built-in piano: a SoundFont target is the seed's advanced
  setup, a timbre the agent's instrument does not have.
* ``quick=True`` (what the tests use): 2 episodes, 8 s pieces (Improvise: 4 s prompt +
  8 s), only the first K given, 8 corpus reference pieces.
* ``env_steps`` counts every step taken on the row's env (the episodes plus anything the
  agent does to it outside them, e.g. babbling each key), not the probe's (those are
  ``probe_steps``); for ``ppo-trained`` also its training steps. ``wall_seconds`` is the
  row's time (building the agent, episodes, probe; training for ``ppo-trained``), with
  torch limited to one thread while agents act (see `_OneTorchThread`); it depends on
  the machine's load.

## The hidden layout: how the runner prevents reading it

LMMDecipher-v0's keyboard is sealed: ``pitch_of_action``, ``key_of_action`` and
``action_of_pitch`` raise `lmm_env.keyboard.HiddenLayoutError`, and the layout is read only
through ``keyboard.reveal()``. Before it builds an agent the runner sets
``env.unwrapped.keyboard._reveal_allowed`` to the agent's registered ``oracle`` flag
(`lmm_env.agents.registry.AGENTS`; checkpoints and trained models are never oracles), so for
every non-oracle ``reveal()`` raises too, in its constructor, in any episode and in the
probe. The runner does not catch it: the run stops with a HiddenLayoutError that names the
agent. The layout itself is not an attribute of the keyboard (nor of anything the env
holds): it lives in `lmm_env.keyboard`'s private table, so no attribute walk from the env
(``vars()``, containers, closures; what a generic agent that searches the env's state
would do) reaches it, and a test walks the whole object graph of a sealed env to check.
This guards against honest mistakes and generic searches, not against code written to
cheat: Python cannot stop an agent from importing `lmm_env.keyboard` and reading its table,
or flipping the flag back; review agents for that.

## Agents

``agents`` holds names from `lmm_env.agents.registry.AGENTS`, the word ``"baselines"`` (every
registered agent, each on the tasks it plays; one whose module is not installed is skipped
with a note), ``.safetensors`` training checkpoints (`load_agent`; they play the task in
their config), or `AgentSpec` objects (optionally as ``(label, spec)``) for agents that
are not registered. An agent that does not play a task is skipped, unless it is the only
agent asked: then a ValueError names it and the tasks it plays.
``train_algo="ppo", train_steps=N`` first trains on each (task, K, synth) on the train
split through `lmm_env.agents.training.sb3` (the algorithm's preset; LMMPiano-v0's where a task
has none, ``MultiInputPolicy`` where the preset's policy needs a score observation) and
adds the model as agent ``"ppo-trained"`` (``"<algo>-trained"``).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lmm_env._checks import check_int, short_repr
from lmm_env.agents.registry import AGENTS, TASKS, AgentSpec

__all__ = ["run", "resolve", "PROTOCOL", "QUICK", "COLUMNS", "BenchmarkArgumentError", "SYNTHS", "write_outputs",
           "markdown_table", "read_results"]

# --------------------------------------------------------------------------- the protocol

PROTOCOL: dict[str, Any] = {
    "split": "test",                  # held-out pieces
    "score": "folk",                  # corpus of Piano / Decipher / ByEar pieces and Improvise prompts
    "episodes": 10,                   # default N: score_index 0..N-1, env seed = seed + i
    "max_seconds": 20.0,              # Piano, Decipher, ByEar: first 20 s of each piece
    "decipher_keys": (48, 84),        # C3..C6, 37 hidden keys
    "decipher_relayout": "never",     # one permutation per row (layout_seed = seed)
    "improvise_prompt_seconds": 4.0,  # world-played prompt
    "improvise_length_seconds": 20.0,  # free play after it
    "corpus_reference_pieces": 20,    # per corpus, for the Improvise reference rows
    "corpus_reference_names": ("folk", "bach-chorales"),
}
QUICK: dict[str, Any] = {"episodes": 2, "max_seconds": 8.0, "improvise_length_seconds": 8.0,
                         "corpus_reference_pieces": 8}

SYNTHS = ("piano", "soundfont")  # or a path to a .sf2 file
IMPROV_STATS = ("judge_nll", "pitch_class_entropy", "note_density", "repetition", "in_key_share")
COLUMNS = ("agent", "kind", "oracle", "task", "pairs", "synth", "episodes", "note_f1", "frame_f1", "velocity_error",
           "keys_deciphered", "probe_steps") + IMPROV_STATS + ("env_steps", "train_steps", "wall_seconds", "return")
_NUMERIC = tuple(c for c in COLUMNS[7:])


class BenchmarkArgumentError(ValueError):
    """An argument of `run` (an agent, task, K, synth, ...) is not allowed; raised before anything runs."""


# --------------------------------------------------------------------------- plan


@dataclass
class _Entry:
    label: str
    oracle: bool
    tasks: tuple
    build: Callable  # (env, K, seed) -> agent
    kind: str = "agent"  # agent | oracle | checkpoint | custom | trained
    explicit: bool = True  # named by the caller (not through "baselines")
    source: str | None = None  # a checkpoint's sha256: its rows resume only with the same file


@dataclass
class Plan:
    """What `run` will do, checked: entries, tasks, Ks, synths and the protocol's numbers."""

    entries: list
    tasks: tuple
    pairs: tuple
    synths: tuple
    episodes: int
    quick: bool
    seed: int
    train_algo: str | None
    train_steps: int
    protocol: dict
    notes: list = field(default_factory=list)


def _registered(name: str, explicit: bool) -> _Entry:
    spec = AGENTS[name]

    def build(env, K, seed, _name=name):
        from lmm_env.agents.registry import load_agent

        # the row's K is the reward's ear; an agent that listens gets the same K (see the protocol)
        options = {"pairs": K if "pairs" in spec.options else None, "seed": seed if "seed" in spec.options else None}
        return load_agent(_name, env, **options)

    return _Entry(name, bool(spec.oracle), tuple(spec.tasks), build, "oracle" if spec.oracle else "agent", explicit)


def _checkpoint(path: str) -> _Entry:
    from lmm_env.agents.training.sb3 import read_checkpoint

    if not os.path.isfile(path):
        raise BenchmarkArgumentError(f"agent checkpoint {path!r} does not exist")
    try:
        config, _, _ = read_checkpoint(path)
    except (ValueError, FileNotFoundError) as exc:
        raise BenchmarkArgumentError(f"agent {path!r}: {exc}") from None
    task = config.get("env_id")
    if task not in TASKS:
        raise BenchmarkArgumentError(f"agent checkpoint {path!r} was trained on {task!r}, not one of the tasks "
                                     f"{list(TASKS)}")
    kw = config.get("env_kwargs", {}) or {}
    keys = tuple(kw.get("keys", (21, 108)))
    want = tuple(PROTOCOL["decipher_keys"]) if task == "LMMDecipher-v0" else (21, 108)
    if keys != want or kw.get("pedal"):
        raise BenchmarkArgumentError(
            f"agent checkpoint {path!r} acts on keys={keys}{' with a pedal' if kw.get('pedal') else ''}, but the "
            f"benchmark plays {task} on keys={want} without a pedal; train it with the protocol's key range")

    def build(env, K, seed, _path=path):
        from lmm_env.agents.registry import load_agent

        return load_agent(_path, env)

    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return _Entry(os.path.basename(path), False, (task,), build, "checkpoint", source=digest)


def _custom(label: str, spec: AgentSpec) -> _Entry:
    unknown = [t for t in spec.tasks if t not in TASKS]
    if unknown:
        raise BenchmarkArgumentError(f"agent {label!r} plays unknown tasks {unknown}; tasks: {list(TASKS)}")

    def build(env, K, seed, _spec=spec):
        return _spec.factory(env, K if "pairs" in _spec.options else None, seed if "seed" in _spec.options else None)

    return _Entry(label, bool(spec.oracle), tuple(spec.tasks), build, "oracle" if spec.oracle else "custom")


def _as_list(value, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [v.strip() for v in os.fspath(value).split(",") if v.strip()]
    if isinstance(value, AgentSpec):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise BenchmarkArgumentError(f"{what}={value!r} must be a name, a comma-separated string or a list") from None


def _check_synth(s) -> str:
    if not isinstance(s, (str, os.PathLike)):
        raise BenchmarkArgumentError(f"synth {s!r} is not allowed; use one of {list(SYNTHS)} or a path to a .sf2 file")
    s = os.fspath(s)
    if s in SYNTHS:
        return s
    if s.lower().endswith(".sf2"):
        if not os.path.isfile(s):
            raise BenchmarkArgumentError(f"synth {s!r}: no such .sf2 file")
        try:  # loaded now (a second or so): a file that is no SoundFont fails here, not at its first row
            from lmm_env.synth import make_synth

            make_synth(s, 16000)
        except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
            raise BenchmarkArgumentError(f"synth {s!r} cannot be loaded as a SoundFont: {exc}") from None
        return s
    raise BenchmarkArgumentError(f"synth {s!r} is not allowed; use one of {list(SYNTHS)} or a path to a .sf2 file")


def resolve(agents, tasks=None, pairs=(0,), synths=("piano",), episodes: int = 10, quick: bool = False,
            train_algo: str | None = None, train_steps: int = 0, seed: int = 0) -> Plan:
    """Check every argument of `run` and expand it into a `Plan`; `BenchmarkArgumentError` names a bad value."""
    from lmm_env.pairs import check_k

    # tasks
    task_list = None
    if tasks is not None:
        task_list = _as_list(tasks, "tasks")
        for t in task_list:
            if t not in TASKS:
                raise BenchmarkArgumentError(f"unknown task {t!r}; tasks: {', '.join(TASKS)}")
        if not task_list:
            raise BenchmarkArgumentError(f"tasks is empty; choose from {', '.join(TASKS)}")
        task_list = [t for t in TASKS if t in task_list]  # protocol order, no duplicates
    # K and synths
    ks = []
    for k in _as_list(pairs, "pairs") if not isinstance(pairs, (int, np.integer)) else [pairs]:
        try:
            k = check_k(k)
        except ValueError as exc:
            raise BenchmarkArgumentError(str(exc)) from None
        if k not in ks:
            ks.append(k)
    if not ks:
        raise BenchmarkArgumentError("pairs is empty; give at least one K of 0, 4, 16, 64, 'all'")
    synth_list = []
    for s in _as_list(synths, "synths") if not isinstance(synths, os.PathLike) else [synths]:
        s = _check_synth(s)
        if s not in synth_list:
            synth_list.append(s)
    if not synth_list:
        raise BenchmarkArgumentError(f"synths is empty; give one of {list(SYNTHS)} or a .sf2 path")
    if not isinstance(quick, (bool, np.bool_)):
        raise BenchmarkArgumentError(f"quick={short_repr(quick)} is not allowed; use True or False")
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise BenchmarkArgumentError(f"episodes={episodes!r} must be an int >= 1")
    try:
        check_int("seed", seed, 0, 2**32 - 1)
    except ValueError as exc:
        raise BenchmarkArgumentError(str(exc)) from None
    # training
    if train_algo is not None:
        from lmm_env.agents.training.sb3 import ALGOS

        if str(train_algo).lower() not in ALGOS:
            raise BenchmarkArgumentError(f"train algo {train_algo!r} is not allowed; use one of {sorted(ALGOS)}")
        train_algo = str(train_algo).lower()
        if isinstance(train_steps, bool) or not isinstance(train_steps, (int, np.integer)) or train_steps < 1:
            raise BenchmarkArgumentError(f"training with {train_algo!r} needs train_steps (--steps) = an int >= 1, "
                                         f"got {train_steps!r}")
    elif train_steps:
        raise BenchmarkArgumentError(f"train_steps={train_steps!r} without train_algo; give both (--train ppo --steps N)")
    # agents
    entries: list[_Entry] = []
    names = _as_list(agents, "agents")
    if not names and train_algo is None:
        raise BenchmarkArgumentError(f"no agent given; use names from {sorted(AGENTS)}, 'baselines' or a .safetensors "
                                     "checkpoint")
    for a in names:
        if isinstance(a, tuple) and len(a) == 2 and isinstance(a[1], AgentSpec):
            entries.append(_custom(str(a[0]), a[1]))
        elif isinstance(a, AgentSpec):
            entries.append(_custom(getattr(a.factory, "__name__", "custom"), a))
        elif isinstance(a, (str, os.PathLike)) and os.fspath(a) == "baselines":
            entries.extend(_registered(n, explicit=False) for n in AGENTS)
        elif isinstance(a, (str, os.PathLike)) and os.fspath(a).endswith(".safetensors"):
            entries.append(_checkpoint(os.fspath(a)))
        elif isinstance(a, str) and a in AGENTS:
            entries.append(_registered(a, explicit=True))
        else:
            raise BenchmarkArgumentError(f"unknown agent {a!r}; use one of {sorted(AGENTS)}, 'baselines', a "
                                         ".safetensors checkpoint or an AgentSpec")
    seen, unique = set(), []
    for e in entries:  # "random,baselines": once each; an explicit name wins
        if e.label in seen:
            if e.explicit:
                unique = [u if u.label != e.label else e for u in unique]
            continue
        seen.add(e.label)
        unique.append(e)
    entries = unique
    notes = []
    if task_list is None:
        task_list = list(TASKS) if train_algo else [t for t in TASKS if any(t in e.tasks for e in entries)]
    asked = [e for e in entries]
    if len(asked) == 1 and not train_algo:
        e = asked[0]
        missing = [t for t in task_list if t not in e.tasks]
        if missing:
            raise BenchmarkArgumentError(f"agent {e.label!r} does not play {', '.join(missing)}; it plays "
                                         f"{', '.join(e.tasks)}")
    for e in entries:
        skipped = [t for t in task_list if t not in e.tasks]
        if skipped and e.explicit:
            notes.append(f"{e.label} does not play {', '.join(skipped)}: skipped there")
    if not any(t in e.tasks for e in entries for t in task_list) and not train_algo:
        raise BenchmarkArgumentError(f"none of the agents plays any of the tasks {task_list}")
    if quick and len(ks) > 1:
        notes.append(f"quick: only the first K ({ks[0]}) is played; dropped {ks[1:]}")
        ks = ks[:1]
    protocol = dict(PROTOCOL, **(QUICK if quick else {}))
    if not quick:
        protocol["episodes"] = int(episodes)
    return Plan(entries, tuple(task_list), tuple(ks), tuple(synth_list), int(protocol["episodes"]), bool(quick),
                int(seed), train_algo, int(train_steps or 0), protocol, notes)


# --------------------------------------------------------------------------- envs


def env_kwargs(task: str, K, synth: str, protocol: dict, seed: int = 0, split: str | None = None) -> dict:
    """The protocol's arguments of ``task`` for ear ``K`` and instrument ``synth`` (see the module docstring)."""
    kw: dict[str, Any] = {"split": split or protocol["split"], "pairs": K}
    if task == "LMMImprovise-v0":
        kw.update(prompt=protocol["score"], prompt_seconds=protocol["improvise_prompt_seconds"],
                  length_seconds=protocol["improvise_length_seconds"], synth=synth)
        return kw
    kw.update(score=protocol["score"], max_seconds=protocol["max_seconds"])
    if task == "LMMByEar-v0":
        kw["target_synth"] = synth  # the world stays the built-in piano
    else:
        kw["synth"] = synth
    if task == "LMMDecipher-v0":
        kw.update(keys=list(protocol["decipher_keys"]), relayout=protocol["decipher_relayout"], layout_seed=int(seed))
    return kw


def _make_env(task, kwargs):
    import gymnasium as gym

    import lmm_env  # noqa: F401  (registers the ids)

    kw = dict(kwargs)
    if "keys" in kw:
        kw["keys"] = tuple(kw["keys"])
    return gym.make(task, **kw)


def _count_steps(env) -> list:
    """Count every ``step`` of ``env`` (through wrappers or ``env.unwrapped``): returns a 1-element counter."""
    u = env.unwrapped
    inner = u.step
    counter = [0]

    def step(action):
        counter[0] += 1
        return inner(action)

    u.step = step
    return counter


# --------------------------------------------------------------------------- training


def _train(task: str, K, synth: str, plan: Plan):
    """Train ``plan.train_algo`` on ``task``'s train split for ``plan.train_steps`` env steps; the model."""
    from lmm_env.agents.training.sb3 import preset, train

    try:
        p = preset(plan.train_algo, task)
    except ValueError:
        p = preset(plan.train_algo, "LMMPiano-v0")
    policy = p["policy"]
    if task == "LMMByEar-v0" and policy in ("KeyConvPolicy", "KeyLevelPolicy"):
        policy = "MultiInputPolicy"  # those read obs["score"]; ByEar observes target audio instead
    hyper = dict(p["hyperparams"])
    n_envs = int(p["n_envs"])
    steps = int(plan.train_steps)
    if "n_steps" in hyper and hyper["n_steps"] * n_envs > steps:  # on-policy: one rollout must fit the budget
        hyper["n_steps"] = max(8, steps // n_envs)
        if "batch_size" in hyper:
            hyper["batch_size"] = min(int(hyper["batch_size"]), hyper["n_steps"] * n_envs)
    if "learning_starts" in hyper:
        hyper["learning_starts"] = min(int(hyper["learning_starts"]), max(1, steps // 2))
    kwargs = env_kwargs(task, K, synth, plan.protocol, seed=plan.seed, split="train")
    return train(env_id=task, algo=plan.train_algo, total_steps=steps, n_envs=n_envs, seed=plan.seed,
                 logdir=None, env_kwargs=kwargs, hyperparams=hyper, policy=policy, eval_every=0,
                 checkpoint_every=0, progress=False)


# --------------------------------------------------------------------------- one row


class _OneTorchThread:
    """torch's intra-op threads limited to 1 while agents act, restored after (opt out: ``LMM_ENV_KEEP_TORCH_THREADS=1``).

    Agents act on one observation at a time, where a second torch thread gains nothing and,
    on a loaded 2-core machine, spin-waits against the env: the shipped PPO policy's quick
    row took 8-10 s with 2 threads and 0.4-1.8 s with 1 (gradient and LM agents: no slower).
    Training keeps the caller's setting (its minibatches do use the threads)."""

    def __enter__(self):
        self.prev = None
        if not os.environ.get("LMM_ENV_KEEP_TORCH_THREADS"):
            import torch

            self.prev = torch.get_num_threads()
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            import torch

            torch.set_num_threads(self.prev)
        return False


def _nanmean(values) -> float:
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def _play_row(entry: _Entry, task: str, K, synth: str, plan: Plan, bar, agent_override=None,
              extra_steps: int = 0, extra_seconds: float = 0.0) -> tuple[dict, list, list]:
    """Play one (agent, task, K, synth) row; (row, episode rows, notes)."""
    with _OneTorchThread():
        return _play_row_inner(entry, task, K, synth, plan, bar, agent_override, extra_steps, extra_seconds)


def _play_row_inner(entry, task, K, synth, plan, bar, agent_override, extra_steps, extra_seconds):
    from lmm_env.agents.benchmark.evaluate import act
    from lmm_env.keyboard import HiddenLayoutError

    notes = []
    kwargs = env_kwargs(task, K, synth, plan.protocol, seed=plan.seed)
    env = _make_env(task, kwargs)
    counter = _count_steps(env)
    kb = env.unwrapped.keyboard
    kb._reveal_allowed = bool(entry.oracle)  # the guard: only registered oracles may reveal() the layout
    t0 = time.perf_counter()
    episodes = []
    probe = {}
    try:
        try:
            agent = agent_override if agent_override is not None else entry.build(env, K, plan.seed)
            if not callable(getattr(agent, "predict", None)):
                raise TypeError(f"agent {entry.label!r}: its factory returned {short_repr(agent)}, not an agent with "
                                "predict(obs, state=None, episode_start=None, deterministic=True) -> (action, state)")
            n = min(plan.episodes, len(env.unwrapped.sim.pool))
            if n < plan.episodes:
                bar.total -= plan.episodes - n
                notes.append(f"{task}: the {plan.protocol['split']} split holds {n} pieces; played {n}")
            for i in range(n):
                obs, info = env.reset(seed=plan.seed + i, options={"score_index": i})
                if hasattr(agent, "reset") and callable(agent.reset):
                    agent.reset()
                state, start = None, np.ones((1,), dtype=bool)
                total, steps = 0.0, 0
                while True:
                    action, state = act(agent, obs, state, start)
                    start = np.zeros((1,), dtype=bool)
                    action = np.asarray(action, dtype=np.float32)
                    if action.ndim == 2 and action.shape[0] == 1:  # a policy that answers in batches
                        action = action[0]
                    obs, reward, terminated, truncated, step_info = env.step(action)
                    total += float(reward)
                    steps += 1
                    if terminated or truncated:
                        break
                m = {k: float(v) for k, v in step_info.get("metrics", {}).items()}
                episodes.append(dict(m, agent=entry.label, task=task, pairs=K, synth=synth, episode=i,
                                     score=info.get("score_name", ""), steps=steps, **{"return": total}))
                bar.update()
            played_steps = counter[0]
            if task == "LMMDecipher-v0":
                try:
                    from lmm_env.tasks import probe_keyboard
                except ImportError as exc:
                    notes.append(f"keys_deciphered not measured: lmm_env.tasks.probe_keyboard is not available ({exc})")
                else:
                    probe = dict(probe_keyboard(agent, env))
        except HiddenLayoutError as exc:
            if entry.oracle:
                raise
            raise HiddenLayoutError(f"agent {entry.label!r} is not registered as an oracle but read the hidden layout "
                                    f"of {task} (the benchmark refuses keyboard.reveal() to non-oracles): {exc}") from exc
    finally:
        env.close()
    wall = time.perf_counter() - t0 + extra_seconds
    row = summary_row(entry.label, entry.kind, entry.oracle, task, K, synth, episodes, probe,
                      int(played_steps) + int(extra_steps), int(extra_steps), wall)
    return row, episodes, notes


def summary_row(label: str, kind: str, oracle: bool, task: str, K, synth, episodes: list, probe: dict,
                env_steps: int, train_steps: int, wall: float) -> dict:
    """One table row (`COLUMNS`) from an agent's episode rows on ``task``: what the benchmark and
    `lmm_env.agents.evaluate` both report. ``probe``: `lmm_env.tasks.probe_keyboard`'s result on
    LMMDecipher-v0 (else empty)."""
    improvise = task == "LMMImprovise-v0"
    row = {"agent": label, "kind": kind, "oracle": bool(oracle), "task": task, "pairs": K,
           "synth": synth, "episodes": len(episodes)}
    for c in ("note_f1", "frame_f1", "velocity_error"):
        row[c] = math.nan if improvise else _nanmean(e.get(c) for e in episodes)
    row["keys_deciphered"] = float(probe["keys_deciphered"]) if "keys_deciphered" in probe else math.nan
    row["probe_steps"] = float(probe["probe_steps"]) if "probe_steps" in probe else math.nan
    for c in IMPROV_STATS:
        row[c] = _nanmean(e.get(c) for e in episodes) if improvise else math.nan
    row["env_steps"] = int(env_steps)
    row["train_steps"] = int(train_steps)
    row["wall_seconds"] = float(wall)
    row["return"] = _nanmean(e["return"] for e in episodes)
    return row


def _corpus_rows(plan: Plan) -> list[dict]:
    from lmm_env.improv import corpus_reference

    p = plan.protocol
    t0 = time.perf_counter()
    ref = corpus_reference(split=p["split"], n=int(p["corpus_reference_pieces"]),
                           seconds=float(p["improvise_length_seconds"]), names=tuple(p["corpus_reference_names"]))
    wall = (time.perf_counter() - t0) / max(1, len(ref))
    rows = []
    for name, stats in ref.items():
        row = {c: math.nan for c in COLUMNS}
        row.update(agent=f"corpus:{name}", kind="corpus", oracle=False, task="LMMImprovise-v0", pairs="-", synth="-",
                   episodes=int(p["corpus_reference_pieces"]), env_steps=0, train_steps=0, wall_seconds=wall)
        for c in IMPROV_STATS:
            row[c] = stats[c]["mean"]
        row["range"] = {c: [stats[c]["p10"], stats[c]["p90"]] for c in IMPROV_STATS}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- run


def run(agents, tasks=None, pairs=(0,), synths=("piano",), episodes: int = 10, quick: bool = False, out=None,
        train_algo: str | None = None, train_steps: int = 0, seed: int = 0, progress: bool = True,
        command: str | None = None, resume: bool = False, overwrite: bool = False) -> list[dict]:
    """Benchmark ``agents`` on ``tasks`` x ``pairs`` (K) x ``synths`` under the fixed protocol.

    Args:
        agents: names from `lmm_env.agents.registry.AGENTS`, ``"baselines"``, ``.safetensors``
            checkpoints or `AgentSpec` objects (``(label, spec)`` to name one); a list or a
            comma-separated string.
        tasks: task ids (default: every task one of the agents plays; all four with training).
        pairs: the Ks of the reward's ear (0, 4, 16, 64, "all").
        synths: "piano", "soundfont" or .sf2 paths (LMMByEar-v0: the target's instrument).
        episodes: pieces per row (the first of the test split, in order).
        quick: the short protocol (`QUICK`: 2 episodes, 8 s, the first K only).
        out: a folder for results.md / .csv / .json and summary.png (None: write nothing),
            checked before anything runs; each row is written as it finishes.
        train_algo, train_steps: also train ``train_algo`` for ``train_steps`` env steps on
            each (task, K, synth)'s train split and add it as ``"<algo>-trained"``.
        seed: env seed of episode i is ``seed + i``; agents' and Decipher's layout seed.
        progress: a tqdm bar over (agent, task, K, synth, episode).
        command: the command line to print on top of results.md (default: this call).
        resume: continue the run in ``out``: keep its rows, play only the missing ones
            (refused if ``out`` holds another protocol's results).
        overwrite: replace results already in ``out`` (without it, and without ``resume``,
            a folder that holds results is refused).

    Returns:
        The table's rows (dicts with `COLUMNS`; ``corpus:<name>`` rows carry ``range``:
        p10/p90 of each improvisation statistic). Metrics that do not apply are NaN.

    Raises:
        BenchmarkArgumentError (a ValueError): a bad argument or ``out``, before anything runs.
        lmm_env.keyboard.HiddenLayoutError: a non-oracle read LMMDecipher-v0's hidden layout.
    """
    from tqdm import tqdm

    for name, flag in (("resume", resume), ("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, (bool, np.bool_)):
            raise BenchmarkArgumentError(f"{name}={short_repr(flag)} is not allowed; use True or False")
    plan = resolve(agents, tasks, pairs, synths, episodes, quick, train_algo, train_steps, seed)
    if command is None:
        command = (f"lmm_env.agents.benchmark.runner.run(agents={agents!r}, tasks={tasks!r}, pairs={pairs!r}, "
                   f"synths={synths!r}, episodes={episodes!r}, quick={quick!r}, train_algo={train_algo!r}, "
                   f"train_steps={train_steps!r}, seed={seed!r})")
    prior = _prepare_out(out, plan, resume, overwrite) if out is not None else None
    jobs = [(e, t, k, s) for e in plan.entries for t in plan.tasks if t in e.tasks for k in plan.pairs
            for s in plan.synths]
    trained = [(t, k, s) for t in plan.tasks for k in plan.pairs for s in plan.synths] if plan.train_algo else []
    label = f"{plan.train_algo}-trained" if plan.train_algo else None
    keys = [_row_key(e.label, t, k, s) for e, t, k, s in jobs] + [_row_key(label, t, k, s) for t, k, s in trained]
    rows, episode_rows, notes = [], [], list(plan.notes)
    if prior is not None:  # resume: the rows already there stay, first, as they were
        rows = [r for r in prior["rows"] if r.get("kind") != "corpus"]
        episode_rows = list(prior["episodes"])
        notes += [n for n in prior["notes"] if n not in notes]
        _check_sources(rows, jobs, out)
    done = {_row_key(r["agent"], r["task"], r["pairs"], r["synth"]) for r in rows}
    todo = sum(k not in done for k in keys)

    def save(final: bool) -> None:
        if out is not None:
            write_outputs(rows, out, plan=plan, command=command, notes=notes, episode_rows=episode_rows,
                          planned=len(done | set(keys)), final=final)

    save(final=False)  # the protocol and the rows so far are on disk before the first row plays
    with tqdm(total=todo * plan.episodes, desc="benchmark", unit="episode", disable=not progress) as bar:
        for entry, task, K, synth in jobs:
            if _row_key(entry.label, task, K, synth) in done:
                continue
            bar.set_postfix_str(f"{entry.label} {task} K={K} {synth}")
            try:
                row, eps, row_notes = _play_row(entry, task, K, synth, plan, bar)
            except ImportError as exc:
                if entry.explicit:
                    raise
                notes.append(f"{entry.label} skipped on {task}: not available ({exc})")
                bar.total -= plan.episodes
                keys.remove(_row_key(entry.label, task, K, synth))
                continue
            if entry.source:
                row["source"] = entry.source
            rows.append(row)
            episode_rows.extend(eps)
            notes.extend(n for n in row_notes if n not in notes)
            save(final=False)
        for task, K, synth in trained:
            if _row_key(label, task, K, synth) in done:
                continue
            bar.set_postfix_str(f"training {label} {task} K={K} {synth}")
            t0 = time.perf_counter()
            model = _train(task, K, synth, plan)
            spent = time.perf_counter() - t0
            entry = _Entry(label, False, TASKS, lambda env, K, seed: None, "trained")
            bar.set_postfix_str(f"{label} {task} K={K} {synth}")
            row, eps, row_notes = _play_row(entry, task, K, synth, plan, bar, agent_override=model,
                                            extra_steps=int(model.num_timesteps), extra_seconds=spent)
            rows.append(row)
            episode_rows.extend(eps)
            notes.extend(n for n in row_notes if n not in notes)
            save(final=False)
    if "LMMImprovise-v0" in {r["task"] for r in rows}:
        rows.extend(_corpus_rows(plan))
    save(final=True)
    return rows


def _row_key(agent, task, K, synth) -> tuple:
    """What makes a row the same row on resume: agent, task, K and instrument."""
    return (str(agent), str(task), str(K), str(synth))


RESULT_FILES = ("results.md", "results.csv", "results.json", "summary.png")


def _identity(plan: Plan) -> dict:
    """What must agree for rows of two runs to share a table: the protocol's numbers, the seed, the training."""
    return _jsonable({"protocol": plan.protocol, "seed": plan.seed, "quick": plan.quick,
                      "train_algo": plan.train_algo, "train_steps": plan.train_steps if plan.train_algo else 0})


def read_results(out) -> dict:
    """The ``results.json`` of a benchmark folder, checked: ``{"rows", "episodes", "notes", "identity", "status"}``.

    Raises `BenchmarkArgumentError` naming the file when it is not a benchmark's results."""
    path = Path(out) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BenchmarkArgumentError(f"{str(path)!r} is not readable benchmark results ({type(exc).__name__}); move it "
                                     "away or pass "
                                     "--overwrite") from None
    ok = (isinstance(doc, dict) and isinstance(doc.get("rows"), list) and isinstance(doc.get("episodes"), list)
          and all(isinstance(r, dict) and {"agent", "task", "pairs", "synth", "kind"} <= set(r) for r in doc["rows"]))
    if not ok:
        raise BenchmarkArgumentError(f"{str(path)!r} does not hold benchmark results (rows of agent, task, K, synth); "
                                     "move it away or pass --overwrite")
    rows = []
    for r in doc["rows"]:  # JSON null is NaN again
        rows.append({k: (math.nan if v is None and k in _NUMERIC else v) for k, v in r.items()})
    return {"rows": rows, "episodes": doc["episodes"], "notes": [str(n) for n in doc.get("notes", [])],
            "identity": doc.get("identity"), "status": doc.get("status", "complete")}


def _prepare_out(out, plan: Plan, resume: bool, overwrite: bool) -> dict | None:
    """Check ``out`` before any work; the results to resume from (or None)."""
    from lmm_env._checks import OutputPathError, writable_dir

    if resume and overwrite:
        raise BenchmarkArgumentError("resume and overwrite exclude each other: resume keeps the rows in out, "
                                     "overwrite replaces them")
    try:
        folder = writable_dir(out, "out")
    except OutputPathError as exc:
        raise BenchmarkArgumentError(str(exc)) from None
    existing = [f for f in RESULT_FILES if (folder / f).exists()]
    if existing == ["results.md", "results.csv", "results.json"] and not overwrite:
        try:  # a run stopped before its first row holds nothing to keep
            if not [r for r in read_results(folder)["rows"] if r.get("kind") != "corpus"]:
                overwrite = True
        except BenchmarkArgumentError:
            pass
    if not existing or overwrite:
        for f in existing:
            (folder / f).unlink()
        return None
    if not resume:
        state = ""
        if (folder / "results.json").exists():
            try:
                found = read_results(folder)
                state = f" ({len(found['rows'])} rows, {found['status']})"
            except BenchmarkArgumentError:
                pass
        raise BenchmarkArgumentError(f"out={os.fspath(out)!r} already holds benchmark results{state}; continue them "
                                     "with resume=True (--resume), replace them with overwrite=True (--overwrite), "
                                     "or choose another folder")
    if not (folder / "results.json").exists():
        raise BenchmarkArgumentError(f"out={os.fspath(out)!r} holds {existing} but no results.json to resume from; "
                                     "pass --overwrite to start again")
    prior = read_results(folder)
    want = _identity(plan)
    if prior["identity"] != want:
        have = prior["identity"] or {}
        diff = sorted(k for k in set(want) | set(have) if have.get(k) != want.get(k))
        if "protocol" in diff and isinstance(have.get("protocol"), dict):
            diff = [d for d in diff if d != "protocol"] + [f"protocol.{k}" for k in sorted(
                set(want["protocol"]) | set(have["protocol"])) if have["protocol"].get(k) != want["protocol"].get(k)]
        raise BenchmarkArgumentError(
            f"out={os.fspath(out)!r} holds results of another protocol (differs in {diff}: "
            f"{ {d: (_get(have, d), _get(want, d)) for d in diff[:4]} } as (there, asked)); rows of two protocols "
            "cannot share a table: resume with the same arguments, choose another folder, or pass --overwrite")
    return prior


def _get(doc: dict, dotted: str):
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _check_sources(rows: list, jobs: list, out) -> None:
    """A checkpoint's stored rows resume only with the same file (its sha256)."""
    source = {e.label: e.source for e, *_ in jobs if e.source}
    for r in rows:
        if r["agent"] in source and r.get("source") not in (None, source[r["agent"]]):
            raise BenchmarkArgumentError(f"out={os.fspath(out)!r} holds rows of checkpoint {r['agent']!r} made from "
                                         "another file of that name (its sha256 differs); rename one, choose another "
                                         "folder, or pass --overwrite")


# --------------------------------------------------------------------------- outputs


def _fmt(c: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if c in ("env_steps", "train_steps", "probe_steps", "episodes"):
        return str(int(v))
    if c in ("wall_seconds", "return"):
        return f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


_MD_NAMES = {"pairs": "K", "note_f1": "note F1", "frame_f1": "frame F1", "velocity_error": "vel. err",
             "keys_deciphered": "keys deciphered", "probe_steps": "probe steps", "judge_nll": "judge NLL",
             "pitch_class_entropy": "PC entropy", "note_density": "notes/s", "repetition": "repetition",
             "in_key_share": "in key", "env_steps": "env steps", "train_steps": "train steps",
             "wall_seconds": "wall s", "return": "return"}


def _has_value(rows, c) -> bool:
    return any(isinstance(r.get(c), (int, float)) and math.isfinite(r.get(c)) and (c != "train_steps" or r[c])
               for r in rows)


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table (columns with no value in any row left out; oracles marked)."""
    cols = ["agent", "task", "pairs", "synth", "episodes"] + [c for c in _NUMERIC if _has_value(rows, c)]
    lines = ["| " + " | ".join(_MD_NAMES.get(c, c) for c in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            if c == "agent":
                tag = {"oracle": " (oracle)", "trained": " (trained)", "corpus": " (held-out corpus)"}.get(r["kind"], "")
                cells.append(f"{r['agent']}{tag}")
            else:
                cells.append(_fmt(c, r.get(c)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _protocol_lines(plan: Plan) -> list[str]:
    p = plan.protocol
    return [
        f"- split `{p['split']}` of `{p['score']}`; episode i plays piece i (`score_index` 0..{plan.episodes - 1}), "
        f"env seed {plan.seed} + i{' (quick)' if plan.quick else ''}",
        f"- LMMPiano-v0 / LMMDecipher-v0 / LMMByEar-v0: first {p['max_seconds']:g} s of each piece; "
        f"LMMImprovise-v0: {p['improvise_prompt_seconds']:g} s prompt (played by the world) + "
        f"{p['improvise_length_seconds']:g} s free play",
        f"- LMMDecipher-v0: keys {tuple(p['decipher_keys'])}, relayout `{p['decipher_relayout']}`, layout seed "
        f"{plan.seed}; only oracles may read the hidden layout (keyboard.reveal() raises HiddenLayoutError otherwise)",
        f"- K (pairs, the reward's ear): {', '.join(map(str, plan.pairs))}; synth: {', '.join(plan.synths)} "
        "(LMMByEar-v0: the target's instrument, the world stays the built-in piano)",
        f"- improvisation reference: {p['corpus_reference_pieces']} held-out pieces each of "
        f"{', '.join(p['corpus_reference_names'])} (`lmm_env.improv.corpus_reference`, first "
        f"{p['improvise_length_seconds']:g} s)",
        "- env steps: every step the agent took on the row's env (episodes, babbling), plus training steps",
    ]


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return _jsonable(float(v))
    return v


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` in one step (a kill mid-write leaves the old file, never half a new one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_outputs(rows: list[dict], out, plan: Plan | None = None, command: str = "", notes=(),
                  episode_rows=(), planned: int | None = None, final: bool = True) -> dict[str, Path]:
    """results.md, results.csv, results.json (and, when ``final``, summary.png) of ``rows`` in ``out``; their paths.

    Each file is replaced atomically. ``final=False`` marks the run partial (``planned`` rows
    in all): `run` writes that after every row, and the complete table at the end."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f for k, f in (("md", "results.md"), ("csv", "results.csv"), ("json", "results.json"),
                                     ("png", "summary.png"))}
    agent_rows = sum(r.get("kind") != "corpus" for r in rows)
    status = "complete" if final else "partial"
    md = ["# lmm_env benchmark", ""]
    if not final:
        md += [f"**Partial run**: {agent_rows} of {planned if planned is not None else '?'} rows done so far (a run "
               "that is still going, or one that was stopped). Continue it with the same command and `--resume`.", ""]
    md += ["Command:", "", "```", command, "```", ""]
    if plan is not None:
        md += ["Protocol:", ""] + _protocol_lines(plan) + [""]
    md += ["(oracle): reads what the task hides (the score, the hidden layout, the reference notes); "
           "–: not applicable or not measured.", "", markdown_table(rows), ""]
    if notes:
        md += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    _write_atomic(paths["md"], "\n".join(md))
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if (isinstance(r.get(c), float) and not math.isfinite(r[c])) else r.get(c, "")
                    for c in COLUMNS])
    _write_atomic(paths["csv"], buf.getvalue())
    doc = {"status": status, "rows_done": agent_rows, "rows_planned": planned, "command": command,
           "protocol": _jsonable(plan.protocol) if plan else None,
           "identity": _identity(plan) if plan else None,
           "pairs": _jsonable(list(plan.pairs)) if plan else None, "synths": list(plan.synths) if plan else None,
           "seed": plan.seed if plan else None, "columns": list(COLUMNS), "rows": _jsonable(rows),
           "episodes": _jsonable(list(episode_rows)), "notes": list(notes)}
    _write_atomic(paths["json"], json.dumps(doc, indent=1))
    if final:
        buf = io.BytesIO()
        _plot(rows, buf)
        _write_atomic(paths["png"], buf.getvalue())
    return paths


def _plot(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(r, multi):
        tag = " *" if r["oracle"] else ""
        return f"{r['agent']}{tag}" + (f" K={r['pairs']} {r['synth']}" if multi else "")

    agent_rows = [r for r in rows if r["kind"] != "corpus"]
    multi = len({(r["pairs"], r["synth"]) for r in agent_rows}) > 1
    f1_tasks = [t for t in TASKS if any(r["task"] == t and math.isfinite(r["note_f1"]) for r in agent_rows)]
    f1_labels = list(dict.fromkeys(label(r, multi) for r in agent_rows if r["task"] in f1_tasks))
    dec = [r for r in agent_rows if r["task"] == "LMMDecipher-v0" and math.isfinite(r["keys_deciphered"])]
    imp = [r for r in rows if r["task"] == "LMMImprovise-v0"]
    n_rows = 1 + bool(imp)
    fig = plt.figure(figsize=(15, 4.5 * n_rows + 0.3 * max(0, len(f1_labels) - 8)))
    gs = fig.add_gridspec(n_rows, 5)
    ax = fig.add_subplot(gs[0, :3] if dec else gs[0, :])
    if f1_tasks and f1_labels:
        grid = np.full((len(f1_labels), len(f1_tasks)), np.nan)
        for r in agent_rows:
            if r["task"] in f1_tasks:
                grid[f1_labels.index(label(r, multi)), f1_tasks.index(r["task"])] = r["note_f1"]
        cmap = plt.get_cmap("viridis").copy()
        cmap = cmap.with_extremes(bad="0.85")
        ax.imshow(np.ma.masked_invalid(grid), vmin=0, vmax=1, cmap=cmap, aspect="auto")
        ax.set_xticks(range(len(f1_tasks)), f1_tasks, fontsize=8)
        ax.set_yticks(range(len(f1_labels)), f1_labels, fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "–" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and v < 0.6 else "black")
        ax.set_title("note F1 (agent x task; * = oracle, grey = does not play)", fontsize=10)
    else:
        ax.axis("off")
        ax.set_title("note F1: no task with notes to compare", fontsize=10)
    if dec:
        ax2 = fig.add_subplot(gs[0, 3:])
        labels = [label(r, multi) for r in dec]
        ax2.barh(range(len(dec)), [r["keys_deciphered"] for r in dec], color="tab:orange")
        ax2.set_yticks(range(len(dec)), labels, fontsize=8)
        ax2.set_xlim(0, 1)
        ax2.invert_yaxis()
        for i, r in enumerate(dec):
            ax2.text(min(r["keys_deciphered"], 0.88) + 0.01, i, f"{r['keys_deciphered']:.2f}", va="center", fontsize=8)
        ax2.set_title("LMMDecipher-v0: keys deciphered", fontsize=10)
    if imp:
        labels = [label(r, multi) if r["kind"] != "corpus" else r["agent"] for r in imp]
        colors = ["tab:green" if r["kind"] == "corpus" else "tab:blue" for r in imp]
        for j, stat in enumerate(IMPROV_STATS):
            a = fig.add_subplot(gs[1, j])
            vals = [r[stat] for r in imp]
            err = None
            if any("range" in r for r in imp):
                lo = [max(0.0, r[stat] - r["range"][stat][0]) if "range" in r and math.isfinite(r[stat]) else 0.0
                      for r in imp]
                hi = [max(0.0, r["range"][stat][1] - r[stat]) if "range" in r and math.isfinite(r[stat]) else 0.0
                      for r in imp]
                err = np.nan_to_num(np.array([lo, hi]))
            a.barh(range(len(imp)), np.nan_to_num(vals), xerr=err, color=colors)
            a.set_yticks(range(len(imp)), labels if j == 0 else [""] * len(imp), fontsize=7)
            a.invert_yaxis()
            if stat in ("judge_nll", "note_density") and max(np.nan_to_num(vals), default=0) > 50:
                a.set_xscale("symlog")
            a.set_title(stat, fontsize=9)
        fig.text(0.01, 0.01, "LMMImprovise-v0: blue = agents, green = held-out corpus (bars p10-p90)", fontsize=8)
    fig.tight_layout(rect=(0, 0.03 if imp else 0, 1, 1))
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
