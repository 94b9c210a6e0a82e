"""How loud an instrument plays each key at each velocity: `LoudnessCurve`.

A MIDI velocity is an instruction, not a loudness: the same velocity 80 is 5 dB louder on
the shipped grand than on the built-in piano, and a SoundFont may squeeze the whole range
into 16 dB. To say what "as loud as the target" means on another instrument, a curve maps
(key, velocity) to the single note's peak level in dB (the loudest 25 ms of its RMS), and
`matched_velocities` finds, key by key, the velocity that makes one instrument as loud as
another played at the score's velocity.

    from lmm_env.synth import make_synth
    from lmm_env.synth.loudness import loudness_curve, matched_velocities
    grand, piano = loudness_curve(make_synth("grand")), loudness_curve(make_synth("piano"))
    matched_velocities([60], [80], reference=grand, world=piano)   # -> [~99]

Curves are measured by rendering single notes (a grid of keys and velocities, interpolated
between) once per instrument and process, about a second per instrument. An instrument heard
in a room is its dry curve plus the room's gain (measured on notes rendered alone with the
room's whole tail).
"""
from __future__ import annotations

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.synth.base import HIGHEST_PITCH, LOWEST_PITCH

PITCH_GRID = np.unique(np.r_[np.arange(LOWEST_PITCH, HIGHEST_PITCH + 1, 3), HIGHEST_PITCH])
VELOCITY_GRID = np.unique(np.r_[1, np.arange(8, 128, 8), 127])
NOTE_SECONDS, SLOT_SECONDS, FRAME_SECONDS = 0.3, 0.6, 0.025
FLOOR_DB = -120.0

__all__ = ["LoudnessCurve", "loudness_curve", "matched_velocities", "PITCH_GRID", "VELOCITY_GRID"]


class LoudnessCurve:
    """Peak level in dB of single notes, on a grid of keys x velocities, non-decreasing in velocity.

    Attributes:
        pitches: (P,) MIDI keys of the grid; velocities: (V,) velocities of the grid.
        db: (P, V) float64 peak levels (dB of the peak 25 ms RMS, full scale 0 dB).
        name: the instrument it was measured on.
    """

    def __init__(self, pitches, velocities, db, name: str = ""):
        self.pitches = np.asarray(pitches, np.float64)
        self.velocities = np.asarray(velocities, np.float64)
        for what, grid in (("pitches", self.pitches), ("velocities", self.velocities)):
            if grid.ndim != 1 or len(grid) < 2 or not np.all(np.diff(grid) > 0):
                raise ValueError(f"{what} must be a strictly increasing grid of at least 2 points, got "
                                 f"{short_repr(grid.tolist())}")
        db = np.asarray(db, np.float64)
        if db.shape != (len(self.pitches), len(self.velocities)) or not np.all(np.isfinite(db)):
            raise ValueError(f"db must be a finite ({len(self.pitches)}, {len(self.velocities)}) array, "
                             f"got shape {db.shape}")
        # a harder strike is never softer: measurement noise must not make the inverse ambiguous
        self.db = np.maximum.accumulate(db, axis=1)
        self.name = name

    def _rows(self, pitches: np.ndarray) -> np.ndarray:
        """(n, V) curves at ``pitches``, linearly interpolated between grid keys."""
        p = np.clip(np.asarray(pitches, np.float64), self.pitches[0], self.pitches[-1])
        j = np.clip(np.searchsorted(self.pitches, p, side="right") - 1, 0, len(self.pitches) - 2)
        w = ((p - self.pitches[j]) / (self.pitches[j + 1] - self.pitches[j]))[:, None]
        return (1 - w) * self.db[j] + w * self.db[j + 1]

    def level(self, pitches, velocities) -> np.ndarray:
        """Peak level (dB) of each note (key, velocity)."""
        p, v = np.broadcast_arrays(np.atleast_1d(np.asarray(pitches, np.float64)),
                                   np.atleast_1d(np.asarray(velocities, np.float64)))
        rows = self._rows(p.ravel())
        vv = np.clip(v.ravel(), self.velocities[0], self.velocities[-1])
        k = np.clip(np.searchsorted(self.velocities, vv, side="right") - 1, 0, len(self.velocities) - 2)
        w = (vv - self.velocities[k]) / (self.velocities[k + 1] - self.velocities[k])
        idx = np.arange(len(vv))
        return ((1 - w) * rows[idx, k] + w * rows[idx, k + 1]).reshape(p.shape)

    def velocity_for(self, pitches, levels) -> np.ndarray:
        """The velocity (float, 1..127) that plays each key at ``levels`` dB; clipped to the
        softest / loudest velocity where the instrument cannot reach the level."""
        p, lv = np.broadcast_arrays(np.atleast_1d(np.asarray(pitches, np.float64)),
                                    np.atleast_1d(np.asarray(levels, np.float64)))
        rows = self._rows(p.ravel())
        out = np.empty(p.size)
        for i, (row, x) in enumerate(zip(rows, lv.ravel())):
            # flat stretches (a sampler's top layer) would make the inverse ambiguous: first velocity wins
            keep = np.r_[True, np.diff(row) > 1e-9]
            out[i] = np.interp(x, row[keep], self.velocities[keep])
        return out.reshape(p.shape)


