"""Tests of the synthesizers in lmm_env.synth (they are the world the agent hears)."""
import numpy as np
import pytest
import torch

from lmm_env.score import Score
from lmm_env.synth import (
    DifferentiablePianoSynth,
    PianoSynth,
    SoundFontSynth,
    make_synth,
)

SR = 16000
FRAME_RATE = 20
HOP = SR // FRAME_RATE  # 800 samples per env step


@pytest.fixture(scope="module")
def piano():
    return PianoSynth(SR)


@pytest.fixture(scope="module")
def diff_piano():
    return DifferentiablePianoSynth(SR, FRAME_RATE)


# --------------------------------------------------------------------------- pitch


def _blackman_harris(n):
    x = np.arange(n) / n
    return 0.35875 - 0.48829 * np.cos(2 * np.pi * x) + 0.14128 * np.cos(4 * np.pi * x) - 0.01168 * np.cos(6 * np.pi * x)


def estimate_f0(audio, sr, min_hz=20.0, floor_db=40.0, n_fft=1 << 18):
    """Fundamental of each row of ``audio`` (n, samples), independent of the synth's code.

    Zero-padded FFT with a 4-term Blackman-Harris window (side lobes < -92 dB, so none of
    them passes the threshold), then the lowest local maximum of the log magnitude that is
    within ``floor_db`` of the row's strongest peak and above ``min_hz``, refined by
    quadratic interpolation of the log magnitude around it.
    """
    audio = np.asarray(audio, dtype=np.float64)
    spec = np.abs(np.fft.rfft(audio * _blackman_harris(audio.shape[1]), n=n_fft, axis=1))
    logm = np.log(spec + 1e-300)
    freqs = np.arange(logm.shape[1]) * sr / n_fft
    mid = logm[:, 1:-1]
    is_peak = (mid > logm[:, :-2]) & (mid >= logm[:, 2:])
    loud = mid > logm.max(axis=1, keepdims=True) - floor_db * np.log(10) / 20
    cand = is_peak & loud & (freqs[None, 1:-1] > min_hz)
    assert cand.any(axis=1).all(), "a row has no spectral peak"
    i = np.argmax(cand, axis=1) + 1  # first (lowest) candidate
    rows = np.arange(len(i))
    a, b, c = logm[rows, i - 1], logm[rows, i], logm[rows, i + 1]
    delta = 0.5 * (a - c) / (a - 2 * b + c)
    return (i + delta) * sr / n_fft


def test_estimator_finds_a_known_fundamental():
    # The estimator itself, on a synthetic harmonic tone with a weak fundamental.
    t = np.arange(int(1.4 * SR)) / SR
    f0 = 55.3
    tone = sum(a * np.sin(2 * np.pi * h * f0 * t) for h, a in [(1, 0.05), (2, 1.0), (3, 0.7), (5, 0.3)])
    f = estimate_f0(tone[None], SR)[0]
    assert abs(1200 * np.log2(f / f0)) < 0.5


def test_every_key_is_in_tune(piano):
    pitches = np.arange(21, 109)
    audio = np.stack([piano.render(Score.from_notes([(int(p), 0.0, 1.5, 100)]), tail=0.0) for p in pitches])
    seg = audio[:, int(0.05 * SR): int(1.45 * SR)]  # skip the attack ramp
    f = estimate_f0(seg, SR)
    expected = 440.0 * 2.0 ** ((pitches - 69) / 12)
    cents = 1200 * np.log2(f / expected)
    worst = int(np.argmax(np.abs(cents)))
    assert np.all(np.abs(cents) < 5), f"pitch {pitches[worst]} is {cents[worst]:+.2f} cents off"


# --------------------------------------------------------------------------- equivalence


def random_rolls(rng, T=100, n_keys=12, long_key=True):
    """(onset, velocity, held) rolls (T, 88): notes of 1..8 frames, >= 1 unheld frame
    before every re-strike, nothing held in the last 3 frames; velocities span 1..127.
    One key is held 70 frames (3.5 s), past the end of the synth's 3 s tables."""
    onset = np.zeros((T, 88), dtype=bool)
    held = np.zeros((T, 88), dtype=bool)
    velocity = np.zeros((T, 88), dtype=np.int64)
    keys = rng.choice(88, size=n_keys, replace=False)
    for j, k in enumerate(keys):
        t = int(rng.integers(0, 6))
        while True:
            length = 70 if (long_key and j == 0 and t < 20) else int(rng.integers(1, 9))
            if t + length > T - 3:
                break
            onset[t, k] = True
            held[t: t + length, k] = True
            velocity[t, k] = int(rng.integers(1, 128))
            t += length + int(rng.integers(1, 4))
    velocity[onset] = np.where(rng.random(onset.sum()) < 0.1, 127, velocity[onset])
    velocity[onset] = np.where(rng.random(onset.sum()) < 0.1, 1, velocity[onset])
    return onset, velocity, held


