"""Tests of LM^A (lmm_env.lm.audio_lm.AudioLM) and its shipped weights."""
import copy

import numpy as np
import pytest
import torch

from lmm_env.audio import LogMel
from lmm_env.lm import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from lmm_env.lm.audio_lm import AudioLM

SR, BLOCK, N_MELS = 16000, 800, 64


@pytest.fixture(scope="module")
def model():
    return load_pretrained("audio")


@pytest.fixture(scope="module")
def logmel():
    return LogMel(SR, BLOCK, N_MELS)


@pytest.fixture(scope="module")
def piece_audio():
    """A SoundFont rendering of 12 s of a held-out (test split) chorale."""
    from lmm_env import corpus
    from lmm_env.synth import make_synth

    score = corpus.load("bach-chorales", "test")[0].trim(0.0, 12.0)
    audio = make_synth("soundfont", SR).render(score)
    return audio[: len(audio) // BLOCK * BLOCK]


@pytest.fixture(scope="module")
def feats(piece_audio, logmel):
    return logmel(piece_audio)


def torch_density(model, history, frame):
    """log p(frame | history) straight from forward()'s mixture parameters, in float64."""
    m = copy.deepcopy(model).double()
    with torch.no_grad():
        log_w, means, log_scales = m(torch.as_tensor(history, dtype=torch.float64))
        x = torch.as_tensor(frame, dtype=torch.float64)[:, None, :]
        comp = log_w - log_scales - np.log(2.0) - (x - means).abs() * torch.exp(-log_scales)
        return torch.logsumexp(comp, dim=1).sum(-1).numpy()


def test_pretrained_is_audio_lm(model):
    assert isinstance(model, AudioLM)
    assert model.config["n_mels"] == N_MELS and model.config["sample_rate"] == SR
    assert model.config["block_size"] == BLOCK and 1 <= model.context <= 16
    assert model.silence == pytest.approx(LogMel(SR, BLOCK, N_MELS).silence, abs=1e-5)
    extra = model.checkpoint_extra["nll_nats_per_frame"]
    for base in ("prev frame + Gaussian", "prev frame + Laplace", "frame-independent diag GMM (16)"):
        assert extra["AudioLM"]["test"] < extra[base]["test"]


def test_forward_shapes(model):
    hist = torch.full((3, model.context, N_MELS), model.silence)
    out = model(hist)
    assert len(out) == 3
    for t in out:
        assert t.shape == (3, model.components + 1, N_MELS)
    log_w = out[0]
    assert torch.allclose(log_w.exp().sum(1), torch.ones(3, N_MELS), atol=1e-5)


def test_numpy_log_prob_matches_torch(model, feats):
    hist = model.histories(feats)
    idx = np.linspace(0, len(feats) - 1, 50).astype(int)
    lp = model.log_prob(hist[idx], feats[idx])
    ref = torch_density(model, hist[idx], feats[idx])
    assert lp.shape == (50,) and lp.dtype == np.float64
    # float32 arithmetic (the fast default): within float32 rounding of a 64-band sum
    np.testing.assert_allclose(lp, ref, rtol=1e-4, atol=1e-3)
    rng = np.random.default_rng(1)
    h = rng.uniform(model.silence, -5, (8, model.context, N_MELS)).astype(np.float32)
    f = rng.uniform(model.silence, -5, (8, N_MELS)).astype(np.float32)
    ref_random = torch_density(model, h, f)
    np.testing.assert_allclose(model.log_prob(h, f), ref_random, rtol=1e-4, atol=1e-3)
    # float64 arithmetic: the same formula exactly (a private copy; the shared model stays float32)
    m64 = copy.deepcopy(model)
    m64.numpy_dtype = np.float64
    m64.refresh()
    np.testing.assert_allclose(m64.log_prob(hist[idx], feats[idx]), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(m64.log_prob(h, f), ref_random, rtol=0, atol=1e-6)


def test_shapes_and_batches(model, feats):
    hist = model.histories(feats)
    assert hist.shape == (len(feats), model.context, N_MELS)
    one = model.log_prob(hist[5:6], feats[5:6])
    assert one.shape == (1,)
    many = model.log_prob(hist[:64], feats[:64])
    assert many.shape == (64,)
    np.testing.assert_allclose(many[5], one[0], rtol=1e-5, atol=1e-3)


def test_finite_on_silence(model):
    k, s = model.context, model.silence
    sil_h = np.full((1, k, N_MELS), s, np.float32)
    sil_f = np.full((1, N_MELS), s, np.float32)
    loud_h = np.full((1, k, N_MELS), -6.0, np.float32)
    loud_f = np.full((1, N_MELS), -6.0, np.float32)
    for h, f in ((sil_h, sil_f), (loud_h, sil_f), (sil_h, loud_f), (loud_h, loud_f)):
        lp = model.log_prob(h, f)
        assert np.all(np.isfinite(lp))
        # bounded above: every band's density is at most 1 / (2 sigma_min)
        assert lp[0] <= N_MELS * -np.log(2 * model.sigma_min) + 1e-6
    # silence after silence is very probable; a loud burst out of silence is not
    assert model.log_prob(sil_h, sil_f)[0] > model.log_prob(sil_h, loud_f)[0] + 50


def test_log_prob_sequence_consistent(model, feats):
    seq = model.log_prob_sequence(feats)
    assert seq.shape == (len(feats),) and np.all(np.isfinite(seq))
    k = model.context
    padded = np.concatenate([np.full((k, N_MELS), model.silence, np.float32), feats])
    for t in (0, 1, k, len(feats) - 1):
        lp = model.log_prob(padded[t:t + k][None], feats[t][None])[0]
        assert seq[t] == pytest.approx(lp, rel=1e-5, abs=1e-3)


def test_music_beats_noise_and_clicks(model, piece_audio, logmel, feats):
    music = model.log_prob_sequence(feats)
    sounding = np.flatnonzero(feats.mean(1) > model.silence + 2)
    assert len(sounding) > 50
    # white noise at the music's level
    rms = float(np.sqrt(np.mean(piece_audio[sounding[0] * BLOCK:(sounding[-1] + 1) * BLOCK] ** 2)))
    noise = (np.random.default_rng(0).standard_normal(len(piece_audio)) * rms).astype(np.float32)
    noise_lp = model.log_prob_sequence(logmel(noise))
    assert music.mean() > noise_lp.mean() + 20
    # a loud click (a few samples at full scale) in the middle of a sounding block
    t = int(sounding[len(sounding) // 2])
    clicked = piece_audio.copy()
    clicked[t * BLOCK + 400: t * BLOCK + 404] = 0.9
    click_lp = model.log_prob_sequence(logmel(clicked))
    affected = slice(t, t + 2)
    assert click_lp[affected].sum() < music[affected].sum() - 20
    np.testing.assert_allclose(click_lp[:t], music[:t], rtol=1e-6)


def test_save_load_round_trip(tmp_path, feats):
    torch.manual_seed(0)
    m = AudioLM(context=4, hidden=32, components=2)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.refresh()
    path = save_checkpoint(m, tmp_path / "a.safetensors", extra={"note": "test"})
    assert path.with_suffix(".json").is_file()
    m2 = load_checkpoint(path, expect="AudioLM")
    assert m2.config == m.config and m2.checkpoint_extra == {"note": "test"}
    hist = m.histories(feats[:40])
    np.testing.assert_array_equal(m.log_prob(hist, feats[:40]), m2.log_prob(hist, feats[:40]))
    np.testing.assert_array_equal(m.log_prob_sequence(feats), m2.log_prob_sequence(feats))
    with pytest.raises(CheckpointError):
        load_checkpoint(path, expect="ScoreLM")


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a safetensors file" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    m = AudioLM(context=2, hidden=8, components=1)
    good = save_checkpoint(m, tmp_path / "good.safetensors")
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(cut)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_numpy_log_prob_matches_torch_on_extreme_frames():
    """Frames at the silence floor and far above it: logits spread widely, the mixture must still match."""
    from lmm_env.lm import load_pretrained

    lm = load_pretrained("audio")
    rng = np.random.default_rng(0)
    hist = rng.choice([-18.42, 5.0], size=(2000, lm.context, lm.n_mels)).astype(np.float32)
    frame = rng.choice([-18.42, 5.0], size=(2000, lm.n_mels)).astype(np.float32)
    import torch

    with torch.no_grad():
        ref = lm.log_prob_torch(torch.from_numpy(hist), torch.from_numpy(frame)).double().numpy()
    np.testing.assert_allclose(lm.log_prob(hist, frame), ref, atol=0.05, rtol=1e-4)