_CACHE: dict = {}


def _key(synth):
    """What a synth's loudness depends on: its kind, name, rate, file, preset and gain, and its room's."""
    room = getattr(synth, "room", None)
    inner = synth.__dict__.get("synth")  # a RoomSynth's instrument
    if room is not None and inner is not None:
        import hashlib

        ir = np.ascontiguousarray(np.asarray(room.ir, np.float32))
        return ("room", _key(inner), room.ir_sample_rate, room.noise_db, hashlib.sha1(ir.tobytes()).hexdigest())
    return (type(synth).__name__, getattr(synth, "name", None), synth.sample_rate, str(getattr(synth, "path", "")),
            getattr(synth, "preset", None), getattr(synth, "gain", None))


def _peak_db(synth, pitches, velocities, slot: float) -> np.ndarray:
    """Peak 25 ms level (dB) of single notes, each rendered alone in its own ``slot`` seconds."""
    from lmm_env.score import Score

    n = len(pitches)
    onsets = np.arange(n) * slot
    score = Score(np.asarray(pitches), onsets, onsets + NOTE_SECONDS, np.asarray(velocities), name="loudness grid")
    audio = np.asarray(synth.render(score, tail=slot), np.float64)
    sr = synth.sample_rate
    step, frame = int(round(slot * sr)), int(round(FRAME_SECONDS * sr))
    audio = np.pad(audio, (0, max(0, n * step - len(audio))))[: n * step].reshape(n, step)
    frames = audio[:, : (step // frame) * frame].reshape(n, -1, frame)
    rms = np.sqrt(np.mean(frames ** 2, axis=-1)).max(axis=1)
    return np.maximum(20 * np.log10(np.maximum(rms, 1e-12)), FLOOR_DB)


def loudness_curve(synth) -> LoudnessCurve:
    """The `LoudnessCurve` of ``synth`` (a `lmm_env.synth.Synth`), measured once per process."""
    from lmm_env.synth.base import Synth

    if not isinstance(synth, Synth):
        raise TypeError(f"synth={short_repr(synth)} is not a lmm_env.synth.Synth; make one with "
                        "lmm_env.synth.make_synth('grand')")
    key = _key(synth)
    if key in _CACHE:
        return _CACHE[key]
    room, inner = getattr(synth, "room", None), synth.__dict__.get("synth")
    if room is not None and inner is not None:
        # In a room, a grid of notes 0.6 s apart would hear each other's reverb. The room adds the
        # same level to every note, near enough: the dry curve plus the room's gain on a few keys,
        # each rendered alone with the room's whole tail (what a matched velocity needs is a gap
        # between two curves heard in the same room, where that gain cancels).
        dry = loudness_curve(inner)
        keys, vel = np.array([36, 60, 84]), np.full(3, 64)
        slot = NOTE_SECONDS + len(room.ir) / room.ir_sample_rate + 0.2
        gain = float(np.mean(_peak_db(synth, keys, vel, slot) - _peak_db(inner, keys, vel, slot)))
        curve = LoudnessCurve(dry.pitches, dry.velocities, dry.db + gain, name=str(getattr(synth, "name", "")))
    else:
        P, V = np.meshgrid(PITCH_GRID, VELOCITY_GRID, indexing="ij")
        db = _peak_db(synth, P.ravel(), V.ravel(), SLOT_SECONDS).reshape(P.shape)
        curve = LoudnessCurve(PITCH_GRID, VELOCITY_GRID, db, name=str(getattr(synth, "name", "")))
    _CACHE[key] = curve
    return curve


def matched_velocities(pitches, velocities, reference: LoudnessCurve, world: LoudnessCurve) -> np.ndarray:
    """The velocities (float, 1..127) at which ``world`` plays each note as loud as ``reference``
    plays it at ``velocities``."""
    return world.velocity_for(pitches, reference.level(pitches, velocities))
