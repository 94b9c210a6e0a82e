"""The ``lmm-env`` console script: every subcommand's help, play, eval, bench and train."""
from __future__ import annotations

import subprocess
import sys

import pretty_midi
import pytest

CLI = [sys.executable, "-m", "lmm_env.agents.cli"]


def run(*args, ok=True):
    out = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=240)
    if ok:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.parametrize("cmd", ["train", "eval", "play", "bench"])
def test_each_subcommand_has_useful_help(cmd):
    out = run(cmd, "--help")
    assert "usage: lmm-env " + cmd in out.stdout and len(out.stdout) > 300


def test_play_writes_midi_wav_and_piano_roll(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate([60, 64, 67, 72]):
        inst.notes.append(pretty_midi.Note(80, p, 0.5 * i, 0.5 * i + 0.4))
    pm.instruments.append(inst)
    midi = tmp_path / "arp.mid"
    pm.write(str(midi))
    out = run("play", str(midi), "--agent", "score-reader", "--out", str(tmp_path / "o"), "--no-progress",
              "--env-kwargs", '{"reward": "key_match"}')
    assert "note F1 1.000" in out.stdout
    for name in ("arp_performance.mid", "arp_performance.wav", "arp_piano_roll.png"):
        assert (tmp_path / "o" / name).stat().st_size > 50
    played = pretty_midi.PrettyMIDI(str(tmp_path / "o" / "arp_performance.mid"))
    assert [n.pitch for n in played.instruments[0].notes] == [60, 64, 67, 72]


def test_eval_bench_and_train_run_and_bad_input_is_a_clear_message(tmp_path):
    kw = '{"score": "exercises-scale", "max_seconds": 2.0, "reward": "key_match"}'
    out = run("eval", "--agent", "score-reader", "--episodes", "2", "--env-kwargs", kw, "--no-progress")
    assert "| score-reader | 2 | 1.000" in out.stdout
    out = run("bench", "--rewards", "key_match", "--steps", "40", "--num-envs", "4")
    assert "x CartPole-v1" in out.stdout and "key_match" in out.stdout
    out = run("train", "--steps", "128", "--n-envs", "2", "--logdir", str(tmp_path / "r"), "--env-kwargs", kw,
              "--hyperparams", '{"n_steps": 64, "batch_size": 64, "n_epochs": 1}', "--eval-every", "0",
              "--no-progress")
    ckpt = tmp_path / "r" / "checkpoints" / "last.safetensors"
    assert ckpt.is_file() and "trained 128 steps" in out.stdout
    out = run("eval", "--agent", str(ckpt), "--episodes", "1", "--env-kwargs", kw, "--no-progress")
    assert "| last.safetensors | 1 |" in out.stdout
    bad = run("eval", "--agent", "virtuoso", "--env-kwargs", kw, ok=False)
    assert bad.returncode != 0 and "score-reader" in bad.stderr
    bad = run("train", "--env-kwargs", "{max_seconds: 2}", ok=False)
    assert bad.returncode != 0 and "JSON object" in bad.stderr


def test_play_midi_example_runs_as_it_is(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "play_midi.py"
    out = subprocess.run([sys.executable, str(script), "--demo", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "note F1 1.000" in out.stdout and (tmp_path / "demo_piano_roll.png").is_file()


def test_play_improvise_with_a_prompt_writes_midi_wav_and_png_and_bad_prompts_are_clear(tmp_path):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62]):
        inst.notes.append(pretty_midi.Note(80, p, 0.25 * i, 0.25 * i + 0.2))
    pm.instruments.append(inst)
    midi = tmp_path / "tune.mid"
    pm.write(str(midi))
    kw = '{"prompt_seconds": 2.0, "length_seconds": 3.0, "reward": "key_match"}'
    out = run("play", "--agent", "ppo-improvise", "--prompt", str(midi), "--out", str(tmp_path / "o"),
              "--no-progress", "--env-kwargs", kw)
    assert "judge NLL" in out.stdout and "notes/s" in out.stdout
    for name in ("tune_performance.mid", "tune_performance.wav", "tune_piano_roll.png"):
        assert (tmp_path / "o" / name).stat().st_size > 50
    # the world played the prompt: its notes open the performance
    played = pretty_midi.PrettyMIDI(str(tmp_path / "o" / "tune_performance.mid"))
    assert [n.pitch for n in sorted(played.instruments[0].notes, key=lambda n: n.start)][:3] == [60, 62, 64]
    out = run("play", "--agent", "repeat-prompt", "--prompt", "folk", "--out", str(tmp_path / "c"), "--no-progress",
              "--env-kwargs", kw)
    assert (tmp_path / "c" / "folk_performance.wav").stat().st_size > 50
    bad = run("play", "--agent", "ppo-improvise", "--prompt", str(tmp_path / "missing.mid"), ok=False)
    assert bad.returncode != 0 and "does not exist" in bad.stderr
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not a midi file")
    bad = run("play", "--agent", "ppo-improvise", "--prompt", str(junk), "--env-kwargs", kw, ok=False)
    assert bad.returncode != 0 and "cannot be used as a prompt" in bad.stderr and "Traceback" not in bad.stderr
    bad = run("play", "--agent", "ppo-improvise", "--prompt", "no-such-corpus", ok=False)
    assert bad.returncode != 0 and "neither a MIDI file nor a corpus name" in bad.stderr
    bad = run("play", "--agent", "ppo-improvise", ok=False)
    assert bad.returncode != 0 and "--prompt" in bad.stderr