def rolls_to_score(onset, velocity, held):
    notes = []
    T = held.shape[0]
    for t, k in zip(*np.nonzero(onset)):
        e = t + 1
        while e < T and held[e, k] and not onset[e, k]:
            e += 1
        notes.append((int(k) + 21, t / FRAME_RATE, e / FRAME_RATE, int(velocity[t, k])))
    return Score.from_notes(notes)


def play(player, onset, velocity, held):
    """Step a player over rolls (T, [n_envs,] 88); returns (n_envs, T * block)."""
    if onset.ndim == 2:
        onset, velocity, held = onset[:, None], velocity[:, None], held[:, None]
    return np.concatenate([player.step(onset[t], velocity[t], ~held[t]) for t in range(onset.shape[0])], axis=1)


@pytest.mark.parametrize("seed", [0, 1])
def test_player_equals_differentiable_synth_and_render(piano, diff_piano, seed):
    rng = np.random.default_rng(seed)
    onset, velocity, held = random_rolls(rng)
    T = onset.shape[0]
    assert onset.sum() > 30

    stepped = play(piano.player(1, HOP), onset, velocity, held)[0]
    with torch.no_grad():
        torched = diff_piano(
            torch.from_numpy(onset.astype(np.float32)),
            torch.from_numpy(velocity.astype(np.float32)),
            torch.from_numpy(held),
        ).numpy()
    rendered = piano.render(rolls_to_score(onset, velocity, held), tail=1.0)[: T * HOP]

    assert stepped.shape == torched.shape == rendered.shape == (T * HOP,)
    assert np.abs(stepped).max() > 0.01
    # float32 arithmetic in different orders: the three agree to 1e-5 (peaks are ~0.1-0.5).
    assert np.abs(stepped - torched).max() < 1e-5
    assert np.abs(stepped - rendered).max() < 1e-5
    # The long note rang to the end of its table and stopped: the audio there is silent
    # apart from the other keys, and all three agree (checked above).


def test_batched_player_equals_single_players(piano):
    rng = np.random.default_rng(7)
    rolls = [random_rolls(rng, T=60, n_keys=8, long_key=False) for _ in range(3)]
    onset, velocity, held = (np.stack([r[i] for r in rolls], axis=1) for i in range(3))  # (T, 3, 88)
    batched = play(piano.player(3, HOP), onset, velocity, held)
    singles = np.stack([play(piano.player(1, HOP), *rolls[e])[0] for e in range(3)])
    assert batched.shape == (3, 60 * HOP)
    assert (np.abs(batched).max(axis=1) > 0.01).all()
    assert np.abs(batched - singles).max() < 1e-6
    # reset() of one env silences it at once and leaves the others alone.
    player, twin = piano.player(3, HOP), piano.player(3, HOP)
    before = play(player, onset[:10], velocity[:10], held[:10])
    play(twin, onset[:10], velocity[:10], held[:10])
    assert np.abs(before[1, -HOP:]).max() > 1e-3
    player.reset([1])
    quiet = np.zeros((3, 88), dtype=bool)
    args = (quiet, np.zeros((3, 88), np.int64), ~quiet)  # damp every key: release tails only
    out, ref = player.step(*args), twin.step(*args)
    assert np.all(out[1] == 0.0) and np.abs(ref[1]).max() > 1e-4
    assert np.array_equal(out[[0, 2]], ref[[0, 2]])


def test_no_click_at_block_boundaries(piano):
    # A sustained low note, plus strikes, releases and a re-strike of other keys, all on
    # block boundaries: the jump across a boundary is no larger than the sample-to-sample
    # steps right around it.
    T = 40
    onset = np.zeros((T, 88), bool)
    held = np.zeros((T, 88), bool)
    velocity = np.zeros((T, 88), np.int64)
    k0, k1, k2 = 48 - 21, 69 - 21, 76 - 21
    onset[0, k0], held[:38, k0], velocity[0, k0] = True, True, 90
    for s, e in [(3, 8), (10, 14), (15, 30)]:
        onset[s, k1], held[s:e, k1], velocity[s, k1] = True, True, 110
    onset[5, k2], held[5:6, k2], velocity[5, k2] = True, True, 127
    x = play(piano.player(1, HOP), onset, velocity, held)[0].astype(np.float64)
    d = np.abs(np.diff(x))
    ratios = []
    for n in range(HOP - 1, len(d) - 40, HOP):  # d[n] = x[n+1] - x[n] crosses the boundary
        around = np.r_[d[n - 30: n], d[n + 1: n + 31]]
        ratios.append(d[n] / around.max())
    assert max(ratios) < 1.2, f"boundary jump {max(ratios):.2f}x the local steps"
    # And the check has teeth: a jump of twice the local slope at one boundary fails it.
    n = 10 * HOP - 1
    local = np.r_[d[n - 30: n], d[n + 1: n + 31]].max()
    y = x.copy()
    y[n + 1:] += 2.0 * local * np.sign(x[n + 1] - x[n])
    dy = np.abs(np.diff(y))
    assert dy[n] / np.r_[dy[n - 30: n], dy[n + 1: n + 31]].max() > 1.2


