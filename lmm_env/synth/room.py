"""Rooms: the instrument heard where it stands, not dry at the microphone.

Real recordings carry a room: early reflections, a reverberant tail, and a noise floor.
`Room` is that, applied to any synth: ``in_room(synth, room)`` (what ``room=`` of every task
and of `lmm_env.pairs.load` does) gives a `Synth` whose offline ``render`` and whose block
``player`` (the env's stepping path) both convolve the dry sound with the room's impulse
response and add its noise floor, so targets, pairs and the agent's own play are heard in
the same room.

    from lmm_env.synth.room import Room, ROOMS, in_room
    hall = Room.named("hall")                 # or Room(ir=my_ir, ir_sample_rate=48000, noise_db=-65)
    synth = in_room(make_synth("piano"), hall)

Named rooms (`ROOMS`, deterministic: the same impulse response on every machine) are
synthetic: a direct path, a few early reflections and an exponentially decaying noise tail
whose high frequencies die faster, at the room's RT60 and direct-to-reverberant ratio. A
user's measured impulse response (an array or a WAV file) works the same way.

The block player is a uniformly partitioned overlap-save convolution (one FFT of two
blocks per step and one multiply-accumulate per partition, all envs at once): its output
equals the offline convolution to float32 rounding (tested), and it costs about
``len(ir) / block_size`` complex multiply-adds per FFT bin per env and step.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.synth.base import BlockPlayer, Synth

# name -> (RT60 s, direct-to-reverberant ratio dB, noise floor dBFS, seed of its impulse response)
ROOMS = {
    "studio": (0.25, 10.0, -75.0, 1),
    "living-room": (0.5, 4.0, -65.0, 2),
    "hall": (1.6, 0.0, -65.0, 3),
    "church": (3.0, -4.0, -60.0, 4),
}
_NAMED: dict = {}  # the named rooms, built once per process (Room.named)
_NOISE_SECONDS = 7.0  # the noise floor loops over a table this long (per room, deterministic)
_MAX_IR_SECONDS = 10.0


def synthetic_ir(rt60: float, drr_db: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    """A room impulse response: direct path 1.0, early reflections, and a decaying tail to -60 dB at ``rt60``."""
    rng = np.random.default_rng(seed)
    n = max(2, int(round(rt60 * sample_rate)))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.907755 * t / rt60)  # -60 dB at rt60
    # high frequencies die faster: a one-pole low-pass whose cutoff falls along the tail
    # (in blocks of 10 ms; the coefficient goes from 0.1 to 0.9)
    from scipy.signal import lfilter

    out = np.empty(n)
    state = np.zeros(1)
    hop = max(1, sample_rate // 100)
    for start in range(0, n, hop):
        a = 0.1 + 0.8 * min(1.0, start / n)
        out[start:start + hop], state = lfilter([1.0 - a], [1.0, -a], tail[start:start + hop], zi=state * a / a)
    onset = int(0.005 * sample_rate)  # the tail builds up after the first reflections
    out[:onset] *= np.linspace(0.0, 1.0, onset, endpoint=False)
    for k in range(6):  # early reflections, 3-40 ms, decaying
        d = int(rng.uniform(0.003, 0.04) * sample_rate)
        if d < n:
            out[d] += rng.choice([-1.0, 1.0]) * 0.6 * np.exp(-6.907755 * d / sample_rate / rt60)
    # scale the reverberant part to the direct-to-reverberant ratio
    reverb_energy = float(np.sum(out ** 2))
    out *= np.sqrt(10.0 ** (-drr_db / 10.0) / max(reverb_energy, 1e-12))
    out[0] += 1.0
    return out.astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Room:
    """An impulse response and a noise floor.

    Args:
        ir: 1-D impulse response (array) or the path of a mono WAV file of one; its first
            sample is the direct path. At most 10 s.
        ir_sample_rate: the rate ``ir`` was sampled at when it is an array (a WAV says its own).
        noise_db: the noise floor in dB relative to full scale (None: no noise), -120..-20.
        name: a label (rows and repr).
    """

    ir: np.ndarray
    ir_sample_rate: int
    noise_db: float | None = None
    name: str = "room"

    def __post_init__(self):
        ir = self.ir
        if isinstance(ir, (str, os.PathLike)):
            import soundfile as sf

            path = os.fspath(ir)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"room impulse response {path!r} does not exist")
            data, sr = sf.read(path, dtype="float32", always_2d=True)
            object.__setattr__(self, "ir", data.mean(axis=1))
            object.__setattr__(self, "ir_sample_rate", int(sr))
        arr = np.asarray(self.ir, dtype=np.float32)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ValueError(f"ir={short_repr(self.ir)} is not allowed; give a non-empty, finite 1-D impulse response")
        if not isinstance(self.ir_sample_rate, (int, np.integer)) or not 4000 <= self.ir_sample_rate <= 384000:
            raise ValueError(f"ir_sample_rate={short_repr(self.ir_sample_rate)} must be an int in [4000, 384000] Hz")
        if arr.size > _MAX_IR_SECONDS * self.ir_sample_rate:
            raise ValueError(f"the impulse response lasts {arr.size / self.ir_sample_rate:.1f} s; at most "
                             f"{_MAX_IR_SECONDS:g} s is allowed")
        if self.noise_db is not None and (isinstance(self.noise_db, bool) or not -120.0 <= float(self.noise_db) <= -20.0):
            raise ValueError(f"noise_db={short_repr(self.noise_db)} must be a number in [-120, -20] dB, or None")
        object.__setattr__(self, "ir", arr)

    @classmethod
    def named(cls, name: str) -> "Room":
        """One of `ROOMS` ("studio", "living-room", "hall", "church"); built once per process."""
        if name not in ROOMS:
            raise ValueError(f"room={short_repr(name)} is not allowed; use one of {list(ROOMS)}, None (dry), or a "
                             "lmm_env.synth.room.Room")
        if name not in _NAMED:
            rt60, drr, noise, seed = ROOMS[name]
            _NAMED[name] = cls(synthetic_ir(rt60, drr, 48000, seed), 48000, noise, name)
        return _NAMED[name]

    def ir_at(self, sample_rate: int) -> np.ndarray:
        """The impulse response resampled to ``sample_rate`` (float32)."""
        if sample_rate == self.ir_sample_rate:
            return self.ir
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(int(sample_rate), int(self.ir_sample_rate))
        return resample_poly(self.ir.astype(np.float64), sample_rate // g, self.ir_sample_rate // g).astype(np.float32)

    def noise_at(self, sample_rate: int) -> np.ndarray | None:
        """The noise floor's table at ``sample_rate`` (deterministic), or None."""
        if self.noise_db is None:
            return None
        import zlib

        # seeded by the name (crc32: the same in every process, unlike hash()), a named room by its own seed
        rng = np.random.default_rng(ROOMS[self.name][3] if self.name in ROOMS else zlib.crc32(self.name.encode()))
        n = int(_NOISE_SECONDS * sample_rate)
        white = rng.standard_normal(n)
        # pinkish: a gentle low-pass, as a room's tone is
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1.0 / sample_rate)
        spec /= np.sqrt(np.maximum(f, 50.0) / 50.0)
        noise = np.fft.irfft(spec, n)
        noise *= 10.0 ** (float(self.noise_db) / 20.0) / max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)
        return noise.astype(np.float32)

    def apply(self, audio: np.ndarray, sample_rate: int, tail: bool = True) -> np.ndarray:
        """``audio`` heard in this room (offline): convolved, plus the noise floor; with the
        reverberant tail appended when ``tail``."""
        from scipy.signal import fftconvolve

        x = np.asarray(audio, dtype=np.float32)
        ir = self.ir_at(sample_rate)
        y = fftconvolve(x.astype(np.float64), ir.astype(np.float64))
        y = y if tail else y[: len(x)]
        y = y.astype(np.float32)
        noise = self.noise_at(sample_rate)
        if noise is not None:
            reps = int(np.ceil(len(y) / len(noise)))
            y += np.tile(noise, reps)[: len(y)]
        return y

    def __repr__(self):
        return (f"Room({self.name!r}, {len(self.ir) / self.ir_sample_rate:.2f} s impulse response, "
                f"noise {self.noise_db} dB)")


