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
    from lmm_env.lm.ear import ear_for

    ear = load_pretrained("ear-analytic") if which == "ear-analytic" else ear_for(16)
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
    from lmm_env.agents.learned.differentiable import g_inputs, g_obs_input

    env = gym.make("LMMPiano-v0", score="folk", max_seconds=4.0)
    obs, _ = env.reset(seed=3)
    fs = env.unwrapped.sim.frames[0]
    x = g_inputs(fs.held, fs.onset, fs.velocity, 4)
    np.testing.assert_allclose(g_obs_input(obs["score"], 4)[0], x[0], atol=1e-6)
    obs, *_ = env.step(env.action_space.sample() * 0 - 1)
    np.testing.assert_allclose(g_obs_input(obs["score"], 4)[0], x[1], atol=1e-6)
    env.close()


def test_config_errors_name_the_bad_value():
    from lmm_env.agents.learned.differentiable import DiffConfig

    for kw, msg in ((dict(kind="x"), "kind='x'"), (dict(samples=0), "samples=0"), (dict(pairs=5), "K=5"),
                    (dict(lookahead=11), "lookahead=11"), (dict(listen=1.5), "listen=1.5"), (dict(lr=-1), "lr=-1")):
        with pytest.raises(ValueError, match=msg):
            DiffConfig(**kw).check()


@pytest.fixture(scope="module")
def short_g(tmp_path_factory):
    from lmm_env.agents.learned.differentiable import DiffConfig, train

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
    # and the last policy's weights come with it, so a table can show the final point beside the best
    import copy

    policy, _, _ = short_g
    last = copy.deepcopy(policy)
    last.net.load_state_dict(report["final_state"])
    x = np.random.default_rng(1).random((3, policy.cfg.in_channels, 88)).astype(np.float32)
    same = all(torch.equal(a, b) for a, b in zip(last.net.state_dict().values(), policy.net.state_dict().values()))
    assert same == (report["best"]["samples"] == hist[-1]["samples"])  # the best point is the last one, or not
    assert last.logits(x)[0].shape == policy.logits(x)[0].shape


def test_diff_policy_round_trips_and_refuses_bad_files(short_g, tmp_path):
    from lmm_env.agents.learned.differentiable import DiffPolicy

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
    from lmm_env.agents.registry import make_agent

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
    from lmm_env.agents.learned.differentiable import make_diff_agent

    with pytest.raises(ValueError, match="decipher-closed-loop"):
        make_diff_agent("g", dec)
    dec.close()


def test_short_diff_h_run_learns_to_play_by_ear_far_better_than_random():
    """h hears the target through the analytic ear (K = 0) and learns to play it back."""
    from lmm_env.agents.learned.differentiable import DiffConfig, train

    cfg = DiffConfig(kind="h", pairs=0, samples=4096, eval_every=4096, eval_pieces=4, seed=0)
    _, report = train(cfg, progress=False)
    hist = report["history"]
    assert hist[0]["note_f1"] < 0.1 and report["target_samples"] == 0  # h's targets are recordings, not renders
    assert hist[-1]["note_f1"] > 0.5, hist


def test_shipped_diff_h_plays_lmmbyear():
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env.agents.registry import make_agent

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

    from lmm_env.agents.training.diff_train import train as diff_train
    from lmm_env.agents.learned.differentiable import DiffConfig

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
    from lmm_env.agents.learned.differentiable import main

    out = tmp_path / "g.safetensors"
    (tmp_path / "g.safetensors.run").write_bytes(b"snapshot")
    with pytest.raises(SystemExit):
        main(["--kind", "g", "--out", str(out)])


# ---------------------------------------------------------------- the straight-through render is the synth's

