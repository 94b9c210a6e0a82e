"""Presets in rl-zoo3's format, read by our train() and by rl_zoo3's own train script."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lmm_env.agents import hyperparams_path, preset


@pytest.mark.parametrize("algo", ["ppo", "a2c", "sac"])
def test_presets_exist_for_every_algo_and_name_sb3_arguments(algo):
    p = preset(algo)
    assert p["total_steps"] > 0 and p["n_envs"] >= 1 and p["policy"] in ("MultiInputPolicy", "KeyConvPolicy", "KeyLevelPolicy")
    assert "n_timesteps" not in p["hyperparams"] and "learning_rate" in p["hyperparams"]
    with pytest.raises(ValueError, match="no ppo preset"):
        preset("ppo", "CartPole-v1")


def test_rl_zoo3_trains_on_lmm_env_with_our_preset_file(tmp_path):
    pytest.importorskip("rl_zoo3")
    cmd = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "LMMPiano-v0",
           "--gym-packages", "lmm_env", "lmm_env.agents.learned.policies", "--conf-file", str(hyperparams_path("ppo")), "-n", "128",
           "--eval-freq", "-1", "--log-folder", str(tmp_path), "-params", "n_envs:2", "n_steps:64",
           "batch_size:64", "n_epochs:1", "env_kwargs:dict(score='exercises-scale', max_seconds=2.0, reward='key_match')"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "ppo" / "LMMPiano-v0_1" / "LMMPiano-v0.zip").is_file()