def split_room(name):
    """``"piano@hall"`` -> ("piano", "hall"): an instrument heard in a named room, as ``make_synth``,
    ``lmm_env.pairs.load`` and ``target_synth=`` take it; (name, None) for anything else."""
    if isinstance(name, str) and "@" in name:
        base, _, room = name.rpartition("@")
        if room in ROOMS and base:
            return base, room
    return name, None


def with_room(synth, room, sample_rate: int = 16000):
    """The instrument spec ``synth`` heard in ``room`` (None, a name of `ROOMS` or a `Room`): a name
    ``"synth@room"`` when both are names (so pairs and ears of it can be named and cached), else a
    `RoomSynth` object (a `Room` of your own, or a synth object)."""
    room = check_room(room)
    if room is None:
        return synth
    if isinstance(synth, (str, os.PathLike)) and _is_named_room(room):
        base, already = split_room(os.fspath(synth))
        if already is not None:
            raise ValueError(f"synth={os.fspath(synth)!r} is already heard in room {already!r}; give room= once")
        return f"{base}@{room.name}"
    from lmm_env.synth import make_synth

    return in_room(synth if isinstance(synth, Synth) else make_synth(synth, sample_rate), room)


def _is_named_room(room: Room) -> bool:
    """Whether ``room`` is the named room of its name (not a Room of your own that borrowed the name)."""
    if room.name not in ROOMS:
        return False
    named = Room.named(room.name)
    return room is named or (room.noise_db == named.noise_db and room.ir_sample_rate == named.ir_sample_rate
                             and np.array_equal(room.ir, named.ir))


