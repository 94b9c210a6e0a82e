"""Learning through the differentiable world: the torch ears, the diff-g / diff-h policies and agents."""
import numpy as np
import pytest
import torch

from lmm_env.lm import load_pretrained
from lmm_env.lm.ear import _frames
from lmm_env.lm.ear_torch import TorchEar
from lmm_env.score import Score
from lmm_env.synth import PianoSynth


@pytest.fixture(scope="module")
def chord_audio():
    s = Score.from_notes([(60, 0.1, 0.6, 80), (64, 0.3, 1.0, 70), (67, 0.7, 1.4, 90), (40, 0.2, 1.5, 60)])
    return PianoSynth().render(s)


@pytest.mark.parametrize("which", ["ear-analytic", "pairs16"])
def test_torch_ear_matches_numpy_ear_and_has_finite_gradients(chord_audio, which):
    from lmm_env import pairs

    ear = load_pretrained("ear-analytic") if which == "ear-analytic" else pairs.ear_for(16)
    x = torch.from_numpy(chord_audio.astype(np.float32)).requires_grad_(True)
    act = TorchEar(ear)(x)
    ref = ear.activations(_frames(chord_audio, ear.window, ear.block_size))
    assert act.shape == ref.shape == (len(chord_audio) // ear.block_size, 88)
    np.testing.assert_allclose(act.detach().numpy(), ref, atol=1e-4)
    act[:, 60 - 21].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_torch_ear_rejects_bad_input():
    ear = TorchEar(load_pretrained("ear-analytic"))
    with pytest.raises(ValueError, match="audio must be"):
        ear(torch.zeros(2, 3, 1600))
    with pytest.raises(TypeError, match="AnalyticEar or a LearnedEar"):
        TorchEar(object())


def test_inputs_lay_out_the_score_as_the_env_observes_it():
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env.agents.differentiable import g_inputs, g_obs_input

    env = gym.make("LMMPiano-v0", score="folk", max_seconds=4.0)
    obs, _ = env.reset(seed=3)
    fs = env.unwrapped.sim.frames[0]
    x = g_inputs(fs.held, fs.onset, fs.velocity, 4)
    np.testing.assert_allclose(g_obs_input(obs["score"], 4)[0], x[0], atol=1e-6)
    obs, *_ = env.step(env.action_space.sample() * 0 - 1)
    np.testing.assert_allclose(g_obs_input(obs["score"], 4)[0], x[1], atol=1e-6)
    env.close()


def test_config_errors_name_the_bad_value():
    from lmm_env.agents.differentiable import DiffConfig

    for kw, msg in ((dict(kind="x"), "kind='x'"), (dict(samples=0), "samples=0"), (dict(pairs=5), "K=5"),
                    (dict(lookahead=11), "lookahead=11"), (dict(listen=1.5), "listen=1.5"), (dict(lr=-1), "lr=-1")):
        with pytest.raises(ValueError, match=msg):
            DiffConfig(**kw).check()


@pytest.fixture(scope="module")
def short_g(tmp_path_factory):
    from lmm_env.agents.differentiable import DiffConfig, train

    cfg = DiffConfig(kind="g", samples=4096, eval_every=2048, eval_pieces=4, seed=0)
    policy, report = train(cfg, progress=False)
    path = policy.save(tmp_path_factory.mktemp("diff") / "g.safetensors", extra={"test": True})
    return policy, report, path


def test_short_diff_g_run_learns_to_play_far_better_than_random(short_g):
    """4,096 world samples through the differentiable piano: held-out folk note F1 from 0 to > 0.5."""
    _, report, _ = short_g
    hist = report["history"]
    assert hist[0]["samples"] == 0 and hist[0]["note_f1"] < 0.1  # the untrained policy plays nothing
    assert report["samples"] >= 4096
    assert hist[-1]["note_f1"] > 0.5, hist
    # the policy returned is the best validation point's (model selection on validation only)
    assert report["best"]["note_f1"] == max(h["note_f1"] for h in hist)


def test_diff_policy_round_trips_and_refuses_bad_files(short_g, tmp_path):
    from lmm_env.agents.differentiable import DiffPolicy

    policy, _, path = short_g
    back = DiffPolicy.load(path)
    x = np.random.default_rng(0).random((5, policy.cfg.in_channels, 88)).astype(np.float32)
    np.testing.assert_array_equal(back.logits(x)[0], policy.logits(x)[0])
    assert back.extra == {"test": True}
    with pytest.raises(FileNotFoundError, match="nope.safetensors' do not exist"):
        DiffPolicy.load(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        DiffPolicy.load(bad)


def test_shipped_diff_g_plays_lmmpiano_and_refuses_the_hidden_keyboard():
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env.agents.zoo import make_agent

    env = gym.make("LMMPiano-v0", score="folk", split="test", max_seconds=8.0, reward="key_match")
    agent = make_agent("diff-g", env)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.predict(obs)[0])
        done = term or trunc
    assert info["metrics"]["note_f1"] > 0.9
    env.close()
    dec = gym.make("LMMDecipher-v0", max_seconds=4.0)
    from lmm_env.agents.differentiable import make_diff_agent

    with pytest.raises(ValueError, match="decipher-closed-loop"):
        make_diff_agent("g", dec)
    dec.close()


def test_short_diff_h_run_learns_to_play_by_ear_far_better_than_random():
    """h hears the target through the analytic ear (K = 0) and learns to play it back."""
    from lmm_env.agents.differentiable import DiffConfig, train

    cfg = DiffConfig(kind="h", pairs=0, samples=4096, eval_every=4096, eval_pieces=4, seed=0)
    _, report = train(cfg, progress=False)
    hist = report["history"]
    assert hist[0]["note_f1"] < 0.1 and report["target_samples"] == 0  # h's targets are recordings, not renders
    assert hist[-1]["note_f1"] > 0.5, hist


def test_shipped_diff_h_plays_lmmbyear():
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env.agents.zoo import make_agent

    env = gym.make("LMMByEar-v0", max_seconds=8.0, split="test")
    agent = make_agent("diff-h", env)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, _, term, trunc, info = env.step(agent.predict(obs)[0])
        done = term or trunc
    assert info["metrics"]["note_f1"] > 0.8
    env.close()


def test_a_stopped_diff_training_run_resumes_to_the_same_weights(tmp_path):
    """Long runs write their progress (issue 21): a snapshot at every validation point, and a resumed
    run ends bit for bit where an uninterrupted one does."""
    import torch

    from lmm_env.agents.diff_train import train as diff_train
    from lmm_env.agents.differentiable import DiffConfig

    def cfg():
        return DiffConfig(kind="g", samples=192, window=16, batch=2, eval_every=64, eval_pieces=1)

    whole, _ = diff_train(cfg(), progress=False)
    run = tmp_path / "g.safetensors.run"
    points = []

    def stop_at_the_third_point(row):
        points.append(row)
        if len(points) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        diff_train(cfg(), progress=False, checkpoint=run, log=stop_at_the_third_point)
    assert run.is_file()
    resumed, report = diff_train(cfg(), progress=False, checkpoint=run, resume=True)
    assert report["samples"] == 192 and len(report["history"]) == 4
    for (name, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match=r"another config \(differs in \['lr'\]\)"):
        diff_train(DiffConfig(kind="g", samples=192, window=16, batch=2, eval_every=64, eval_pieces=1, lr=0.5),
                   progress=False, checkpoint=run, resume=True)


def test_the_diff_training_cli_refuses_to_start_over_an_unfinished_run(tmp_path):
    from lmm_env.agents.differentiable import main

    out = tmp_path / "g.safetensors"
    (tmp_path / "g.safetensors.run").write_bytes(b"snapshot")
    with pytest.raises(SystemExit):
        main(["--kind", "g", "--out", str(out)])
