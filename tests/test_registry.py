"""The one agent registry: every name builds through load_agent, options mean the same everywhere,
eval plays every registered agent on every task it plays, and old import paths keep working."""
import importlib
import os

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.agents import load_agent
from lmm_env.agents.registry import AGENTS, OPTIONS, agent_table, agents_for
from lmm_env.lm import load_pretrained
from lmm_env.lm.checkpoint import WEIGHTS_DIR

SHORT = {"max_seconds": 2.0}
ENV_KW = {"LMMPiano-v0": dict(SHORT, score="exercises-scale"), "LMMDecipher-v0": dict(SHORT, keys=(48, 84)),
          "LMMByEar-v0": dict(SHORT, score="exercises-scale"),
          "LMMImprovise-v0": {"prompt": None, "length_seconds": 2.0}}


def _env(task):
    return gym.make(task, **ENV_KW[task])


def test_every_entry_says_its_tasks_options_and_provenance():
    for name, spec in AGENTS.items():
        assert spec.tasks and set(spec.options) <= set(OPTIONS), name
        assert spec.learned_from, name
        assert spec.kind in ("baseline", "oracle", "pairs-only", "learned", "outside"), name
        if spec.kind == "learned" and name != "decipher-closed-loop":
            assert spec.retrain.startswith("scripts/train/"), name
    table = agent_table()
    assert all(f"| {name} |" in table for name in AGENTS)


@pytest.mark.parametrize("name,task", [(n, t) for n, s in AGENTS.items() for t in s.tasks])
def test_lmm_env_eval_plays_every_registered_agent_on_every_task_it_plays(name, task, capsys):
    import json

    from lmm_env.agents.cli import main

    if AGENTS[name].role == "outside":  # optional packages; transkun needs ~1 min a clip on 2 cores
        pytest.importorskip({"basic-pitch": "basic_pitch", "transkun": "transkun"}[name])
        if name == "transkun" and not os.environ.get("LMM_ENV_SLOW_TESTS"):
            pytest.skip("transkun transcribes 16 s segments at ~1x real time on CPU; LMM_ENV_SLOW_TESTS=1 runs it")

    rc = main(["eval", "--agent", name, "--env", task, "--episodes", "1", "--no-progress",
               "--env-kwargs", json.dumps(ENV_KW[task])])
    out = capsys.readouterr()
    assert rc == 0, out.err
    row = [line for line in out.out.splitlines() if line.startswith(f"| {name}")][0]
    assert task in row  # the benchmark's table: agent, task, K, synth, ...


def test_an_option_an_agent_does_not_use_is_refused_by_name():
    env = _env("LMMPiano-v0")
    with pytest.raises(ValueError, match=r"'random' does not use pairs"):
        load_agent("random", env, pairs=4)
    with pytest.raises(ValueError, match=r"'score-reader' does not use seed"):
        load_agent("score-reader", env, seed=1)
    with pytest.raises(ValueError, match=r"'diff-g' does not use ear"):
        load_agent("diff-g", env, ear=load_pretrained("ear-analytic"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['pair'\]"):
        load_agent("random", env, pair=4)
    with pytest.raises(ValueError, match=r"does not use seed"):
        load_agent("ppo-closed-loop", env, seed=3)  # a deterministic policy would ignore it
    with pytest.raises(ValueError, match=r"'RandomAgent' does not use pairs"):
        load_agent(load_agent("random", env), env, pairs=4)  # an agent object is built already


def test_a_policy_for_another_task_is_refused_at_load_not_at_its_first_predict():
    with pytest.raises(ValueError, match=r"'ppo-closed-loop' does not play LMMByEar-v0"):
        load_agent("ppo-closed-loop", _env("LMMByEar-v0"))
    with pytest.raises(ValueError, match=r"needs the env"):
        load_agent("babble")


@pytest.mark.parametrize("name,where", [("diff-h", "ear"), ("gradient", "init"), ("ear-reader", "ear")])
def test_an_ear_object_or_file_is_handed_to_every_by_ear_agent(name, where):
    env = _env("LMMByEar-v0")
    mine = load_pretrained("ear-analytic")
    assert getattr(load_agent(name, env, ear=mine), where) is mine
    path = WEIGHTS_DIR / "ear_pairs4.safetensors"
    from_file = getattr(load_agent(name, env, ear=str(path)), where)
    assert type(from_file).__name__ == "LearnedEar"
    with pytest.raises(ValueError, match="not both"):
        load_agent(name, env, pairs=4, ear=mine)
    with pytest.raises(ValueError, match="is not an ear"):
        load_agent(name, env, ear=np.zeros(3))


@pytest.mark.parametrize("name", ["babble", "decipher-closed-loop"])
def test_the_decipher_agents_take_an_ear_too(name):
    env = gym.make("LMMDecipher-v0", keys=(48, 84), max_seconds=2.0, relayout="never")
    mine = load_pretrained("ear-analytic")
    assert load_agent(name, env, ear=mine).ear is mine


def test_pairs_means_the_ear_of_k_pairs_for_every_listening_agent():
    env = _env("LMMByEar-v0")
    assert type(load_agent("diff-h", env, pairs=0).ear).__name__ == "AnalyticEar"  # was ignored before
    assert type(load_agent("diff-h", env).ear).__name__ == "LearnedEar"  # its own K (16) by default
    assert type(load_agent("ear-reader", env, pairs=0).ear).__name__ == "AnalyticEar"


def test_agents_for_each_task_and_the_cli_table(capsys):
    from lmm_env.agents.cli import main

    assert "diff-h" in agents_for("LMMByEar-v0") and "diff-h" not in agents_for("LMMPiano-v0")
    assert main(["agents", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {n} |" in out for n in AGENTS)


def test_old_import_paths_keep_working():
    import lmm_env.agents as A
    from lmm_env.agents.zoo import make_agent  # noqa: F401
    from lmm_env.agents.train import read_checkpoint  # noqa: F401
    from lmm_env.agents.evaluate import load_agent as old_load  # noqa: F401
    from lmm_env.agents.policies import KeyConvPolicy

    assert A.KeyConvPolicy is KeyConvPolicy
    assert callable(A.train) and callable(A.evaluate) and A.load_agent is load_agent
    for old, new in [("zoo", "registry"), ("differentiable", "learned.differentiable"), ("gradient", "baselines.gradient"),
                     ("train", "training.sb3"), ("sac", "training.sac"), ("diff_train", "training.diff_train"),
                     ("decipher_learn", "learned.decipher"), ("evaluate", "benchmark.evaluate")]:
        assert importlib.import_module(f"lmm_env.agents.{old}") is importlib.import_module(f"lmm_env.agents.{new}")
    assert callable(A.train) and callable(A.evaluate)  # importing the old module names hid neither function
    assert importlib.import_module("lmm_env.agents.registry").__spec__.name == "lmm_env.agents.registry"
    env = _env("LMMPiano-v0")
    assert make_agent("random", env, seed=0).__class__.__name__ == "RandomAgent"


def test_the_core_never_imports_agents_or_envs():
    import ast
    from pathlib import Path

    root = Path(lmm_env.__file__).resolve().parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for n in names:
                assert not n.startswith(("lmm_env.agents", "lmm_env.envs")), f"{path}: imports {n}"


def test_the_readme_agent_table_is_the_registry():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    marker = "<!-- agents table: generated by lmm-env agents -->\n"
    assert marker in readme
    assert readme.split(marker, 1)[1].startswith(agent_table() + "\n"), \
        "README's agent table is stale: paste `lmm-env agents --markdown` after the marker"
