"""The benchmark's protocol: what every row plays, and the checked plan of a run (`resolve`).

The lmm_env benchmark: every agent on every task under one fixed protocol, in one table.

    from lmm_env.agents.benchmark import runner as benchmark
    rows = benchmark.run(["baselines"], pairs=(0, 16), episodes=10, out="out/bench")
    # lmm-env benchmark --agent baselines --pairs 0,16 --out out/bench

One row per (agent, task, K, synth): note F1 (onset, 50 ms), onset+offset F1, onset+velocity
F1, the median onset lag in ms (all against the score's own, unquantized note times, never
the frame-snapped copy), frame F1 and velocity error (Piano, Decipher, ByEar),
``keys_deciphered`` / ``probe_steps`` (Decipher, from
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

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lmm_env._checks import check_int, short_repr
from lmm_env.agents.registry import AGENTS, TASKS, AgentSpec

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
    # what note metrics are measured against: rows of results measured against the frame-snapped
    # score (before issue 23) are of another protocol, so a resume does not mix the two
    "note_reference": "unquantized",
}
QUICK: dict[str, Any] = {"episodes": 2, "max_seconds": 8.0, "improvise_length_seconds": 8.0,
                         "corpus_reference_pieces": 8}

SYNTHS = ("piano", "grand", "soundfont")  # or a .sf2/.sf3 path; any of them "@<room>" (lmm_env.synth.room)
# Tiers: the defaults of score, synths and K. "toy": the built-in piano and folk melodies (where the
# project started). "real": two-hand expressive piano music played by the shipped sampled grand and by
# a second instrument no agent trained on (TimGM6mb), at every K; targets are the instrument's.
TIERS: dict[str, dict[str, Any]] = {
    "toy": {"score": "folk", "synths": ("piano",), "pairs": (0,)},
    "real": {"score": "piano", "synths": ("grand", "soundfont"), "pairs": (0, 4, 16, 64)},
}
IMPROV_STATS = ("judge_nll", "pitch_class_entropy", "note_density", "repetition", "in_key_share")
# note metrics (`lmm_env.metrics.note_metrics`, against the score's own unquantized times):
# note_f1 = onset F1 (50 ms), onset+offset F1, onset+velocity F1, median onset lag (ms)
NOTE_COLUMNS = ("note_f1", "onset_offset_f1", "onset_velocity_f1", "onset_lag_ms")
COLUMNS = (("agent", "kind", "oracle", "task", "pairs", "synth", "pairs_instrument", "episodes") + NOTE_COLUMNS
           + ("frame_f1", "velocity_error", "keys_deciphered", "probe_steps") + IMPROV_STATS
           + ("env_steps", "train_steps", "wall_seconds", "return"))
_NUMERIC = COLUMNS[COLUMNS.index("episodes") + 1:]


class BenchmarkArgumentError(ValueError):
    """An argument of `run` (an agent, task, K, synth, ...) is not allowed; raised before anything runs."""


# --------------------------------------------------------------------------- plan


@dataclass
class _Entry:
    label: str
    oracle: bool
    tasks: tuple
    build: Callable  # (env, K, seed) -> agent
    kind: str = "agent"  # a registered agent's role (`AgentSpec.kind`: baseline, oracle, pairs-only, learned,
    # outside) | checkpoint | custom | trained
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

    return _Entry(name, bool(spec.oracle), tuple(spec.tasks), build, spec.kind, explicit)


def _checkpoint(path: str) -> _Entry:
    from lmm_env.agents.training.checkpoints import read_checkpoint

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
    from lmm_env.synth.room import ROOMS, split_room

    if not isinstance(s, (str, os.PathLike)):
        raise BenchmarkArgumentError(f"synth {s!r} is not allowed; use one of {list(SYNTHS)} or a .sf2/.sf3 path, "
                                     f"optionally heard in a room: '<synth>@<room>' with a room of {list(ROOMS)}")
    s = os.fspath(s)
    base, room = split_room(s)
    if base in SYNTHS:
        return s
    if base.lower().endswith((".sf2", ".sf3")):
        if not os.path.isfile(base):
            raise BenchmarkArgumentError(f"synth {s!r}: no such SoundFont file {base!r}")
        try:  # loaded now (a second or so): a file that is no SoundFont fails here, not at its first row
            from lmm_env.synth import make_synth

            make_synth(base, 16000)
        except (ValueError, TypeError, OSError, RuntimeError, ImportError) as exc:
            raise BenchmarkArgumentError(f"synth {s!r} cannot be loaded as a SoundFont: {exc}") from None
        return s
    raise BenchmarkArgumentError(f"synth {s!r} is not allowed; use one of {list(SYNTHS)} or a .sf2/.sf3 path, "
                                 f"optionally heard in a room: '<synth>@<room>' with a room of {list(ROOMS)}")


def resolve(agents, tasks=None, pairs=None, synths=None, episodes: int = 10, quick: bool = False,
            train_algo: str | None = None, train_steps: int = 0, seed: int = 0, tier: str = "toy",
            score: str | None = None) -> Plan:
    """Check every argument of `run` and expand it into a `Plan`; `BenchmarkArgumentError` names a bad value.

    ``pairs``, ``synths`` and ``score`` left None take the ``tier``'s (`TIERS`)."""
    from lmm_env import corpus
    from lmm_env.pairs import check_k

    if tier not in TIERS:
        raise BenchmarkArgumentError(f"tier={short_repr(tier)} is not allowed; use one of {list(TIERS)}")
    pairs = TIERS[tier]["pairs"] if pairs is None else pairs
    synths = TIERS[tier]["synths"] if synths is None else synths
    score = TIERS[tier]["score"] if score is None else score
    if not isinstance(score, str) or score not in corpus.names():
        raise BenchmarkArgumentError(f"score={short_repr(score)} is not allowed; use a corpus name of "
                                     f"{corpus.names()}")

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
        raise BenchmarkArgumentError(f"synths is empty; give one of {list(SYNTHS)} or a .sf2/.sf3 path")
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
    protocol.update(tier=tier, score=score)
    if isinstance(score, str) and score not in protocol["corpus_reference_names"]:
        # Improvise's prompts come from the score corpus: its own continuations are the range to read beside
        from lmm_env import corpus as corpus_mod

        if score in corpus_mod.names():
            protocol["corpus_reference_names"] = (score,) + tuple(protocol["corpus_reference_names"])
    if not quick:
        protocol["episodes"] = int(episodes)
    return Plan(entries, tuple(task_list), tuple(ks), tuple(synth_list), int(protocol["episodes"]), bool(quick),
                int(seed), train_algo, int(train_steps or 0), protocol, notes)



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
