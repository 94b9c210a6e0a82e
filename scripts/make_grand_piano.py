"""Make the shipped grand piano (lmm_env/synth/grand/) from MuseScore General's SoundFont.

    .venv/bin/python scripts/make_grand_piano.py                  # apt-get download + convert
    .venv/bin/python scripts/make_grand_piano.py --deb PATH.deb   # a .deb already downloaded
    .venv/bin/python scripts/make_grand_piano.py --sf PATH.sf3    # a .sf3/.sf2 (no provenance from a .deb)
    .venv/bin/python scripts/make_grand_piano.py --loud-velocity 127  # force a layer (skip the search)

Takes about 8 minutes on 2 cores; the output is byte-for-byte the same on every run.

What it does (no root needed; needs apt-get and dpkg-deb only when it downloads):

1. ``apt-get download musescore-general-soundfont-small`` (Debian's MuseScore General, MIT;
   its piano is the public-domain "Splendid Grand", a Steinway D) and ``dpkg-deb -x``.
2. Parses the SoundFont (a small RIFF reader below: phdr/pbag/pmod/pgen/inst/ibag/imod/
   igen/shdr) and resolves preset 0 of bank 0 ("Grand Piano") the way SoundFont 2.01 says:
   global zones, preset generators added to instrument ones, instrument modulators over the
   default ones, preset modulators added, every modulator evaluated for each key 21..108 and
   velocity 1..127 (they read only the velocity and the key number).
3. Decodes the samples those voices play (the piano's two recordings, MF and FF, each a
   left/right pair), mixes each pair to mono with the voices' pan gains (as a mono downmix
   of FluidSynth's stereo output would), cuts it at its loop end (a looped sample never
   plays past it), high-passes it under its string's range (room rumble, DC drift) and
   resamples it to about 22.05 kHz so that its loop points fall on whole samples (the rate
   is stored per sample, so no pitch is lost).
4. Fits which two velocities make the table layers and the velocity gain curves (see
   `fit_velocity_curves`; it renders with ``lmm_env.synth.grand``), and keeps only the
   samples those two layers play, peak-normalized, as one 16-bit FLAC (``samples.flac``).
5. Writes ``zones.json``: per sample its offset, length, rate, root key, loop; per key and
   table layer (soft, loud) the voices to sum, each fully resolved (tuning, attenuation,
   volume and modulation envelopes, low-pass filter); the velocity curves that blend the
   two layers; the damper flag of every key; the fit's numbers.
6. Writes ``LICENSE`` (the Debian copyright file: MuseScore General's MIT licence and its
   authors) and ``PROVENANCE.md`` (package, version, source URL, what was kept, this command).

``lmm_env.synth.grand`` renders the per-key tables from these files at init.
"""
from __future__ import annotations

import argparse
import functools
import glob
import hashlib
import io
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PACKAGE = "musescore-general-soundfont-small"
OUT = ROOT / "lmm_env" / "synth" / "grand"
STORE_RATE = 22050  # about: each sample's rate is nudged so that its loop is a whole number of samples
KEYS = range(21, 109)
VELOCITIES = range(1, 128)

# ---------------------------------------------------------------------------------------------
# SoundFont reading


class SoundFontError(ValueError):
    pass


GEN = dict(startAddrsOffset=0, endAddrsOffset=1, startloopAddrsOffset=2, endloopAddrsOffset=3,
           startAddrsCoarseOffset=4, modLfoToPitch=5, vibLfoToPitch=6, modEnvToPitch=7, initialFilterFc=8,
           initialFilterQ=9, modLfoToFilterFc=10, modEnvToFilterFc=11, endAddrsCoarseOffset=12, modLfoToVolume=13,
           chorusEffectsSend=15, reverbEffectsSend=16, pan=17, delayModLFO=21, freqModLFO=22, delayVibLFO=23,
           freqVibLFO=24, delayModEnv=25, attackModEnv=26, holdModEnv=27, decayModEnv=28, sustainModEnv=29,
           releaseModEnv=30, keynumToModEnvHold=31, keynumToModEnvDecay=32, delayVolEnv=33, attackVolEnv=34,
           holdVolEnv=35, decayVolEnv=36, sustainVolEnv=37, releaseVolEnv=38, keynumToVolEnvHold=39,
           keynumToVolEnvDecay=40, instrument=41, keyRange=43, velRange=44, startloopAddrsCoarseOffset=45,
           keynum=46, velocity=47, initialAttenuation=48, endloopAddrsCoarseOffset=50, coarseTune=51, fineTune=52,
           sampleID=53, sampleModes=54, scaleTuning=56, exclusiveClass=57, overridingRootKey=58)
G = type("G", (), GEN)
# generator defaults (SoundFont 2.01, section 8.1.3)
DEFAULTS = {G.initialFilterFc: 13500, G.delayModEnv: -12000, G.attackModEnv: -12000, G.holdModEnv: -12000,
            G.decayModEnv: -12000, G.releaseModEnv: -12000, G.delayVolEnv: -12000, G.attackVolEnv: -12000,
            G.holdVolEnv: -12000, G.decayVolEnv: -12000, G.releaseVolEnv: -12000, G.scaleTuning: 100,
            G.overridingRootKey: -1, G.keynum: -1, G.velocity: -1, G.delayModLFO: -12000, G.delayVibLFO: -12000}
