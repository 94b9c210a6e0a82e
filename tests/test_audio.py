"""Tests of lmm_env.audio.LogMel (the agent's ears)."""
import numpy as np
import pytest
import torch

from lmm_env.audio import LogMel

SR = 16000
BLOCK = 800


@pytest.fixture(scope="module")
def logmel():
    return LogMel(SR, BLOCK)


def same(a, b):
    """Equal to float32 rounding: BLAS and torch may sum a batch in another order than one row."""
    return a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-5)


def test_whole_clip_equals_block_by_block(logmel):
    rng = np.random.default_rng(0)
    audio = (0.3 * rng.standard_normal(25 * BLOCK)).astype(np.float32)
    whole = logmel(audio)
    assert whole.shape == (25, 64) and whole.dtype == np.float32
    one_by_one = np.stack([logmel.block(audio[i * BLOCK: (i + 1) * BLOCK]) for i in range(25)])
    assert same(whole, one_by_one)
    single = np.concatenate([logmel(audio[i * BLOCK: (i + 1) * BLOCK]) for i in range(25)])
    assert same(whole, single)
    # Batched envs (n_envs, samples) give the same rows too.
    batch = logmel(np.stack([audio, audio[::-1].copy()]))
    assert batch.shape == (2, 25, 64)
    assert same(batch[0], whole)
    assert same(batch[1], logmel(audio[::-1].copy()))


def _band_containing(logmel, f):
    """The mel band whose triangle is highest at ``f``, from librosa's band centres (not LogMel)."""
    import librosa

    edges = librosa.mel_frequencies(logmel.n_mels + 2, fmin=20.0, fmax=SR / 2)
    centres = edges[1:-1]
    return int(np.argmin(np.abs(centres - f))), centres


@pytest.mark.parametrize("band", [2, 10, 25, 40, 55, 62])
def test_sine_lands_in_its_band(logmel, band):
    _, centres = _band_containing(logmel, 1000.0)
    rng = np.random.default_rng(band)
    lo = 0.5 * (centres[band - 1] + centres[band])
    hi = 0.5 * (centres[band] + centres[band + 1])
    # Anywhere in the inner half of the band around its centre.
    f = centres[band] + rng.uniform(-0.25, 0.25) * (hi - lo)
    assert _band_containing(logmel, f)[0] == band
    t = np.arange(4 * BLOCK) / SR
    x = 0.5 * np.sin(2 * np.pi * f * t + 0.3)
    feats = logmel(x)
    assert feats.shape == (4, 64)
    assert np.all(np.argmax(feats, axis=1) == band), (f, np.argmax(feats, axis=1))


def test_silence_is_log_eps(logmel):
    feats = logmel(np.zeros(3 * BLOCK, np.float32))
    assert np.all(feats == np.float32(np.log(logmel.eps)))
    assert np.all(feats == np.float32(logmel.silence))


def test_bad_lengths_are_rejected(logmel):
    with pytest.raises(ValueError, match=r"801.*800"):
        logmel(np.zeros(BLOCK + 1))
    with pytest.raises(ValueError, match=r"1601"):
        logmel.torch(torch.zeros(2 * BLOCK + 1))
    with pytest.raises(ValueError, match="799"):
        logmel.block(np.zeros(BLOCK - 1))


def test_torch_twin_matches_numpy_and_is_differentiable(logmel):
    rng = np.random.default_rng(1)
    audio = 0.2 * rng.standard_normal((2, 6 * BLOCK))
    audio[1, :BLOCK] = 0.0  # a silent block too
    ref = logmel(audio)
    for dtype in (torch.float64, torch.float32):
        out = logmel.torch(torch.tensor(audio, dtype=dtype))
        assert out.shape == (2, 6, 64)
        assert np.abs(out.detach().numpy() - ref).max() < 1e-4, dtype
    x = torch.tensor(audio, dtype=torch.float64, requires_grad=True)
    logmel.torch(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # Analytic gradient = numerical one, on one block in float64.
    small = torch.tensor(0.1 * rng.standard_normal(BLOCK), dtype=torch.float64, requires_grad=True)
    proj = torch.tensor(rng.standard_normal(64), dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: (logmel.torch(a) @ proj).sum(), (small,), eps=1e-6, atol=1e-5)
