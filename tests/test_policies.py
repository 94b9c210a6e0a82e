"""KeyConvPolicy: shapes, pitch equivariance, SB3 PPO/A2C learn, save/load round trip."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env.agents import KeyConvPolicy
from lmm_env.envs import make_sb3_vec_env

SHORT = dict(max_seconds=2.0, reward="key_match")


def _obs_batch(space, n, seed=0):
    rng = np.random.default_rng(seed)
    k = space["score"].shape
    score = (rng.random((n,) + k) < 0.05).astype(np.float32)
    obs = {
        "score": score,
        "key_state": (rng.random((n,) + space["key_state"].shape) < 0.1).astype(np.float32),
        "audio": rng.uniform(-18, 2, (n,) + space["audio"].shape).astype(np.float32),
    }
    return obs


def _mean_and_value(policy, obs):
    t, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        mean = policy.get_distribution(t).distribution.mean.numpy()
        value = policy.predict_values(t).numpy()
    return mean, value


@pytest.mark.parametrize("kwargs", [{}, {"keys": (48, 71)}, {"keys": (60, 72), "pedal": True}])
def test_shapes_for_any_key_range(kwargs):
    env = gym.make("LMMPiano-v0", **SHORT, **kwargs)
    model = PPO("KeyConvPolicy", env, n_steps=16, batch_size=16, device="cpu")
    assert isinstance(model.policy, KeyConvPolicy)
    n_act = env.action_space.shape[0]
    obs, _ = env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (n_act,) and env.action_space.contains(action)
    mean, value = _mean_and_value(model.policy, _obs_batch(env.observation_space, 5))
    assert mean.shape == (5, n_act) and value.shape == (5, 1)
    # initial bias: keys start up (deterministic action: every key up)
    assert (action <= 0).all()


def test_actor_is_pitch_equivariant_and_critic_separate():
    env = gym.make("LMMPiano-v0", **SHORT)
    policy = PPO("KeyConvPolicy", env, n_steps=16, batch_size=16, device="cpu",
                 policy_kwargs=dict(init_bias=0.0)).policy
    with torch.no_grad():  # make the head non-trivial so the test means something
        policy.action_net.head.weight.normal_(0, 1.0)
    obs = _obs_batch(env.observation_space, 3, seed=1)
    shifted = {k: v.copy() for k, v in obs.items()}
    shifted["score"] = np.roll(obs["score"], 1, axis=-1)
    shifted["key_state"] = np.roll(obs["key_state"], 1, axis=-1)
    m0, _ = _mean_and_value(policy, obs)
    m1, _ = _mean_and_value(policy, shifted)
    assert m0.std() > 1e-3
    # key i+1 of the shifted input sees what key i saw, except within the receptive field's
    # half-width (2 layers of kernel 5: 4 keys) of the edges and of np.roll's wrap-around.
    rf, n = 4, m0.shape[1]
    np.testing.assert_allclose(m1[:, rf + 1: n - rf], m0[:, rf: n - rf - 1], atol=1e-5)
    assert not np.allclose(m1, m0, atol=1e-3)
    # the actor and the critic share no parameters
    actor = {id(p) for p in policy.mlp_extractor.actor.parameters()} | {id(p) for p in policy.action_net.parameters()}
    critic = {id(p) for n, p in policy.named_parameters() if n.startswith(("mlp_extractor.critic", "value_net"))}
    assert actor and critic and not actor & critic
    assert not list(policy.features_extractor.parameters())


def test_ppo_and_a2c_learn_and_save_load_round_trip(tmp_path):
    torch.set_num_threads(1)
    venv = make_sb3_vec_env(4, seed=0, **SHORT)
    model = PPO("KeyConvPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(256)
    assert model.num_timesteps >= 256
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters()))
    obs = venv.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (4, 88) and np.isfinite(action).all()
    model.save(tmp_path / "kc.zip")
    loaded = PPO.load(tmp_path / "kc.zip", env=venv, device="cpu")
    assert isinstance(loaded.policy, KeyConvPolicy)
    again, _ = loaded.predict(obs, deterministic=True)
    np.testing.assert_array_equal(action, again)
    loaded.learn(64)  # the loaded model keeps training

    a2c = A2C("KeyConvPolicy", venv, n_steps=8, seed=0, device="cpu")
    a2c.learn(64)
    assert isinstance(a2c.policy, KeyConvPolicy)


def test_rejects_non_piano_spaces_and_fixed_options():
    with pytest.raises(TypeError):
        PPO("KeyConvPolicy", "Pendulum-v1")
    env = gym.make("LMMPiano-v0", **SHORT)
    with pytest.raises(ValueError, match="share_features_extractor"):
        PPO("KeyConvPolicy", env, policy_kwargs=dict(share_features_extractor=False))


def test_sac_key_conv_policy_is_pitch_equivariant_and_its_critic_reads_the_action():
    from stable_baselines3 import SAC

    from lmm_env.agents.learned.policies import KeyConvSACPolicy

    env = gym.make("LMMPiano-v0", **SHORT)
    model = SAC("KeyConvPolicy", env, buffer_size=100, learning_starts=10, device="cpu",
                policy_kwargs=dict(init_bias=0.0))
    policy = model.policy
    assert isinstance(policy, KeyConvSACPolicy)
    obs0, _ = env.reset(seed=0)
    assert (model.predict(obs0, deterministic=True)[0].shape == (88,))
    with torch.no_grad():
        policy.actor.mu.head.weight.normal_(0, 1.0)
        policy.actor.log_std.head.weight.normal_(0, 1.0)
    obs = _obs_batch(env.observation_space, 3, seed=1)
    shifted = {k: v.copy() for k, v in obs.items()}
    shifted["score"] = np.roll(obs["score"], 1, axis=-1)
    shifted["key_state"] = np.roll(obs["key_state"], 1, axis=-1)

    def params(o):
        t, _ = policy.obs_to_tensor(o)
        with torch.no_grad():
            mean, log_std, _ = policy.actor.get_action_dist_params(t)
        return mean.numpy(), log_std.numpy()

    (m0, s0), (m1, s1) = params(obs), params(shifted)
    rf, n = 4, m0.shape[1]
    assert m0.std() > 1e-3 and s0.std() > 1e-3
    np.testing.assert_allclose(m1[:, rf + 1: n - rf], m0[:, rf: n - rf - 1], atol=1e-5)
    np.testing.assert_allclose(s1[:, rf + 1: n - rf], s0[:, rf: n - rf - 1], atol=1e-5)
    # Q depends on the action, and the two Q-networks and the actor share no parameters
    t, _ = policy.obs_to_tensor(obs)
    with torch.no_grad():
        q_up = policy.critic(t, -torch.ones(3, 88))[0]
        q_down = policy.critic(t, torch.ones(3, 88))[0]
    assert q_up.shape == (3, 1) and not torch.allclose(q_up, q_down)
    ids = [{id(p) for p in m.parameters()} for m in (policy.actor, policy.critic.qf0, policy.critic.qf1)]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_sac_with_key_conv_policy_trains_and_reloads(tmp_path):
    from lmm_env.agents import load_agent, load_trained, train

    torch.set_num_threads(1)
    model = train(algo="sac", policy="KeyConvPolicy", total_steps=160, n_envs=2, seed=0, logdir=tmp_path,
                  env_kwargs=dict(SHORT), hyperparams={"learning_starts": 32, "buffer_size": 500, "batch_size": 32},
                  eval_every=0, checkpoint_every=80, progress=False)
    again = load_trained(tmp_path / "checkpoints" / "last.safetensors")
    obs = model.env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], again.predict(obs, deterministic=True)[0])
    agent = load_agent(tmp_path / "checkpoints" / "last.safetensors")
    single = gym.make("LMMPiano-v0", **SHORT)
    o, _ = single.reset(seed=0)
    assert single.action_space.contains(agent.predict(o, deterministic=True)[0])
