"""The benchmark runner (lmm_env.agents.benchmark.runner) and ``lmm-env benchmark``: outputs, the hidden-layout guard, bad input."""
from __future__ import annotations

import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from lmm_env.agents.benchmark import runner as benchmark
from lmm_env.agents.cli import main
from lmm_env.agents.registry import AGENTS, TASKS, AgentSpec
from lmm_env.keyboard import HiddenLayoutError


def test_quick_cli_writes_the_four_files_with_the_expected_rows_and_columns(tmp_path, capsys):
    out = tmp_path / "bq"
    assert main(["benchmark", "--agent", "random,score-reader", "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| agent | task | K | synth |" in printed and "score-reader (oracle)" in printed
    for name in ("results.md", "results.csv", "results.json", "summary.png"):
        assert (out / name).stat().st_size > 200, name

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == benchmark.COLUMNS
    got = [(r["agent"], r["task"]) for r in rows]
    want = [("random", t) for t in TASKS] + [("score-reader", "LMMPiano-v0"), ("score-reader", "LMMDecipher-v0"),
                                              ("corpus:folk", "LMMImprovise-v0"),
                                              ("corpus:bach-chorales", "LMMImprovise-v0")]
    assert got == want
    by = {(r["agent"], r["task"]): r for r in rows}
    for r in rows[:-2]:  # agents: the quick protocol's 2 episodes, K = 0, the piano
        assert (r["episodes"], r["pairs"], r["synth"]) == ("2", "0", "piano")
        assert int(r["env_steps"]) > 0 and float(r["wall_seconds"]) > 0
    assert by[("score-reader", "LMMDecipher-v0")]["oracle"] == "True"
    assert by[("random", "LMMDecipher-v0")]["oracle"] == "False"
    assert float(by[("score-reader", "LMMPiano-v0")]["note_f1"]) == 1.0
    assert float(by[("score-reader", "LMMDecipher-v0")]["note_f1"]) == 1.0
    assert float(by[("random", "LMMPiano-v0")]["note_f1"]) < 0.2
    # Decipher only: keys deciphered (when lmm_env.tasks.probe_keyboard exists); Improvise only: its statistics
    assert by[("random", "LMMPiano-v0")]["keys_deciphered"] == "" and by[("random", "LMMPiano-v0")]["judge_nll"] == ""
    if by[("score-reader", "LMMDecipher-v0")]["keys_deciphered"]:
        assert float(by[("score-reader", "LMMDecipher-v0")]["keys_deciphered"]) == 1.0
        assert float(by[("score-reader", "LMMDecipher-v0")]["probe_steps"]) > 0
    imp = by[("random", "LMMImprovise-v0")]
    assert imp["note_f1"] == "" and imp["velocity_error"] == ""
    for stat in benchmark.IMPROV_STATS:
        assert math.isfinite(float(imp[stat])) and math.isfinite(float(by[("corpus:folk", "LMMImprovise-v0")][stat]))

    md = (out / "results.md").read_text()
    assert "lmm-env benchmark --agent random,score-reader" in md and "--quick" in md
    assert "first 8 s" in md and "keys (48, 84)" in md and "score-reader (oracle)" in md
    assert "(held-out corpus)" in md
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["rows"]) == len(rows) and doc["protocol"]["episodes"] == 2
    assert len(doc["episodes"]) == 2 * 6 and {e["episode"] for e in doc["episodes"]} == {0, 1}
    assert doc["rows"][0]["keys_deciphered"] is None  # NaN -> null in JSON
    assert "range" in doc["rows"][-1]  # corpus rows carry p10/p90


class _Peeker:
    """Reads the hidden layout (keyboard.reveal()) on every step, then plays the score with it."""

    def __init__(self, env):
        self.env = env

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        kb = self.env.unwrapped.keyboard
        cols = kb.reveal() - kb.lo
        action = np.full(kb.n_actions, -1.0, np.float32)
        held = obs["score"][0, 0, cols] > 0.5
        action[held] = np.maximum((np.rint(obs["score"][2, 0, cols][held] * 127) - 1) / 126, 1e-4)
        return action, state


def _peeker(oracle):
    return AgentSpec(lambda env, K, seed: _Peeker(env), ("LMMDecipher-v0",), oracle, "reads the layout")


def test_the_runner_refuses_the_hidden_layout_to_non_oracles_and_grants_it_to_oracles():
    with pytest.raises(HiddenLayoutError, match="'peeker' is not registered as an oracle"):
        benchmark.run([("peeker", _peeker(False))], quick=True, progress=False)
    rows = benchmark.run([("peeker", _peeker(True))], quick=True, progress=False)
    assert [r["task"] for r in rows] == ["LMMDecipher-v0"] and rows[0]["oracle"] is True
    assert rows[0]["note_f1"] == 1.0  # with the layout the score is played perfectly


def test_a_registered_agent_is_guarded_by_its_oracle_flag(monkeypatch):
    # the same ScoreReaderAgent, registered as a non-oracle, may no longer read the layout
    monkeypatch.setitem(AGENTS, "score-reader", dataclasses.replace(AGENTS["score-reader"], oracle=False))
    with pytest.raises(HiddenLayoutError, match="score-reader"):
        benchmark.run(["score-reader"], tasks=["LMMDecipher-v0"], quick=True, progress=False)
    # on the visible keyboard nothing is hidden, so it still plays
    rows = benchmark.run(["score-reader"], tasks=["LMMPiano-v0"], quick=True, progress=False)
    assert rows[0]["note_f1"] == 1.0 and rows[0]["oracle"] is False


@pytest.mark.parametrize("kwargs, match", [
    ({"agents": ["virtuoso"]}, "unknown agent 'virtuoso'.*score-reader"),
    ({"agents": ["random"], "tasks": ["LMMFoo-v0"]}, "unknown task 'LMMFoo-v0'.*LMMPiano-v0"),
    ({"agents": ["random"], "pairs": (5,)}, r"K=5 is not allowed.*\[0, 4, 16, 64, 'all'\]"),
    ({"agents": ["random"], "synths": ("organ",)}, "synth 'organ' is not allowed.*soundfont"),
    ({"agents": ["random"], "synths": ("/nowhere/x.sf2",)}, "no such SoundFont file"),
    ({"agents": ["score-reader"], "tasks": ["LMMByEar-v0"]}, "'score-reader' does not play LMMByEar-v0"),
    ({"agents": ["random"], "episodes": 0}, "episodes=0"),
    ({"agents": ["random"], "train_steps": 100}, "without train_algo"),
    ({"agents": ["random"], "train_algo": "dqn", "train_steps": 100}, "'dqn' is not allowed"),
    ({"agents": ["/nowhere/ckpt.safetensors"]}, "does not exist"),
])
def test_bad_arguments_are_clear_errors_before_anything_runs(kwargs, match, tmp_path):
    with pytest.raises(benchmark.BenchmarkArgumentError, match=match):
        benchmark.run(out=tmp_path / "o", progress=False, **kwargs)
    assert not (tmp_path / "o").exists()


def test_several_agents_skip_tasks_they_do_not_play():
    plan = benchmark.resolve(["random", "score-reader"], tasks=["LMMByEar-v0"])
    assert [e.label for e in plan.entries] == ["random", "score-reader"]
    assert any("score-reader does not play LMMByEar-v0" in n for n in plan.notes)
    plan = benchmark.resolve("baselines", pairs="0,16", synths="piano,soundfont", quick=True)
    assert plan.pairs == (0,) and plan.synths == ("piano", "soundfont") and plan.episodes == 2
    assert plan.tasks == TASKS and {e.label for e in plan.entries} == set(AGENTS)
    # each row's kind is the agent's role, so tables group (and tag) outside transcribers and oracles
    assert {e.label: e.kind for e in plan.entries} == {name: spec.kind for name, spec in AGENTS.items()}
    assert {e.kind for e in plan.entries} >= {"baseline", "oracle", "pairs-only", "learned", "outside"}


@pytest.mark.parametrize("argv, words", [
    (["--tasks", "LMMFoo-v0"], ["LMMFoo-v0", "LMMPiano-v0"]),
    (["--pairs", "0,5"], ["K=5", "64"]),
    (["--synth", "organ"], ["organ", "soundfont"]),
    (["--agent", "random,virtuoso"], ["virtuoso", "score-reader"]),
])
def test_cli_bad_values_exit_with_a_message_naming_them(argv, words, tmp_path, capsys):
    base = ["benchmark", "--agent", "random", "--quick", "--out", str(tmp_path / "o")]
    assert main(base + argv) == 2
    msg = capsys.readouterr().err.strip()
    assert msg.startswith("lmm-env benchmark:") and all(w in msg for w in words), msg


def test_training_adds_a_trained_row_counting_its_steps():
    import torch

    threads = torch.get_num_threads()
    rows = benchmark.run(["random"], tasks=["LMMPiano-v0"], quick=True, train_algo="ppo", train_steps=64,
                         progress=False)
    assert [r["agent"] for r in rows] == ["random", "ppo-trained"]
    trained = rows[1]
    assert trained["kind"] == "trained" and trained["train_steps"] >= 64
    assert trained["env_steps"] == trained["train_steps"] + rows[0]["env_steps"]
    assert math.isfinite(trained["note_f1"])
    assert torch.get_num_threads() == threads  # the runner's one-thread limit is undone


def test_the_realistic_tier_sets_score_instruments_and_ks_and_rooms_are_instruments():
    plan = benchmark.resolve("random", tier="real", quick=False)
    assert plan.protocol["score"] == "piano" and plan.synths == ("grand", "soundfont")
    assert plan.pairs == (0, 4, 16, 64) and plan.protocol["tier"] == "real"
    # Improvise's prompts come from the tier's corpus, so its continuations are among the reference rows
    assert plan.protocol["corpus_reference_names"] == ("piano", "folk", "bach-chorales")
    assert benchmark.resolve("random").protocol["corpus_reference_names"] == ("folk", "bach-chorales")
    plan = benchmark.resolve("random", synths="piano@hall", score="bach-chorales")
    assert plan.synths == ("piano@hall",) and plan.protocol["score"] == "bach-chorales"
    with pytest.raises(benchmark.BenchmarkArgumentError, match="tier='huge'"):
        benchmark.resolve("random", tier="huge")
    with pytest.raises(benchmark.BenchmarkArgumentError, match="piano@attic"):
        benchmark.resolve("random", synths="piano@attic")