# --------------------------------------------------------------------------- gradients


def test_gradients_match_finite_differences():
    synth = DifferentiablePianoSynth(SR, FRAME_RATE).double()
    assert synth.tables.dtype == torch.float64
    rng = np.random.default_rng(3)
    T = 12
    onset = np.zeros((T, 88))
    velocity = np.zeros((T, 88))
    held = np.zeros((T, 88), bool)
    strikes = [(0, 39, 0.8, 70.5), (2, 43, 1.0, 101.2), (4, 39, 0.35, 40.0), (6, 60, 0.6, 20.3)]
    for t, k, a, v in strikes:
        onset[t, k], velocity[t, k] = a, v
        held[t: t + 2, k] = True
    w = torch.from_numpy(rng.standard_normal(T * HOP))

    def loss(o, v):
        audio = synth(o, v, torch.from_numpy(held))
        return (audio * w).sum() ** 2 + 10.0 * (audio**2).sum()

    o = torch.tensor(onset, requires_grad=True)
    v = torch.tensor(velocity, requires_grad=True)
    loss(o, v).backward()
    assert torch.isfinite(o.grad).all() and torch.isfinite(v.grad).all()
    for t, k, _, _ in strikes:
        for which, grad, h in (("velocity", v.grad, 1e-3), ("onset", o.grad, 1e-6)):
            base = {"onset": onset, "velocity": velocity}
            plus = {n: a.copy() for n, a in base.items()}
            minus = {n: a.copy() for n, a in base.items()}
            plus[which][t, k] += h
            minus[which][t, k] -= h
            with torch.no_grad():
                lp = loss(torch.from_numpy(plus["onset"]), torch.from_numpy(plus["velocity"])).item()
                lm = loss(torch.from_numpy(minus["onset"]), torch.from_numpy(minus["velocity"])).item()
            fd = (lp - lm) / (2 * h)
            g = grad[t, k].item()
            assert abs(fd) > 1e-8, (which, t, k)
            assert g == pytest.approx(fd, rel=1e-5, abs=1e-10), (which, t, k, g, fd)
    # No gradient where nothing is struck.
    mask = torch.from_numpy(onset == 0)
    assert torch.all(v.grad[mask] == 0)


def test_float32_gradients_flow(diff_piano):
    o = torch.zeros(8, 88)
    o[0, 40] = 1.0
    v = torch.full((8, 88), 64.0, requires_grad=True)
    o.requires_grad_(True)
    audio = diff_piano(o, v)
    assert audio.shape == (8 * HOP,)
    (audio**2).sum().backward()
    assert v.grad[0, 40] > 0  # louder = more energy
    assert o.grad[0, 40] > 0


# --------------------------------------------------------------------------- velocity


