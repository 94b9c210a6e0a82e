"""A note transcriber learned from the world's own pianos, adapted to a new instrument from K pairs.

`NoteTranscriber` turns a recording into notes (pitch, onset, offset, velocity): a small
conv net (~20k parameters) over a log-frequency spectrogram (3 bins a semitone over the 88
keys, 100 frames a second) with the 2nd-5th harmonics stacked as channels, so a key's
partials sit in one column; three heads per key and frame give onset, sounding (frame) and
velocity. Notes are read off onset peaks (sub-frame time by parabolic interpolation), held
while the frame head stays on. The onset threshold is the one `adapt` calibrates on the K
pairs, except for a melody (`texture`), read at `MELODY_THRESHOLD`.

Why this shape (issue 24): the agent can make unlimited pairs of its *own* world, since every
world synth renders any score it plays, so the net is pretrained on the package's pianos
(`pretrain`: the built-in piano and the sampled grand, random pieces of the train splits,
random transposition, loudness, spectral colour and room), and the K protocol pairs of a new
instrument only have to close the timbre gap (`adapt`: a few hundred fine-tuning steps, half
the batches still from the world so the net does not forget). Nothing here reads a test
split. The shipped weights (``lmm_env/lm/weights/transcriber.safetensors``) are retrained by
``python -m lmm_env.lm.transcriber --help``.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmm_env._checks import short_repr

SAMPLE_RATE = 16000
N_FFT = 2048
HOP = 160
FRAME_RATE = SAMPLE_RATE / HOP  # 100 frames a second
BINS_PER_SEMITONE = 3
LOWEST = 21
N_BINS = 88 * BINS_PER_SEMITONE
HARMONICS = (0.5, 1, 2, 3, 4, 5, 6)  # the sub-octave lets a key see the note whose 2nd partial it may be
WEIGHTS = Path(__file__).with_name("weights") / "transcriber.safetensors"


def _log_filterbank() -> torch.Tensor:
    """(N_BINS, N_FFT/2+1) triangular weights: 3 bins a semitone from A0 to C8, each summing to 1."""
    freqs = np.arange(N_FFT // 2 + 1) * SAMPLE_RATE / N_FFT
    centers = 440 * 2 ** ((LOWEST + (np.arange(N_BINS) - (BINS_PER_SEMITONE - 1) / 2) / BINS_PER_SEMITONE - 69) / 12)
    w = np.clip(1 - np.abs(np.log2(np.maximum(freqs, 1e-3)[None] / centers[:, None])) * 12 * BINS_PER_SEMITONE,
                0, None)
    empty = w.sum(1) == 0  # the lowest bins are narrower than an FFT bin: take the nearest one
    w[empty, np.argmin(np.abs(freqs[None] - centers[empty, None]), axis=1)] = 1
    return torch.from_numpy((w / w.sum(1, keepdims=True)).astype(np.float32))


_FILTERS = _log_filterbank()
_WINDOW = torch.hann_window(N_FFT)
_SHIFTS = [int(round(12 * BINS_PER_SEMITONE * math.log2(h))) for h in HARMONICS]


def features(audio, colour: torch.Tensor | None = None) -> torch.Tensor:
    """(B, samples) audio at 16 kHz -> (B, 5, frames, N_BINS): per-clip normalized log spectra, harmonics stacked.

    ``colour``: optional (B, N_BINS) log-gain curves applied before the log (training augmentation)."""
    x = torch.as_tensor(audio, dtype=torch.float32)
    mag = torch.stft(x, N_FFT, HOP, window=_WINDOW, center=True, return_complex=True).abs()
    spec = torch.einsum("nf,bft->btn", _FILTERS, mag)
    if colour is not None:
        spec = spec * torch.exp(colour)[:, None, :]
    spec = torch.log1p(100 * spec / (spec.amax(dim=(1, 2), keepdim=True) + 1e-6))
    spec = (spec - spec.mean(dim=(1, 2), keepdim=True)) / (spec.std(dim=(1, 2), keepdim=True) + 1e-5)
    return torch.stack([F.pad(spec[..., s:], (0, s)) if s >= 0 else F.pad(spec[..., :s], (-s, 0)) for s in _SHIFTS], 1)


class NoteNet(nn.Module):
    """Harmonic-stacked spectrogram -> (onset, frame, velocity) logits, each (B, frames, 88)."""

    def __init__(self, channels: int = 16, dilations: tuple = (1, 2, 4, 8)):
        super().__init__()
        c = int(channels)
        self.channels, self.dilations = c, tuple(int(d) for d in dilations)
        self.bins1 = nn.Conv2d(len(HARMONICS), c, 3, padding=1)
        self.bins2 = nn.Conv2d(c, c, 3, padding=1)
        self.keys = nn.Conv2d(c, c, (1, BINS_PER_SEMITONE), stride=(1, BINS_PER_SEMITONE))
        self.time = nn.ModuleList(nn.Conv2d(c, c, 3, padding=(d, 1), dilation=(d, 1)) for d in self.dilations)
        self.head = nn.Conv2d(c, 3, 1)

    def forward(self, f: torch.Tensor):
        h = F.relu(self.bins1(f))
        h = F.relu(self.bins2(h))
        h = F.relu(self.keys(h))
        for conv in self.time:  # residual: context grows to +-(1+2+4+8) frames without losing the onset's sharpness
            h = h + F.relu(conv(h))
        out = self.head(h)
        return out[:, 0], out[:, 1], out[:, 2]


def targets(score, n_frames: int, start: float = 0.0):
    """(onset, frame, velocity) float32 rolls (n_frames, 88) of the notes ``score`` sounds (its pedal applied),
    from ``start`` seconds on: a note struck before ``start`` and still sounding is marked held, not struck."""
    on = np.zeros((n_frames, 88), np.float32)
    fr = np.zeros((n_frames, 88), np.float32)
    vel = np.zeros((n_frames, 88), np.float32)
    s = score.sustained()
    for p, a, b, v in zip(s.pitches, s.onsets - start, s.offsets - start, s.velocities):
        k = int(p) - LOWEST
        i = int(round(a * FRAME_RATE))
        j = max(i + 1, int(round(b * FRAME_RATE)))
        if not 0 <= k < 88 or i >= n_frames or j <= 0:
            continue
        if i >= 0:
            on[i, k] = 1
            vel[i, k] = v / 127
        fr[max(i, 0):min(j, n_frames), k] = 1
    return on, fr, vel


def loss(net: NoteNet, audio, rolls, colour=None, onset_weight: float = 3.0) -> torch.Tensor:
    """Onset BCE (targets softened to the neighbouring frames, positives weighted ``onset_weight``), frame BCE and
    velocity MSE at onsets."""
    on_l, fr_l, vel_l = net(features(audio, colour))
    on, fr, vel = (torch.from_numpy(np.ascontiguousarray(x)) for x in rolls)
    T = min(on_l.shape[1], on.shape[1])
    on_l, fr_l, vel_l, on, fr, vel = (x[:, :T] for x in (on_l, fr_l, vel_l, on, fr, vel))
    near = 0.5 * (F.pad(on[:, 1:], (0, 0, 0, 1)) + F.pad(on[:, :-1], (0, 0, 1, 0)))
    soft = torch.maximum(on, 0.5 * near.clamp(max=1))
    lo = F.binary_cross_entropy_with_logits(on_l, soft, pos_weight=torch.tensor(float(onset_weight)))
    lf = F.binary_cross_entropy_with_logits(fr_l, fr)
    lv = ((torch.sigmoid(vel_l) - vel) ** 2 * on).sum() / on.sum().clamp(min=1)
    return lo + lf + lv


def decode(on: np.ndarray, fr: np.ndarray, vel: np.ndarray, threshold: float = 0.5, name: str = ""):
    """Notes from (frames, 88) onset / frame / velocity probabilities: onset peaks >= ``threshold``."""
    from lmm_env.score import Score

    T = on.shape[0]
    prev = np.vstack([np.zeros((1, 88), on.dtype), on[:-1]])
    nxt = np.vstack([on[1:], np.zeros((1, 88), on.dtype)])
    peak = (on >= threshold) & (on >= prev) & (on > nxt)
    notes = []
    for t, k in zip(*np.nonzero(peak)):
        y0, y1, y2 = prev[t, k], on[t, k], nxt[t, k]
        d = float(np.clip(0.5 * (y0 - y2) / (y0 - 2 * y1 + y2 - 1e-9), -0.5, 0.5))  # parabolic sub-frame peak
        e = t + 1
        while e < T and fr[e, k] >= 0.5 and not peak[e, k]:
            e += 1
        notes.append((int(k) + LOWEST, max(0.0, (t + d) / FRAME_RATE), max(e, t + 2) / FRAME_RATE,
                      int(np.clip(round(float(vel[t, k]) * 127), 1, 127))))
    if not notes:
        return Score([], [], [], name=name)
    p, a, b, v = zip(*notes)
    return Score(p, a, b, v, name=name)


# ---------------------------------------------------------------------------------------------
# Training data: windows of the world's pianos and of K pairs, with colour / room / level variety

class _Variety:
    """Random spectral colour, room and level: the timbre variety the world's pianos lack."""

    def __init__(self, rng: np.random.Generator, rooms: float = 0.3, n_irs: int = 24):
        from lmm_env.synth.room import synthetic_ir

        self.rng, self.rooms = rng, float(rooms)
        self.irs = [synthetic_ir(float(rng.uniform(0.2, 2.0)), float(rng.uniform(-4, 12)), SAMPLE_RATE, seed=i)
                    for i in range(n_irs)] if rooms > 0 else []

    def audio(self, a: np.ndarray) -> np.ndarray:
        from scipy.signal import fftconvolve

        rng = self.rng
        if self.irs and rng.random() < self.rooms:
            a = fftconvolve(a, self.irs[rng.integers(len(self.irs))])[:len(a)]
        a = a * 10 ** (rng.uniform(-12, 6) / 20) / (np.abs(a).max() + 1e-6) * 0.3
        return (a + rng.normal(0, 10 ** (rng.uniform(-5, -3.5)), len(a))).astype(np.float32)

    def colour(self, batch: int) -> torch.Tensor:
        x = np.linspace(0, 1, N_BINS)
        rng = self.rng
        c = rng.uniform(-1, 1, (batch, 1)) * (x - 0.5)  # tilt, +-0.5 e-folds across the keyboard
        for j in (1, 2, 3):
            c = c + rng.uniform(-0.3, 0.3, (batch, 1)) * np.cos(2 * np.pi * j * x + rng.uniform(0, 2 * np.pi, (batch, 1)))
        return torch.from_numpy(c.astype(np.float32))


