"""Second round of input checks in the core (pairs, corpus cache, LMs and checkpoints, rewards, metrics,
score, synths): each bad argument or file is a clear error naming it, raised when it is given; numpy
scalars pass where Python numbers do; bools are not numbers; a file cannot make us allocate without bound."""
from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest
import torch

from lmm_env import corpus, metrics, pairs, rewards
from lmm_env.lm import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from lmm_env.lm.ear import AnalyticEar
from lmm_env.lm.score_lm import ScoreLM
from lmm_env.score import Score


def _tiny_lm(width: int) -> ScoreLM:
    torch.manual_seed(width)
    return ScoreLM(width=width, dilations=(1,), channels=1, kernel=1)


# --------------------------------------------------------------------------- pairs


@pytest.mark.parametrize("clip", [np.float32(10), np.int64(10), 10, 10.0])
def test_pairs_clip_seconds_takes_numpy_numbers(clip):
    assert pairs.load(4, clip_seconds=clip).clip_seconds == 10.0


@pytest.mark.parametrize("clip", [True, "10", 0.5, 601, float("nan")])
def test_pairs_clip_seconds_refuses_bools_strings_and_out_of_range(clip):
    with pytest.raises(ValueError, match=r"clip_seconds=.* is not allowed; use a finite number in \[1, 600\]"):
        pairs.load(4, clip_seconds=clip)


@pytest.mark.parametrize("seed", ["x", -1, 1.5, True])
def test_train_order_checks_its_seed(seed):
    with pytest.raises(ValueError, match=r"seed=.* is not allowed"):
        pairs.train_order(seed)


