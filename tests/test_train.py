"""lmm_env.agents.training.sb3: SB3 training with TensorBoard logs and safe, resumable checkpoints."""
from __future__ import annotations

import glob

import numpy as np
import pytest

from lmm_env.agents import evaluate, load_trained, train

KW = {"score": "exercises-scale", "max_seconds": 2.0, "reward": {"key_match": 1.0, "audio_match": 0.5}}
HP = {"n_steps": 64, "batch_size": 64, "n_epochs": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("run")
    model = train(total_steps=256, n_envs=2, logdir=str(logdir), env_kwargs=KW, hyperparams=HP, eval_every=128,
                  eval_episodes=1, checkpoint_every=128, progress=False)
    return logdir, model


def test_tensorboard_has_sb3_scalars_reward_terms_eval_metrics_audio_and_piano_roll(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir, _ = run
    (events,) = glob.glob(str(logdir / "events.out.tfevents.*"))
    ea = EventAccumulator(events, size_guidance={"audio": 0, "images": 0, "scalars": 0})
    ea.Reload()
    tags = ea.Tags()
    for tag in ("train/loss", "reward_terms/key_match", "reward_terms/audio_match", "eval/note_f1",
                "eval/frame_f1", "eval/return", "episode/note_f1", "episode/pitch_class_entropy"):
        assert tag in tags["scalars"], tag
    assert "eval/audio" in tags["audio"] and "eval/piano_roll" in tags["images"]
    assert [e.step for e in ea.Scalars("eval/note_f1")] == [128, 256]
    lines = (logdir / "eval.csv").read_text().splitlines()
    assert lines[0].startswith("steps,wall_seconds,") and "note_f1" in lines[0] and len(lines) == 3
    assert [int(float(x.split(",")[0])) for x in lines[1:]] == [128, 256]
    assert (logdir / "checkpoints" / "best.safetensors").is_file()


def test_checkpoint_reloads_the_same_policy_and_resume_keeps_the_step_count(run):
    logdir, model = run
    ckpt = logdir / "checkpoints" / "last.safetensors"
    again = load_trained(ckpt)
    assert again.num_timesteps == model.num_timesteps == 256
    obs = again.env.reset()
    a1, _ = model.predict(obs, deterministic=True)
    a2, _ = again.predict(obs, deterministic=True)
    np.testing.assert_array_equal(a1, a2)
    resumed = train(total_steps=384, n_envs=2, logdir=str(logdir), env_kwargs=KW, hyperparams=HP, eval_every=0,
                    checkpoint_every=0, progress=False, resume=True)
    assert resumed.num_timesteps == 384
    assert load_trained(ckpt).num_timesteps == 384
    # A trained SB3 model goes through the same evaluation loop as the baselines.
    table = evaluate(resumed, episodes=1, env_kwargs=KW, progress=False)
    assert 0.0 <= table.mean()["frame_f1"] <= 1.0


def test_bad_arguments_and_files_are_clear_errors(tmp_path, run):
    logdir, _ = run
    with pytest.raises(ValueError, match="algo='dqn'"):
        train(algo="dqn", total_steps=10, env_kwargs=KW)
    with pytest.raises(ValueError, match="policy="):
        train(policy="Transformer", total_steps=10, env_kwargs=KW)
    with pytest.raises(ValueError, match="not .*made with|same arguments"):
        train(total_steps=512, n_envs=2, logdir=str(logdir), env_kwargs=dict(KW, max_seconds=3.0), hyperparams=HP,
              resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(total_steps=10, logdir=str(tmp_path), env_kwargs=KW, resume=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_trained(bad)


def test_a_crash_mid_write_leaves_the_last_good_checkpoint(run, monkeypatch, tmp_path):
    import shutil

    import safetensors.torch

    from lmm_env.agents.training.sb3 import read_checkpoint, save_checkpoint

    logdir, model = run
    ckpt = tmp_path / "last.safetensors"
    shutil.copy(logdir / "checkpoints" / "last.safetensors", ckpt)
    before = ckpt.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, ckpt, {"env_id": "LMMPiano-v0"})
    assert ckpt.read_bytes() == before
    read_checkpoint(ckpt)  # still a valid checkpoint


@pytest.mark.parametrize("algo", ["a2c", "sac"])
def test_a2c_and_sac_train_from_their_presets(algo, tmp_path):
    from lmm_env.agents import preset

    cfg = preset(algo)
    hp = cfg["hyperparams"]
    # SAC: a learned entropy coefficient, so that the test sees it travel with the checkpoint
    hp.update({"buffer_size": 500, "learning_starts": 32, "ent_coef": "auto_0.1"} if algo == "sac" else {"n_steps": 8})
    model = train(algo=algo, policy=cfg["policy"], total_steps=64, n_envs=1 if algo == "sac" else 2,
                  logdir=str(tmp_path), env_kwargs=KW, hyperparams=hp, eval_every=0, checkpoint_every=0,
                  progress=False)
    assert model.num_timesteps >= 64
    again = load_trained(tmp_path / "checkpoints" / "last.safetensors")
    assert type(again).__name__ == algo.upper() and again.num_timesteps == model.num_timesteps
    if algo == "sac":  # the learned entropy coefficient travels with the checkpoint
        assert again.log_ent_coef.item() == pytest.approx(model.log_ent_coef.item()) != 0.0


def test_export_policy_keeps_only_what_acting_needs(tmp_path):
    import gymnasium as gym

    from lmm_env.agents import export_policy, load_agent
    from lmm_env.agents.training.sb3 import read_checkpoint

    model = train(algo="ppo", policy="KeyConvPolicy", total_steps=32, n_envs=2, logdir=str(tmp_path), env_kwargs=KW,
                  hyperparams={"n_steps": 16, "batch_size": 32, "n_epochs": 1}, eval_every=0, checkpoint_every=0,
                  progress=False)
    full = tmp_path / "checkpoints" / "last.safetensors"
    small = export_policy(full, tmp_path / "shipped" / "policy.safetensors")
    assert small.stat().st_size < full.stat().st_size and (small.stat().st_mode & 0o777) == 0o644
    _, data, steps = read_checkpoint(small)
    assert steps == model.num_timesteps and not [k for k in data["tensors"] if not k.startswith("policy.")]
    env = gym.make("LMMPiano-v0", **KW)
    obs, _ = env.reset(seed=0)
    a1 = load_agent(full).predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(a1, load_agent(small).predict(obs, deterministic=True)[0])
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))  # a safetensors file, not ours
    with pytest.raises(ValueError, match="not an lmm_env training checkpoint"):
        export_policy(tmp_path / "other.safetensors", tmp_path / "x.safetensors")
