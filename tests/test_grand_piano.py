"""Tests of the shipped sampled grand (synth="grand", lmm_env.synth.grand)."""
import json
import pickle

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the tasks)
from lmm_env.score import Score
from lmm_env.synth import SYNTHS, GrandPianoSynth, PianoSynth, SoundFontSynth, grand, make_synth, model
from test_synth import estimate_f0  # the suite's one f0 estimator, tested there on a known fundamental

SR = 16000
FRAME_RATE = 20
HOP = SR // FRAME_RATE


@pytest.fixture(scope="module")
def piano_grand():
    return GrandPianoSynth(SR)


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --------------------------------------------------------------------------- shipped files


def test_shipped_files_within_budget_with_licence_and_provenance():
    files = {f.name: f for f in grand.DATA_DIR.iterdir() if f.is_file()}
    assert {"samples.flac", "zones.json", "LICENSE", "PROVENANCE.md"} <= set(files)
    total = sum(f.stat().st_size for f in files.values())
    assert total < 20e6, f"the grand's files take {total / 1e6:.1f} MB, over the 20 MB budget"
    licence = files["LICENSE"].read_text(encoding="utf-8")
    assert "Permission is hereby granted, free of charge" in licence and "MuseScore" in licence
    prov = files["PROVENANCE.md"].read_text(encoding="utf-8")
    assert "musescore-general-soundfont-small" in prov and "0.2.1" in prov and "make_grand_piano.py" in prov
    zones = json.loads(files["zones.json"].read_text(encoding="utf-8"))
    assert zones["format"] == grand.FORMAT and len(zones["layers"]) == 2
    assert all(len(layer["keys"]) == 88 and all(layer["keys"]) for layer in zones["layers"])
    bank = grand.load_bank()
    assert len(bank.samples) == len(zones["samples"]) > 0
    assert all(np.isfinite(s).all() and np.abs(s).max() > 0.1 for s in bank.samples)


def test_setup_ships_the_grand_in_the_wheel():
    import re
    from pathlib import Path

    setup = (Path(__file__).resolve().parent.parent / "setup.py").read_text(encoding="utf-8")
    assert re.search(r'"lmm_env\.synth":\s*\[[^\]]*"grand/\*"', setup), "setup.py must ship lmm_env/synth/grand/*"


# --------------------------------------------------------------------------- sound


def test_every_key_sounds_and_louder_with_velocity(piano_grand):
    velocities = (20, 64, 100, 127)
    notes = [(21 + k, i * 0.6, i * 0.6 + 0.5, v) for j, v in enumerate(velocities)
             for k, i in ((k, j * 88 + k) for k in range(88))]
    audio = piano_grand.render(Score.from_notes(notes), tail=0.0)
    assert np.isfinite(audio).all() and audio.dtype == np.float32
    n = int(0.5 * SR)
    seg = lambda i: audio[int(round(i * 0.6 * SR)): int(round(i * 0.6 * SR)) + n]  # noqa: E731
    level = np.array([[rms(seg(j * 88 + k)) for k in range(88)] for j in range(len(velocities))])
    assert (level > 1e-4).all(), f"silent (velocity index, key): {np.argwhere(level <= 1e-4)[:5] + [0, 21]}"
    assert (np.diff(level, axis=0) > 0).all(), "a key is not louder at a higher velocity"
    # pp to ff spans a realistic dynamic range (not a constant, not a switch)
    span_db = 20 * np.log10(level[-1] / level[0])
    assert 10 < np.median(span_db) < 40


def test_mid_range_keys_are_in_tune(piano_grand):
    # A real, stretch-tuned piano: the middle of the keyboard sits within a few cents of equal
    # temperament (the bass is weaker in its fundamental and flatter, the top sharper and brief).
    pitches = np.arange(46, 87)
    audio = np.stack([piano_grand.render(Score.from_notes([(int(p), 0.0, 1.5, 100)]), tail=0.0) for p in pitches])
    f = estimate_f0(audio[:, int(0.05 * SR): int(1.45 * SR)], SR)
    cents = 1200 * np.log2(f / (440.0 * 2.0 ** ((pitches - 69) / 12)))
    worst = int(np.argmax(np.abs(cents)))
    assert np.all(np.abs(cents) < 10), f"pitch {pitches[worst]} is {cents[worst]:+.1f} cents off"


def test_analytic_ear_hears_the_right_key(piano_grand):
    from lmm_env.lm import load_pretrained

    ear = load_pretrained("ear-analytic")
    wrong = []
    for p in range(36, 97, 2):
        held, _ = ear.transcribe(piano_grand.render(Score.from_notes([(p, 0.0, 1.0, 90)]), tail=0.0))
        if held[4:16, p - 21].mean() < 0.5:  # 0.2 .. 0.8 s
            wrong.append((p, int(np.argmax(held[4:16].sum(0))) + 21))
    assert not wrong, f"(key, key the ear heard): {wrong}"


