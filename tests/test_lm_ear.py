"""Tests of the ears (lmm_env.lm.ear): AnalyticEar and the shipped LearnedEar."""
import numpy as np
import pytest
import torch

from lmm_env.lm import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from lmm_env.lm.ear import AnalyticEar, LearnedEar, _targets
from lmm_env.metrics import frame_f1
from lmm_env.score import Score
from lmm_env.synth import make_synth

torch.set_num_threads(1)
SR, BLOCK = 16000, 800


@pytest.fixture(scope="module")
def piano():
    return make_synth("piano", SR)


@pytest.fixture(scope="module")
def learned():
    return load_pretrained("ear")


@pytest.fixture(scope="module", params=["analytic", "learned"])
def ear(request, learned):
    return AnalyticEar() if request.param == "analytic" else learned


def _window_of(audio, ear, end_block=6):
    """The ear's window ending at the end of block ``end_block`` (0.3 s in)."""
    end = end_block * BLOCK
    return audio[end - ear.window: end][None]


def test_loaders_return_the_right_classes(learned):
    assert isinstance(learned, LearnedEar)
    assert isinstance(load_pretrained("ear-analytic"), AnalyticEar)
    n_params = sum(p.numel() for p in learned.parameters())
    assert n_params * 4 < 3e6


def test_shapes_dtypes_range(ear):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((5, ear.window)) * 0.1).astype(np.float32)
    a = ear.activations(x)
    assert a.shape == (5, 88) and a.dtype == np.float32
    assert np.all((a >= 0) & (a <= 1))
    assert ear.window == (ear.history_blocks + 1) * ear.block_size
    with pytest.raises(ValueError):
        ear.activations(np.zeros((2, ear.window + 1), np.float32))


def test_silence_is_low(ear):
    assert ear.activations(np.zeros((2, ear.window), np.float32)).max() < 0.1
    tiny = (np.random.default_rng(1).standard_normal((2, ear.window)) * 1e-5).astype(np.float32)
    assert ear.activations(tiny).max() < 0.5


def test_single_notes_across_the_keyboard(ear, piano):
    keys = list(range(0, 88, 5)) + list(range(0, 16))  # every 5th key, and A0..C2 semitone by semitone
    audio = np.stack([_window_of(piano.render(Score([21 + k], [0.0], [1.0], [80])), ear)[0] for k in keys])
    act = ear.activations(audio)
    assert list(act.argmax(axis=1)) == keys
    own = act[np.arange(len(keys)), keys]
    if isinstance(ear, LearnedEar):
        # The extreme keys are rare in the 16 training pairs: found (argmax) but weakly there.
        assert np.all(own > 0.15), own
        own = own[(np.array(keys) >= 5) & (np.array(keys) < 80)]
    assert np.all(own > 0.5), own


def test_chord_is_found(ear, piano):
    pitches = [48, 52, 55]
    audio = piano.render(Score(pitches, [0.0] * 3, [1.0] * 3, [80] * 3))
    act = ear.activations(_window_of(audio, ear))[0]
    assert set(np.flatnonzero(act > 0.5) + 21) >= set(pitches)
    assert np.sort(act)[-4] < 0.5 or set(np.argsort(act)[-3:] + 21) == set(pitches)


def test_activation_grows_only_weakly_with_loudness(ear, piano):
    audio = piano.render(Score([60], [0.0], [1.0], [100]))
    w = _window_of(audio, ear)
    a = ear.activations(np.concatenate([w, w * np.float32(0.25)]))[:, 60 - 21]
    assert np.all(a > 0.5) and abs(a[0] - a[1]) < 0.3


def test_transcribe_shapes_and_onsets(ear, piano):
    score = Score([60, 64, 60], [0.0, 0.5, 1.0], [0.8, 1.5, 1.5], [80, 80, 80])
    audio = piano.render(score)
    held, onset = ear.transcribe(audio)
    T = len(audio) // BLOCK
    assert held.shape == onset.shape == (T, 88) and held.dtype == bool and onset.dtype == bool
    assert not np.any(onset & ~held)
    assert held[5, 60 - 21] and held[15, 64 - 21]
    on60 = np.flatnonzero(onset[:, 60 - 21])
    assert len(on60) == 2 and abs(on60[0] - 0) <= 1 and abs(on60[1] - 20) <= 1


def test_learned_ear_frame_f1_on_held_out_pieces(learned, piano):
    from lmm_env import corpus

    f1s = []
    for name in ("folk", "bach-chorales"):
        score = corpus.load(name, "test")[0].trim(0, 10)
        audio = piano.render(score)
        held, _ = learned.transcribe(audio)
        target, _ = _targets(score, len(held), SR / BLOCK)
        f1s.append(frame_f1(held, target)["f1"])
    assert np.mean(f1s) > 0.8, f1s


def test_numpy_matches_torch(learned):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, learned.window)) * 0.05).astype(np.float32)
    np.testing.assert_allclose(learned.activations(x), learned.torch_activations(x), atol=1e-4)


def test_save_load_round_trip(tmp_path, piano):
    torch.manual_seed(0)
    model = LearnedEar()
    path = save_checkpoint(model, tmp_path / "ear.safetensors", extra={"note": "test"})
    loaded = load_checkpoint(path, expect="LearnedEar")
    audio = piano.render(Score([40, 67], [0.0, 0.0], [1.0, 1.0], [90, 90]))
    x = _window_of(audio, model)
    np.testing.assert_array_equal(model.activations(x), loaded.activations(x))
    assert loaded.config == model.config


def test_corrupt_file_raises(tmp_path):
    bad = tmp_path / "ear.safetensors"
    bad.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("kwargs, match", [
    (dict(bins_per_semitone=0), "bins_per_semitone=0"),
    (dict(n_fft=4000), "n_fft=4000"),
    (dict(n_fft=100), "n_fft=100"),
    (dict(iterations=0), "iterations=0"),
])
def test_analytic_ear_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AnalyticEar(**kwargs)


def test_analytic_ear_reads_only_the_last_n_fft_samples(piano):
    ear = AnalyticEar(history_blocks=2, n_fft=2048)
    audio = _window_of(piano.render(Score([60, 64], [0.0, 0.1], [1.0, 1.0], [80, 60])), ear)
    noisy = audio.copy()
    noisy[:, : ear.window - ear.n_fft] = np.random.default_rng(0).standard_normal(ear.window - ear.n_fft)
    np.testing.assert_array_equal(ear.activations(audio), ear.activations(noisy))
    full = AnalyticEar(history_blocks=2, n_fft=None)
    assert full.n_fft == full.window == 3 * BLOCK
    assert not np.array_equal(full.activations(audio), full.activations(noisy))


@pytest.mark.parametrize("kwargs", [dict(history_blocks=0), dict(history_blocks=1), dict(block_size=320)])
def test_analytic_ear_default_window_fits_short_inputs(kwargs):
    ear = AnalyticEar(**kwargs)  # the default 2048-sample analysis shrinks to a shorter input
    assert ear.n_fft == min(2048, ear.window)
    act = ear.activations(np.zeros((2, ear.window), np.float32))
    assert act.shape == (2, 88) and np.isfinite(act).all()
