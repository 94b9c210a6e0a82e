"""The headline example runs as it is (at small scale)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_ppo_example_quick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "train_ppo.py"), "--quick", "--logdir",
                          str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "trained 512 steps" in out.stdout and "folk test note F1" in out.stdout
    assert (tmp_path / "run" / "checkpoints" / "best.safetensors").is_file()
    assert len((tmp_path / "run" / "eval.csv").read_text().splitlines()) == 3  # header + 2 evaluations


def test_demo_runs_and_writes_its_outputs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), "--out", str(tmp_path),
                          "--max-seconds", "6"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| score-reader | 1.000 | 1.000 | 0.000" in out.stdout and "| ppo-closed-loop |" in out.stdout
    for name in ("performance.mid", "performance.wav", "performance_soundfont.wav", "piano_roll.png"):
        assert (tmp_path / name).stat().st_size > 100