def test_not_the_builtin_piano(piano_grand):
    builtin = PianoSynth(SR)
    for p in (40, 60, 80):
        score = Score.from_notes([(p, 0.0, 1.0, 100)])
        a, b = (np.abs(np.fft.rfft(s.render(score, tail=0.0)[:SR])) for s in (piano_grand, builtin))
        a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        assert np.linalg.norm(a - b) > 0.3, f"key {p}: the grand's spectrum is the built-in piano's"
    assert not np.allclose(piano_grand.tables[:, :, :1000], builtin.tables[:, :, :1000], atol=1e-3)


# --------------------------------------------------------------------------- players


def rolls(rng, T=80):
    """(onset, velocity, held) (T, 88): repeated notes on some damped keys and two undamped
    top keys, re-strikes of held keys, one key held 3.5 s (past the 3 s tables)."""
    onset = np.zeros((T, 88), bool)
    held = np.zeros((T, 88), bool)
    velocity = np.zeros((T, 88), np.int64)
    keys = [0, 30, 39, 51, 66, 87 - 8, 100 - 21, 108 - 21]
    for j, k in enumerate(keys):
        t = int(rng.integers(0, 4))
        while True:
            length = 70 if j == 2 and t < 8 else int(rng.integers(1, 7))
            if t + length > T - 3:
                break
            onset[t, k] = True
            held[t: t + length, k] = True
            velocity[t, k] = int(rng.integers(1, 128))
            t += length + int(rng.integers(0, 3))  # 0: struck again while held
    return onset, velocity, held


def rolls_to_score(onset, velocity, held):
    notes = []
    for t, k in zip(*np.nonzero(onset)):
        e = t + 1
        while e < held.shape[0] and held[e, k] and not onset[e, k]:
            e += 1
        notes.append((int(k) + 21, t / FRAME_RATE, e / FRAME_RATE, int(velocity[t, k])))
    return Score.from_notes(notes)