def _render_straight_through_before_the_refactor(synth, gate, vel, down, p, voices):
    """The oracle: `diff_train.render_straight_through` as it was, a copy of the synth's voice loop
    with a per-frame gradient path (kept here verbatim to test that the one voice loop gives the
    same audio and the same gradients)."""
    from lmm_env.synth import model

    T = gate.shape[0]
    hop = synth.hop
    table_len = synth.tables.shape[-1]
    n_rel = synth.release.shape[0]
    strike = voices.numpy()
    release_frame = synth._release_frames(strike, down.detach().numpy() > 0.5)
    t_idx, k_idx = np.nonzero(strike)
    if len(t_idx) == 0:
        return gate.new_zeros(T * hop) + 0.0 * (gate.sum() + vel.sum() + p.sum())
    r = (release_frame[t_idx, k_idx] - t_idx) * hop
    lengths = np.minimum(np.minimum(table_len, r + n_rel), (T - t_idx) * hop)
    out = gate.new_zeros(T * hop + table_len)
    t_t, k_t = torch.from_numpy(t_idx), torch.from_numpy(k_idx)
    soft, bright = model.layer_gains(vel[t_t, k_t])
    amp = gate[t_t, k_t]
    soft, bright = amp * soft, amp * bright
    release_ext = torch.cat([synth.release, synth.release.new_zeros(1)])
    mod_p = p - p.detach()
    for c in range(0, len(t_idx), synth.chunk):
        sl = slice(c, c + synth.chunk)
        n_max = int(lengths[sl].max())
        n_fr = -(-n_max // hop)
        j = torch.arange(n_max)
        keys = k_t[sl]
        wave = soft[sl, None] * synth.tables[0, keys, :n_max] + bright[sl, None] * synth.tables[1, keys, :n_max]
        r_t = torch.from_numpy(r[sl])
        since = j[None, :] - r_t[:, None]
        gain = torch.where(since < 0, torch.ones(()), release_ext[since.clamp(0, n_rel)])
        frames = (t_t[sl, None] + torch.arange(n_fr)[None]).clamp(max=T - 1)
        mod = mod_p[frames, keys[:, None]]  # (n, n_fr)
        gain = gain + mod.repeat_interleave(hop, dim=1)[:, :n_max]
        valid = j[None, :] < torch.from_numpy(lengths[sl])[:, None]
        start = t_t[sl, None] * hop + j[None, :]
        out = out.index_add(0, start.reshape(-1), (wave * gain * valid).reshape(-1))
    return out[: T * hop]


@pytest.mark.parametrize("shift", [1.0, 4.0, 20.0])  # dense play, sparse play, no voice at all
def test_straight_through_render_gives_the_old_audio_and_gradients(shift):
    from lmm_env.agents.training.diff_train import _straight_through_play, frame_loudness, render_straight_through
    from lmm_env.synth import DifferentiablePianoSynth

    synth = DifferentiablePianoSynth(16000, 20.0, chunk=16)  # several chunks per window
    gen = torch.Generator().manual_seed(7)
    B, T = 2, 12
    logits0 = torch.randn(B, T, 2, 88, generator=gen) * 2.0 - shift
    target_act = (torch.rand(B, T, 88, generator=gen) > (0.9 if shift < 20 else 2.0)).float()
    weights = torch.randn(B, T * synth.hop, generator=gen)

    def run(render):
        logits = logits0.clone().requires_grad_(True)
        gate, vel, down, p, voices = _straight_through_play(logits, target_act, 0.02, 0.3)
        audio = render(gate, vel.detach(), down, p, voices)
        played = gate.detach() > 0.5
        gate_l, vel_l = torch.where(played, gate.detach(), gate), torch.where(played, vel, vel.detach())
        audio_v = render(gate_l, vel_l, down, p.detach(), voices)
        (weights * audio).sum().backward(retain_graph=True)
        g_ear = logits.grad.clone()
        logits.grad = None
        frame_loudness(audio_v, synth.hop).sum().backward()
        return audio.detach(), audio_v.detach(), g_ear, logits.grad.clone(), int(voices.sum())

    def old(*rolls):
        return torch.stack([_render_straight_through_before_the_refactor(synth, *(x[b] for x in rolls))
                            for b in range(B)])

    *want, n_voices = run(old)
    *got, _ = run(lambda *rolls: render_straight_through(synth, *rolls))
    assert (n_voices > 0) == (shift < 20)
    for w, g in zip(want, got):
        assert torch.allclose(g, w, rtol=1e-6, atol=1e-9), (g - w).abs().max()
    if n_voices:
        assert want[2].abs().sum() > 0 and want[3].abs().sum() > 0  # the test reaches both gradient paths


def test_synth_options_keep_the_audio_and_check_their_rolls():
    """``strikes`` / ``hold_prob`` change gradients only: the plain render is the same audio."""
    from lmm_env.synth import DifferentiablePianoSynth

    synth = DifferentiablePianoSynth(16000, 20.0)
    onset = torch.zeros(10, 88)
    onset[0, 40], onset[3, 47] = 1.0, 0.7
    vel = torch.full((10, 88), 90.0)
    held = torch.zeros(10, 88)
    held[0:6, 40], held[3:9, 47] = 1.0, 1.0
    p = torch.full((10, 88), 0.3, requires_grad=True)
    strikes = onset > 0
    strikes[5, 60] = True  # a silent voice: onset 0 there
    plain = synth(onset, vel, held)
    audio = synth(onset, vel, held, strikes=strikes, hold_prob=p)
    assert torch.equal(audio.detach(), plain)
    (audio * torch.linspace(-1, 1, audio.numel())).sum().backward()
    assert p.grad[2, 40] != 0 and p.grad[4, 47] != 0 and p.grad[0, 47] == 0  # each frame a voice sounds
    with pytest.raises(ValueError, match=r"strikes \(3, 88\) must match onset \(10, 88\)"):
        synth(onset, vel, held, strikes=strikes[:3])
    with pytest.raises(TypeError, match="strikes must be a bool tensor"):
        synth(onset, vel, held, strikes=strikes.float())
    with pytest.raises(ValueError, match=r"hold_prob \(2, 10, 88\) must match"):
        synth(onset, vel, held, hold_prob=p.detach()[None].expand(2, 10, 88))
