"""The benchmark's runner: `run` plays every (agent, task, K, synth) row of a plan and writes the tables.

    from lmm_env.agents import benchmark
    rows = benchmark.run(["baselines"], pairs=(0, 16), episodes=10, out="out/bench")
    # lmm-env benchmark --agent baselines --pairs 0,16 --out out/bench

The protocol (what each row plays, the hidden-layout guard, the agents) is described in
`lmm_env.agents.benchmark.protocol`; the files in `lmm_env.agents.benchmark.tables`.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.agents.registry import TASKS

from lmm_env.agents.benchmark.protocol import (  # noqa: F401  (re-exported: the benchmark's one namespace)
    COLUMNS, IMPROV_STATS, NOTE_COLUMNS, PROTOCOL, QUICK, SYNTHS, BenchmarkArgumentError, Plan, _Entry, env_kwargs,
    resolve)
from lmm_env.agents.benchmark.tables import (  # noqa: F401
    _check_sources, _prepare_out, _row_key, markdown_table, read_results, write_outputs)

__all__ = ["run", "resolve", "PROTOCOL", "QUICK", "COLUMNS", "BenchmarkArgumentError", "SYNTHS", "write_outputs",
           "markdown_table", "read_results", "summary_row", "env_kwargs"]


# --------------------------------------------------------------------------- envs


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
    from lmm_env.agents.benchmark.evaluate import play_episode
    from lmm_env.keyboard import HiddenLayoutError

    notes = []
    kwargs = env_kwargs(task, K, synth, plan.protocol, seed=plan.seed)
    env = _make_env(task, kwargs)
    pairs_instrument = (getattr(env.unwrapped.sim, "pairs_instrument", None) or "-") if K not in (0, None) else "-"
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
                info, step_info, steps, total, _ = play_episode(agent, env, plan.seed + i, i)
                m = {k: float(v) for k, v in step_info.get("metrics", {}).items()}
                episodes.append(dict(m, agent=entry.label, task=task, pairs=K, synth=synth,
                                     pairs_instrument=pairs_instrument, episode=i,
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
                      int(played_steps) + int(extra_steps), int(extra_steps), wall,
                      pairs_instrument=pairs_instrument)
    return row, episodes, notes


def summary_row(label: str, kind: str, oracle: bool, task: str, K, synth, episodes: list, probe: dict,
                env_steps: int, train_steps: int, wall: float, pairs_instrument: str = "-") -> dict:
    """One table row (`COLUMNS`) from an agent's episode rows on ``task``: what the benchmark and
    `lmm_env.agents.evaluate` both report. ``probe``: `lmm_env.tasks.probe_keyboard`'s result on
    LMMDecipher-v0 (else empty)."""
    improvise = task == "LMMImprovise-v0"
    row = {"agent": label, "kind": kind, "oracle": bool(oracle), "task": task, "pairs": K,
           "synth": synth, "pairs_instrument": pairs_instrument, "episodes": len(episodes)}
    for c in NOTE_COLUMNS + ("frame_f1", "velocity_error"):
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
        row.update(agent=f"corpus:{name}", kind="corpus", oracle=False, task="LMMImprovise-v0", pairs="-", synth="-", pairs_instrument="-",
                   episodes=int(p["corpus_reference_pieces"]), env_steps=0, train_steps=0, wall_seconds=wall)
        for c in IMPROV_STATS:
            row[c] = stats[c]["mean"]
        row["range"] = {c: [stats[c]["p10"], stats[c]["p90"]] for c in IMPROV_STATS}
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- run


def run(agents, tasks=None, pairs=None, synths=None, episodes: int = 10, quick: bool = False, out=None,
        train_algo: str | None = None, train_steps: int = 0, seed: int = 0, progress: bool = True,
        command: str | None = None, resume: bool = False, overwrite: bool = False, tier: str = "toy",
        score: str | None = None) -> list[dict]:
    """Benchmark ``agents`` on ``tasks`` x ``pairs`` (K) x ``synths`` under the fixed protocol.

    Args:
        agents: names from `lmm_env.agents.registry.AGENTS`, ``"baselines"``, ``.safetensors``
            checkpoints or `AgentSpec` objects (``(label, spec)`` to name one); a list or a
            comma-separated string.
        tasks: task ids (default: every task one of the agents plays; all four with training).
        pairs: the Ks of the reward's ear (0, 4, 16, 64, "all"); default: the tier's.
        synths: "piano", "grand", "soundfont" or .sf2/.sf3 paths, each optionally "@<room>"
            (LMMByEar-v0: the target's instrument); default: the tier's.
        tier: "toy" (folk, the built-in piano, K = 0) or "real" (the two-hand ``piano`` corpus,
            the shipped grand and TimGM6mb, K = 0, 4, 16, 64): the defaults of ``pairs``,
            ``synths`` and ``score`` (`TIERS`).
        score: the corpus every row plays (default: the tier's).
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
    plan = resolve(agents, tasks, pairs, synths, episodes, quick, train_algo, train_steps, seed, tier, score)
    if command is None:
        command = (f"lmm_env.agents.benchmark.runner.run(agents={agents!r}, tasks={tasks!r}, pairs={pairs!r}, "
                   f"synths={synths!r}, episodes={episodes!r}, quick={quick!r}, train_algo={train_algo!r}, "
                   f"train_steps={train_steps!r}, seed={seed!r}, tier={tier!r}, score={score!r})")
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
