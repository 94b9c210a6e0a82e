"""Input checks of the LMs, ears, diff policies, pairs and audio loading: each refusal is a clear
error naming the bad value or file, raised when it is given (not a silent cast, a NaN reward
later, a raw RecursionError, or hours of work)."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lmm_env.lm import CheckpointError, load_checkpoint, load_pretrained, read_metadata
from lmm_env.lm.checkpoint import WEIGHTS_DIR, check_fits, header_shapes, skeleton_shapes

EAR = WEIGHTS_DIR / "ear_pairs4.safetensors"
DEEP = "[" * 100_000 + "]" * 100_000


def _craft(src, dst, config=None, meta=None, tensors=None):
    """A copy of the safetensors file ``src`` with its config updated, metadata replaced, or tensors mapped."""
    with safe_open(str(src), "pt") as f:
        m = dict(f.metadata())
        t = {k: f.get_tensor(k) for k in f.keys()}
    if config is not None:
        m["config"] = json.dumps({**json.loads(m["config"]), **config})
    m.update(meta or {})
    save_file(tensors(t) if tensors else t, str(dst), metadata=m)
    return dst


def _diff_path(kind):
    from lmm_env.agents.learned.differentiable import shipped_path

    return shipped_path(kind)


# --------------------------------------------------------------------------- 1. tensor dtypes


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float16, torch.float64])
def test_an_ear_file_of_another_dtype_is_refused_not_cast(tmp_path, dtype):
    bad = _craft(EAR, tmp_path / "ear.safetensors", tensors=lambda t: {k: v.to(dtype) for k, v in t.items()})
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(CheckpointError, match=rf"ear.safetensors.*tensor '.*' is {name} where the LearnedEar holds "
                                              r"float32 \(\+5 more"):
        load_checkpoint(bad)


def test_a_diff_policy_file_of_another_dtype_is_refused(tmp_path):
    from lmm_env.agents.learned.differentiable import DiffPolicy

    bad = _craft(_diff_path("g"), tmp_path / "g.safetensors", tensors=lambda t: {k: v.long() for k, v in t.items()})
    with pytest.raises(CheckpointError, match=r"g.safetensors.*is int64 where the diff policy holds float32"):
        DiffPolicy.load(bad)


def test_the_dtype_helpers_read_the_header_and_keep_check_fits_signature(tmp_path):
    from lmm_env.lm.checkpoint import header_dtypes, skeleton_dtypes
    from lmm_env.lm.ear import LearnedEar

    build = lambda: LearnedEar(**read_metadata(EAR)["config"])  # noqa: E731
    assert set(header_dtypes(EAR).values()) == {"float32"} and skeleton_dtypes(build) == header_dtypes(EAR)
    check_fits(EAR, skeleton_shapes(build), header_shapes(EAR), "ear")  # the old call, unchanged
    check_fits(EAR, skeleton_shapes(build), header_shapes(EAR), "ear", expected_dtypes=skeleton_dtypes(build))
    half = _craft(EAR, tmp_path / "half.safetensors", tensors=lambda t: {k: v.half() for k, v in t.items()})
    assert set(header_dtypes(half).values()) == {"float16"}
    with pytest.raises(CheckpointError, match="is float16 where the ear holds float32"):
        check_fits(half, skeleton_shapes(build), header_shapes(half), "ear", expected_dtypes=skeleton_dtypes(build))


# --------------------------------------------------------------------------- 2. config values


@pytest.mark.parametrize("config, match", [
    (dict(silence=float("nan")), "silence=nan"),
    (dict(sigma_max=float("inf")), "sigma_max=inf"),
    (dict(bg_scale=float("inf")), "bg_scale=inf"),
    (dict(sigma_min="0.1"), "sigma_min='0.1'"),
    (dict(bg_weight=True), "bg_weight=True"),
])
def test_an_audio_lm_file_with_an_absurd_float_is_refused_at_load(tmp_path, config, match):
    bad = _craft(WEIGHTS_DIR / "audio_lm.safetensors", tmp_path / "alm.safetensors", config=config)
    with pytest.raises(CheckpointError, match=rf"alm.safetensors.*AudioLM does not accept: {match} is not allowed"):
        load_checkpoint(bad)


@pytest.mark.parametrize("config, match", [
    (dict(scale=1e300), r"scale=1e\+300"), (dict(scale="0.001"), "scale='0.001'"), (dict(scale=True), "scale=True"),
])
def test_an_ear_file_with_an_absurd_scale_is_refused_at_load(tmp_path, config, match):
    bad = _craft(EAR, tmp_path / "ear.safetensors", config=config)
    with pytest.raises(CheckpointError, match=rf"LearnedEar does not accept: {match} is not allowed; use a finite "):
        load_checkpoint(bad)


@pytest.mark.parametrize("frame_rate", ["20", True, float("nan"), 1e9, 0.5])
def test_a_score_lm_file_with_a_bad_frame_rate_is_refused_at_load(tmp_path, frame_rate):
    bad = _craft(WEIGHTS_DIR / "score_lm.safetensors", tmp_path / "slm.safetensors", config=dict(frame_rate=frame_rate))
    with pytest.raises(CheckpointError, match=r"ScoreLM does not accept: frame_rate=.* is not allowed; .*\[1, 1000\]"):
        load_checkpoint(bad)


@pytest.mark.parametrize("kwargs", [dict(relative="0.2"), dict(relative=0.0), dict(floor=float("nan")),
                                    dict(slope=float("inf")), dict(iterations=True), dict(sample_rate=16000.5),
                                    dict(block_size="800"), dict(n_fft=2048.0), dict(history_blocks=-1)])
def test_the_analytic_ear_checks_every_setting(kwargs):
    from lmm_env.lm.ear import AnalyticEar

    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=rf"^{name}=.* is not allowed"):
        AnalyticEar(**kwargs)


def test_check_real_refuses_strings_bools_and_non_finite_numbers():
    from lmm_env._checks import check_real

    assert check_real("x", 1, 0, 2) == 1.0 and check_real("x", np.float32(0.5), 0, 1, lo_open=True) == 0.5
    for bad in ("1", True, np.bool_(True), float("nan"), float("inf"), 10**400, None, [1]):
        with pytest.raises(ValueError, match=r"x=.* is not allowed; use a finite number in \[0, 2\]"):
            check_real("x", bad, 0, 2)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        check_real("x", 1.0, 0, 1, lo_open=True, hi_open=True)


@pytest.mark.parametrize("kw, match", [
    (dict(candidate="a"), "candidate='a'"), (dict(listen=float("nan")), "listen=nan"),
    (dict(lr=float("inf")), "lr=inf"), (dict(loudness="0.1"), "loudness='0.1'"), (dict(lm=True), "lm=True"),
    (dict(clip=0.0), "clip=0.0"), (dict(seed="x"), "seed='x'"), (dict(seed=None), "seed=None"),
    (dict(window=True), "window=True"), (dict(batch=10**6), "batch=1000000"), (dict(samples=1.5), "samples=1.5"),
    (dict(eval_every=-1), "eval_every=-1"), (dict(eval_pieces="8"), "eval_pieces='8'"),
    (dict(corpora=("folk", "bogus")), "corpora="), (dict(corpora="folk"), "corpora='folk'"),
    (dict(target_synths=(5,)), "target_synths="), (dict(target_synths=()), "target_synths=()"),
    (dict(ear_synth=["piano"]), "ear_synth="), (dict(keep_best="yes"), "keep_best='yes'"),
    (dict(kind=["g"]), "kind="), (dict(lookahead=True), "lookahead=True"),
])
def test_diff_config_checks_every_field(kw, match):
    from lmm_env.agents.learned.differentiable import DiffConfig

    with pytest.raises(ValueError, match=match):
        DiffConfig(**kw).check()


def test_diff_config_keeps_good_values():
    from lmm_env.agents.learned.differentiable import DiffConfig

    cfg = DiffConfig(kind="h", pairs="16", target_synths=["piano", "soundfont"], corpora=["folk"], lr=1,
                     seed=np.int64(3), keep_best=False).check()
    assert (cfg.pairs, cfg.target_synths, cfg.corpora, cfg.lr, cfg.seed) == (16, ("piano", "soundfont"), ("folk",),
                                                                             1.0, 3)


def test_a_diff_h_file_asking_for_the_ear_of_all_pairs_is_refused(tmp_path, monkeypatch):
    from lmm_env.agents.learned.differentiable import DiffPolicy
    from lmm_env.lm import ear as ear_mod

    monkeypatch.setattr(ear_mod, "ear_for", lambda *a, **k: pytest.fail("an ear was fitted"))
    bad = _craft(_diff_path("h"), tmp_path / "h.safetensors", config=dict(pairs="all"))
    with pytest.raises(ValueError, match=r"h.safetensors.*pairs='all'.*hours.*at most 64 pairs"):
        DiffPolicy.load(bad)
    assert DiffPolicy.load(_craft(_diff_path("h"), tmp_path / "h64.safetensors", config=dict(pairs=64))).cfg.pairs == 64


# --------------------------------------------------------------------------- 3. metadata and paths


def test_deeply_nested_or_non_object_json_metadata_is_refused_naming_the_file(tmp_path):
    from lmm_env.agents.learned.differentiable import DiffPolicy

    for key in ("config", "extra"):
        deep = _craft(EAR, tmp_path / f"deep_{key}.safetensors", meta={key: DEEP})
        with pytest.raises(CheckpointError, match=rf"deep_{key}.safetensors.*metadata '{key}' is not valid JSON "
                                                  r"\(it nests too deeply\)"):
            read_metadata(deep)
        with pytest.raises(CheckpointError, match=f"deep_{key}.safetensors"):
            load_checkpoint(deep)
        listed = _craft(EAR, tmp_path / f"list_{key}.safetensors", meta={key: "[1, 2]"})
        with pytest.raises(CheckpointError, match=rf"metadata '{key}' is not a JSON object: \[1, 2\]"):
            load_checkpoint(listed)
        deep_g = _craft(_diff_path("g"), tmp_path / f"g_{key}.safetensors", meta={key: DEEP})
        with pytest.raises(ValueError, match=rf"g_{key}.safetensors.*nests too deeply"):
            DiffPolicy.load(deep_g)
    listed = _craft(_diff_path("g"), tmp_path / "g_list.safetensors", meta={"config": "[1]"})
    with pytest.raises(ValueError, match=r"g_list.safetensors.*not a JSON object"):
        DiffPolicy.load(listed)


@pytest.mark.parametrize("path", [None, 5, b"ear.safetensors", ""])
def test_a_path_that_is_no_path_is_a_clear_error(path):
    from lmm_env.agents.learned.differentiable import DiffPolicy

    with pytest.raises(CheckpointError, match=r"path .* is not allowed; give the path of a .safetensors file"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="is not allowed"):
        read_metadata(path)
    with pytest.raises(CheckpointError, match="pass a name|unknown model"):
        load_pretrained(path)
    with pytest.raises(TypeError, match=r"diff policy weights path .* is not allowed"):
        DiffPolicy.load(path)


def test_a_directory_is_named_a_directory(tmp_path):
    from lmm_env.agents.learned.differentiable import DiffPolicy

    folder = tmp_path / "model.safetensors"
    folder.mkdir()
    for load in (load_checkpoint, read_metadata, lambda p: load_pretrained(str(p), cached=False)):
        with pytest.raises(CheckpointError, match="model.safetensors' is a directory, not a file"):
            load(folder)
    with pytest.raises(ValueError, match="is a directory"):
        DiffPolicy.load(folder)


# --------------------------------------------------------------------------- 4. audio


def test_a_wav_whose_header_says_1_hz_is_refused_before_resampling(tmp_path, monkeypatch):
    import librosa

    from lmm_env.audio import load_audio

    monkeypatch.setattr(librosa, "resample", lambda *a, **k: pytest.fail("resampled"))
    for rate in (1, 1000):
        path = tmp_path / f"sr{rate}.wav"
        sf.write(path, np.full(1000, 0.1, np.float32), rate)
        with pytest.raises(ValueError, match=rf"sr{rate}.wav' says its sample rate is {rate} Hz; allowed: 4000 to "):
            load_audio(str(path), 16000, "target")


def test_audio_longer_than_max_samples_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    import lmm_env.audio as audio

    monkeypatch.setattr(audio, "MAX_SAMPLES", 16000)
    path = tmp_path / "two.wav"
    sf.write(path, np.full(32000, 0.1, np.float32), 16000)
    monkeypatch.setattr(sf, "read", lambda *a, **k: pytest.fail("decoded"))
    with pytest.raises(ValueError, match=r"two.wav' is 2.0 s long, 32000 samples at 16000 Hz; at most 16000 .*"
                                         "max_seconds="):
        audio.load_audio(str(path), 16000, "target")
    with pytest.raises(ValueError, match=r"target array is 2.0 s long, 32000 samples at 16000 Hz"):  # upsampled 2x
        audio.load_audio(np.full(16000, 0.1, np.float32), 16000, "target", source_rate=8000)


@pytest.mark.parametrize("target, match", [
    (np.full(16000, 1e6, np.float32), r"target array peaks at 1e\+06; pass float samples in \[-1, 1\] \(int PCM"),
    (np.full((3, 3), 0.1, np.float32), r"target array has shape \(3, 3\)"),
    (np.full((16, 16000), 0.1, np.float32), r"target array has shape \(16, 16000\)"),
])
def test_by_ear_refuses_targets_that_are_not_float_audio(target, match):
    import gymnasium as gym

    import lmm_env  # noqa: F401  (registers the envs)

    with pytest.raises(ValueError, match=match):
        gym.make("LMMByEar-v0", target=target)


def test_stereo_arrays_either_way_round_are_still_mixed():
    from lmm_env.audio import load_audio

    x = np.full((16000, 2), 0.1, np.float32)
    np.testing.assert_allclose(load_audio(x, 16000), load_audio(x.T.copy(), 16000))
    assert load_audio(x, 16000).shape == (16000,)


# --------------------------------------------------------------------------- 5. pairs and fit_ear


@pytest.mark.parametrize("kw, match", [
    (dict(synth=5), "synth=5 is not allowed"), (dict(synth=None), "synth=None is not allowed"),
    (dict(synth="nope"), "synth='nope' is not allowed"), (dict(seed="x"), "seed='x' is not allowed"),
    (dict(seed=None), "seed=None is not allowed"), (dict(seed=True), "seed=True is not allowed"),
    (dict(seed=-1), "seed=-1 is not allowed"),
])
def test_ear_for_checks_synth_and_seed_first(kw, match, monkeypatch):
    from lmm_env.lm import ear

    monkeypatch.setattr(ear, "fit_ear", lambda *a, **k: pytest.fail("fitted"))
    for K in (0, 4):
        with pytest.raises(ValueError, match=match):
            ear.ear_for(K, **kw)


def test_ear_for_warns_before_a_fit_saying_what_it_costs_and_where_it_goes(tmp_path, monkeypatch):
    from lmm_env import corpus
    from lmm_env.lm import ear
    from lmm_env.lm.ear import LearnedEar

    monkeypatch.setattr(corpus, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(ear, "_EARS", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fits = []  # how many warnings had been given when each fit began
        monkeypatch.setattr(ear, "fit_ear", lambda ps, **k: fits.append((len(ps), len(caught))) or LearnedEar())
        ear.ear_for(4, synth="soundfont", seed=7, progress=False)
        assert fits == [(4, 1)]
        msg = str(caught[0].message)
        assert "the ear of 4 pairs (synth 'soundfont', seed 7)" in msg and "roughly 1 min" in msg
        assert str(tmp_path / "ears" / "pairs4-soundfont-seed7-v1.safetensors") in msg
        ear._EARS.clear()
        ear.ear_for(4, synth="soundfont", seed=7)  # cached on disk now: no warning, no fit
        assert fits == [(4, 1)] and len(caught) == 1
    with pytest.warns(UserWarning, match=r"9501 pairs .*roughly 4.0 h .*about 29 GB of memory; it will not be cached"):
        ear._warn_fit(9501, "piano", 0, None)  # what K = "all" is told


@pytest.mark.parametrize("kw, match", [
    (dict(seed="x"), "seed='x' is not allowed"), (dict(seed=None), "seed=None is not allowed"),
    (dict(threads=-3), r"threads=-3 is not allowed; use an int in \[1, 256\]"),
    (dict(threads="x"), "threads='x' is not allowed"), (dict(threads=True), "threads=True is not allowed"),
])
def test_fit_ear_checks_seed_and_threads_before_any_work(kw, match, monkeypatch):
    from lmm_env.lm import ear

    monkeypatch.setattr(ear, "_checked_pairs", lambda *a: pytest.fail("the pairs were read"))
    with pytest.raises(ValueError, match=match):
        ear.fit_ear([], progress=False, **kw)


def test_pairs_index_must_be_an_int():
    from lmm_env import pairs

    ps = pairs.load(4)
    for bad in ("a", 1.0, True, None):
        with pytest.raises(TypeError, match=r"pair index .* is not allowed; use an int"):
            ps[bad]
    with pytest.raises(IndexError, match="out of range"):
        ps[4]


def test_shipped_models_still_load():
    from lmm_env.agents.learned.differentiable import DiffPolicy

    for name in ("score", "judge", "audio", "ear"):
        assert load_pretrained(name, cached=False) is not None
    for K in (4, 16, 64):
        assert math.isclose(load_checkpoint(WEIGHTS_DIR / f"ear_pairs{K}.safetensors").scale, 1e-3)
    for kind in ("g", "h"):
        assert DiffPolicy.load(_diff_path(kind)).cfg.kind == kind
