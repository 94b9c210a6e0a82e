"""Episodes as datasets: record an agent playing an lmm_env task as a Minari dataset.

    from lmm_env.agents.datasets import record_dataset
    ds = record_dataset("LMMPiano-v0", "score-reader", episodes=100, dataset_id="lmm/piano-score-reader-v0")
    ds = minari.load_dataset("lmm/piano-score-reader-v0")          # later, offline

Each step stores the observation (the score ahead, ``obs["score"]``, or the target audio of
LMMByEar-v0, ``obs["target"]``; the log-mel of what was heard, ``obs["audio"]``; the keys,
``obs["key_state"]``; and the task's other keys), the agent's action and the reward.
Each episode's metadata holds its seed, the piece (``score_name``) and the end-of-episode
``metrics`` (note F1, ...). Recording goes through `minari.DataCollector`, so the env spec
is saved with the dataset and ``dataset.recover_environment()`` rebuilds the same env.

Everything is local: datasets are written under Minari's root (``$MINARI_DATASETS_PATH``,
default ``~/.minari/datasets``); nothing is uploaded or downloaded.

Needs ``pip install 'lmm_env[datasets]'`` (Minari with its ``create`` and ``arrow`` extras:
jax and pyarrow).
"""
from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from lmm_env._checks import check_bool, check_int, check_seed, short_repr

# Minari's dataset id, ``(namespace/)name-v<version>`` (the version required: Minari needs one to save).
DATASET_ID_RE = re.compile(r"^(?:(?P<namespace>[-_\w][-_\w/]*[-_\w]+)/)?(?P<dataset>[-_\w]+?)-v(?P<version>\d+)$")
INSTALL_HINT = "pip install 'lmm_env[datasets]'"
# minari nags when optional metadata is left out; record_dataset documents them as optional
_OPTIONAL_METADATA = r"`(code_permalink|author|author_email|eval_env)` is set to None"


def _minari():
    """The ``minari`` module, with what `minari.DataCollector` needs to write (jax, pyarrow); else an
    ImportError naming the extra to install."""
    missing = []
    for module, why in (("minari", "Minari"), ("jax", "jax, which minari.DataCollector needs ('minari[create]')"),
                        ("pyarrow", "pyarrow, Minari's arrow storage ('minari[arrow]')")):
        try:
            __import__(module)
        except ImportError:
            missing.append(why)
    if missing:
        raise ImportError(f"recording lmm_env episodes as a Minari dataset needs {' and '.join(missing)}; "
                          f"install them with {INSTALL_HINT}")
    import minari

    return minari


def check_dataset_id(dataset_id) -> str:
    """``dataset_id`` if it is a Minari dataset id with a version, ``(namespace/)name-v<N>``
    (e.g. ``"lmm/piano-score-reader-v0"``); else a ValueError naming it."""
    if not isinstance(dataset_id, str) or not DATASET_ID_RE.fullmatch(dataset_id):
        raise ValueError(f"dataset_id={short_repr(dataset_id)} is not a Minari dataset id; use "
                         "'(namespace/)name-v<version>' with letters, digits, '-' and '_', e.g. "
                         "'lmm/piano-score-reader-v0'")
    return dataset_id


def _make_env(task, split, env_kwargs):
    """(env, owned): the env to record, and whether record_dataset made it (and closes it)."""
    import gymnasium as gym

    from lmm_env import TASK_IDS

    if isinstance(task, str):
        if task not in TASK_IDS:
            raise ValueError(f"task={short_repr(task)} is not allowed; use one of {list(TASK_IDS)} "
                             "(or an env made with gym.make of one)")
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ValueError(f"env_kwargs={short_repr(env_kwargs)} must be a dict of env arguments (or None)")
        if "split" in (env_kwargs or {}) or "render_mode" in (env_kwargs or {}):
            name = "split" if "split" in env_kwargs else "render_mode"
            raise ValueError(f"env_kwargs holds {name}={short_repr(env_kwargs[name])}; "
                             + ("the split is record_dataset's own argument" if name == "split"
                                else "episodes are recorded without rendering"))
        return gym.make(task, split=split, **(env_kwargs or {})), True
    if not isinstance(task, gym.Env) or not hasattr(task.unwrapped, "sim"):
        raise ValueError(f"task={short_repr(task)} is not allowed; give a task id of {list(TASK_IDS)} or an env "
                         "made with gym.make of one")
    if env_kwargs is not None:
        raise ValueError("env_kwargs is for a task id; the env given as task= is recorded as it was made")
    return task, False


