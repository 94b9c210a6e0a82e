"""Agents, training, evaluation and the CLI check what they are given when it is given (issue 21,
"beyond the list": found by a probe of ~600 bad inputs)."""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import lmm_env  # noqa: F401
from lmm_env.agents.cli import main

SHIPPED = Path(__import__("lmm_env.agents", fromlist=["x"]).__file__).resolve().parent / "weights"


def _env(task="LMMPiano-v0"):
    return gym.make(task, score="exercises-scale", max_seconds=2)


def _one_line(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("kw, msg", [
    ({"env_id": "CartPole-v1"}, "env_id='CartPole-v1' is not allowed"),
    ({"n_envs": 1.7}, "n_envs=1.7"), ({"n_envs": "x"}, "n_envs='x'"),
    ({"seed": "x"}, "seed='x'"), ({"seed": -1}, "seed=-1"),
    ({"total_steps": True}, "total_steps=True"), ({"verbose": "loud"}, "verbose='loud'"),
    ({"eval_split": "bogus"}, "eval_split='bogus'"), ({"eval_split": "bogus", "eval_every": 0}, "eval_split='bogus'"),
    ({"env_kwargs": "score=folk"}, "env_kwargs="),
])
def test_train_refuses_bad_arguments_before_building_anything(kw, msg, monkeypatch):
    from lmm_env import envs
    from lmm_env.agents import train

    monkeypatch.setattr(envs, "make_sb3_vec_env", lambda *a, **k: pytest.fail("envs were built before the check"))
    with pytest.raises(ValueError, match=msg):
        train(**dict({"total_steps": 64, "n_envs": 1}, **kw))


def test_train_names_hyperparameters_sb3_refuses_before_any_step():
    from lmm_env.agents import train

    with pytest.raises(ValueError, match=r"hyperparams \{'n_steps': 0\} are not accepted by PPO"):
        train(total_steps=64, n_envs=1, env_kwargs={"score": "exercises-scale", "max_seconds": 1},
              hyperparams={"n_steps": 0}, eval_every=0, checkpoint_every=0, progress=False)


def test_training_with_batched_only_env_arguments_still_evaluates(tmp_path):
    """synth_threads is an argument of the batched env; the single evaluation env must not receive it."""
    from lmm_env.agents import train

    train(total_steps=16, n_envs=2, env_kwargs={"score": "exercises-scale", "max_seconds": 1, "synth_threads": 1},
          hyperparams={"n_steps": 8, "batch_size": 16, "n_epochs": 1}, eval_every=8, eval_episodes=1,
          checkpoint_every=0, logdir=tmp_path, progress=False)
    assert (tmp_path / "eval.csv").read_text().count("\n") >= 2  # a header and at least one evaluation


@pytest.mark.parametrize("command", [["play", "x.mid"], ["eval"], ["train"], ["bench"]])
def test_the_cli_names_an_unknown_env_in_one_line(command, capsys):
    err = _one_line(command + ["--env", "Bogus-v0"], capsys)
    assert "--env 'Bogus-v0' is not allowed" in err and "LMMPiano-v0" in err


def test_bench_refuses_steps_and_tasks_it_cannot_time(capsys):
    assert "--steps 0" in _one_line(["bench", "--steps", "0"], capsys)
    assert "LMMByEar-v0" in _one_line(["bench", "--env", "LMMByEar-v0"], capsys)


def test_cli_messages_raised_inside_commands_exit_2_in_one_line(capsys):
    assert "must be a JSON object" in _one_line(["eval", "--env-kwargs", "[1, 2]"], capsys)


def test_load_agent_and_make_agent_check_their_arguments():
    from lmm_env.agents import load_agent
    from lmm_env.agents.registry import make_agent

    env = _env()
    with pytest.raises(ValueError, match="env='LMMPiano-v0' is not an lmm_env task env"):
        load_agent("random", "LMMPiano-v0")
    with pytest.raises(ValueError, match="is not an lmm_env task env"):
        load_agent("ppo-closed-loop", gym.make("CartPole-v1"))
    with pytest.raises(FileNotFoundError, match="POLICY.SAFETENSORS' does not exist"):
        load_agent("POLICY.SAFETENSORS", env)  # a checkpoint path, whatever the case of its suffix
    with pytest.raises(ValueError, match=r"unknown agent \['random'\]"):
        make_agent(["random"], env)
    with pytest.raises(ValueError, match="env=None is not an lmm_env task env"):
        make_agent("score-reader", None)
    with pytest.raises(ValueError, match="seed='x'"):
        make_agent("random", env, seed="x")
    with pytest.raises(ValueError, match="K=7"):
        make_agent("supervised-g", env, pairs=7)  # checked before anything is fitted
    with pytest.raises(ValueError, match="'random' does not use pairs"):  # was silently ignored
        make_agent("random", env, pairs=4)
    with pytest.raises(ValueError, match="seed='a'"):
        load_agent("ppo-improvise", gym.make("LMMImprovise-v0", prompt=None, length_seconds=1), seed="a")


def test_evaluate_checks_its_arguments_and_the_agents_answers():
    from lmm_env.agents import evaluate

    kw = {"env_kwargs": {"score": "exercises-scale", "max_seconds": 1}, "progress": False}
    with pytest.raises(ValueError, match="seed='a'"):
        evaluate("random", seed="a", **kw)
    with pytest.raises(ValueError, match="episodes=True"):
        evaluate("random", episodes=True, **kw)
    with pytest.raises(ValueError, match="split='test' is evaluate's own|holds split"):
        evaluate("random", env_kwargs={"score": "exercises-scale", "split": "test"}, progress=False)
    assert len(evaluate("random", episodes=np.int64(1), **kw).rows) == 1

    class Mute:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.zeros(88, np.float32)  # no state: not SB3's (action, state)

    with pytest.raises(TypeError, match=r"Mute.predict returned .*must return \(action, state\)"):
        evaluate(Mute(), episodes=1, **kw)


def _edited(tmp_path, name, meta_edit):
    src = SHIPPED / "ppo-closed-loop.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    meta_edit(meta)
    save_file(load_file(str(src)), str(tmp_path / name), metadata=meta)
    return tmp_path / name


def test_checkpoint_metadata_that_sb3_or_json_would_choke_on_is_named(tmp_path):
    from lmm_env.agents import load_agent, load_trained

    def lr(meta):
        config = json.loads(meta["config"])
        config["hyperparams"]["learning_rate"] = "abc"
        meta["config"] = json.dumps(config)

    with pytest.raises(ValueError, match=r"lr\.safetensors': its hyperparams .* are not accepted by PPO"):
        load_trained(_edited(tmp_path, "lr.safetensors", lr))
    with pytest.raises(ValueError, match=r"steps\.safetensors.*num_timesteps=-5"):
        load_agent(_edited(tmp_path, "steps.safetensors", lambda m: m.update(num_timesteps="-5")))
    with pytest.raises(ValueError, match=r"deep\.safetensors' has broken metadata \(RecursionError"):
        load_agent(_edited(tmp_path, "deep.safetensors", lambda m: m.update(config="[" * 100000 + "]" * 100000)))


def test_benchmark_refuses_a_quick_that_is_not_a_bool():
    from lmm_env.agents.benchmark import runner as benchmark

    with pytest.raises(benchmark.BenchmarkArgumentError, match="quick='no'"):
        benchmark.resolve(["random"], quick="no")


def test_agent_checkpoints_stored_in_another_dtype_are_refused(tmp_path):
    import torch

    from lmm_env.agents import load_agent

    src = SHIPPED / "ppo-closed-loop.safetensors"
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(src))
    k = next(k for k in tensors if k.startswith("policy.") and tensors[k].is_floating_point())
    tensors[k] = tensors[k].to(torch.float16)
    save_file(tensors, str(tmp_path / "half.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"half\.safetensors.*is float16 where the policy holds float32"):
        load_agent(tmp_path / "half.safetensors")


# --------------------------------------------------------------------------- round 2 (a second probe)


def test_training_keeps_its_logdir_and_filters_what_the_evaluation_env_does_not_take(tmp_path):
    from lmm_env.agents import train

    kw = dict(total_steps=16, n_envs=2, hyperparams={"n_steps": 8, "batch_size": 16, "n_epochs": 1}, eval_every=8,
              eval_episodes=1, checkpoint_every=8, progress=False,
              env_kwargs={"score": "exercises-scale", "max_seconds": 1, "backend": "torch", "as_numpy": True})
    train(logdir=tmp_path, **kw)  # the torch world as numpy (what make_sb3_vec_env advises), evaluated each rollout
    assert (tmp_path / "eval.csv").is_file() and (tmp_path / "checkpoints" / "last.safetensors").is_file()
    lines = (tmp_path / "eval.csv").read_text().count("\n")
    with pytest.raises(ValueError, match="already holds a run .*resume=True.*overwrite=True"):
        train(logdir=tmp_path, **kw)
    with pytest.raises(ValueError, match="exclude each other"):
        train(logdir=tmp_path, resume=True, overwrite=True, **kw)
    train(logdir=tmp_path, overwrite=True, **kw)
    assert (tmp_path / "eval.csv").read_text().count("\n") == lines  # a new curve, not appended to the old


@pytest.mark.parametrize("kw, msg", [
    ({"seed": 2**70}, "seed=1180591620717411303424"),
    ({"env_kwargs": {"num_envs": 4}}, r"env_kwargs holds \['num_envs'\]"),
    ({"resume": "yes"}, "resume='yes'"), ({"progress": "x"}, "progress='x'"),
])
def test_train_refuses_more_arguments_before_building_anything(kw, msg, monkeypatch):
    from lmm_env import envs
    from lmm_env.agents import train

    monkeypatch.setattr(envs, "make_sb3_vec_env", lambda *a, **k: pytest.fail("envs were built before the check"))
    with pytest.raises(ValueError, match=msg):
        train(**dict({"total_steps": 64, "n_envs": 1}, **kw))


@pytest.mark.parametrize("algo, hyper, msg", [
    ("sac", {"buffer_size": 10**9}, r"buffer_size=1000000000 transitions .* GiB, more than this machine"),
    ("ppo", {"n_steps": 10**7}, r"n_steps=10000000 x n_envs=1 .* GiB"),
    ("ppo", {"policy_kwargs": {"net_arch": [100_000, 100_000]}}, r"GiB of parameters"),
])
def test_train_refuses_buffers_and_policies_the_machine_cannot_hold(algo, hyper, msg):
    from lmm_env.agents import train

    with pytest.raises(ValueError, match=msg):
        train(algo=algo, total_steps=64, n_envs=1, env_kwargs={"score": "exercises-scale", "max_seconds": 1},
              hyperparams=hyper, eval_every=0, checkpoint_every=0, progress=False)


def test_a_checkpoint_cannot_ask_for_hours_of_ear_fitting_or_giant_buffers(tmp_path):
    from lmm_env.agents import load_agent, load_trained

    def all_pairs(meta):
        config = json.loads(meta["config"])
        config["env_kwargs"]["pairs"] = "all"
        meta["config"] = json.dumps(config)

    def huge_rollout(meta):
        config = json.loads(meta["config"])
        config["hyperparams"]["n_steps"] = 1_000_000
        meta["config"] = json.dumps(config)

    with pytest.raises(ValueError, match=r"pairs='all'.*K up to 64"):
        load_agent(_edited(tmp_path, "all.safetensors", all_pairs))
    with pytest.raises(ValueError, match=r"huge\.safetensors': n_steps=1000000 x n_envs=8 .* GiB"):
        load_trained(_edited(tmp_path, "huge.safetensors", huge_rollout))


def test_policies_refuse_a_world_at_other_rates_and_paths_that_are_folders(tmp_path):
    from lmm_env.agents import load_agent, load_trained

    env = gym.make("LMMPiano-v0", score="exercises-scale", frame_rate=25, reward="key_match")
    with pytest.raises(ValueError, match=r"trained at \{'frame_rate': 20.0, 'sample_rate': 16000\}.*'frame_rate': 25"):
        load_agent("ppo-closed-loop", env)
    (tmp_path / "dir.safetensors").mkdir()
    for load in (load_agent, load_trained):
        with pytest.raises(ValueError, match="is a directory"):
            load(tmp_path / "dir.safetensors")
    with pytest.raises(ValueError, match="is not a vector env"):
        load_trained(SHIPPED / "ppo-closed-loop.safetensors", env="x")


def test_evaluate_names_an_unknown_task_and_bad_flags():
    from lmm_env.agents import evaluate

    with pytest.raises(ValueError, match="env_id='Bogus-v0' is not allowed"):
        evaluate("random", env_id="Bogus-v0")
    with pytest.raises(ValueError, match="deterministic='x'"):
        evaluate("random", deterministic="x", env_kwargs={"score": "exercises-scale"})
    with pytest.raises(TypeError, match="label=5"):
        evaluate("random", episodes=1, env_kwargs={"score": "exercises-scale", "max_seconds": 1},
                 progress=False).markdown(5)


def test_benchmark_checks_seed_and_soundfonts_up_front_and_restarts_an_empty_run(tmp_path):
    from lmm_env.agents.benchmark import runner as benchmark
    from lmm_env.agents.registry import AgentSpec

    with pytest.raises(benchmark.BenchmarkArgumentError, match="seed=-1"):
        benchmark.resolve(["random"], seed=-1)
    fake = tmp_path / "text.sf2"
    fake.write_text("not a soundfont")
    with pytest.raises(benchmark.BenchmarkArgumentError, match="cannot be loaded as a SoundFont"):
        benchmark.resolve(["random"], synths=[str(fake)])
    out = tmp_path / "b"
    nothing = ("nothing", AgentSpec(lambda env, K, seed: None, ("LMMPiano-v0",), False, "returns no agent"))
    with pytest.raises(TypeError, match="'nothing': its factory returned None"):
        benchmark.run([nothing], quick=True, out=out, progress=False)
    assert json.loads((out / "results.json").read_text())["rows_done"] == 0
    rows = benchmark.run(["random"], tasks=["LMMPiano-v0"], quick=True, out=out, progress=False)  # 0 rows: no refusal
    assert len(rows) == 1


def test_play_refuses_what_it_cannot_use_before_playing(tmp_path, capsys):
    from lmm_env.score import Score

    midi = tmp_path / "tune.mid"
    Score.from_notes([(60, 0.0, 0.5)]).to_pretty_midi().write(str(midi))
    assert "not a MIDI file" in _one_line(["play", str(tmp_path / "x.wav"), "--env", "LMMByEar-v0"], capsys)
    assert "not score= in --env-kwargs" in _one_line(["play", str(midi), "--env-kwargs", '{"score": "folk"}'], capsys)
    assert "record_audio must stay on" in _one_line(["play", str(midi), "--env-kwargs", '{"record_audio": false}'],
                                                    capsys)
    err = _one_line(["play", "--prompt", "none", "--agent", "repeat-prompt", "--env-kwargs", '{"length_seconds": 0}'],
                    capsys)
    assert "LMMImprovise-v0 cannot be made" in err and "length_seconds" in err


@pytest.mark.parametrize("flag", [["--samples", "0"], ["--pairs", "3"], ["--lookahead", "11"],
                                  ["--target-synths", "bogus"], ["--threads", "0"]])
def test_the_diff_training_cli_names_bad_flags_before_training(flag, tmp_path, capsys):
    from lmm_env.agents.learned.differentiable import main as diff_main

    with pytest.raises(SystemExit) as exc:
        diff_main(["--out", str(tmp_path / "g.safetensors")] + flag)
    assert exc.value.code == 2 and "Traceback" not in capsys.readouterr().err