def play(player, onset, velocity, held):
    if onset.ndim == 2:
        onset, velocity, held = onset[:, None], velocity[:, None], held[:, None]
    return np.concatenate([player.step(onset[t], velocity[t], ~held[t]) for t in range(len(onset))], axis=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_block_player_matches_render(piano_grand, seed):
    onset, velocity, held = rolls(np.random.default_rng(seed))
    T = len(onset)
    stepped = play(piano_grand.player(1, HOP), onset, velocity, held)[0]
    rendered = piano_grand.render(rolls_to_score(onset, velocity, held), tail=1.0)[: T * HOP]
    assert stepped.shape == rendered.shape == (T * HOP,)
    assert np.abs(stepped).max() > 0.01
    assert np.abs(stepped - rendered).max() < 1e-5


def test_batched_player_equals_single_players(piano_grand):
    rng = np.random.default_rng(3)
    rs = [rolls(rng, T=40) for _ in range(3)]
    onset, velocity, held = (np.stack([r[i] for r in rs], axis=1) for i in range(3))
    batched = play(piano_grand.player(3, HOP), onset, velocity, held)
    singles = np.stack([play(piano_grand.player(1, HOP), *r)[0] for r in rs])
    assert np.abs(batched - singles).max() < 1e-6 and (np.abs(batched).max(axis=1) > 0.01).all()


def test_top_keys_have_no_dampers_and_the_others_stop(piano_grand):
    assert piano_grand.dampers[: 88 - 21].all() and not piano_grand.dampers[-10:].any()
    for pitch, rings in ((60, False), (100, True)):
        k = pitch - 21
        onset = np.zeros((30, 1, 88), bool)
        held = np.zeros((30, 1, 88), bool)
        velocity = np.zeros((30, 1, 88), np.int64)
        onset[0, 0, k], held[:2, 0, k], velocity[0, 0, k] = True, True, 100
        out = play(piano_grand.player(1, HOP), onset, velocity, held)[0]
        after = out[int((0.1 + model.RELEASE_SECONDS) * SR) + HOP: int(0.6 * SR)]  # damper time past key-up
        assert (rms(after) > 1e-4) == rings, f"key {pitch}: rings on {rms(after):.2g}"


def test_pedal_sustains_the_grand():
    env = gym.make("LMMPiano-v0", synth="grand", pedal=True, max_seconds=2.0, record_audio=True, reward="key_match")
    n = env.action_space.shape[0]
    for pedal in (0.0, 1.0):
        env.reset(seed=0)
        a = np.zeros(n, np.float32)
        a[n // 2] = 0.8  # one key, pressed for a step, then released
        a[-1] = pedal
        env.step(a)
        a[n // 2] = 0.0
        for _ in range(8):
            env.step(a)
        audio = env.unwrapped.episode_audio()
        tail = rms(audio[5 * HOP: 9 * HOP])
        if pedal:
            assert tail > 1e-3, "the pedal did not sustain the released key"
        else:
            assert tail < 1e-6, "a released key rang without the pedal"
    env.close()


def test_deterministic_and_disk_cache_equals_a_fresh_build(tmp_path, monkeypatch):
    monkeypatch.setenv("LMM_ENV_CACHE", str(tmp_path))
    grand._build_tables.cache_clear()
    try:
        built = grand.build_tables(8000, 0.5)  # rendered, written to the disk cache
        assert grand.table_cache_path(8000, 0.5).is_file()
        grand._build_tables.cache_clear()
        cached = grand.build_tables(8000, 0.5)  # read back
        fresh = grand.render_tables(grand.load_bank(), 8000, 4000)
        assert built.shape == (2, 88, 4000) and not built.flags.writeable
        assert np.array_equal(built, cached) and np.array_equal(built, fresh)
        # a damaged cache file is ignored and rebuilt
        grand.table_cache_path(8000, 0.5).write_bytes(b"not an npy file")
        grand._build_tables.cache_clear()
        assert np.array_equal(grand.build_tables(8000, 0.5), fresh)
    finally:
        grand._build_tables.cache_clear()


def test_pickles_without_its_tables(piano_grand):
    data = pickle.dumps(piano_grand)
    assert len(data) < 10_000
    twin = pickle.loads(data)
    score = Score.from_notes([(60, 0.0, 0.5, 80), (100, 0.2, 0.3, 120)])
    assert np.array_equal(twin.render(score), piano_grand.render(score))
    player = pickle.loads(pickle.dumps(piano_grand.player(2, HOP)))
    assert player.step(np.ones((2, 88), bool), np.full((2, 88), 64), np.zeros((2, 88), bool)).shape == (2, HOP)


# --------------------------------------------------------------------------- the world


def test_make_synth_names_grand_and_soundfont_paths(tmp_path):
    assert SYNTHS["grand"] is GrandPianoSynth
    g = make_synth("grand", 8000, table_seconds=0.5)
    assert isinstance(g, GrandPianoSynth) and g.name == "grand" and g.tables.shape == (2, 88, 4000)
    with pytest.raises(FileNotFoundError, match="missing.sf3"):  # a .sf3 path goes to SoundFontSynth
        make_synth(str(tmp_path / "missing.sf3"))
    with pytest.raises(ValueError, match="grand"):
        make_synth("grnad")
    with pytest.raises(ValueError, match="sample_rate"):
        GrandPianoSynth(sample_rate=4000)
    with pytest.raises(ValueError, match="table_seconds"):
        GrandPianoSynth(table_seconds=0.01)
    assert isinstance(make_synth(str(SoundFontSynth().path)), SoundFontSynth)


def test_every_task_plays_the_grand():
    for task in ("LMMPiano-v0", "LMMDecipher-v0", "LMMByEar-v0", "LMMImprovise-v0"):
        env = gym.make(task, synth="grand", reward="key_match",
                       **({} if task == "LMMImprovise-v0" else {"max_seconds": 2.0}))
        env.reset(seed=0)
        for _ in range(3):
            obs, reward, *_ = env.step(env.action_space.sample())
        assert np.isfinite(reward) and env.unwrapped.sim.synth.name == "grand", task
        env.close()


def test_vector_env_and_recorded_audio():
    venv = gym.make_vec("LMMPiano-v0", num_envs=4, synth="grand", max_seconds=2.0, record_audio=True,
                        reward="key_match")
    venv.reset(seed=0)
    for _ in range(10):
        obs, reward, *_ = venv.step(np.full(venv.action_space.shape, 0.6, np.float32))
    assert np.isfinite(reward).all()
    audio = venv.unwrapped.episode_audio(0)
    assert audio.shape == (10 * HOP,) and rms(audio) > 1e-3
    venv.close()


def test_video_with_the_grand(tmp_path):
    from lmm_env.envs.video import RecordEpisodeVideo, streams

    env = RecordEpisodeVideo(gym.make("LMMPiano-v0", synth="grand", max_seconds=1.0, render_mode="rgb_array",
                                      reward="key_match"), tmp_path)
    env.reset(seed=0)
    done = False
    while not done:
        *_, term, trunc, _ = env.step(env.action_space.sample())
        done = term or trunc
    (path,) = env.paths
    s = streams(path)
    assert s["audio"] and s["video"]
    env.close()