def record_dataset(task, agent, episodes: int, dataset_id: str, *, split: str = "train", seed: int = 0,
                   env_kwargs: dict | None = None, agent_options: dict | None = None, in_order: bool = False,
                   deterministic: bool = True, algorithm_name: str | None = None, author=None, author_email=None,
                   description: str | None = None, code_permalink: str | None = None, eval_env=None,
                   data_format: str = "arrow"):
    """Play ``episodes`` episodes of ``task`` with ``agent`` and save them as the Minari dataset ``dataset_id``.

    Args:
        task: a task id (``"LMMPiano-v0"``, ...; made with ``split`` and ``env_kwargs``) or
            an env made with ``gym.make`` of one (recorded as it is; not closed).
        agent: a registered agent name (``lmm-env agents`` lists them), a training checkpoint
            (``.safetensors``), or an object with ``predict(obs, deterministic=True) ->
            (action, state)``. An object that reads the env (the baselines do) must be built
            on the env passed as ``task``.
        episodes: how many episodes (each one a reset, played to its end).
        dataset_id: Minari's ``(namespace/)name-v<version>``, e.g.
            ``"lmm/piano-score-reader-v0"``; it must not exist yet under Minari's root.
        split: the corpus split the pieces come from (``"train"``, the default: data to learn
            from; evaluate on ``"test"``).
        seed: episode ``i`` is reset with seed ``seed + i`` (stored in its metadata), so the
            dataset is reproducible and any episode can be replayed alone.
        env_kwargs: more env arguments for a task id (e.g. ``{"max_seconds": 10}``).
        agent_options: the agent's own options (``pairs``, ``ear``, ``seed``), as `load_agent`.
        in_order: play the first ``episodes`` pieces of the split's pool in order
            (``reset(options={"score_index": i})``, as `lmm_env.agents.evaluate` does) instead
            of drawing one per episode from the seeded generator.
        deterministic: passed to ``predict``.
        algorithm_name: stored in the dataset (default: the agent's name, or its class name).
        author, author_email, description, code_permalink: Minari's optional metadata
            (a description naming the task, agent, split and seed is written if none is given).
        eval_env: the env to evaluate policies learned from the data (a task id, `EnvSpec` or
            env; Minari's ``recover_environment(eval_env=True)``); default: the recording env.
        data_format: Minari's storage, ``"arrow"`` (default) or ``"hdf5"`` (needs h5py).

    Returns:
        The `minari.MinariDataset`, also loadable later with ``minari.load_dataset(dataset_id)``.
    """
    minari = _minari()
    from minari.storage import get_dataset_path

    from lmm_env.agents.registry import load_agent

    check_dataset_id(dataset_id)
    episodes = check_int("episodes", episodes, 1, 10_000_000)
    if check_seed(seed) is None:
        raise ValueError("seed=None is not allowed; use an int >= 0 (episode i is reset with seed + i)")
    check_bool("in_order", in_order)
    check_bool("deterministic", deterministic)
    if agent_options is not None and not isinstance(agent_options, dict):
        raise ValueError(f"agent_options={short_repr(agent_options)} must be a dict of agent options (or None)")
    if data_format not in ("arrow", "hdf5"):
        raise ValueError(f"data_format={short_repr(data_format)} is not allowed; use 'arrow' or 'hdf5'")
    if os.path.exists(get_dataset_path(dataset_id)):  # now, not after playing every episode
        raise ValueError(f"a Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; "
                         "choose another id or version, or delete it with minari.delete_dataset")

    env, owned = _make_env(task, split, env_kwargs)
    collector = None
    try:
        if in_order and episodes > len(env.unwrapped.sim.pool):
            raise ValueError(f"in_order=True plays the first {episodes} pieces of the pool, which has "
                             f"{len(env.unwrapped.sim.pool)}; record fewer episodes or set in_order=False")
        collector = minari.DataCollector(env, record_infos=False, data_format=data_format)
        player = load_agent(agent, collector, **(agent_options or {}))
        name = agent if isinstance(agent, str) else (os.fspath(agent) if isinstance(agent, os.PathLike)
                                                    else type(agent).__name__)
        task_id = getattr(env.spec, "id", None) or type(env.unwrapped).__name__
        episode_meta = []
        for i in range(episodes):
            options = {"score_index": i} if in_order else None
            obs, info = collector.reset(seed=seed + i, options=options)
            if hasattr(player, "reset"):
                player.reset()
            state, start = None, np.ones((1,), dtype=bool)
            while True:
                out = player.predict(obs, state=state, episode_start=start, deterministic=deterministic)
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError(f"{type(player).__name__}.predict returned {short_repr(out)}; it must return "
                                    "(action, state) as Stable-Baselines3's predict does")
                action, state = out
                start = np.zeros((1,), dtype=bool)
                obs, _, terminated, truncated, step_info = collector.step(action)
                if terminated or truncated:
                    break
            episode_meta.append({"task": task_id, "agent": name, "score_name": info.get("score_name"),
                                 "pairs": step_info.get("pairs", info.get("pairs")),
                                 "metrics": {k: float(v) for k, v in step_info.get("metrics", {}).items()}})
        if description is None:
            description = (f"{episodes} episodes of {task_id} ({split} split) played by {name}; episode i reset "
                           f"with seed {seed} + i" + (" and score_index i" if in_order else "") + ". Generated by "
                           "lmm_env.agents.datasets.record_dataset.")
        import lmm_env

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_OPTIONAL_METADATA)
            dataset = collector.create_dataset(
                dataset_id=dataset_id, eval_env=eval_env, algorithm_name=algorithm_name or name, author=author,
                author_email=author_email, code_permalink=code_permalink, description=description,
                requirements=[f"lmm_env>={lmm_env.__version__}"])
        dataset.storage.update_episode_metadata(episode_meta, episode_indices=range(episodes))
        return dataset
    finally:
        if collector is not None and owned:
            collector.close()  # closes the env too, and removes the collector's scratch folder
        elif owned:
            env.close()
        elif collector is not None and hasattr(getattr(collector, "_tmp_dir", None), "cleanup"):
            collector._tmp_dir.cleanup()  # the caller's env stays open; only the scratch folder goes


def episode_metadata(dataset, i: int) -> dict[str, Any]:
    """The metadata of episode ``i`` of a Minari dataset: Minari's (``seed``, ``total_steps``,
    ``rewards_sum``, ...) and record_dataset's (``score_name``, ``metrics``, ``task``, ``agent``)."""
    i = check_int("i", i, 0, dataset.total_episodes - 1)
    return next(iter(dataset.storage.get_episode_metadata([i])))


__all__ = ["record_dataset", "check_dataset_id", "episode_metadata", "DATASET_ID_RE"]
