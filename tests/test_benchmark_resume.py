"""A benchmark sweep that survives a kill, and outputs checked before any work (issue 21, items 2 and 3)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lmm_env.agents.benchmark import runner as benchmark
from lmm_env.agents.cli import main

# 4 rows of about a second each: long enough to stop the run between two of them
ARGS = ["benchmark", "--agent", "random,score-reader", "--tasks", "LMMPiano-v0,LMMDecipher-v0", "--episodes", "2",
        "--no-progress"]
N_ROWS = 4


def _start(out):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "lmm_env.agents.cli", *ARGS, "--out", str(out), "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _rows_on_disk(out) -> int:
    try:
        return json.loads((out / "results.json").read_text())["rows_done"]
    except (OSError, ValueError, KeyError):
        return 0


def _stop_after(proc, out, rows: int, sig) -> None:
    """Send ``sig`` to the benchmark as soon as ``rows`` rows are on disk."""
    deadline = time.monotonic() + 180
    while _rows_on_disk(out) < rows:
        assert proc.poll() is None, f"the benchmark ended before {rows} rows: {proc.communicate()}"
        assert time.monotonic() < deadline, "no row was written in 180 s"
        time.sleep(0.01)
    proc.send_signal(sig)


def _refused(argv, capsys) -> str:
    """The one-line message of a CLI call that must be refused with exit status 2."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _table(out) -> tuple[list, list]:
    """The rows and episode rows of results.json, without the wall times (they differ run to run)."""
    doc = json.loads((out / "results.json").read_text())
    rows = [{k: v for k, v in r.items() if k != "wall_seconds"} for r in doc["rows"]]
    return rows, doc["episodes"]


def test_a_killed_benchmark_keeps_its_rows_and_resumes_to_the_uninterrupted_table(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main([*ARGS, "--out", str(whole)]) == 0
    capsys.readouterr()

    out = tmp_path / "stopped"
    # SIGTERM after the first row: a one-line message, the finished row kept, marked partial
    proc = _start(out)
    _stop_after(proc, out, 1, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "partial" and 1 <= doc["rows_done"] < N_ROWS and doc["rows_planned"] == N_ROWS
    assert "Partial run" in (out / "results.md").read_text() and not (out / "summary.png").exists()

    # resumed, then SIGKILLed in its next row: the rows on disk survive, no temporary is left
    before = doc["rows_done"]
    proc = _start(out)
    _stop_after(proc, out, before + 1, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "partial" and before < doc["rows_done"] < N_ROWS
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]

    # resumed to the end: the same table as the run that was never stopped
    assert main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["status"] == "complete"
    assert _table(out) == _table(whole)
    assert (out / "summary.png").stat().st_size > 200


def test_results_are_never_replaced_silently_and_protocols_never_mix(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b"
    base = ["benchmark", "--agent", "random", "--tasks", "LMMPiano-v0", "--no-progress", "--out", str(out)]
    quick = base + ["--quick"]
    assert main(quick) == 0
    first = (out / "results.json").read_text()
    played = []
    monkeypatch.setattr(benchmark, "_play_row", lambda *a, **k: played.append(a) or pytest.fail("a row was played"))
    assert re.search(r"already holds benchmark results \(1 rows, complete\).*--resume.*--overwrite",
                     _refused(quick, capsys))
    assert re.search(r"another protocol .*protocol\.episodes", _refused(base + ["--episodes", "3", "--resume"], capsys))
    assert re.search("another protocol .*seed", _refused(quick + ["--seed", "1", "--resume"], capsys))
    assert main(quick + ["--resume"]) == 0  # nothing left to play: the table stays as it was
    assert not played and json.loads((out / "results.json").read_text())["rows"] == json.loads(first)["rows"]
    assert "exclude each other" in _refused(quick + ["--resume", "--overwrite"], capsys)
    monkeypatch.undo()
    assert main(quick + ["--overwrite"]) == 0
    assert len(json.loads((out / "results.json").read_text())["rows"]) == 1


# --------------------------------------------------------------------------- outputs checked before the work

UNWRITABLE = "/proc/lmm-env-test-out"  # no one, root included, may make a folder here


@pytest.mark.parametrize("where", ["file", "inside-file", "unwritable"])
def test_benchmark_refuses_a_bad_out_before_any_work_in_one_line(tmp_path, monkeypatch, capsys, where):
    f = tmp_path / "a-file"
    f.write_text("x")
    out = {"file": str(f), "inside-file": str(f / "sub"), "unwritable": UNWRITABLE}[where]
    monkeypatch.setattr(benchmark, "_play_row", lambda *a, **k: pytest.fail("a row was played before --out was checked"))
    message = _refused(["benchmark", "--agent", "random", "--tasks", "LMMPiano-v0", "--quick", "--no-progress",
                        "--out", out], capsys)
    assert "out=" in message and out in message
    assert f.read_text() == "x"


def test_play_refuses_a_bad_out_before_playing(tmp_path, monkeypatch, capsys):
    from lmm_env.agents import cli
    from lmm_env.score import Score

    midi = tmp_path / "tune.mid"
    Score.from_notes([(60, 0.0, 0.5), (64, 0.5, 1.0)]).to_pretty_midi().write(str(midi))
    taken = tmp_path / "taken"
    taken.write_text("x")
    monkeypatch.setattr(cli, "_agent", lambda *a, **k: pytest.fail("the agent was built before --out was checked"))
    for out, msg in ((taken, "is a file, not a folder"), (taken / "sub", "inside"), (UNWRITABLE, "cannot be created")):
        assert msg in _refused(["play", str(midi), "--out", str(out), "--no-progress"], capsys)
    (tmp_path / "o" / "tune_performance.wav").mkdir(parents=True)  # an output file's name taken by a folder
    assert "tune_performance.wav' is a folder" in _refused(["play", str(midi), "--out", str(tmp_path / "o"),
                                                            "--no-progress"], capsys)


def test_train_and_export_refuse_a_bad_output_before_any_work(tmp_path, monkeypatch):
    from lmm_env import envs
    from lmm_env.agents import train
    from lmm_env.agents.training.sb3 import export_policy

    taken = tmp_path / "taken"
    taken.write_text("x")
    monkeypatch.setattr(envs, "make_sb3_vec_env", lambda *a, **k: pytest.fail("envs were built before logdir"))
    with pytest.raises(ValueError, match="logdir=.*inside"):
        train(total_steps=64, n_envs=1, logdir=taken)
    (tmp_path / "taken.safetensors").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        export_policy("does-not-matter.safetensors", tmp_path / "taken.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        export_policy("does-not-matter.safetensors", tmp_path / "exported")
