"""Discrete-key SAC ("KeyLevelPolicy"): the action coding, the policy's equivariance, the
update's direction, train -> checkpoint -> reload, and the errors users can hit."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env.agents.training.sac import SAC, KeyLevelSACPolicy, actions_to_levels, levels_to_actions

SHORT = dict(max_seconds=2.0, reward="key_match")


def _obs_batch(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return {"score": (rng.random((n,) + space["score"].shape) < 0.05).astype(np.float32),
            "key_state": (rng.random((n,) + space["key_state"].shape) < 0.1).astype(np.float32),
            "audio": rng.uniform(-18, 2, (n,) + space["audio"].shape).astype(np.float32)}


def test_levels_and_env_actions_round_trip_and_strike_the_documented_velocities():
    levels = torch.arange(5)
    actions = levels_to_actions(levels, 4)
    assert actions.tolist() == [-1.0, 0.25, 0.5, 0.75, 1.0]
    assert actions_to_levels(actions, 4).tolist() == levels.tolist()
    # any action > 0 is a pressed key, at the nearest level >= 1; <= 0 is up
    assert actions_to_levels(torch.tensor([0.0, 0.01, 0.6, -0.3]), 4).tolist() == [0, 1, 2, 0]
    env = gym.make("LMMPiano-v0", **SHORT)
    env.reset(seed=0)
    a = -np.ones(88, np.float32)
    a[39] = float(levels_to_actions(torch.tensor(2), 4))
    env.step(a)
    env.step(-np.ones(88, np.float32))
    notes = env.unwrapped.performance().instruments[0].notes
    assert [(n.pitch, n.velocity) for n in notes] == [(60, 64)]


def test_policy_starts_mostly_up_and_is_pitch_equivariant():
    env = gym.make("LMMPiano-v0", **SHORT)
    model = SAC("KeyLevelPolicy", env, buffer_size=100, device="cpu", policy_kwargs=dict(init_press=0.05))
    policy = model.policy
    assert isinstance(policy, KeyLevelSACPolicy)
    obs = _obs_batch(env.observation_space, 3, seed=1)
    t, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        p_down = 1 - torch.softmax(policy.level_logits(t), -1)[..., 0]
    np.testing.assert_allclose(p_down.numpy(), 0.05, atol=2e-3)
    o, _ = env.reset(seed=0)
    action, _ = model.predict(o, deterministic=True)
    assert env.action_space.contains(action) and (action == -1).all()
    with torch.no_grad():  # a non-trivial head, so that the shift test means something
        policy.actor.head.weight.normal_(0, 1.0)
    shifted = {k: v.copy() for k, v in obs.items()}
    shifted["score"] = np.roll(obs["score"], 1, axis=-1)
    shifted["key_state"] = np.roll(obs["key_state"], 1, axis=-1)
    with torch.no_grad():
        l0 = policy.level_logits(policy.obs_to_tensor(obs)[0]).numpy()
        l1 = policy.level_logits(policy.obs_to_tensor(shifted)[0]).numpy()
    rf, n = 4, 88
    assert l0.std() > 1e-3
    np.testing.assert_allclose(l1[:, rf + 1: n - rf], l0[:, rf: n - rf - 1], atol=1e-5)
    ids = [{id(p) for p in m.parameters()} for m in (policy.actor, policy.critic, policy.critic_target)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_updates_learn_to_press_the_scored_key_and_only_it():
    """A replay buffer of one-step episodes: the score asks for one key (a different one each
    time); pressing it pays 1, every other key pressed costs 0.5. After some discrete-SAC
    updates the critic values each key's press by its own effect, and the greedy actor
    presses the scored key and nothing else, at keys it never saw scored in the buffer."""
    torch.manual_seed(0)
    env = gym.make("LMMPiano-v0", **SHORT)
    model = SAC("KeyLevelPolicy", env, buffer_size=1024, learning_rate=3e-3, gamma=0.0, ent_coef=0.1,
                device="cpu", seed=0, policy_kwargs=dict(init_press=0.1, actor_channels=(16, 16),
                                                         critic_channels=(16, 16)))
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(None, []))
    space = env.observation_space

    def scored(key):
        o = {"score": np.zeros((1,) + space["score"].shape, np.float32), "key_state": np.zeros((1, 88), np.float32),
             "audio": np.full((1,) + space["audio"].shape, -10.0, np.float32)}
        o["score"][0, :2, 0, key] = 1.0
        o["score"][0, 2, 0, key] = 0.5
        return o

    rng = np.random.default_rng(0)
    for _ in range(1024):
        key = int(rng.choice([k for k in range(20, 70) if k % 5]))  # never 20, 25, ... 65
        levels = (rng.random(88) < 0.05) * rng.integers(1, 5, 88)
        act = levels_to_actions(torch.as_tensor(levels), 4).numpy()[None].astype(np.float32)
        n_other = int((levels > 0).sum() - (levels[key] > 0))
        reward = np.array([float(levels[key] > 0) - 0.5 * n_other], np.float32)
        obs = scored(key)
        model.replay_buffer.add(obs, obs, act, reward, np.array([True]), [{}])
    model.train(gradient_steps=600, batch_size=64)
    pressed = {}
    for key in (25, 45, 65):
        action, _ = model.predict({k: v[0] for k, v in scored(key).items()}, deterministic=True)
        pressed[key] = np.flatnonzero(action > 0).tolist()
    assert pressed == {25: [25], 45: [45], 65: [65]}


def test_train_checkpoint_reload_and_load_agent(tmp_path):
    from lmm_env.agents import load_agent, load_trained, train

    torch.set_num_threads(1)
    model = train(algo="sac", policy="KeyLevelPolicy", total_steps=96, n_envs=2, seed=0, logdir=tmp_path,
                  env_kwargs=dict(SHORT), hyperparams={"learning_starts": 16, "buffer_size": 200, "batch_size": 16,
                                                       "ent_coef": "auto_0.01"},
                  eval_every=0, checkpoint_every=48, progress=False)
    assert isinstance(model, SAC) and model.target_entropy == pytest.approx(4.4)
    again = load_trained(tmp_path / "checkpoints" / "last.safetensors")
    assert isinstance(again.policy, KeyLevelSACPolicy) and again.num_timesteps == model.num_timesteps
    assert again.log_ent_coef.item() == pytest.approx(model.log_ent_coef.item())
    for a, b in zip(model.critic_target.parameters(), again.critic_target.parameters()):
        torch.testing.assert_close(a, b)
    obs = model.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])
    model.policy.save(tmp_path / "policy.zip")  # SB3's own policy file loads too
    alone = KeyLevelSACPolicy.load(tmp_path / "policy.zip")
    np.testing.assert_array_equal(alone.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    agent = load_agent(tmp_path / "checkpoints" / "last.safetensors")
    single = gym.make("LMMPiano-v0", **SHORT)
    o, _ = single.reset(seed=0)
    assert single.action_space.contains(agent.predict(o, deterministic=True)[0])


def test_resume_refills_the_replay_buffer_before_updating(tmp_path):
    from lmm_env.agents import train

    torch.set_num_threads(1)
    kw = dict(algo="sac", policy="KeyLevelPolicy", n_envs=2, seed=0, logdir=tmp_path, env_kwargs=dict(SHORT),
              hyperparams={"learning_starts": 16, "buffer_size": 200, "batch_size": 16}, eval_every=0,
              checkpoint_every=32, progress=False)
    first = train(total_steps=64, **kw)
    resumed = train(total_steps=96, resume=True, **kw)
    assert resumed.num_timesteps == 96 and resumed.learning_starts == first.num_timesteps + 16
    assert resumed.replay_buffer.size() * 2 == 96 - 64  # rows of n_envs=2 transitions, new since the resume


def test_same_seed_same_training(tmp_path):
    from lmm_env.agents import train

    torch.set_num_threads(1)
    kw = dict(algo="sac", policy="KeyLevelPolicy", total_steps=64, n_envs=2, seed=3, env_kwargs=dict(SHORT),
              hyperparams={"learning_starts": 16, "buffer_size": 200, "batch_size": 16}, eval_every=0,
              checkpoint_every=0, progress=False)
    a, b = train(**kw), train(**kw)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters()):
        assert torch.equal(pa, pb)


def test_errors_name_the_bad_value():
    from lmm_env.agents import train

    env = gym.make("LMMPiano-v0", **SHORT)
    with pytest.raises(ValueError, match="not algo='ppo'"):
        train(algo="ppo", policy="KeyLevelPolicy", total_steps=8, n_envs=1, env_kwargs=dict(SHORT), progress=False)
    with pytest.raises(ValueError, match="n_velocities=0"):
        SAC("KeyLevelPolicy", env, buffer_size=10, policy_kwargs=dict(n_velocities=0))
    with pytest.raises(ValueError, match="init_press=1.5"):
        SAC("KeyLevelPolicy", env, buffer_size=10, policy_kwargs=dict(init_press=1.5))
    with pytest.raises(ValueError, match="does not take"):
        SAC("KeyLevelPolicy", env, buffer_size=10, policy_kwargs=dict(net_arch=[64]))
    with pytest.raises(ValueError, match="target_entropy=-88"):
        SAC("KeyLevelPolicy", env, buffer_size=10, target_entropy=-88.0)
    with pytest.raises(ValueError, match=r"target_entropy=1000000.0: .* \[0, 141.6\]"):
        SAC("KeyLevelPolicy", env, buffer_size=10, target_entropy=1e6)
    with pytest.raises(ValueError, match="ent_coef=0.0 must be > 0"):
        SAC("KeyLevelPolicy", env, buffer_size=10, ent_coef=0.0)
    with pytest.raises(ValueError, match="pedal"):
        SAC("KeyLevelPolicy", gym.make("LMMPiano-v0", pedal=True, **SHORT), buffer_size=10)
