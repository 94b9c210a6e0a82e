"""lmm_env.agents.training.rllib: RLlib's new API stack on lmm_env (the batched twin per EnvRunner, KeyConvPolicy as an RLModule)."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.rllib")

import torch  # noqa: E402
from ray.rllib.core.columns import Columns  # noqa: E402

from lmm_env.agents import evaluate, load_agent  # noqa: E402
from lmm_env.agents.training.rllib import (KeyConvRLModule, export_policy, make_env, policy_state, ppo_config,  # noqa: E402
                                  register_envs, rllib_ppo_settings)

KW = {"score": "folk", "max_seconds": 1.0}  # 1 s tunes: 20 frames + the 0.5 s tail = 30 steps an episode
HP = {"n_steps": 32, "batch_size": 64, "n_epochs": 1, "gamma": 0.9, "gae_lambda": 0.9, "learning_rate": 3e-4,
      "ent_coef": 0.0, "clip_range": 0.2}


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _obs_batch(n=4, seed=0):
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, **KW)
    obs, _ = venv.reset(seed=seed)
    for _ in range(5):  # some keys down and some sound heard
        obs, *_ = venv.step(np.random.default_rng(seed).uniform(-1, 1, (n, 88)).astype(np.float32))
    return venv, obs


def test_rlmodule_forward_on_dict_batch_equals_keyconvpolicy():
    """The RLModule takes the Dict observation batch as it is and, with the shipped
    ppo-closed-loop weights, gives KeyConvPolicy's means, log-std and values."""
    venv, obs = _obs_batch()
    module = KeyConvRLModule(observation_space=venv.single_observation_space, action_space=venv.single_action_space,
                             model_config={})
    module.load_state_dict(policy_state(_shipped()))
    batch = {Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}}
    out = module.forward_inference(batch)
    inputs = out[Columns.ACTION_DIST_INPUTS]
    assert inputs.shape == (4, 2 * 88)
    mean, log_std = inputs[:, :88], inputs[:, 88:]
    policy = load_agent("ppo-closed-loop")
    with torch.no_grad():
        t_obs = policy.obs_to_tensor(obs)[0]
        ref = policy.get_distribution(t_obs).distribution
        values = policy.predict_values(t_obs).squeeze(-1)
    torch.testing.assert_close(mean, ref.mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(log_std.exp(), ref.stddev, atol=1e-6, rtol=1e-6)
    train_out = module.forward_train(batch)
    torch.testing.assert_close(module.compute_values(batch, embeddings=train_out[Columns.EMBEDDINGS]), values)
    torch.testing.assert_close(module.compute_values(batch), values)
    dist = module.get_train_action_dist_cls().from_logits(train_out[Columns.ACTION_DIST_INPUTS])
    logp = dist.logp(torch.zeros(4, 88))
    assert logp.shape == (4,) and bool(torch.isfinite(logp).all())
    logp.sum().backward()  # gradients reach the actor's convolutions
    assert module.mlp_extractor.actor[0].weight.grad.abs().sum() > 0


def _shipped():
    from pathlib import Path

    import lmm_env.agents

    return Path(lmm_env.agents.__file__).resolve().parent / "weights" / "ppo-closed-loop.safetensors"


def test_batched_twin_behind_next_step_autoreset():
    """RLlib's vector env: the final observation with the end, a fresh episode at the next step."""
    env = make_env("LMMPiano-v0", dict(KW, num_envs=2))
    raw = gym.make_vec("LMMPiano-v0", num_envs=2, **KW)
    obs, _ = env.reset(seed=3)
    raw.reset(seed=3)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    n_steps = int(env.unwrapped.sim.n_steps[0])
    down = np.full((2, 88), -1.0, np.float32)
    down[:, 40] = 0.5
    for t in range(n_steps):
        obs, rew, term, trunc, info = env.step(down)
        r_obs, r_rew, _, r_trunc, r_info = raw.step(down)
        np.testing.assert_allclose(rew, r_rew, atol=1e-4)
        assert list(trunc) == list(r_trunc) == [t == n_steps - 1] * 2 and not term.any()
    for k in obs:  # the final observation (the raw twin shows the next episode's first)
        np.testing.assert_allclose(obs[k], np.stack([r_info["final_obs"][i][k] for i in range(2)]), atol=1e-4)
    assert obs["key_state"][:, 40].tolist() == [1.0, 1.0]
    assert info["_metrics"].tolist() == [True, True] and "final_obs" not in info
    obs, rew, term, trunc, info = env.step(down)  # RLlib's reset step: the action is not played
    low = env.single_observation_space["audio"].low
    assert rew.tolist() == [0.0, 0.0] and not trunc.any() and not term.any()
    assert not obs["key_state"].any() and np.allclose(obs["audio"], low)
    assert info["_reward_terms"].tolist() == [False, False]
    for t in range(int(env.unwrapped.sim.n_steps.min())):  # then a whole episode again
        obs, rew, term, trunc, info = env.step(down)
    assert info["_reward_terms"].all() and (rew > 0).all()


def test_registers_every_task_and_refuses_bad_settings():
    ids = register_envs()
    assert {"LMMPiano-v0", "LMMDecipher-v0", "LMMByEar-v0", "LMMImprovise-v0"} <= set(ids)
    with pytest.raises(ValueError, match="CartPole-v1"):
        register_envs("CartPole-v1")
    with pytest.raises(ValueError, match="use_sde"):
        rllib_ppo_settings({"use_sde": True}, 8)
    with pytest.raises(ValueError, match="vectorize_mode='threads'"):
        ppo_config(vectorize_mode="threads", env_kwargs=KW)
    with pytest.raises(ValueError, match="num_envs_per_env_runner=0"):
        ppo_config(num_envs_per_env_runner=0, env_kwargs=KW)
    s = rllib_ppo_settings({"n_steps": 256, "batch_size": 256, "n_epochs": 4, "learning_rate": 3e-4}, 8)
    assert (s["train_batch_size_per_learner"], s["minibatch_size"], s["num_epochs"], s["lr"]) == (2048, 256, 4, 3e-4)
    assert s["use_kl_loss"] is False and math.isinf(s["vf_clip_param"]) and s["grad_clip"] == 0.5


def test_ppo_on_a_local_cluster_logs_reward_terms_and_exports_a_playable_policy(ray_cluster, tmp_path):
    single = gym.make("LMMPiano-v0", **KW)
    single.reset(seed=0)
    terms = set(single.step(single.action_space.sample())[4]["reward_terms"])
    algo = ppo_config("LMMPiano-v0", num_env_runners=1, num_envs_per_env_runner=4, env_kwargs=KW,
                      hyperparams=HP).build_algo()
    try:
        for _ in range(2):  # 2 x 128 env steps: 8 whole 30-step episodes
            result = algo.train()
        learner = result["learners"]["default_policy"]
        for k in ("policy_loss", "vf_loss", "total_loss", "entropy"):
            assert math.isfinite(float(learner[k])), (k, learner[k])
        runners = result["env_runners"]
        assert {f"reward_terms/{k}" for k in terms} <= set(runners), sorted(runners)
        assert all(math.isfinite(runners[f"reward_terms/{k}"]) for k in terms)
        assert runners["episode_len_mean"] == 30  # whole episodes: no step lost or added by the autoreset
        assert 0.0 <= runners["episode/note_f1"] <= 1.0
        path = export_policy(algo, tmp_path / "rllib.safetensors")
        module_state = algo.learner_group.get_weights()["default_policy"]
    finally:
        algo.stop()
    agent = load_agent(str(path))
    venv, obs = _obs_batch(2, seed=1)
    action, _ = agent.predict(obs, deterministic=True)
    module = KeyConvRLModule(observation_space=venv.single_observation_space, action_space=venv.single_action_space,
                             model_config={})
    module.load_state_dict({k: torch.as_tensor(v) for k, v in module_state.items()})
    mean = module.forward_inference({Columns.OBS: {k: torch.as_tensor(v) for k, v in obs.items()}})[
        Columns.ACTION_DIST_INPUTS][:, :88]
    np.testing.assert_allclose(action, np.clip(mean.numpy(), -1, 1), atol=1e-5)
    table = evaluate(str(path), split="validation", episodes=1, env_kwargs=KW, progress=False)
    assert table.rows[0]["steps"] == 30 and math.isfinite(table.rows[0]["return"])


TASK_KW = {"LMMPiano-v0": KW, "LMMDecipher-v0": KW, "LMMByEar-v0": KW,
           "LMMImprovise-v0": {"prompt_seconds": 0.5, "length_seconds": 1.0}}


@pytest.mark.parametrize("env_id", sorted(TASK_KW))
def test_every_task_gets_its_batched_twin_and_a_module(env_id):
    """Each task's RLlib env is its batched twin behind NEXT_STEP autoreset; the score tasks
    train KeyConvRLModule, LMMByEar-v0 (no score over keys) RLlib's default MLP on the flattened Dict."""
    env = make_env(env_id, dict(TASK_KW[env_id], num_envs=2))
    obs, _ = env.reset(seed=0)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    for _ in range(3):
        obs, rew, *_ = env.step(env.action_space.sample())
    assert env.single_observation_space.contains({k: v[0] for k, v in obs.items()}) and np.isfinite(rew).all()
    config = ppo_config(env_id, num_env_runners=0, num_envs_per_env_runner=2, env_kwargs=TASK_KW[env_id], hyperparams=HP)
    assert (config.rl_module_spec.module_class is KeyConvRLModule) == (env_id != "LMMByEar-v0")
    assert config.gym_env_vectorize_mode == "vector_entry_point" and config.train_batch_size_per_learner == 64