UNSIGNED = {G.instrument, G.sampleID, G.sampleModes, G.scaleTuning, G.exclusiveClass}
RANGES = {G.keyRange, G.velRange}
# generators that a preset zone may not set (instrument-only: addresses, sample, modes, ...)
INSTRUMENT_ONLY = {0, 1, 2, 3, 4, 12, 45, 50, 46, 47, 53, 54, 57, 58}
# ones the renderer supports; a voice that sets another (an LFO, pitch modulation) to a
# non-default value is refused (the piano sets none)
UNSUPPORTED = {G.modLfoToPitch, G.vibLfoToPitch, G.modEnvToPitch, G.modLfoToFilterFc, G.modLfoToVolume}
ADDRESS = {0, 1, 2, 3, 4, 12, 45, 50}


def _chunks(buf: bytes, off: int, end: int):
    while off + 8 <= end:
        cid, size = struct.unpack_from("<4sI", buf, off)
        yield cid.decode("latin1"), off + 8, size
        nxt = off + 8 + size
        # RIFF pads odd chunks to even; some SF3 writers do not: take the pad byte only when
        # no chunk id follows without it
        if size & 1 and not (buf[nxt:nxt + 4].isalnum() and buf[nxt:nxt + 4].isascii()):
            nxt += 1
        off = nxt


def _cstr(b: bytes) -> str:
    return b.split(b"\0")[0].decode("latin1")


