"""The torch world (`LMMPianoTorchVectorEnv`) plays the numpy world's episodes (issue 14, part 3)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from lmm_env.envs.piano_vector import LMMPianoVectorEnv
from lmm_env.envs.torch_sim import TORCH_TOLERANCE
from lmm_env.envs.torch_vector import LMMPianoTorchVectorEnv, make_vector_env

N_ENVS, STEPS = 3, 60
SHORT = dict(max_seconds=1.0, tail=0.5)  # 30 steps an episode: two episode ends per env in 60 steps


def _np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _play_both(mix="compact", **kwargs):
    """Step the numpy and the torch world with the same seeds and random actions; yield both results."""
    ref = LMMPianoVectorEnv(N_ENVS, **kwargs)
    tw = LMMPianoTorchVectorEnv(N_ENVS, device="cpu", mix=mix, **kwargs)
    yield ref.reset(seed=11), tw.reset(seed=11)
    rng = np.random.default_rng(5)
    for t in range(STEPS):
        act = rng.uniform(-1, 1, ref.action_space.shape).astype(np.float32)
        if t % 3 == 0:
            act[:, ::2] = -1.0  # releases, so that keys are struck again
        yield ref.step(act), tw.step(torch.from_numpy(act))


def _check_obs(a, b):
    assert a.keys() == b.keys()
    for k in ("score", "key_state"):
        np.testing.assert_array_equal(a[k], _np(b[k]), err_msg=k)
    np.testing.assert_allclose(a["audio"], _np(b["audio"]), rtol=0, atol=TORCH_TOLERANCE)


@pytest.mark.parametrize("kwargs", [
    dict(reward="key_match"),
    dict(reward="closed_loop"),  # ear_match (TorchEar) + score_lm + audio_lm
    dict(reward="audio_match", mix="dense"),
    dict(reward={"key_match": 1.0, "audio_match": 0.5}, layout="shuffled", relayout="episode", pedal=True,
         keys=(40, 90)),
], ids=["key_match", "closed_loop", "audio_match-dense-mix", "shuffled-pedal-audio_match"])
def test_same_episodes_as_numpy_world(kwargs):
    ends = 0
    for i, (a, b) in enumerate(_play_both(**SHORT, **kwargs)):
        if i == 0:
            _check_obs(a[0], b[0])
            continue
        obs_a, rew_a, term_a, trunc_a, info_a = a
        obs_b, rew_b, term_b, trunc_b, info_b = b
        _check_obs(obs_a, obs_b)
        assert rew_b.dtype == torch.float32 and rew_b.shape == (N_ENVS,)
        np.testing.assert_allclose(rew_a, _np(rew_b), rtol=0, atol=TORCH_TOLERANCE)
        np.testing.assert_array_equal(trunc_a, _np(trunc_b))
        np.testing.assert_array_equal(term_a, _np(term_b))
        assert list(info_a["reward_terms"]) == list(info_b["reward_terms"])
        for k, v in info_a["reward_terms"].items():
            np.testing.assert_allclose(v, _np(info_b["reward_terms"][k]), rtol=0, atol=TORCH_TOLERANCE, err_msg=k)
        assert ("metrics" in info_a) == ("metrics" in info_b)
        if "metrics" in info_a:
            ends += int(trunc_a.sum())
            np.testing.assert_array_equal(info_a["_metrics"], info_b["_metrics"])
            for k, v in info_a["metrics"].items():  # the same keys were played: the same metrics
                np.testing.assert_array_equal(v, info_b["metrics"][k], err_msg=k)
            for i_env in np.flatnonzero(trunc_a):
                _check_obs(info_a["final_obs"][i_env], info_b["final_obs"][i_env])
            assert all(info_b["final_obs"][i] is None for i in np.flatnonzero(~trunc_a))
    assert ends >= N_ENVS  # every env's episode ended inside the run (autoreset was exercised)


def test_refuses_rewards_without_a_torch_twin():
    with pytest.raises(ValueError, match=r"reward 'improvise' \(ImproviseReward\) has no torch twin.*key_match"):
        LMMPianoTorchVectorEnv(2, reward="improvise")
    with pytest.raises(ValueError, match="record_audio=True is not allowed"):
        LMMPianoTorchVectorEnv(2, reward="key_match", record_audio=True)


def test_as_numpy_and_action_checks():
    kw = dict(reward="audio_match", **SHORT)
    tw = LMMPianoTorchVectorEnv(2, as_numpy=True, **kw)
    tt = LMMPianoTorchVectorEnv(2, **kw)
    obs_n, _ = tw.reset(seed=3)
    obs_t, _ = tt.reset(seed=3)
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in obs_n.values())
    assert all(isinstance(v, torch.Tensor) for v in obs_t.values())
    assert tw.observation_space.contains(obs_n)
    act = np.full((2, 88), -1.0, np.float32)
    act[:, 39] = 0.8
    out_n, out_t = tw.step(act), tt.step(act)
    assert isinstance(out_n[1], np.ndarray) and out_n[1].dtype == np.float64
    assert isinstance(out_n[3], np.ndarray) and out_n[3].dtype == bool
    np.testing.assert_array_equal(out_n[1], out_t[1].double().numpy())
    assert tw.observation_space.contains(out_n[0])
    assert out_n[0]["key_state"][:, 39].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match=r"action shape \(88,\) is wrong; expected \(2, 88\)"):
        tt.step(act[0])
    with pytest.raises(ValueError, match="action dtype torch.int64 is not allowed"):
        tt.step(torch.zeros(2, 88, dtype=torch.long))
    act[1, 5] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value nan at index \(1, 5\)"):
        tt.step(act)


def test_make_vector_env_dispatches_and_serves_make_vec():
    assert isinstance(make_vector_env(2, reward="key_match"), LMMPianoVectorEnv)
    assert isinstance(make_vector_env(2, backend="torch", reward="key_match"), LMMPianoTorchVectorEnv)
    with pytest.raises(ValueError, match=r"backend='jax' is not allowed; use one of \['numpy', 'torch'\]"):
        make_vector_env(2, backend="jax")
    with pytest.raises(ValueError, match="device='cuda' needs backend='torch'"):
        make_vector_env(2, device="cuda")
    # gym.make_vec("LMMPiano-v0", backend=...) reaches it: it is the task's vector entry point
    assert isinstance(gym.make_vec("LMMPiano-v0", num_envs=2, reward="key_match", **SHORT), LMMPianoVectorEnv)
    venv = gym.make_vec("LMMPiano-v0", num_envs=2, backend="torch", device="cpu", reward="key_match", **SHORT)
    obs, _ = venv.reset(seed=0)
    assert isinstance(venv, LMMPianoTorchVectorEnv) and obs["score"].shape == (2, 3, 11, 88)
