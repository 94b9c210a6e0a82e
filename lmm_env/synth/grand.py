"""`GrandPianoSynth` ("grand"): a sampled concert grand, shipped inside the package.

The samples are the "Splendid Grand" (a Steinway D, public domain) of MuseScore General
(MIT), trimmed to its piano preset by ``scripts/make_grand_piano.py`` and stored in
``lmm_env/synth/grand/`` (``samples.flac``, ``zones.json``, ``LICENSE``, ``PROVENANCE.md``;
about 4.5 MB).

It plays through the built-in piano's players and voice kernel (`PianoSynth`), with other
tables: it steps as fast, batches and threads the same way, and its block player matches
its ``render`` as the built-in piano's does.

* **Tables.** Each key's two rows [soft, loud] are the SoundFont's notes for that key at two
  velocities (``zones.json``: 16 and 107, both from the preset's mezzo-forte recording, the
  pair the make script's fit chose; see PROVENANCE.md), rendered at init at the world's
  rate the way a SoundFont synth (FluidSynth) plays them: every voice the preset starts,
  resolved by the make script (generators, modulators), its sample pitch-shifted from its
  root key (band-limited windowed-sinc interpolation, looped between its loop points),
  through the SoundFont low-pass filter whose cutoff follows the modulation envelope (a soft
  note is darker; every note darkens as it sustains), times the volume envelope (attack,
  hold, decay) and attenuation. Checked against FluidSynth 2.3.1 playing the same font
  (keys 33..84, velocities 16..107): the same level envelope over 2 s (0.1-0.4 dB sd after
  one constant gain) and spectral centroids within 2 %; the top keys' late tails are
  quieter, where FluidSynth plays the recordings' low rumble that the make script removes.
  The tables fade to zero over their last 0.1 s like the built-in ones.
* **Velocity.** A note of velocity v sounds as ``soft(v) * T_soft + loud(v) * T_loud``; the
  two gain curves (``zones.json``) were fitted so that the blend matches the SoundFont's own
  note at each velocity (log-mel power). The master gain matches the built-in piano's
  loudness at velocity 100.
* **Dampers.** Keys with a damper stop as the built-in piano's do (``model.RELEASE_SECONDS``);
  the top keys that have none (MIDI 88..108, the SoundFont's "high" instruments, as on a real
  grand) ring on after key-up, pedal or not, until the key is struck again or its table ends.
* **Not modelled**: the SoundFont's release times (the world's damper stops a key), its
  stereo image, reverb and chorus. Worlds above 22.05 kHz get no sound above ~10.5 kHz
  (the samples are stored at 22.05 kHz).

The tables are cached per process and on disk (``$LMM_ENV_CACHE`` or the user cache dir,
``grand-v<FORMAT>.<RENDER_VERSION>/``, 34 MB at 16 kHz): the first build at a sample rate
takes ~2 s at 16 kHz, later processes load it in ~0.15 s.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
from numba import njit

from lmm_env.synth import model
from lmm_env.synth.base import LOWEST_PITCH, N_KEYS, check_sample_rate
from lmm_env.synth.piano import PianoPlayer, PianoSynth

DATA_DIR = Path(__file__).with_name("grand")
FORMAT = 1  # zones.json's format; bump with the renderer's recipe so that disk caches are rebuilt
RENDER_VERSION = 1
HALF_WIDTH = 16  # interpolation kernel half-width (samples at the lower of the two rates)
OVERSAMPLE = 512  # kernel table points per sample
KAISER_BETA = 8.0
CUTOFF = 0.95  # of the lower Nyquist
END_FADE_SECONDS = model.END_FADE_SECONDS


class GrandDataError(RuntimeError):
    """The shipped grand-piano files are missing or damaged (a broken install)."""


# ---------------------------------------------------------------------------------------------
# The shipped bank


class Bank:
    """zones.json and samples.flac, loaded (read-only arrays)."""

    def __init__(self, directory: Path = DATA_DIR):
        directory = Path(directory)
        zones = directory / "zones.json"
        flac = directory / "samples.flac"
        for f in (zones, flac):
            if not f.is_file():
                raise GrandDataError(f"the grand piano's {f.name} is missing from {directory}; reinstall lmm_env "
                                     "(or run scripts/make_grand_piano.py in a source checkout)")
        meta = json.loads(zones.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise GrandDataError(f"{zones} has format {meta.get('format')!r}, this lmm_env reads format {FORMAT}; "
                                 "reinstall lmm_env")
        import soundfile

        pcm, rate = soundfile.read(str(flac), dtype="int16", always_2d=False)
        self.meta = meta
        self.samples = []
        for s in meta["samples"]:
            data = pcm[s["offset"]: s["offset"] + s["length"]].astype(np.float32) * np.float32(s["scale"])
            if len(data) != s["length"]:
                raise GrandDataError(f"{flac} is shorter than zones.json says (sample {s['name']!r}); "
                                     "reinstall lmm_env")
            data.setflags(write=False)
            self.samples.append(data)
        self.digest = hashlib.sha1(zones.read_bytes() + flac.read_bytes()).hexdigest()[:16]
        self.dampers = np.array(meta["dampers"], dtype=bool)
        self.soft_of_velocity = np.array(meta["velocity_gains"]["soft"], dtype=np.float32)
        self.bright_of_velocity = np.array(meta["velocity_gains"]["loud"], dtype=np.float32)
        for a in (self.dampers, self.soft_of_velocity, self.bright_of_velocity):
            a.setflags(write=False)


@functools.lru_cache(maxsize=1)
def load_bank() -> Bank:
    """The shipped bank (cached per process)."""
    return Bank()


# ---------------------------------------------------------------------------------------------
# One voice


@functools.lru_cache(maxsize=1)
def _kernel_table() -> np.ndarray:
    """Kaiser-windowed sinc, K(d) for d = 0 .. HALF_WIDTH in 1/OVERSAMPLE steps (plus a zero)."""
    d = np.arange(HALF_WIDTH * OVERSAMPLE + 2, dtype=np.float64) / OVERSAMPLE
    fc = 0.5 * CUTOFF
    w = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (d / HALF_WIDTH) ** 2, 0.0, None))) / np.i0(KAISER_BETA)
    k = 2.0 * fc * np.sinc(2.0 * fc * d) * w
    k[-2:] = 0.0
    return k


@njit(cache=True, nogil=True)
def _interpolate(src, step, out, table, oversample, half_width):  # pragma: no cover - compiled
    """out[j] = band-limited src at position j * step (src zero outside its ends)."""
    scale = 1.0 if step <= 1.0 else 1.0 / step  # stretch the kernel when reading faster (anti-alias)
    reach = half_width / scale
    n_src = src.shape[0]
    for j in range(out.shape[0]):
        t = j * step
        lo = int(math.floor(t - reach)) + 1
        hi = int(math.floor(t + reach))
        if lo < 0:
            lo = 0
        if hi > n_src - 1:
            hi = n_src - 1
        acc = 0.0
        for i in range(lo, hi + 1):
            x = abs(t - i) * scale * oversample
            k = int(x)
            f = x - k
            acc += src[i] * (table[k] + f * (table[k + 1] - table[k]))
        out[j] = acc * scale


@njit(cache=True, nogil=True)
def _biquad(x, b0, b1, a1, a2, out):  # pragma: no cover - compiled
    """Time-varying low-pass biquad (direct form I, b2 = b0): out[n] from per-sample coefficients."""
    x1 = 0.0
    x2 = 0.0
    y1 = 0.0
    y2 = 0.0
    for n in range(x.shape[0]):
        y = b0[n] * (x[n] + x2) + b1[n] * x1 - a1[n] * y1 - a2[n] * y2
        x2 = x1
        x1 = x[n]
        y2 = y1
        y1 = y
        out[n] = y


def _looped(data: np.ndarray, loop_start, loop_end, need: int) -> np.ndarray:
    """``data`` played ``need`` samples long: repeating [loop_start, loop_end) past its end."""
    if loop_start is None or need <= loop_end:
        return data[:need] if need <= len(data) else np.concatenate([data, np.zeros(need - len(data), data.dtype)])
    reps = -(-(need - loop_end) // (loop_end - loop_start))
    return np.concatenate([data[:loop_end], np.tile(data[loop_start:loop_end], reps)])[:need]


def envelope(t: np.ndarray, env: dict, volume: bool) -> np.ndarray:
    """SoundFont envelope (delay, linear attack, hold, decay to sustain) at times ``t`` (s).

    The modulation envelope decays linearly in value; the volume envelope linearly in dB
    over 96 dB (FluidSynth's convention) and returns amplitude.
    """
    d, a, h, dec, sus = env["delay"], env["attack"], env["hold"], env["decay"], env["sustain"]
    u = t - d
    x = np.where(u < a, u / a if a > 0 else 1.0, 1.0)
    after = u - a - h
    falling = 1.0 - after / dec if dec > 0 else np.full_like(t, sus)
    x = np.where(after > 0, np.maximum(falling, sus), x)
    x = np.where(u < 0, 0.0, x)
    if not volume:
        return x
    in_attack = (u >= 0) & (u < a)
    amp = np.where(x > 0, 10.0 ** (-4.8 * (1.0 - x)), 0.0)
    return np.where(in_attack, x, amp)


def pitched(data, sample: dict, voice: dict, sample_rate: int, length: int) -> np.ndarray:
    """A voice's sample read at its pitch (band-limited, looped), ``length`` samples at ``sample_rate``."""
    step = 2.0 ** (voice["cents"] / 1200.0) * sample["rate"] / sample_rate
    need = int(math.ceil(length * step)) + int(math.ceil(HALF_WIDTH * max(1.0, step))) + 2
    looped = voice["loop"] and sample["loop_start"] is not None
    src = _looped(data, sample["loop_start"] if looped else None, sample["loop_end"], need).astype(np.float64)
    y = np.empty(length)
    _interpolate(src, step, y, _kernel_table(), OVERSAMPLE, HALF_WIDTH)
    return y


def shaped(y: np.ndarray, voice: dict, sample_rate: int) -> np.ndarray:
    """A pitched voice through its SoundFont low-pass filter, volume envelope and attenuation."""
    length = len(y)
    t = np.arange(length, dtype=np.float64) / sample_rate
    # cutoff in cents (clamped to 1500..13500 as FluidSynth does, and to 0.45 x the rate), Q in cB
    fc = voice["filter_fc_cents"] + envelope(t, voice["mod_env"], volume=False) * voice["mod_env_to_fc_cents"]
    hz = np.minimum(8.176 * 2.0 ** (np.clip(fc, 1500.0, 13500.0) / 1200.0), 0.45 * sample_rate)
    q = 10.0 ** ((min(max(voice["filter_q_cb"] / 10.0, 0.0), 96.0) - 3.01) / 20.0)
    w = 2.0 * np.pi * hz / sample_rate
    alpha = np.sin(w) / (2.0 * q)
    cos = np.cos(w)
    a0 = 1.0 + alpha
    b1 = (1.0 - cos) / a0 / math.sqrt(q)  # SoundFont: the resonance's gain is taken back (1 / sqrt(Q))
    filtered = np.empty(length)
    _biquad(y, 0.5 * b1, b1, -2.0 * cos / a0, (1.0 - alpha) / a0, filtered)
    gain = 10.0 ** (-voice["attenuation_cb"] / 200.0)
    return filtered * envelope(t, voice["vol_env"], volume=True) * gain


def render_note(bank: Bank, voices, sample_rate: int, length: int) -> np.ndarray:
    """The sum of a note's voices (float64), as a SoundFont synth plays them while the key is held."""
    out = np.zeros(length)
    read = {}  # voices that read the same sample at the same pitch share the interpolation
    for v in voices:
        key = (v["sample"], v["cents"], v["loop"])
        if key not in read:
            read[key] = pitched(bank.samples[v["sample"]], bank.meta["samples"][v["sample"]], v, sample_rate, length)
        out += shaped(read[key], v, sample_rate)
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def build_tables(sample_rate: int, seconds: float = model.TABLE_SECONDS) -> np.ndarray:
    """Per-key tables of the grand: float32 (2, 88, L), [soft, loud]; read-only.

    Cached per (sample_rate, seconds) in the process and on disk (see `table_cache_path`).
    """
    return _build_tables(check_sample_rate(sample_rate), model.check_table_seconds(seconds))


MAX_DISK_CACHE_BYTES = 256 << 20  # bigger tables (long tables at high rates) are rebuilt, not written


def table_cache_path(sample_rate: int, seconds: float) -> Path:
    """Where the tables at (sample_rate, seconds) are cached: keyed by the shipped data and the recipe."""
    from lmm_env.corpus import cache_dir

    bank = load_bank()
    return (cache_dir() / f"grand-v{FORMAT}.{RENDER_VERSION}" /
            f"{bank.digest}-{sample_rate}hz-{seconds!r}s-np{np.__version__}.npy")


@functools.lru_cache(maxsize=4)
def _build_tables(sample_rate: int, seconds: float) -> np.ndarray:
    length = int(round(seconds * sample_rate))
    path = table_cache_path(sample_rate, seconds)
    tables = _read_cache(path, (2, N_KEYS, length))
    if tables is None:
        tables = render_tables(load_bank(), sample_rate, length)
        if tables.nbytes <= MAX_DISK_CACHE_BYTES:
            _write_cache(path, tables)
    tables.setflags(write=False)
    return tables


def render_tables(bank: Bank, sample_rate: int, length: int) -> np.ndarray:
    """Render every key's two layers (no cache): float32 (2, 88, length)."""
    tables = np.zeros((2, N_KEYS, length), dtype=np.float32)
    n_end = min(length, int(round(END_FADE_SECONDS * sample_rate)))
    fade = 0.5 + 0.5 * np.cos(np.pi * np.arange(1, n_end + 1) / n_end)  # to exactly 0, as model's tables
    for layer, spec in enumerate(bank.meta["layers"]):
        for k in range(N_KEYS):
            note = render_note(bank, spec["keys"][k], sample_rate, length)
            note[length - n_end:] *= fade
            tables[layer, k] = note
    return tables


def _read_cache(path: Path, shape) -> np.ndarray | None:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if a.shape != shape or a.dtype != np.float32 or not np.isfinite(a).all():
        return None
    return np.array(a)  # a private copy: the file may be replaced later


def _write_cache(path: Path, tables: np.ndarray) -> None:
    """Write atomically (a temp file, then rename); a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, tables, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------
# The synth


class GrandPianoSynth(PianoSynth):
    """A sampled concert grand (MuseScore General's Splendid Grand), through the built-in piano's players.

    Args:
        sample_rate: audio rate in Hz (8000..96000); the samples are stored at 22.05 kHz, so
            at higher rates the sound stops at about 10.5 kHz.
        table_seconds: how long a held note can ring (its table's length), 0.2..20 s; the
            samples loop (their SoundFont loop points) where a note outlasts its recording.

    ``render`` and ``player`` behave as `PianoSynth`'s (the block player matches ``render``
    on block-aligned notes; it batches and threads alike, at the same speed). Not
    differentiable: `DifferentiablePianoSynth` stays the agent's model of a piano, and this is
    the instrument the world can play instead.
    """

    name = "grand"
    differentiable = False

    def _build(self) -> None:
        bank = load_bank()
        self.tables = build_tables(self.sample_rate, self.table_seconds)
        self.release = model.release_envelope(self.sample_rate)
        self.dampers = bank.dampers  # (88,) bool: False for the top keys, which ring on after key-up
        self.soft_of_velocity = bank.soft_of_velocity  # (128,) float32 layer gains by MIDI velocity
        self.bright_of_velocity = bank.bright_of_velocity

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items()
                if k not in ("tables", "release", "dampers", "soft_of_velocity", "bright_of_velocity")}

    def _note_gains(self, velocities: np.ndarray):
        v = np.asarray(velocities).astype(np.int64)
        return self.soft_of_velocity[v], self.bright_of_velocity[v]

    def _damper_samples(self, pitches: np.ndarray, onsets: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        # a key without a damper rings on until its table ends (or the key is struck again)
        undamped = ~self.dampers[np.asarray(pitches, dtype=np.int64) - LOWEST_PITCH]
        return np.where(undamped, np.maximum(offsets, onsets + self.tables.shape[2]), offsets)

    def player(self, n_envs: int, block_size: int) -> "GrandPlayer":
        return GrandPlayer(self, n_envs, block_size)


class GrandPlayer(PianoPlayer):
    """`PianoPlayer` with the grand's velocity gains and dampers (same kernel, same speed)."""

    def _init_voices(self) -> None:
        super()._init_voices()
        self._soft_of_velocity = np.array(self.synth.soft_of_velocity, dtype=np.float32)
        self._bright_of_velocity = np.array(self.synth.bright_of_velocity, dtype=np.float32)
        self._dampers = np.array(self.synth.dampers, dtype=bool)

    def step(self, onset: np.ndarray, velocity: np.ndarray, damped: np.ndarray) -> np.ndarray:
        # keys without a damper never get a damper-down from key-up or pedal (a re-strike still damps)
        damped = np.asarray(damped, dtype=bool) & self._dampers
        return super().step(onset, velocity, damped)