def read_soundfont(path) -> dict:
    buf = Path(path).read_bytes()
    if buf[:4] != b"RIFF" or buf[8:12] != b"sfbk":
        raise SoundFontError(f"{path}: not a SoundFont (no RIFF sfbk header)")
    lists = {}
    for cid, off, size in _chunks(buf, 12, len(buf)):
        if cid == "LIST":
            lists[buf[off:off + 4].decode("latin1")] = {c: (o, s) for c, o, s in _chunks(buf, off + 4, off + size)}
    for need in ("INFO", "sdta", "pdta"):
        if need not in lists:
            raise SoundFontError(f"{path}: no {need} list")

    def records(name, fmt):
        off, size = lists["pdta"][name]
        n = struct.calcsize(fmt)
        return [struct.unpack_from(fmt, buf, off + i * n) for i in range(size // n)]

    info = {c: _cstr(buf[o:o + s]) for c, (o, s) in lists["INFO"].items() if c != "ifil"}
    info["ifil"] = "%d.%d" % struct.unpack_from("<HH", buf, lists["INFO"]["ifil"][0])
    sf = dict(buf=buf, info=info, smpl=lists["sdta"]["smpl"],
              phdr=records("phdr", "<20sHHHIII"), pbag=records("pbag", "<HH"), pmod=records("pmod", "<HHhHH"),
              pgen=records("pgen", "<HH"), inst=records("inst", "<20sH"), ibag=records("ibag", "<HH"),
              imod=records("imod", "<HHhHH"), igen=records("igen", "<HH"), shdr=records("shdr", "<20sIIIIIBbHH"))
    return sf


def _gens(records) -> dict:
    out = {}
    for oper, amount in records:
        if oper in RANGES:
            out[oper] = (amount & 0xFF, amount >> 8)
        elif oper in UNSIGNED:
            out[oper] = amount
        else:
            out[oper] = amount - 65536 if amount >= 32768 else amount
    return out


def _mods(records) -> dict:
    # identity: (source, destination, amount source); value: (amount, transform)
    return {(src, dst, amt_src): (amount, trans) for src, dst, amount, amt_src, trans in records}


def _zones(bags, gens, mods, first, last):
    out = []
    for b in range(first, last):
        g0, m0 = bags[b]
        g1, m1 = bags[b + 1]
        out.append((_gens(gens[g0:g1]), _mods(mods[m0:m1])))
    return out


def _split_global(zones, terminal):
    """(global zone or empty, local zones): a first zone without the terminal generator is global."""
    if zones and terminal not in zones[0][0]:
        return zones[0], zones[1:]
    return ({}, {}), zones


# ---------------------------------------------------------------------------------------------
# Modulators (SoundFont 2.01 section 8.2; controller values at their MIDI defaults)

# the default modulators of SoundFont 2.01 / FluidSynth that read the velocity; the others
# read controllers at fixed values (volume, expression, pan, ...) and only scale every note alike
DEFAULT_MODS = {(0x0502, G.initialAttenuation, 0): (960, 0),  # velocity -> attenuation, concave
                (0x0102, G.initialFilterFc, 0x0D02): (-2400, 0)}  # velocity -> cutoff (FluidSynth's form)
CC_DEFAULTS = {7: 100, 10: 64, 11: 127, 91: 40, 93: 0, 1: 0}


def _concave(x: float) -> float:
    """SoundFont concave curve of a 0..127 controller value (0 -> 0, 127 -> 1)."""
    if x <= 0:
        return 0.0
    if x >= 127:
        return 1.0
    return -20.0 / 96.0 * math.log10(((127.0 - x) / 127.0) ** 2)


def _source(oper: int, velocity: int, key: int) -> float:
    index, cc = oper & 0x7F, (oper >> 7) & 1
    negative, bipolar, kind = (oper >> 8) & 1, (oper >> 9) & 1, oper >> 10
    if cc:
        raw = CC_DEFAULTS.get(index, 0)
    elif index == 0:
        return 1.0  # "no controller" (only meaningful as the amount source)
    elif index == 2:
        raw = velocity
    elif index == 3:
        raw = key
    elif index in (10, 13):  # poly / channel pressure
        raw = 0
    elif index == 14:  # pitch wheel at rest (its 14-bit range maps to 0..127 here)
        raw = 64
    elif index == 16:  # pitch wheel sensitivity (2 semitones)
        raw = 2
    else:
        raise SoundFontError(f"modulator source {oper:#06x} (general controller {index}) is not supported")
    if negative:
        raw = 127 - raw if kind in (1, 2) else raw
    x = raw / 128.0
    if kind == 0:  # linear
        v = 1.0 - x if negative else x
    elif kind == 1:  # concave
        v = _concave(raw)
    elif kind == 2:  # convex
        v = 1.0 - _concave(127 - raw)
    elif kind == 3:  # switch
        v = float(x >= 0.5)
        v = 1.0 - v if negative else v
    else:
        raise SoundFontError(f"modulator source type {kind} of {oper:#06x} is not supported")
    return 2.0 * v - 1.0 if bipolar else v


def _mod_value(ident, amount, trans, velocity, key) -> float:
    src, _, amt_src = ident
    if src & 0x7F == 0 and not (src >> 7) & 1:  # no primary source: the modulator contributes nothing
        return 0.0
    v = amount * _source(src, velocity, key) * (_source(amt_src, velocity, key) if amt_src else 1.0)
    return abs(v) if trans == 2 else v


# ---------------------------------------------------------------------------------------------
# Voice resolution


def find_preset(sf, bank=0, program=0):
    for i, rec in enumerate(sf["phdr"][:-1]):
        if rec[2] == bank and rec[1] == program:
            return i
    raise SoundFontError(f"no preset {program} in bank {bank}")


def resolve_voices(sf, preset_index, key, velocity):
    """Every voice a note of (key, velocity) starts: (sample id, generators, modulator sums).

    Generators hold the instrument's values plus the preset's (SoundFont 2.01 section 9.4);
    ``mods`` maps each generator a modulator targets to the sum of their outputs.
    """
    phdr, inst = sf["phdr"], sf["inst"]
    pz = _zones(sf["pbag"], sf["pgen"], sf["pmod"], phdr[preset_index][3], phdr[preset_index + 1][3])
    (pglob_g, pglob_m), plocal = _split_global(pz, G.instrument)
    voices = []
    for pg_local, pm_local in plocal:
        pg = {**pglob_g, **pg_local}
        if not _in(pg, key, velocity):
            continue
        pm = {**pglob_m, **pm_local}
        ii = pg[G.instrument]
        iz = _zones(sf["ibag"], sf["igen"], sf["imod"], inst[ii][1], inst[ii + 1][1])
        (iglob_g, iglob_m), ilocal = _split_global(iz, G.sampleID)
        for ig_local, im_local in ilocal:
            ig = {**iglob_g, **ig_local}
            if not _in(ig, key, velocity):
                continue
            gens = dict(DEFAULTS)
            gens.update({k: v for k, v in ig.items() if k not in RANGES})
            for k, v in pg.items():
                if k in RANGES or k in INSTRUMENT_ONLY or k == G.instrument:
                    continue
                gens[k] = gens.get(k, 0) + v
            mods = {**DEFAULT_MODS, **iglob_m, **im_local}
            for ident, (amount, trans) in pm.items():  # preset modulators add to identical ones
                if ident in mods:
                    mods[ident] = (mods[ident][0] + amount, mods[ident][1])
                else:
                    mods[ident] = (amount, trans)
            msum = {}
            for ident, (amount, trans) in mods.items():
                msum[ident[1]] = msum.get(ident[1], 0.0) + _mod_value(ident, amount, trans, velocity, key)
            voices.append((gens[G.sampleID], gens, msum))
    return voices


def _in(gens, key, velocity):
    klo, khi = gens.get(G.keyRange, (0, 127))
    vlo, vhi = gens.get(G.velRange, (0, 127))
    return klo <= key <= khi and vlo <= velocity <= vhi


def _seconds(tc: float) -> float:
    return 0.0 if tc <= -12000 else 2.0 ** (tc / 1200.0)


def _pan_mono(pan: float) -> float:
    """Mono gain of FluidSynth's pan law: ((left + right) / 2), sine law, -500..500."""
    pan = min(max(pan, -500.0), 500.0)
    left = math.sin((500.0 - pan) / 1000.0 * math.pi / 2)
    right = math.sin((500.0 + pan) / 1000.0 * math.pi / 2)
    return 0.5 * (left + right)


def voice_params(sf, sid, gens, msum, key):
    """A voice as the renderer (lmm_env.synth.grand) takes it: every unit converted."""
    g = lambda n: gens.get(n, 0) + msum.get(n, 0.0)  # noqa: E731
    for n in UNSUPPORTED:
        if g(n):
            raise SoundFontError(f"sample {sid}: generator {n} is set ({g(n)}); the renderer does not support it")
    for n in ADDRESS:
        if gens.get(n, 0):
            raise SoundFontError(f"sample {sid}: address offset generator {n} is set; not supported")
    sh = sf["shdr"][sid]
    root = gens[G.overridingRootKey] if gens[G.overridingRootKey] >= 0 else sh[6]
    if gens[G.keynum] >= 0 or gens[G.velocity] >= 0:
        raise SoundFontError(f"sample {sid}: keynum/velocity overrides are not supported")
    cents = (key - root) * gens[G.scaleTuning] + 100 * g(G.coarseTune) + g(G.fineTune) + sh[7]
    # FluidSynth scales the attenuation *generators* by 0.4 (as the EMU hardware did), not the
    # modulators' outputs (SoundFont 2.01 authors tuned their fonts so)
    atten_cb = 0.4 * gens.get(G.initialAttenuation, 0) + msum.get(G.initialAttenuation, 0.0)
    def env(prefix):
        hold = g(getattr(G, f"hold{prefix}")) + g(getattr(G, f"keynumTo{prefix}Hold")) * (60 - key)
        decay = g(getattr(G, f"decay{prefix}")) + g(getattr(G, f"keynumTo{prefix}Decay")) * (60 - key)
        sustain = min(max(g(getattr(G, f"sustain{prefix}")), 0.0), 1000.0)
        return dict(delay=_seconds(g(getattr(G, f"delay{prefix}"))), attack=_seconds(g(getattr(G, f"attack{prefix}"))),
                    hold=_seconds(hold), decay=_seconds(decay), sustain=1.0 - sustain / 1000.0)
    return dict(sample=sid, cents=float(cents), attenuation_cb=float(atten_cb), pan=float(g(G.pan)),
                loop=int(gens.get(G.sampleModes, 0)) in (1, 3), vol_env=env("VolEnv"), mod_env=env("ModEnv"),
                filter_fc_cents=float(g(G.initialFilterFc)), filter_q_cb=float(g(G.initialFilterQ)),
                mod_env_to_fc_cents=float(g(G.modEnvToFilterFc)), release_s=_seconds(g(G.releaseVolEnv)))


# ---------------------------------------------------------------------------------------------
# Samples


def decode_sample(sf, sid) -> np.ndarray:
    """One sample's audio, float64 in [-1, 1] (SF3: an Ogg Vorbis stream; SF2: 16-bit PCM)."""
    import soundfile

    name, start, end, _, _, rate, _, _, _, kind = sf["shdr"][sid]
    off = sf["smpl"][0]
    if kind & 0x10:  # SF3: start/end are byte offsets of a compressed stream
        data, r = soundfile.read(io.BytesIO(sf["buf"][off + start:off + end]), dtype="float64")
        if r != rate:
            raise SoundFontError(f"sample {_cstr(name)!r}: stream rate {r} != header rate {rate}")
        return data if data.ndim == 1 else data.mean(axis=1)
    pcm = np.frombuffer(sf["buf"], dtype="<i2", count=end - start, offset=off + 2 * start)
    return pcm.astype(np.float64) / 32768.0


def sample_loop(sf, sid):
    """(loop start, loop end) in samples from the sample's first (SF3 stores them relative)."""
    _, start, _, ls, le, *_, kind = sf["shdr"][sid]
    return (ls, le) if kind & 0x10 else (ls - start, le - start)


def resample_to_loop(x: np.ndarray, rate: float, ls: int | None, le: int | None, target: float = STORE_RATE,
                     half_width: int = 24, beta: float = 8.6):
    """``x`` (rate Hz) resampled to about ``target`` Hz, with the loop on whole output samples.

    Returns (y, out_rate, out_ls, out_le). Output sample n is input position t0 + n / a,
    a = out_rate / rate: a is nudged from target / rate so that the loop holds a whole number
    of output samples, t0 (< 1 / a input samples) so that the loop starts on one. Band-limited
    (Kaiser-windowed sinc, cutoff 0.95 x the output Nyquist). Looped samples end at the loop end.
    """
    a = target / rate
    t0 = 0.0
    if ls is not None:
        n_loop = max(1, round((le - ls) * a))
        a = n_loop / (le - ls)
        m = math.floor(ls * a)
        t0 = ls - m / a
        n_out = m + n_loop
    else:
        n_out = math.ceil((len(x) - t0) * a)
    fc = 0.95 * min(1.0, a) / 2.0  # cycles per input sample
    w = int(math.ceil(half_width / min(1.0, a)))  # half-width in input samples
    pad = np.concatenate([np.zeros(w), x, np.zeros(w + 2)])
    y = np.empty(n_out)
    for c in range(0, n_out, 4096):
        t = t0 + np.arange(c, min(c + 4096, n_out)) / a
        base = np.floor(t).astype(np.int64)
        offs = np.arange(-w + 1, w + 1)
        idx = base[:, None] + offs[None, :]
        d = t[:, None] - idx
        win = np.i0(beta * np.sqrt(np.clip(1.0 - (d / w) ** 2, 0.0, None))) / np.i0(beta)
        h = 2 * fc * np.sinc(2 * fc * d) * win
        y[c:c + len(t)] = np.sum(h * pad[idx + w], axis=1)
    out_rate = rate * a
    if ls is None:
        return y, out_rate, None, None
    return y, out_rate, m, m + n_loop


_VOICE_SHARED = ("cents", "attenuation_cb", "loop", "vol_env", "mod_env", "filter_fc_cents", "filter_q_cb",
                 "mod_env_to_fc_cents", "release_s")


def note_voices(sf, preset, key, velocity):
    """The voices of one note, left/right sample pairs merged: [(sample key, params)].

    A sample key is a tuple of (sample id, mono pan gain) pairs: the stored sample is their
    sum, so the voice itself plays at gain 1. Two voices merge when they differ only in
    sample and pan and their samples share root key, rate and loop (a stereo pair: this
    SF3 leaves its sampleLink fields at 0, so the pairs are found this way). The merge is
    exact: everything after the sample (pitch, filter, envelopes) is linear and the same.
    """
    voices = [voice_params(sf, sid, g, ms, key) for sid, g, ms in resolve_voices(sf, preset, key, velocity)]
    out, used = [], set()
    shdr = sf["shdr"]
    for i, v in enumerate(voices):
        if i in used:
            continue
        part = [(v["sample"], round(_pan_mono(v["pan"]), 6))]
        for j in range(i + 1, len(voices)):
            w = voices[j]
            if j in used or w["sample"] == v["sample"] or any(w[k] != v[k] for k in _VOICE_SHARED):
                continue
            a, b = shdr[v["sample"]], shdr[w["sample"]]
            if sample_loop(sf, v["sample"]) != sample_loop(sf, w["sample"]) or a[5:8] != b[5:8]:
                continue
            part.append((w["sample"], round(_pan_mono(w["pan"]), 6)))
            used.add(j)
            break
        used.add(i)
        out.append((tuple(sorted(part)), {k: v[k] for k in _VOICE_SHARED}))
    return out


RUMBLE_MAX_HZ = 200.0


def rumble_cutoff(root_key: int) -> float:
    """High-pass cutoff of a sample recorded at ``root_key``: an octave below the lowest key it
    plays (zones reach about 3 keys below their root), at most RUMBLE_MAX_HZ."""
    return min(0.5 * 440.0 * 2.0 ** ((root_key - 3 - 69) / 12.0), RUMBLE_MAX_HZ)


def remove_rumble(x: np.ndarray, rate: float, root_key: int) -> np.ndarray:
    """``x`` without the room rumble and DC drift below its string's range.

    The recordings carry low-frequency noise (mostly under 160 Hz, some of it DC drift) that
    outlasts the top notes' partials: after half a second it holds most of B6's energy, and
    an ear reads it as the lowest keys. A 2nd-order Butterworth high-pass, run forward and
    backward (zero phase: the attack is neither delayed nor smeared), at `rumble_cutoff`:
    an octave under the lowest fundamental the sample plays, so partials lose < 0.6 dB.
    """
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, rumble_cutoff(root_key), btype="highpass", fs=rate, output="sos")
    return sosfiltfilt(sos, x)


def build_samples(sf, sample_keys):
    """{sample key: (int16 data, meta)}: each merged mono sample resampled and quantized."""
    out = {}
    for n, skey in enumerate(sorted(sample_keys)):
        parts = [(decode_sample(sf, sid), gain) for sid, gain in skey]
        sid0 = skey[0][0]
        ls, le = sample_loop(sf, sid0)
        rate = sf["shdr"][sid0][5]
        length = max(len(x) for x, _ in parts)
        mono = np.zeros(length)
        for x, gain in parts:
            mono[: len(x)] += gain * x
        looped = 0 < ls < le <= length
        if looped:
            mono = mono[:le]
        mono = remove_rumble(mono, rate, int(sf["shdr"][sid0][6]))
        y, out_rate, ols, ole = resample_to_loop(mono, rate, ls if looped else None, le if looped else None)
        peak = float(np.abs(y).max()) or 1.0
        q = np.round(y / peak * 32767.0).astype(np.int16)
        names = [_cstr(sf["shdr"][sid][0]) for sid, _ in skey]
        meta = dict(name=os.path.commonprefix(names).rstrip("(").strip() or names[0], sources=names,
                    rate=out_rate, length=len(q), loop_start=ols, loop_end=ole, scale=peak / 32767.0,
                    root_key=int(sf["shdr"][sid0][6]))
        out[skey] = (q, meta)
        print(f"  sample {n + 1}/{len(sample_keys)} {meta['name']}: {len(q) / out_rate:.2f} s", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------
# Source package


def fetch_deb(workdir: Path) -> Path:
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download {PACKAGE} made no .deb in {workdir}")
    return debs[-1]


def unpack_deb(deb: Path, workdir: Path) -> dict:
    root = workdir / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Homepage"], check=True,
                            capture_output=True, text=True).stdout
    info = dict(line.split(": ", 1) for line in fields.strip().splitlines())
    sounds = root / "usr/share/sounds"
    sfs = sorted(glob.glob(str(sounds / "sf3/*.sf3")) + glob.glob(str(sounds / "sf2/*.sf2")))
    if not sfs:
        raise SystemExit(f"{deb} holds no .sf3/.sf2 under usr/share/sounds")
    copyright_ = root / "usr/share/doc" / info["Package"] / "copyright"
    return dict(package=info["Package"], version=info["Version"], homepage=info.get("Homepage", ""),
                deb=deb.name, deb_sha256=hashlib.sha256(deb.read_bytes()).hexdigest(), soundfont=Path(sfs[0]),
                copyright=copyright_.read_text(encoding="utf-8") if copyright_.is_file() else None)


# ---------------------------------------------------------------------------------------------
# Fitting the two-layer velocity blend

FIT_RATE = 16000
FIT_SECONDS = 1.5
FIT_KEYS = tuple(range(21, 109, 3))  # 21, 24, ..., 108
SOFT_CANDIDATES = (8, 12, 16, 20, 24, 32, 48)
LOUD_CANDIDATES = (96, 107, 108, 118, 127)
MIX_GRID = np.linspace(0.0, 1.0, 51)


def _stft(x, n_fft=1024, hop=256):
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, n_fft)), n_fft)[::hop][: len(x) // hop]
    return np.fft.rfft(frames * np.hanning(n_fft), axis=-1)


@functools.lru_cache(maxsize=1)
def _mel(n_fft=1024, n_mels=64, sr=FIT_RATE, fmax=7600.0):
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=27.5, fmax=fmax)