def _world_batch(pool, synths, batch, seconds, rng, variety):
    from lmm_env.score import Score

    n = int(seconds * SAMPLE_RATE)
    T = n // HOP + 1
    A, R = [], []
    for _ in range(batch):
        piece = pool[rng.integers(len(pool))]
        synth = synths[rng.integers(len(synths))]
        start = float(rng.uniform(0, max(0.0, piece.duration - seconds)))
        s = piece.trim(start, start + seconds + 0.5) if piece.duration > seconds else piece
        shift = int(rng.integers(-5, 6))
        s = Score(np.clip(s.pitches + shift, 21, 108), s.onsets, s.offsets,
                  np.clip(np.round(s.velocities * rng.uniform(0.6, 1.3)), 1, 127), pedal=s.pedal)
        a = synth.render(s, tail=0.5)[:n]
        A.append(variety.audio(np.pad(a, (0, n - len(a)))))
        R.append(targets(s, T))
    return np.stack(A), [np.stack(x) for x in zip(*R)]


ADAPT_STEPS = 500  # fine-tuning steps of `adapt` (and of `transcriber_for`)
HELD_OUT = 0.25  # the last quarter of each pair's clip: never trained on, it calibrates the onset threshold


def _pair_batch(prs, batch, seconds, rng, variety):
    n = int(seconds * SAMPLE_RATE)
    T = n // HOP + 1
    A, R = [], []
    for _ in range(batch):
        p = prs[rng.integers(len(prs))]
        usable = (1 - HELD_OUT) * len(p.audio) / p.sample_rate  # windows end before the held-out quarter
        start = float(rng.uniform(0, max(0.0, usable - seconds)))
        n_here = min(n, int((usable - start) * SAMPLE_RATE))
        i = int(start * SAMPLE_RATE)
        a = np.asarray(p.audio[i:i + n_here], np.float32)
        A.append(variety.audio(np.pad(a, (0, n - len(a)))))
        # a cut recording: what sounds across the cut was struck before it (held, not an onset)
        on, fr, vel = targets(p.score, T, start=i / SAMPLE_RATE)
        fr[n_here // HOP + 1:] = 0
        on[n_here // HOP + 1:] = 0
        R.append((on, fr, vel))
    return np.stack(A), [np.stack(x) for x in zip(*R)]


def training_pool(split: str = "train"):
    """The scores pretraining reads: the train splits of the `piano`, folk and Bach corpora."""
    from lmm_env import corpus

    return [s for c in ("piano", "folk", "bach-chorales") for s in corpus.load(c, split)]


def validation_clips(instrument="soundfont", n: int = 6, seconds: float = 20.0):
    """(audio, sounding notes) of the first ``n`` validation pieces of `piano` and folk, rendered by ``instrument``."""
    from lmm_env import corpus
    from lmm_env.metrics import playable_notes
    from lmm_env.synth import make_synth

    synth = make_synth(instrument, SAMPLE_RATE)
    out = {}
    for name in ("piano", "folk"):
        out[name] = []
        for s in corpus.load(name, "validation")[:n]:
            s = s.trim(0, seconds) if s.duration > seconds else s
            out[name].append((synth.render(s, tail=1.0).astype(np.float32), playable_notes(s.sustained(keep_pedal=True))))
    return out


def validation_f1(transcriber, clips) -> dict:
    """Mean note F1 (onset, 50 ms) of ``transcriber`` on `validation_clips`, per corpus."""
    from lmm_env.metrics import note_metrics

    return {name: round(float(np.mean([note_metrics(ref, transcriber.transcribe(a))["f1"] for a, ref in data])), 4)
            for name, data in clips.items()}


# A melody is read at a fixed onset threshold; voices at the calibrated one (`NoteTranscriber.threshold_for`).
# Chosen on the *validation* split (2026-12-07, BENCHMARKS.md "h on unseen pianos"): on folk, 0.7 was best or
# within 0.005 of it for every net tried (K = 0, 4, 16, 64; the built-in piano, the grand, TimGM6mb), while the
# K pairs pick 0.3, fit for two-hand music: their melodies read at F1 0.97-1.0 at any threshold, so they cannot
# choose it.
TEXTURE_SPLIT = 1.5  # keys sounding at once (mean over sounding frames): below, a melody; above, voices
MELODY_THRESHOLD = 0.7


def texture(fr: np.ndarray) -> str:
    """"melody" or "voices": how many keys the frame probabilities ``fr`` (frames, 88) hold at
    once, on average over the frames where any is held, against `TEXTURE_SPLIT`."""
    n = (np.asarray(fr) >= 0.5).sum(1)
    return "voices" if (n > 0).any() and n[n > 0].mean() >= TEXTURE_SPLIT else "melody"


class NoteTranscriber:
    """Audio -> notes with a `NoteNet`; ``transcribe(audio, sample_rate)`` returns a `lmm_env.score.Score`.

    Onsets are read at ``threshold`` (calibrated on the K pairs by `adapt`), except in a
    recording whose `texture` is a melody, read at ``melody_threshold`` (default
    `MELODY_THRESHOLD`; None reads every recording at ``threshold``; see `threshold_for`)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, net: NoteNet | None = None, threshold: float = 0.5, meta: dict | None = None,
                 melody_threshold: float | None = MELODY_THRESHOLD):
        self.net = (net or NoteNet()).eval()
        self.threshold = float(threshold)
        self.melody_threshold = None if melody_threshold is None else float(melody_threshold)  # None: one threshold
        self.meta = dict(meta or {})

    def threshold_for(self, fr: np.ndarray) -> float:
        """The onset threshold for a recording whose frame probabilities are ``fr``: ``melody_threshold``
        for a melody (`texture`), else ``threshold``."""
        if self.melody_threshold is not None and texture(fr) == "melody":
            return self.melody_threshold
        return self.threshold

    @torch.no_grad()
    def probabilities(self, audio: np.ndarray, chunk_seconds: float = 30.0):
        """(onset, frame, velocity) probabilities (frames, 88) of a mono 16 kHz recording."""
        a = np.asarray(audio, np.float32).reshape(-1)
        step = int(chunk_seconds * SAMPLE_RATE)
        pad = int(0.5 * SAMPLE_RATE)  # context either side of a chunk so its edges read like its middle
        outs = []
        for i in range(0, max(len(a), 1), step):
            lo, hi = max(0, i - pad), min(len(a), i + step + pad)
            o, f, v = self.net(features(a[None, lo:hi]))
            a0, n = (i - lo) // HOP, min(step, len(a) - i) // HOP + (i + step >= len(a))
            outs.append([torch.sigmoid(x[0, a0:a0 + n]).numpy() for x in (o, f, v)])
        return tuple(np.concatenate(x) for x in zip(*outs))

    def transcribe(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, name: str = ""):
        """The notes of a mono recording (resampled to 16 kHz if ``sample_rate`` differs)."""
        a = np.asarray(audio, np.float32)
        if a.ndim != 1 or not len(a) or not np.isfinite(a).all():
            raise ValueError(f"audio={short_repr(audio)} is not allowed; give a non-empty 1-D array of finite samples "
                             "(a mono recording)")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate < 1000:
            raise ValueError(f"sample_rate={short_repr(sample_rate)} is not allowed; use an int >= 1000 (Hz)")
        audio = a
        if int(sample_rate) != SAMPLE_RATE:
            import librosa

            audio = librosa.resample(np.asarray(audio, np.float32), orig_sr=int(sample_rate), target_sr=SAMPLE_RATE)
        on, fr, vel = self.probabilities(audio)
        return decode(on, fr, vel, threshold=self.threshold_for(fr), name=name)

    # -- weights: safetensors + a JSON header; loading never runs code
    def save(self, path) -> None:
        from safetensors.torch import save_file

        meta = {"format": "lmm_env.NoteTranscriber/1", "channels": self.net.channels, "harmonics": list(HARMONICS),
                "dilations": list(self.net.dilations), "threshold": self.threshold, **self.meta}
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(path),
                  metadata={"lmm_env": json.dumps(meta)})

    @classmethod
    def load(cls, path=WEIGHTS) -> "NoteTranscriber":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no transcriber weights at {str(path)!r}; train them with "
                                    "`python -m lmm_env.lm.train transcriber`")
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {}).get("lmm_env", "{}"))
        if meta.get("format") != "lmm_env.NoteTranscriber/1":
            raise ValueError(f"{str(path)!r} is not NoteTranscriber weights (format {meta.get('format')!r})")
        if tuple(meta.get("harmonics", ())) != HARMONICS:
            raise ValueError(f"{str(path)!r} was trained on harmonics {meta.get('harmonics')}, this lmm_env stacks "
                             f"{list(HARMONICS)}; retrain it (python -m lmm_env.lm.train transcriber)")
        from lmm_env.lm.checkpoint import check_finite, check_fits, header_dtypes, header_shapes, skeleton_dtypes

        try:
            channels, dilations = int(meta["channels"]), tuple(int(d) for d in meta["dilations"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{str(path)!r} has no usable channels / dilations in its metadata; retrain it") from None
        net = NoteNet(channels, dilations)
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        check_fits(path, expected, header_shapes(path), "NoteNet", expected_dtypes=skeleton_dtypes(lambda: net),
                   held_dtypes=header_dtypes(path))
        tensors = load_file(str(path))
        check_finite(path, tensors)
        net.load_state_dict(tensors)
        rest = {k: v for k, v in meta.items() if k not in ("format", "channels", "harmonics", "dilations", "threshold")}
        return cls(net, meta.get("threshold", 0.5), rest)


def _train(net, steps, next_batch, lr, log_every, label, on_eval=None, eval_every: int = 0, onset_weight: float = 3.0):
    opt = torch.optim.Adam(net.parameters(), lr)
    warm = max(1, steps // 20)  # linear warm-up, then cosine decay to 5%
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))))
    net.train()
    t0 = time.time()
    curve = []
    for it in range(steps):
        audio, rolls, colour = next_batch(it)
        value = loss(net, audio, rolls, colour, onset_weight)
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
        curve.append(float(value.detach()))
        if on_eval is not None and eval_every and ((it + 1) % eval_every == 0 or it == steps - 1):
            net.eval()
            on_eval(it + 1, net)
            net.train()
        if log_every and (it % log_every == 0 or it == steps - 1):
            print(f"{label} step {it}/{steps} loss {np.mean(curve[-log_every:]):.4f} ({time.time() - t0:.0f} s)",
                  flush=True)
    net.eval()
    return curve


def pretrain(synths=("piano", "grand"), steps: int = 2500, batch: int = 8, seconds: float = 2.0, lr: float = 2e-3,
             channels: int = 16, rooms: float = 0.3, colour: bool = True, seed: int = 0, log_every: int = 250,
             on_eval=None, eval_every: int = 0, onset_weight: float = 3.0):
    """(`NoteTranscriber`, loss per step) trained on random train-split windows rendered by the world's ``synths``.

    ``on_eval(step, net)`` is called every ``eval_every`` steps and at the end (a learning curve;
    it must not train the net)."""
    from lmm_env.synth import make_synth

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    world = [make_synth(s, SAMPLE_RATE) for s in synths]
    pool = training_pool()
    variety = _Variety(rng, rooms)
    net = NoteNet(channels)

    def next_batch(_):
        a, r = _world_batch(pool, world, batch, seconds, rng, variety)
        return a, r, variety.colour(batch) if colour else None

    curve = _train(net, steps, next_batch, lr, log_every, "pretrain", on_eval, eval_every, onset_weight)
    meta = {"pretrained_on": list(map(str, synths)), "pretrain_steps": steps, "seed": seed, "rooms": rooms,
            "colour": colour, "onset_weight": onset_weight}
    return NoteTranscriber(net, meta=meta), curve


def adapt(transcriber: NoteTranscriber, pairs, steps: int = ADAPT_STEPS, batch: int = 8, seconds: float = 2.0,
          lr: float = 5e-4, world=("piano", "grand"), rooms: float = 0.0, seed: int = 0, log_every: int = 0):
    """A copy of ``transcriber`` fine-tuned on K ``pairs`` (odd steps) and the world's pianos (even steps), its
    onset threshold calibrated on the pairs' held-out ends (`calibrate_threshold`).

    K = 0 pairs: the transcriber itself, unchanged."""
    import copy

    from lmm_env.synth import make_synth

    prs = list(pairs)
    if not prs:
        return transcriber
    for p in prs:
        if int(p.sample_rate) != SAMPLE_RATE:
            raise ValueError(f"pair {short_repr(p)} is at {p.sample_rate} Hz; the transcriber hears {SAMPLE_RATE} Hz")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = copy.deepcopy(transcriber.net)
    synths = [make_synth(s, SAMPLE_RATE) for s in world]
    pool = training_pool()
    variety = _Variety(rng, rooms)

    def next_batch(it):
        if it % 2 or not synths:
            a, r = _pair_batch(prs, batch, seconds, rng, variety)
        else:
            a, r = _world_batch(pool, synths, batch, seconds, rng, variety)
        return a, r, None

    _train(net, steps, next_batch, lr, log_every, "adapt", onset_weight=transcriber.meta.get("onset_weight", 3.0))
    out = NoteTranscriber(net, transcriber.threshold, dict(transcriber.meta), transcriber.melody_threshold)
    out.threshold = calibrate_threshold(out, prs)
    out.meta.update(adapted_pairs=len(prs), adapt_steps=steps)
    return out


THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _struck_from(score, start: float):
    """The notes of ``score`` struck at ``start`` seconds or later."""
    from lmm_env.score import Score

    keep = score.onsets >= start
    return Score(score.pitches[keep], score.onsets[keep], score.offsets[keep], score.velocities[keep])


def calibrate_threshold(transcriber: NoteTranscriber, pairs, thresholds=THRESHOLDS) -> float:
    """The onset threshold (of ``thresholds``) with the best mean note F1 on the held-out end of each pair.

    The K pairs are all this instrument's labelled audio: `adapt` trains on the first three quarters
    of each clip and leaves the last (`HELD_OUT`) to choose this one scalar, so the choice is not
    flattered by clips the net has fitted (on them, every threshold looks good)."""
    from lmm_env.metrics import note_metrics, playable_notes

    probs = []
    for p in pairs:  # the whole clip is read (context), notes struck in its held-out end are scored
        start = (1 - HELD_OUT) * len(p.audio) / p.sample_rate
        ref = playable_notes(p.score.sustained())
        probs.append((transcriber.probabilities(p.audio), _struck_from(ref, start), start))

    def f1_at(t):
        scores = []
        for pr, ref, start in probs:
            est = _struck_from(decode(*pr, threshold=t), start - 0.025)  # a frame or two early still counts
            if len(ref) or len(est):
                scores.append(note_metrics(ref, est)["f1"])
        return np.mean(scores) if scores else 0.0

    f1 = [f1_at(t) for t in thresholds]
    return float(thresholds[int(np.argmax(f1))])


# ---------------------------------------------------------------------------------------------
# The transcriber of K pairs of an instrument: shipped (K = 0), cached on disk, or adapted once

# (K, instrument) adapted at seed 0 and shipped (the built-in piano's, as its ears are, and the demo's TimGM6mb):
# python -m lmm_env.lm.train transcriber --adapt K --instrument X (scripts/train/transcriber.sh)
SHIPPED_ADAPTED = ((4, "piano"), (16, "piano"), (64, "piano"), (16, "soundfont"))
_ADAPT_FORMAT = 4  # bump when adapt's recipe changes, so cached transcribers are adapted again
_CACHE: dict[tuple, NoteTranscriber] = {}


def cache_folder() -> Path:
    """Where adapted transcribers are cached: ``transcribers/`` under the corpus cache dir (``LMM_ENV_CACHE``)."""
    from lmm_env.corpus import cache_dir

    return Path(cache_dir()) / "transcribers"


def transcriber_for(K, instrument="piano", seed: int = 0, progress: bool = True) -> NoteTranscriber:
    """The shipped transcriber (K = 0) or a copy adapted on ``lmm_env.pairs.load(K, instrument, seed)``.

    An adapted transcriber is cached under the corpus cache dir (``transcribers/``), keyed by K,
    the instrument (a world synth's name or a SoundFont path, optionally ``@room``) and seed;
    adapting takes a few minutes on one core (`ADAPT_STEPS` steps) and warns before it starts."""
    import os
    import warnings

    from lmm_env import pairs as pairs_mod
    from lmm_env._checks import check_seed, writable_dir
    from lmm_env.lm.ear import _synth_tag

    K = pairs_mod.check_k(K)
    if K == "all":
        raise ValueError("pairs='all' is not allowed for the transcriber (adapting reads every pair: hours); "
                         "use 0, 4, 16 or 64")
    if not isinstance(instrument, (str, os.PathLike)) or not pairs_mod.is_named_instrument(os.fspath(instrument)):
        raise ValueError(f"instrument={short_repr(instrument)} is not allowed; use a world synth's name ('piano', "
                         "'grand', 'soundfont'), a SoundFont path, optionally with a room ('soundfont@hall'); for a "
                         "Synth object, adapt(NoteTranscriber.load(), lmm_env.pairs.load(K, instrument=...))")
    pairs_mod._check_synth(instrument, SAMPLE_RATE, "instrument")
    seed = check_seed(seed)
    key = (K, _synth_tag(instrument), seed)
    if key in _CACHE:
        return _CACHE[key]
    shipped = NoteTranscriber.load()
    if K == 0:
        _CACHE[key] = shipped
        return shipped
    path = cache_folder() / f"pairs{K}-{key[1]}-seed{seed}-v{_ADAPT_FORMAT}.safetensors"
    shipped_adapted = WEIGHTS.with_name(f"transcriber_pairs{K}_{key[1]}.safetensors")
    if seed == 0 and (K, key[1]) in SHIPPED_ADAPTED and shipped_adapted.is_file():
        out = NoteTranscriber.load(shipped_adapted)
    elif path.is_file():
        out = NoteTranscriber.load(path)
    else:
        warnings.warn(f"adapting the transcriber to {K} pairs of {os.fspath(instrument)!r} (seed {seed}) before this "
                      f"can run: {ADAPT_STEPS} fine-tuning steps, roughly {ADAPT_STEPS * 0.5 / 60:.0f} min on one core; "
                      f"it will be cached at {str(path)!r}", UserWarning, stacklevel=2)
        out = adapt(shipped, pairs_mod.load(K, instrument=instrument, seed=seed), steps=ADAPT_STEPS, seed=seed,
                    log_every=100 if progress else 0)
        out.meta.update(instrument=os.fspath(instrument), pairs_seed=seed)
        try:
            writable_dir(path.parent, "the transcriber cache folder")
            out.save(path)
        except (ValueError, OSError) as exc:
            warnings.warn(f"the adapted transcriber was not cached ({exc})", UserWarning, stacklevel=2)
    _CACHE[key] = out
    return out


def train_main(argv=None) -> int:
    """``python -m lmm_env.lm.train transcriber``: pretrain the shipped transcriber on the world's pianos."""
    ap = argparse.ArgumentParser(prog="python -m lmm_env.lm.train transcriber",
                                 description="Pretrain the NoteTranscriber on the world's pianos (train splits only).")
    ap.add_argument("--synths", default="piano,grand", help="world synths it hears, comma-separated (default piano,grand)")
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--rooms", type=float, default=0.3, help="share of windows heard in a random room (default 0.3)")
    ap.add_argument("--onset-weight", type=float, default=3.0, help="weight of onset positives in the loss (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(WEIGHTS))
    ap.add_argument("--eval-every", type=int, default=250,
                    help="steps between learning-curve points: note F1 on validation pieces (0: none)")
    ap.add_argument("--eval-instrument", default="soundfont",
                    help="instrument the learning curve's validation pieces are rendered by (default soundfont: one "
                         "the net never hears in training)")
    ap.add_argument("--adapt", type=int, default=None, metavar="K",
                    help="instead of pretraining: adapt the shipped transcriber on K pairs of --instrument and write "
                         "weights/transcriber_pairs{K}_{instrument}.safetensors (unless --out is given)")
    ap.add_argument("--instrument", default="soundfont", help="with --adapt: the pairs' instrument (default soundfont)")
    args = ap.parse_args(argv)
    from lmm_env._checks import check_cli_output

    torch.set_num_threads(max(1, args.threads))
    t0 = time.time()
    if args.adapt is not None:
        from lmm_env import pairs as pairs_mod
        from lmm_env.lm.ear import _synth_tag

        try:
            K = pairs_mod.check_k(args.adapt)
            prs = pairs_mod.load(K, instrument=args.instrument, seed=args.seed)
        except ValueError as exc:
            ap.error(str(exc))
        out = args.out if args.out != str(WEIGHTS) else str(
            WEIGHTS.with_name(f"transcriber_pairs{K}_{_synth_tag(args.instrument)}.safetensors"))
        check_cli_output(ap, out)
        tr = adapt(NoteTranscriber.load(), prs, steps=ADAPT_STEPS, seed=args.seed, log_every=100)
        tr.meta.update(instrument=args.instrument, pairs_seed=args.seed, adapt_wall_seconds=round(time.time() - t0, 1),
                       command=f"python -m lmm_env.lm.train transcriber --adapt {K} --instrument {args.instrument} "
                               f"--seed {args.seed}")
        tr.save(out)
        print(f"saved {out} ({time.time() - t0:.0f} s)")
        return 0
    check_cli_output(ap, args.out)
    points = []
    on_eval = None
    if args.eval_every > 0:
        clips = validation_clips(args.eval_instrument)

        def on_eval(step, net):
            f1 = validation_f1(NoteTranscriber(net), clips)
            points.append({"step": step, **f1, "wall_s": round(time.time() - t0, 1)})
            print(f"step {step}: validation note F1 {f1}", flush=True)

    tr, curve = pretrain(tuple(args.synths.split(",")), steps=args.steps, channels=args.channels, rooms=args.rooms,
                         seed=args.seed, on_eval=on_eval, eval_every=args.eval_every, onset_weight=args.onset_weight)
    tr.meta.update(train_wall_seconds=round(time.time() - t0, 1),
                   command=f"python -m lmm_env.lm.train transcriber --synths {args.synths} --steps {args.steps} "
                           f"--channels {args.channels} --rooms {args.rooms} --onset-weight {args.onset_weight} "
                           f"--seed {args.seed}")
    tr.save(args.out)
    curve_path = Path(args.out).with_suffix(".json")
    curve_path.write_text(json.dumps({"command": tr.meta["command"], "eval_instrument": args.eval_instrument,
                                      "validation": points, "loss": [round(x, 5) for x in curve]}))
    print(f"saved {args.out} and {curve_path} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(train_main())