def check_room(room) -> Room | None:
    """``room=``: None (dry), a name of `ROOMS`, or a `Room`."""
    if room is None or isinstance(room, Room):
        return room
    if isinstance(room, str):
        return Room.named(room)
    raise ValueError(f"room={short_repr(room)} is not allowed; use None (dry), one of {list(ROOMS)}, or a "
                     "lmm_env.synth.room.Room")


class RoomPlayer(BlockPlayer):
    """Another player's blocks heard in a room: partitioned overlap-save convolution, all envs at once."""

    def __init__(self, inner: BlockPlayer, room: Room):
        self.inner, self.room = inner, room
        self.n_envs, self.block_size, self.sample_rate = inner.n_envs, inner.block_size, inner.sample_rate
        B = self.block_size
        ir = room.ir_at(self.sample_rate)
        P = int(np.ceil(len(ir) / B))
        parts = np.zeros((P, B), np.float32)
        parts.reshape(-1)[: len(ir)] = ir
        # each partition's spectrum, zero-padded to 2B (overlap-save)
        self.H = np.fft.rfft(np.concatenate([parts, np.zeros_like(parts)], axis=1), axis=1).astype(np.complex64)
        self.P = P
        self.noise = room.noise_at(self.sample_rate)
        self.reset()

    def __getattr__(self, name):  # threads, and whatever else a task asks of the synth's own player
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __setattr__(self, name, value):
        if name == "threads":
            setattr(self.inner, name, value)
            return
        object.__setattr__(self, name, value)

    def reset(self, env_ids=None) -> None:
        B, n = self.block_size, self.n_envs
        if env_ids is None or not hasattr(self, "fdl"):
            self.inner.reset(env_ids)
            # the last P input spectra of every env; slot (head + p) % P holds the one from p blocks
            # ago. All envs step together, so one head serves them all (a reset env's slots are zeroed).
            self.fdl = np.zeros((n, self.P, B + 1), np.complex64)
            self.head = 0
            self.prev = np.zeros((n, B), np.float32)
            self.noise_pos = np.zeros(n, np.int64)
            return
        ids = np.asarray(env_ids)
        self.inner.reset(ids)
        self.fdl[ids] = 0
        self.prev[ids] = 0
        self.noise_pos[ids] = 0

    def step(self, onset, velocity, damped) -> np.ndarray:
        dry = self.inner.step(onset, velocity, damped)
        B, P = self.block_size, self.P
        X = np.fft.rfft(np.concatenate([self.prev, dry], axis=1), axis=1).astype(np.complex64)  # (n, B + 1)
        self.prev = np.ascontiguousarray(dry, dtype=np.float32)
        self.head = (self.head - 1) % P
        self.fdl[:, self.head] = X
        # slot s holds the input from (s - head) % P blocks ago: it meets partition (s - head) % P
        H = np.roll(self.H, self.head, axis=0)
        Y = np.einsum("npf,pf->nf", self.fdl, H, optimize=False)
        wet = np.fft.irfft(Y, 2 * B, axis=1)[:, B:].astype(np.float32)
        if self.noise is not None:
            idx = (self.noise_pos[:, None] + np.arange(B)[None, :]) % len(self.noise)
            wet += self.noise[idx]
            self.noise_pos = (self.noise_pos + B) % len(self.noise)
        return wet


class RoomSynth(Synth):
    """``synth`` heard in ``room``: its renders convolved (tail kept, noise added), its player a `RoomPlayer`."""

    differentiable = False

    def __init__(self, synth: Synth, room: Room):
        self.synth, self.room = synth, room
        self.sample_rate = synth.sample_rate
        self.name = f"{synth.name}@{room.name}"

    def player(self, n_envs: int, block_size: int) -> RoomPlayer:
        return RoomPlayer(self.synth.player(n_envs, block_size), self.room)

    def render(self, score, tail: float = 1.0) -> np.ndarray:
        dry = self.synth.render(score, tail=tail)
        return self.room.apply(dry, self.sample_rate, tail=False)

    def __getattr__(self, name):
        if name in ("synth", "room"):
            raise AttributeError(name)
        return getattr(self.synth, name)


def in_room(synth: Synth, room) -> Synth:
    """``synth`` itself for ``room=None``, else a `RoomSynth` (``room``: a name of `ROOMS` or a `Room`)."""
    room = check_room(room)
    return synth if room is None else RoomSynth(synth, room)