def _logmel(S, floor):
    return np.log(np.maximum(np.abs(S) ** 2 @ _mel().T, floor))


def fit_velocity_curves(bank, notes, sample_index, keys=FIT_KEYS, soft_candidates=SOFT_CANDIDATES,
                        loud_candidates=LOUD_CANDIDATES):
    """The two table layers and the velocity blend closest to the SoundFont's own notes.

    For a pair of layer velocities (v_s, v_l), each key's rows are its notes T_s, T_l at
    those velocities, and a note of velocity v is approximated by g * ((1 - w) T_s + w T_l).
    Per v, (w, g) minimize the squared error of log-mel power (64 bands to 7.6 kHz, 64 ms
    frames, the first FIT_SECONDS, FIT_KEYS) against the note the SoundFont plays at v: g in
    closed form, w on a grid. The pair with the least error summed over every velocity the
    SoundFont plays wins. Returns (v_s, v_l, {v: (g, w)}, {(v_s, v_l): mean error}).
    """
    from lmm_env.synth.grand import render_note

    n = int(FIT_SECONDS * FIT_RATE)

    def render(key, v):
        return render_note(bank, [dict(p, sample=sample_index[s]) for s, p in notes[key, v]], FIT_RATE, n)

    played = [v for v in VELOCITIES if all(notes[k, v] for k in keys)]
    rows = {v: {k: _stft(render(k, v)).astype(np.complex64) for k in keys} for v in soft_candidates + loud_candidates}
    top = max(loud_candidates)
    floors = {k: 1e-7 * np.max(np.abs(rows[top][k]) ** 2 @ _mel().T) for k in keys}
    target = {}
    for v in played:
        target[v] = np.concatenate([_logmel(rows[v][k] if v in rows else _stft(render(k, v)), floors[k]).ravel()
                                    for k in keys])
    table, best = {}, None
    for vs in soft_candidates:
        for vl in loud_candidates:
            mixes = [np.concatenate([_logmel((1 - w) * rows[vs][k] + w * rows[vl][k], floors[k]).ravel() for k in keys])
                     for w in MIX_GRID]
            total, fit = 0.0, {}
            for v in played:
                errs = [(float(np.var(target[v] - mix)), float(np.mean(target[v] - mix))) for mix in mixes]
                i = int(np.argmin([e for e, _ in errs]))
                total += errs[i][0]
                fit[v] = (math.exp(errs[i][1] / 2.0), float(MIX_GRID[i]))
            table[vs, vl] = total / len(played)
            print(f"  layers at velocities {vs} and {vl}: mean log-mel error {table[vs, vl]:.4f}", file=sys.stderr)
            if best is None or total < best[0]:
                best = (total, vs, vl, fit)
    return best[1], best[2], best[3], table