def _rms_and_centroid(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return np.sqrt(np.mean(x.astype(np.float64) ** 2)), float((spec * freqs).sum() / spec.sum())


@pytest.mark.parametrize("pitch", [33, 60, 84])
def test_louder_is_brighter(piano, pitch):
    stats = [
        _rms_and_centroid(piano.render(Score.from_notes([(pitch, 0.0, 1.0, v)]), tail=0.0)[: int(0.5 * SR)])
        for v in (20, 60, 100, 127)
    ]
    rms, centroid = np.array(stats).T
    assert np.all(np.diff(rms) > 0), rms
    assert np.all(np.diff(centroid) > 0), centroid


# --------------------------------------------------------------------------- SoundFont


@pytest.fixture(scope="module")
def soundfont():
    pytest.importorskip("tinysoundfont")
    return SoundFontSynth(SR)


def test_soundfont_renders_a_score(soundfont):
    score = Score.from_notes([(60, 0.0, 0.5, 90), (64, 0.25, 0.75, 70), (67, 0.5, 1.0, 110)])
    audio = soundfont.render(score, tail=0.5)
    assert audio.dtype == np.float32
    assert audio.shape == (int(1.5 * SR),)
    assert np.all(np.isfinite(audio))
    assert np.sqrt(np.mean(audio**2)) > 1e-3
    assert np.abs(audio[: int(0.2 * SR)]).max() > 1e-2  # the first note sounds at once


def test_soundfont_player_press_and_release(soundfont):
    player = soundfont.player(2, HOP)
    none = np.zeros((2, 88), bool)
    press = none.copy()
    press[0, 60 - 21] = True  # env 0 presses middle C, env 1 stays silent
    vel = np.full((2, 88), 100)
    blocks = [player.step(press, vel, none)]
    held = press
    blocks += [player.step(none, vel, ~held) for _ in range(9)]  # held 0.5 s
    blocks += [player.step(none, vel, np.ones((2, 88), bool)) for _ in range(40)]  # released 2 s
    audio = np.stack(blocks)  # (50, 2, HOP)
    rms = np.sqrt(np.mean(audio.astype(np.float64) ** 2, axis=2))
    assert np.all(np.isfinite(audio))
    assert rms[0, 0] > 1e-3 and rms[:10, 0].min() > 1e-3
    assert np.all(audio[:, 1] == 0.0)
    assert rms[-1, 0] < 1e-3 * rms[:10, 0].max()  # the release died away
    assert rms[-1, 0] < rms[12, 0]


def test_soundfont_bad_files(tmp_path):
    pytest.importorskip("tinysoundfont")
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        SoundFontSynth(SR, path=tmp_path / "nope.sf2")
    junk = tmp_path / "junk.sf2"
    junk.write_bytes(b"RIFF this is not a soundfont" * 20)
    with pytest.raises(ValueError, match="junk.sf2"):
        SoundFontSynth(SR, path=junk)
    with pytest.raises(ValueError, match="junk.sf2"):
        make_synth(str(junk), SR)


def test_make_synth():
    assert isinstance(make_synth("piano", SR), PianoSynth)
    with pytest.raises(ValueError, match=r"'nope'.*\['grand', 'piano', 'soundfont'\]"):
        make_synth("nope")
    s = PianoSynth(8000)
    assert make_synth(s, 8000) is s
    with pytest.raises(ValueError, match="8000"):
        make_synth(s, SR)


def test_strike_on_every_block_cuts_no_voice():
    """A key struck on consecutive blocks (allowed to the player API) still matches the torch synth."""
    from lmm_env.synth import DifferentiablePianoSynth, PianoSynth

    T = 12
    onset = np.zeros((T, 88), bool)
    onset[:10, 40] = True
    held = onset.copy()
    vel = np.full((T, 88), 100)
    player = PianoSynth(16000).player(1, 800)
    got = np.concatenate([player.step(onset[t][None], vel[t][None], ~held[t][None])[0] for t in range(T)])
    want = DifferentiablePianoSynth(16000, 20)(torch.tensor(onset, dtype=torch.float32),
                                               torch.tensor(vel, dtype=torch.float32), torch.tensor(held))
    assert np.abs(got - want.numpy()).max() < 1e-5


def test_threaded_player_sounds_exactly_like_the_serial_one(piano):
    rng = np.random.default_rng(3)
    rolls = [random_rolls(rng, T=40, n_keys=12, long_key=False) for _ in range(5)]
    onset, velocity, held = (np.stack([r[i] for r in rolls], axis=1) for i in range(3))  # (T, 5, 88)
    serial = play(piano.player(5, HOP), onset, velocity, held)
    threaded_player = piano.player(5, HOP)
    threaded_player.threads = 2
    threaded = play(threaded_player, onset, velocity, held)
    assert np.abs(serial).max() > 0.01
    assert np.array_equal(serial, threaded)  # envs are split, never the sum inside one env


def test_player_refuses_bad_threads_and_velocities(piano):
    player = piano.player(2, HOP)
    for bad in (0, 1.5, True, 10_000):
        with pytest.raises(ValueError, match=r"threads=.* is not allowed; use an int in \[1, "):
            player.threads = bad
    onset = np.zeros((2, 88), bool)
    onset[0, 40] = True
    velocity = np.full((2, 88), 64)
    velocity[0, 40] = 200
    with pytest.raises(ValueError, match=r"velocities must be MIDI velocities in 0..127, got 64..200"):
        player.step(onset, velocity, ~onset)


def test_batched_env_synth_threads_change_nothing_but_speed():
    import gymnasium as gym

    import lmm_env  # noqa: F401

    kw = dict(num_envs=3, reward="audio_match", score="exercises-mixed", max_seconds=2.0)
    envs = [gym.make_vec("LMMPiano-v0", synth_threads=t, **kw) for t in (1, 2)]
    for e in envs:
        e.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1, 1, envs[0].action_space.shape).astype(np.float32)
        (o1, r1, *_), (o2, r2, *_) = (e.step(a) for e in envs)
        assert np.array_equal(o1["audio"], o2["audio"]) and np.array_equal(r1, r2)
    with pytest.raises(ValueError, match="synth_threads=2: the 'soundfont' synth renders on one thread"):
        gym.make_vec("LMMPiano-v0", synth="soundfont", synth_threads=2, **kw)
