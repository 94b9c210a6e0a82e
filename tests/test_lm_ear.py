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


# --------------------------------------------------------------------------- pairs -> ear, one direction

def _imports_of(path, module):
    """(line, name) of every import of ``module`` or a submodule of it in the lmm_env source file
    ``path``: at top level or inside a function, absolute, relative, or by name (importlib)."""
    import ast

    def hit(name):
        return name == module or name.startswith(module + ".")

    package = ["lmm_env"]  # what a relative import in lmm_env/*.py is relative to
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if hit(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found += [(node.lineno, n) for n in [base] + [f"{base}.{a.name}" for a in node.names] if hit(n)]
        elif isinstance(node, ast.Call):  # importlib.import_module("lmm_env.lm..."), __import__(...)
            found += [(node.lineno, a.value) for a in node.args
                      if isinstance(a, ast.Constant) and isinstance(a.value, str) and hit(a.value)]
    return found


def test_pairs_imports_nothing_from_lmm_env_lm():
    """The core reads one way: pairs builds the data, the ear (lmm_env.lm.ear) fits on it."""
    from pathlib import Path

    import lmm_env.lm.ear
    import lmm_env.pairs

    assert _imports_of(Path(lmm_env.pairs.__file__), "lmm_env.lm") == []
    # the checker sees the direction that is allowed, so the empty answer above means something
    assert _imports_of(Path(lmm_env.lm.ear.__file__), "lmm_env.pairs")


def test_the_ear_of_k_pairs_lives_with_the_ears_and_pairs_does_not_load_them():
    import subprocess
    import sys

    import lmm_env.lm
    from lmm_env.lm import ear

    assert lmm_env.lm.ear_for is ear.ear_for and lmm_env.lm.fit_ear is ear.fit_ear
    assert ear.ear_for(0).__class__.__name__ == "AnalyticEar"
    code = ("import sys, lmm_env.pairs as p; p.check_pair; p.load(4); "
            "print(sorted(m for m in sys.modules if m == 'lmm_env.lm' or m.startswith('lmm_env.lm.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