# ---------------------------------------------------------------------------------------------
# Main

DAMPER_RELEASE_SECONDS = 2.0  # a key whose SoundFont release (at velocity 64) is longer has no damper


def _rms_db(x):
    return 10.0 * math.log10(float(np.mean(np.square(x))) + 1e-20)


def master_gain(bank, layers, soft, loud, velocity=100, seconds=1.0, sr=FIT_RATE):
    """Gain that gives the grand the built-in piano's mean loudness (dB RMS over ``seconds``, every key) at
    ``velocity``: the grand's note there is its two-layer blend, ``soft[v] T_s + loud[v] T_l``."""
    from lmm_env.synth import model
    from lmm_env.synth.grand import render_note

    n = int(seconds * sr)
    tables = model.build_tables(sr, 3.0)
    p_soft, p_bright = model.layer_gains(np.float32(velocity))
    diffs = []
    for i in range(len(KEYS)):
        piano = p_soft * tables[0, i, :n] + p_bright * tables[1, i, :n]
        grand = (soft[velocity] * render_note(bank, layers[0]["keys"][i], sr, n)
                 + loud[velocity] * render_note(bank, layers[1]["keys"][i], sr, n))
        diffs.append(_rms_db(piano) - _rms_db(grand))
    return 10.0 ** (float(np.mean(diffs)) / 20.0)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deb", help=f"a downloaded {PACKAGE} .deb (default: apt-get download it)")
    ap.add_argument("--sf", help="a .sf3/.sf2 file instead of a .deb (no licence file is copied)")
    ap.add_argument("--out", default=str(OUT), help="output folder (default: %(default)s)")
    ap.add_argument("--soft-velocity", type=int, help="force the soft layer's velocity (default: fitted)")
    ap.add_argument("--loud-velocity", type=int, help="force the loud layer's velocity (default: fitted)")
    args = ap.parse_args(argv)
    import soundfile

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.sf:
            src = dict(package=None, version=None, homepage="", deb=None, deb_sha256=None,
                       soundfont=Path(args.sf), copyright=None)
        else:
            src = unpack_deb(Path(args.deb) if args.deb else fetch_deb(tmp), tmp)
        print(f"reading {src['soundfont']}", file=sys.stderr)
        sf = read_soundfont(src["soundfont"])
        preset = find_preset(sf, 0, 0)
        notes = {(k, v): note_voices(sf, preset, k, v) for k in KEYS for v in VELOCITIES}
        skeys = sorted({s for vs in notes.values() for s, _ in vs})
        print(f"preset {_cstr(sf['phdr'][preset][0])!r}: {len(skeys)} mono samples from "
              f"{len({sid for s in skeys for sid, _ in s})} SoundFont samples", file=sys.stderr)
        samples = build_samples(sf, skeys)
        sample_index = {s: i for i, s in enumerate(skeys)}
        metas, offset = [], 0
        for s in skeys:
            q, meta = samples[s]
            metas.append(dict(meta, offset=offset))
            offset += len(q)
        for name in ("samples.flac", "zones.json", "LICENSE", "PROVENANCE.md"):
            (out / name).unlink(missing_ok=True)
        soundfile.write(str(out / "samples.flac"), np.concatenate([samples[s][0] for s in skeys]), STORE_RATE,
                        subtype="PCM_16", format="FLAC")
        dampers = [max(p["release_s"] for _, p in notes[k, 64]) < DAMPER_RELEASE_SECONDS for k in KEYS]
        zones = dict(format=1, name="Grand Piano (MuseScore General, Splendid Grand)", samples=metas, dampers=dampers,
                     velocity_gains=dict(soft=[0.0] * 128, loud=[0.0] * 128), layers=[])
        write_json(out / "zones.json", zones)
        from lmm_env.synth.grand import Bank

        print("fitting the velocity blend", file=sys.stderr)
        v_soft, v_loud, fit, table = fit_velocity_curves(
            Bank(out), notes, sample_index,
            soft_candidates=(args.soft_velocity,) if args.soft_velocity else SOFT_CANDIDATES,
            loud_candidates=(args.loud_velocity,) if args.loud_velocity else LOUD_CANDIDATES)
        soft, loud = [0.0] * 128, [0.0] * 128
        first = min(fit)
        for v in range(1, 128):  # below the SoundFont's lowest velocity: its quietest blend, scaled down
            g, w = fit[v] if v in fit else (fit[first][0] * v / first, fit[first][1])
            soft[v], loud[v] = g * (1.0 - w), g * w
        # ship only the samples the two layers play
        layer_notes = [(name, v, [notes[k, v] for k in KEYS]) for name, v in (("soft", v_soft), ("loud", v_loud))]
        kept = sorted({s for _, _, per_key in layer_notes for voices in per_key for s, _ in voices})
        index = {s: i for i, s in enumerate(kept)}
        metas, offset = [], 0
        for s in kept:
            metas.append(dict(samples[s][1], offset=offset))
            offset += len(samples[s][0])
        soundfile.write(str(out / "samples.flac"), np.concatenate([samples[s][0] for s in kept]), STORE_RATE,
                        subtype="PCM_16", format="FLAC")
        layers = [dict(name=name, velocity=v, keys=[[dict({k: p[k] for k in p if k != "release_s"}, sample=index[s])
                                                     for s, p in voices] for voices in per_key])
                  for name, v, per_key in layer_notes]
        zones.update(samples=metas, layers=layers)
        write_json(out / "zones.json", zones)
        master = master_gain(Bank(out), layers, soft, loud)
        soft = [master * g for g in soft]
        loud = [master * g for g in loud]
        zones.update(velocity_gains=dict(soft=soft, loud=loud),
                     fit=dict(keys=list(FIT_KEYS), seconds=FIT_SECONDS, sample_rate=FIT_RATE,
                              mean_logmel_error={f"{a},{b}": e for (a, b), e in table.items()},
                              soft_velocity=v_soft, loud_velocity=v_loud, master_gain=master,
                              mix={str(v): fit[v][1] for v in sorted(fit)}),
                     source=dict(package=src["package"], version=src["version"], deb=src["deb"],
                                 deb_sha256=src["deb_sha256"], soundfont=src["soundfont"].name,
                                 soundfont_name=sf["info"].get("INAM", ""), preset=_cstr(sf["phdr"][preset][0]),
                                 bank=0, program=0))
        write_json(out / "zones.json", zones)
        if src["copyright"]:
            (out / "LICENSE").write_text(src["copyright"], encoding="utf-8")
        write_provenance(out / "PROVENANCE.md", src, sf, preset, kept, metas, zones)
    total = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({total / 1e6:.1f} MB)", file=sys.stderr)
    return 0