@pytest.mark.parametrize("K, n", [("all", 9501), (4, 4)])
def test_an_uncached_fit_bigger_than_memory_is_refused_before_any_work(K, n, tmp_path, monkeypatch):
    from lmm_env.lm import ear

    monkeypatch.setattr(corpus, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(ear, "_EARS", {})
    monkeypatch.setattr(ear, "available_memory", lambda: 10**6)  # 1 MB
    monkeypatch.setattr(ear, "fit_ear", lambda *a, **k: pytest.fail("an ear was fitted"))
    monkeypatch.setattr(pairs.Pairs, "_render", lambda *a: pytest.fail("a pair was rendered"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused before the fit's warning
        with pytest.raises(ValueError) as e:
            ear.ear_for(K, synth="soundfont", seed=7)
    msg = str(e.value)
    assert f"pairs={K!r}: fitting the ear of {n} pairs needs about {n * 0.003:.3g} GB of memory" in msg
    assert "this machine has 0.001 GB available" in msg
    assert "use fewer pairs" in msg
    assert str(tmp_path / "ears" / f"pairs{K}-soundfont-seed7-v1.safetensors") in msg  # where to copy it


def test_this_machine_reports_its_memory():
    from lmm_env.lm.ear import available_memory

    have = available_memory()
    assert have is None or have > 10**8


# --------------------------------------------------------------------------- corpus


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LMM_ENV_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _npy(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def _bomb(path, n):
    """An .npz whose pitches header claims ``n`` int64 notes, stored deflated (a few KB on disk)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for k, a in (("bad", np.array(False)), ("onsets", np.zeros(1)), ("offsets", np.ones(1)),
                     ("velocities", np.array([80])), ("name", np.array("x"))):
            z.writestr(k + ".npy", _npy(a))
        z.writestr("pitches.npy", _npy(np.full(n, 60, np.int64)))


GOOD = dict(bad=np.array(False), pitches=np.array([60]), onsets=np.array([0.0]), offsets=np.array([1.0]),
            velocities=np.array([80]), name=np.array("x"))


@pytest.mark.parametrize("craft", [
    dict(pitches=np.array([300])), dict(offsets=np.array([1e7])), dict(onsets=np.array([0.0, 1.0])),
    dict(pitches=np.array([[60]])), dict(onsets=np.array([np.nan])), dict(pitches=np.array([10])),
    dict(name=np.array(5)), dict(velocities=np.array([0.5])), "bomb", "not a zip",
])
def test_a_bad_corpus_cache_entry_is_converted_again_with_a_warning(craft, cache):
    pid = corpus.load("bach-chorales", "test").ids[0]
    good = corpus._load_cached(pid)  # converted by music21 and cached
    path = corpus._cache_path(pid)
    if craft == "bomb":
        _bomb(path, corpus.MAX_CACHED_NOTES + 1)
    elif craft == "not a zip":
        path.write_bytes(b"hello")
    else:
        np.savez(path, **{**GOOD, **craft})
    with pytest.warns(UserWarning, match="corpus cache entry .*" + path.name + ".* is not a valid cached piece"):
        again = corpus.load("bach-chorales", "test")[0]
    assert again == good and again.name == good.name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rewritten: valid now
        assert corpus._load_cached(pid) == good


def test_a_valid_cache_entry_loads_as_before(cache):
    pid = corpus.load("essen", "test").ids[3]
    first = corpus._load_cached(pid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = corpus._load_cached(pid)
    assert again == first and again.name == first.name
    assert np.array_equal(again.velocities, first.velocities) and np.array_equal(again.onsets, first.onsets)


def test_split_of_refuses_what_is_not_a_piece_id():
    with pytest.raises(TypeError, match=r"split_of\(5\): give a piece id"):
        corpus.split_of(5)
    with pytest.raises(TypeError, match="give a piece id"):
        corpus.split_of("")
    for name in ("folk", "train", "exercises-scale"):
        with pytest.raises(ValueError, match=f"split_of\\('{name}'\\): that is a corpus or split name"):
            corpus.split_of(name)
    assert corpus.split_of("bach/bwv10.7.mxl") in corpus.SPLITS


def test_warm_progress_must_be_a_bool(cache):
    with pytest.raises(ValueError, match="progress='x' is not allowed; use True or False"):
        corpus.warm("bach-chorales", "test", workers=1, progress="x")
    assert not cache.exists() or not any(cache.rglob("*.npz"))


# --------------------------------------------------------------------------- LMs and checkpoints


def test_load_pretrained_keys_files_by_real_path_and_version(tmp_path, monkeypatch):
    for d, w in (("a", 8), ("b", 16)):
        save_checkpoint(_tiny_lm(w), tmp_path / d / "m.safetensors")
    monkeypatch.chdir(tmp_path / "a")
    a = load_pretrained("m.safetensors")
    monkeypatch.chdir(tmp_path / "b")
    b = load_pretrained("m.safetensors")  # same name, another folder: another model
    assert (a.config["width"], b.config["width"]) == (8, 16)
    assert load_pretrained("m.safetensors") is b and load_pretrained(str(tmp_path / "b" / "m.safetensors")) is b
    save_checkpoint(_tiny_lm(24), tmp_path / "b" / "m.safetensors")  # replaced: not the stale model
    assert load_pretrained("m.safetensors").config["width"] == 24
    assert load_pretrained("score") is load_pretrained("score")  # names stay shared
    with pytest.raises(CheckpointError, match="cached='no' is not allowed"):
        load_pretrained("score", cached="no")


def test_save_checkpoint_refuses_what_load_checkpoint_would(tmp_path):
    m = _tiny_lm(8)
    with pytest.raises(CheckpointError, match=r"extra=\[1, 2\] is not allowed; give a dict"):
        save_checkpoint(m, tmp_path / "x.safetensors", extra=[1, 2])
    with pytest.raises(CheckpointError, match="is not JSON-serializable"):
        save_checkpoint(m, tmp_path / "x.safetensors", extra={"a": object()})
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(CheckpointError, match="checkpoint path None is not allowed"):
        save_checkpoint(m, None)
    save_checkpoint(m, tmp_path / "x.safetensors", extra={"a": 1})
    assert load_checkpoint(tmp_path / "x.safetensors").checkpoint_extra == {"a": 1}


@pytest.mark.parametrize("argv, match", [
    (["ear", "--minutes", "-1"], r"--minutes=-1.0 is not allowed; use a finite number in \(0, 10080\]"),
    (["ear", "--steps", "0"], r"--steps=0 is not allowed; use an int in \[1, "),
    (["ear", "--pairs", "0"], r"--pairs=0 is not allowed; use an int in \[1, 1000\]"),
    (["ear", "--threads", "0"], "--threads=0 is not allowed"),
    (["ear-pairs", "--seed", "-1"], "--seed=-1 is not allowed"),
    (["ear-pairs", "--pairs", "3"], "pairs K=3 is not allowed"),
    (["ear-pairs", "--synth", "bogus"], "synth='bogus' is not allowed"),
    (["score", "--steps", "0"], "--steps=0 is not allowed"),
    (["score", "--minutes", "nan"], "--minutes=nan is not allowed"),
    (["score", "--tempos", "x"], "--tempos 'x' is not allowed"),
    (["score", "--warmup", "300"], r"--warmup=300 is not allowed; use an int in \[0, 223\]"),
    (["score", "--kernel", "8"], "kernel must be odd"),
    (["score", "--compare", "nope"], "--compare 'nope': unknown model"),
    (["audio", "--steps", "0"], "--steps=0 is not allowed"),
    (["audio", "--lr", "-1"], "--lr=-1.0 is not allowed"),
    (["audio", "--max-pieces", "0"], "--max-pieces=0 is not allowed"),
    (["audio", "--hidden", "0"], "hidden=0 is not allowed"),
])
def test_training_scripts_refuse_bad_options_before_any_work(argv, match, capsys, tmp_path, monkeypatch):
    from lmm_env.lm import ear
    from lmm_env.lm.train import main

    monkeypatch.setattr(ear, "build_dataset", lambda *a, **k: pytest.fail("data was built"))
    monkeypatch.setattr(ear, "fit_ear", lambda *a, **k: pytest.fail("an ear was fitted"))
    monkeypatch.setattr(corpus, "load", lambda *a, **k: pytest.fail("a corpus was read"))
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "m.safetensors")])
    assert e.value.code == 2
    assert any(__import__("re").search(match, line) for line in capsys.readouterr().err.splitlines())
    assert not (tmp_path / "m.safetensors").exists()


def test_ear_pairs_all_is_refused_when_it_does_not_fit_in_memory(capsys, tmp_path, monkeypatch):
    from lmm_env.lm import ear
    from lmm_env.lm.train import main

    monkeypatch.setattr(ear, "available_memory", lambda: 10**9)
    monkeypatch.setattr(ear, "fit_ear", lambda *a, **k: pytest.fail("an ear was fitted"))
    with pytest.raises(SystemExit):
        main(["ear-pairs", "--pairs", "all", "--out", str(tmp_path / "all.safetensors")])
    assert "fitting the ear of 9501 pairs needs about 28.5 GB of memory, but this machine has 1 GB" in capsys.readouterr().err


def test_corpus_reference_keys_a_judge_file_by_its_real_path(tmp_path, monkeypatch):
    from lmm_env import improv

    for d, w in (("a", 8), ("b", 16)):
        save_checkpoint(_tiny_lm(w), tmp_path / d / "j.safetensors")
    kw = dict(split="test", n=1, seconds=2.0, names=("exercises-scale",), judge="j.safetensors")
    monkeypatch.chdir(tmp_path / "a")
    a = improv.corpus_reference(**kw)
    monkeypatch.chdir(tmp_path / "b")
    b = improv.corpus_reference(**kw)
    assert a["exercises-scale"]["judge_nll"] != b["exercises-scale"]["judge_nll"]


# --------------------------------------------------------------------------- rewards


@pytest.mark.parametrize("kw, match", [
    (dict(takes_ear="no"), "takes_ear='no' is not allowed; use True or False"),
    (dict(overwrite="yes"), "overwrite='yes' is not allowed; use True or False"),
    (dict(takes_ear=1), "takes_ear=1 is not allowed"),
])
def test_register_wants_bools(kw, match):
    with pytest.raises(ValueError, match=match):
        rewards.register("test_round2_flag", rewards.KeyMatchReward, **kw)
    assert "test_round2_flag" not in rewards.names()


def test_an_ear_nobody_listens_with_is_named_by_its_type():
    with pytest.raises(ValueError) as e:
        rewards.make("key_match", ear=AnalyticEar())
    assert "AnalyticEar (the ear of pairs=K or ear=)" in str(e.value) and " at 0x" not in str(e.value)
    with pytest.raises(ValueError, match="ear='ear' was given"):
        rewards.make("key_match", ear="ear")


def _refuses(build, name, value):
    with pytest.raises(ValueError, match=f"{name}={value!r} is not allowed".replace("(", r"\(").replace(")", r"\)")):
        build(**{name: value})


@pytest.mark.parametrize("cls, name, bad", [
    ("EarMatchReward", "loudness_weight", ["0.3", True, 1.5, float("nan")]),
    ("EarMatchReward", "loudness_scale", ["1", True, 0, float("inf")]),
    ("ScoreLMReward", "threshold", ["0.5", True, 1.0]),
    ("ScoreLMReward", "temperature", ["10", False, -1]),
    ("AudioLMReward", "temperature", ["0.5", True, 0]),
    ("AudioMatchReward", "scale", ["2", True, 0]),
    ("ImproviseReward", "score_temperature", ["4", True]),
    ("ImproviseReward", "audio_temperature", ["0.5", True]),
    ("ImproviseReward", "stride", [True, 1.5, "20", 0]),
    ("ImproviseReward", "threshold", ["0.5", True]),
    ("ImproviseReward", "score_weight", ["0.5", True, float("nan")]),
    ("ImproviseReward", "key_weight", ["1", True, -1.0]),
    ("ImproviseReward", "min_notes_per_s", ["0.5", True]),
])
def test_reward_constructors_name_a_bad_number(cls, name, bad):
    for value in bad:
        _refuses(getattr(rewards, cls), name, value)


def test_improvise_reward_takes_numpy_ints_and_floats():
    r = rewards.ImproviseReward(stride=np.int64(20), window=np.int64(64), score_weight=np.float32(0.5),
                                key_weight=np.float64(1.0), max_pc_entropy=np.float32(3.0))
    assert (r.stride, r.window, r.score_weight, r.key_weight) == (20, 64, 0.5, 1.0) and type(r.stride) is int
    with pytest.raises(ValueError, match=r"window=20 is not allowed; use an int in \[21, 1024\]"):
        rewards.ImproviseReward(stride=20, window=20)


class _RepeatLM(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.one_hot(x, 4).float() * 5


def _torch_lm(**kw):
    return rewards.TorchLMReward(_RepeatLM(), lambda ctx: np.zeros(len(ctx), np.int64), **kw)


@pytest.mark.parametrize("name, value, match", [
    ("context", 10**9, r"context=1000000000 is not allowed; use an int in \[1, 10000\]"),
    ("context", True, "context=True is not allowed"), ("context", 0, "context=0 is not allowed"),
    ("history_blocks", "3", "history_blocks='3' is not allowed"),
    ("history_blocks", 1.9, "history_blocks=1.9 is not allowed"),
    ("history_blocks", 10**6, r"history_blocks=1000000 is not allowed; use an int in \[0, 1000\]"),
    ("scale", "1", "scale='1' is not allowed"), ("scale", True, "scale=True is not allowed"),
])
def test_torch_lm_reward_checks_its_sizes_when_built(name, value, match):
    with pytest.raises(ValueError, match=match):
        _torch_lm(**{name: value})


def test_torch_lm_reward_takes_numpy_ints():
    r = _torch_lm(context=np.int64(4), history_blocks=np.int64(2), scale=np.float32(0.5))
    assert (r.context, r.history_blocks, r.scale) == (4, 2, 0.5) and type(r.context) is int


# --------------------------------------------------------------------------- metrics, score, synths


def test_metrics_refuse_bools_for_seconds():
    s = Score([60], [0.0], [1.0])
    with pytest.raises(ValueError, match="onset_tolerance=True is not allowed"):
        metrics.note_metrics(s, s, onset_tolerance=True)
    with pytest.raises(ValueError, match="duration=True is not allowed"):
        metrics.note_density(s, True)
    assert metrics.note_metrics(s, s, onset_tolerance=np.float32(0.05))["f1"] == 1.0
    assert metrics.note_density(s, np.float32(2)) == 0.5


def test_window_refuses_bools_even_when_a_length_is_cached():
    fs = Score([60, 72], [0.0, 0.2], [0.3, 0.4]).frames(10)
    fs.window(0, 1)  # caches length 1, which True would hash as
    for t, length in ((True, 5), (0, True), (0, 1.0), ("1", 5), (1.5, 5)):
        with pytest.raises(ValueError, match="window"):
            fs.window(t, length)
    assert fs.window(np.int64(2), np.int64(5))[0].shape == (5, 88)


@pytest.mark.parametrize("stream", [None, "tinyNotation: 4/4 c4 d4", 5])
def test_from_music21_wants_a_stream(stream):
    with pytest.raises(TypeError, match="from_music21 expects a music21 Stream"):
        Score.from_music21(stream)


def test_differentiable_synth_refuses_velocities_outside_midi_at_onsets():
    from lmm_env.synth import DifferentiablePianoSynth

    synth = DifferentiablePianoSynth()
    onset = torch.zeros(4, 88)
    onset[1, 40] = 1.0
    for v in (1e6, -1.0, float("nan")):
        vel = torch.full((4, 88), 80.0)
        vel[1, 40] = v
        with pytest.raises(ValueError, match=r"velocity .* at frame 1, key 40 .* use MIDI velocities in \[0, 127\]"):
            synth(onset, vel)
    vel = torch.full((4, 88), 1e6)  # never read away from the onsets
    vel[1, 40] = 127.0
    assert torch.isfinite(synth(onset, vel)).all()


def test_piano_player_wants_integer_velocities():
    from lmm_env.synth import PianoSynth

    player = PianoSynth().player(2, 800)
    on, off = np.ones((2, 88), bool), np.zeros((2, 88), bool)
    with pytest.raises(TypeError, match="velocities must be integer MIDI velocities .* got dtype float64"):
        player.step(on, np.full((2, 88), 60.0), off)
    assert player.step(on, np.full((2, 88), 60, np.uint8), off).shape == (2, 800)