def write_provenance(path: Path, src, sf, preset, kept, metas, zones) -> None:
    seconds = sum(m["length"] / m["rate"] for m in metas)
    sources = sorted({name for m in metas for name in m["sources"]})
    recordings = sorted({" ".join(name.split()[:2]) for name in sources})
    all_names = sorted({_cstr(sf["shdr"][sid][0]) for sid in range(len(sf["shdr"]) - 1)
                        if any(_cstr(sf["shdr"][sid][0]).startswith(r) for r in ("Piano MF", "Piano FF"))})
    fit = zones["fit"]
    layers = " and ".join(f"velocity {ly['velocity']} ({ly['name']})" for ly in zones["layers"])
    undamped = [21 + i for i, d in enumerate(zones["dampers"]) if not d]
    errs = fit["mean_logmel_error"]
    soft_c = sorted({int(k.split(",")[0]) for k in errs})
    loud_c = sorted({int(k.split(",")[1]) for k in errs})
    grid = ["| soft \\ loud | " + " | ".join(str(v) for v in loud_c) + " |", "|---" * (len(loud_c) + 1) + "|"]
    grid += [f"| {a} | " + " | ".join(f"{errs[f'{a},{b}']:.3f}" for b in loud_c) + " |" for a in soft_c]
    lines = [
        "# Provenance of the grand piano",
        "",
        "Made by `scripts/make_grand_piano.py`, from the repository root:",
        "",
        "    .venv/bin/python scripts/make_grand_piano.py",
        "",
        "(it runs `apt-get download " + PACKAGE + "` and `dpkg-deb -x`; `--deb PATH` takes a downloaded .deb).",
        "",
        "## Source",
        "",
        (f"* Debian package `{src['package']}` version `{src['version']}` (`{src['deb']}`, sha256 "
         f"`{src['deb_sha256']}`), Debian bookworm main; homepage {src['homepage']}.") if src["package"] else
        f"* SoundFont file `{src['soundfont'].name}` (no Debian package given).",
        "* Upstream: MuseScore General v0.2.1 by S. Christian Collins, https://musescore.org/en/node/269869 "
        "(`LICENSE`, Debian's copyright file, names the archive the package was made from).",
        f"* SoundFont `{src['soundfont'].name}`: \"{sf['info'].get('INAM', '')}\", SoundFont {sf['info']['ifil']}.",
        f"* Preset bank 0, program 0, \"{_cstr(sf['phdr'][preset][0])}\": the \"Splendid Grand\" samples for the "
        "AKAI S5000 (a Steinway Model D, close-miked; public domain, edited by S. Christian Collins), programmed "
        "by MuseScore General (MIT).",
        "",
        "## What was kept",
        "",
        f"* The preset has two recordings per sampled key, {len(all_names)} samples in all "
        "(\"Piano MF\" and \"Piano FF\", each a left/right pair). The grand's tables are that preset's notes at "
        f"two velocities, {layers}, chosen by the fit below; the samples those notes play are kept: "
        f"{len(sources)} samples ({', '.join(recordings)}), each left/right pair mixed to mono with its voices' pan "
        f"gains: {len(metas)} mono samples, {seconds:.0f} s of audio.",
        "* Each sample cut at its loop end (a looped sample never plays past it) and resampled from 44.1 kHz to "
        f"about {STORE_RATE} Hz (Kaiser-windowed sinc, cutoff 0.95 x Nyquist); each sample's rate is nudged (a "
        "few parts in 10^5 at most; the exact value is in zones.json) so that its loop holds a whole number of "
        "samples. 22.05 kHz covers the world's default 16 kHz and keeps the piano up to 10.5 kHz at higher rates.",
        "* Cleaned of the room rumble and DC drift under each string's range (the recordings' noise floor, "
        "mostly under 160 Hz, outlasts the top notes' partials; an ear read it as the lowest keys): a 2nd-order "
        f"Butterworth high-pass run forward and backward (zero phase), an octave under the lowest key the sample "
        f"plays, at most {RUMBLE_MAX_HZ:g} Hz (partials lose < 0.6 dB).",
        "* Stored peak-normalized as 16-bit FLAC (`samples.flac`, one stream; offsets, lengths, rates, loops and "
        "scales in `zones.json`).",
        "* `zones.json`: for every key and both velocities, the voices the preset starts, resolved from its "
        "generators and modulators (SoundFont 2.01 rules with FluidSynth's conventions: attenuation generators "
        "x 0.4, default modulators): tuning, attenuation, volume and modulation envelopes, low-pass filter; the "
        "velocity gain curves; the damper of every key.",
        (f"* Keys without a damper (the SoundFont's release there is longer than {DAMPER_RELEASE_SECONDS:g} s, as "
         f"on a grand's top strings): MIDI {undamped[0]}..{undamped[-1]}.")
        if undamped else "* Every key has a damper.",
        "* Not kept: every other preset and sample, reverb and chorus sends, release envelopes (the world's damper "
        "stops a released key), the stereo image.",
        "",
        "## The velocity fit",
        "",
        "The player blends two rows per key, `soft(v) T_soft + loud(v) T_loud`. For each pair of row velocities "
        "the script fits, at every velocity v the SoundFont plays (3..127), the blend closest to the SoundFont's "
        f"own note at v: squared error of log-mel power (64 bands, {fit['seconds']:g} s, keys 21, 24, ..., 108, "
        f"{fit['sample_rate']} Hz). Mean error per velocity (natural log of power, squared); the least wins:",
        "",
        *grid,
        "",
        f"Chosen: {fit['soft_velocity']} and {fit['loud_velocity']}. Master gain {fit['master_gain']:.3f}: the "
        "grand's mean RMS over the first second at velocity 100 equals the built-in piano's.",
        "",
        "## Licence",
        "",
        "`LICENSE` is Debian's copyright file of the package, verbatim: MuseScore General is MIT licensed (parts "
        "public domain or CC0); the piano samples are public domain.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
