"""Ears: audio -> 88 pitch activations per frame (how strongly each key sounds in the last block).

Two ears share one front end and one interface:

* `AnalyticEar` (``load_pretrained("ear-analytic")``): no weights. The magnitude spectrum of
  its window (the last 2048 samples, 128 ms: this block and most of the two before) is mapped to a log-frequency axis (2 bins
  per semitone, from a semitone below A0 up to ~7 kHz) and explained by 88 fixed harmonic templates (stiff-string partials
  ``h f0 sqrt(1 + B h^2)``, amplitudes ``1/h``, each partial's exact window response) with
  three KL-NMF multiplicative updates (nonnegative, templates fixed; the LearnedEar's input
  is an analytic ear with a 200 ms window, 3 bins per semitone and ten updates). A key's gain is then
  squashed relative to the loudest key of the frame and an absolute floor (two hand-set
  constants), so activations are pitch evidence that grows only weakly with loudness.
* `LearnedEar` (``load_pretrained("ear")``): a small pitch-equivariant network trained from
  K = 16 score-audio pairs (``python -m lmm_env.lm.train ear``). A conv along the
  log-frequency axis of two spectra (the long window, and the last block alone for timing),
  features gathered at each key's harmonic positions, plus the analytic ear's activation,
  -> an MLP shared by all keys -> held and onset logits.

Both run in pure numpy at inference (``activations``), on ``(B, window)`` float32 audio
with ``window = (history_blocks + 1) * block_size`` samples, oldest first, and return
float32 ``(B, 88)`` in [0, 1]; 0.5 is the "key sounding" threshold on both synths.

``transcribe(audio)`` slides the same window over a whole recording (one frame per block,
zero-padded at the start) and returns (held, onset) bool rolls at ``sample_rate /
block_size`` frames per second. Onsets: a key whose held state turns on, or a held key that
is re-struck. Re-strikes are found by the analytic ear as a rise of the key's harmonic
energy in the last block by more than ``RESTRIKE_DB`` over the block before; the learned ear
uses its onset head (probability > 0.5) for them.

The ear of K protocol pairs: `fit_ear` fits a `LearnedEar` on pairs that `lmm_env.pairs` builds
(``fit_ear(pairs.load(16))``), and `ear_for` (``ear_for(K, synth)``) is the one an env made with
``pairs=K`` listens with: shipped, cached on disk or fitted once. This module reads
`lmm_env.pairs`; `lmm_env.pairs` never imports ``lmm_env.lm``.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from lmm_env.audio import rfft32 as _rfft
from lmm_env.pairs import DEFAULT_INSTRUMENT as _DEFAULT  # ear_for's instrument= / synth= default: the piano

try:  # scipy's raw CSR kernels: ~3x less overhead than scipy.sparse matrices at batch 1
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec, csr_matvecs as _csr_matvecs
except ImportError:  # a private module: fall back to the public API if a scipy release moves it
    def _csr_matvec(n_row, n_col, ptr, idx, data, x, y):
        from scipy.sparse import csr_matrix

        y += csr_matrix((data, idx, ptr), shape=(n_row, n_col)) @ x

    def _csr_matvecs(n_row, n_col, n_vecs, ptr, idx, data, x, y):
        from scipy.sparse import csr_matrix

        y += (csr_matrix((data, idx, ptr), shape=(n_row, n_col)) @ x.reshape(n_col, n_vecs)).reshape(y.shape)

SAMPLE_RATE = 16000
BLOCK_SIZE = 800
N_KEYS = 88
LOWEST_PITCH = 21
BINS_PER_SEMITONE = 3
LOG_LOW_PITCH = LOWEST_PITCH - 1  # first log bin: a semitone below A0
LOG_HIGH_HZ = 7000.0
RESTRIKE_DB = 6.0
EPS = 1e-9

__all__ = ["AnalyticEar", "LearnedEar", "fit_ear", "train_main", "log_spectra", "rolls_to_score"]


# --------------------------------------------------------------------------- front end


def _n_log_bins(bps: int = BINS_PER_SEMITONE) -> int:
    top = 69.0 + 12.0 * math.log2(LOG_HIGH_HZ / 440.0)
    return int(math.floor((top - LOG_LOW_PITCH) * bps)) + 1


def _log_centers(bps: int = BINS_PER_SEMITONE) -> np.ndarray:
    midi = LOG_LOW_PITCH + np.arange(_n_log_bins(bps)) / bps
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def _key_bin(k) -> np.ndarray:
    """Log bin of key k's fundamental."""
    return (np.asarray(k) + LOWEST_PITCH - LOG_LOW_PITCH) * BINS_PER_SEMITONE


@functools.lru_cache(maxsize=8)
def _window(n: int, recent: int) -> np.ndarray:
    """Asymmetric analysis window: a slow Hann rise over the history, a fast fall over the
    last ``recent`` samples, so the spectrum weighs the latest block most while keeping the
    frequency resolution of the whole window. Scaled so a sinusoid of amplitude A peaks at A."""
    rise = n - recent
    w = np.empty(n)
    w[:rise] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(rise) + 0.5) / rise)
    w[rise:] = 0.5 + 0.5 * np.cos(np.pi * (np.arange(recent) + 0.5) / recent)
    w *= 2.0 / w.sum()
    return w.astype(np.float32)


@functools.lru_cache(maxsize=8)
def _log_map(n_fft: int, sample_rate: int, bps: int = BINS_PER_SEMITONE):
    """Linear-bin -> log-bin map as a CSR matrix (F, n_used) in raw arrays, for sparsetools.

    Each log bin is a triangle in frequency of half-width max(linear spacing, its own
    spacing), normalized to unit sum (at low frequency: interpolation between FFT bins).
    Returns (indptr int32, indices int32, data float32, n_used): only the first ``n_used``
    FFT bins are read."""
    df = sample_rate / n_fft
    n_lin = n_fft // 2 + 1
    fl = np.arange(n_lin) * df
    centers = _log_centers(bps)
    idx, wts, ptr = [], [], [0]
    for fc in centers:
        width = max(df, fc * (2.0 ** (1.0 / (12 * bps)) - 1.0))
        lo = max(0, int(math.floor((fc - width) / df)))
        hi = min(n_lin - 1, int(math.ceil((fc + width) / df)))
        j = np.arange(lo, hi + 1)
        w = np.maximum(0.0, 1.0 - np.abs(fl[j] - fc) / width)
        keep = w > 0
        j, w = j[keep], w[keep]
        idx.extend(j.tolist())
        wts.extend((w / w.sum()).tolist())
        ptr.append(len(idx))
    idx = np.asarray(idx, np.int32)
    return (np.asarray(ptr, np.int32), idx, np.asarray(wts, np.float32), int(idx.max()) + 1)


def _mag_to_log(mag: np.ndarray, n_fft: int, sample_rate: int, bps: int = BINS_PER_SEMITONE) -> np.ndarray:
    """(B, >= n_used) float32 linear magnitudes -> (B, F) float32 log-frequency magnitudes."""
    ptr, idx, wts, n_used = _log_map(n_fft, sample_rate, bps)
    F = len(ptr) - 1
    B = mag.shape[0]
    if B == 1:
        y = np.zeros(F, np.float32)
        _csr_matvec(F, n_used, ptr, idx, wts, np.ascontiguousarray(mag[0, :n_used], np.float32), y)
        return y[None]
    xt = np.ascontiguousarray(mag[:, :n_used].T, np.float32)  # (n_used, B)
    y = np.zeros((F, B), np.float32)
    _csr_matvecs(F, n_used, B, ptr, idx, wts, xt, y)
    return y.T


def _log_spectrum(x: np.ndarray, win: np.ndarray, n_fft: int, sample_rate: int,
                  bps: int = BINS_PER_SEMITONE) -> np.ndarray:
    """Log-frequency magnitude spectrum (B, F) float32 of (B, n_fft) audio under ``win``."""
    n_used = _log_map(n_fft, sample_rate, bps)[3]
    spec = _rfft(x * win)
    return _mag_to_log(np.abs(spec[:, :n_used]), n_fft, sample_rate, bps)


def log_spectra(audio: np.ndarray, block_size: int = BLOCK_SIZE, sample_rate: int = SAMPLE_RATE):
    """(long, short) log-frequency magnitude spectra of (B, window) audio, each (B, F) float32.

    long: the whole window (asymmetric window, see `_window`); short: the last block (Hann)."""
    x = np.asarray(audio, dtype=np.float32)
    n = x.shape[1]
    return (_log_spectrum(x, _window(n, block_size), n, sample_rate),
            _log_spectrum(x[:, n - block_size:], _window(block_size, block_size // 2), block_size, sample_rate))


def _inharmonicity(k: np.ndarray) -> np.ndarray:
    """A typical piano's stiff-string coefficient: ~1e-4 in the bass to ~1e-2 at C8."""
    return 1e-4 * 10.0 ** (2.0 * np.asarray(k, np.float64) / (N_KEYS - 1))


@functools.lru_cache(maxsize=8)
def _templates(n: int, recent: int, sample_rate: int, bps: int = BINS_PER_SEMITONE) -> np.ndarray:
    """(F, 88) float32 harmonic templates in the log-frequency domain, columns summing to 1.

    Each partial's magnitude response to the analysis window is computed exactly (an FFT of
    the windowed sinusoid) and the partials are added incoherently."""
    win = _window(n, recent).astype(np.float64)
    t = np.arange(n) / sample_rate
    nyq = 0.45 * sample_rate
    out = np.zeros((N_KEYS, n // 2 + 1))
    for k in range(N_KEYS):
        f0 = 440.0 * 2.0 ** ((k + LOWEST_PITCH - 69) / 12.0)
        h = np.arange(1, 41, dtype=np.float64)
        b = _inharmonicity(k)
        f = h * f0 * np.sqrt((1.0 + b * h * h) / (1.0 + b))
        keep = (f < min(nyq, LOG_HIGH_HZ)) & (h <= 24)
        h, f = h[keep], f[keep]
        amp = 1.0 / h
        waves = np.sin(2.0 * np.pi * f[:, None] * t[None, :]) * win[None, :]
        out[k] = amp @ np.abs(np.fft.rfft(waves, axis=1))
    logt = _mag_to_log(out.astype(np.float32), n, sample_rate, bps).T  # (F, 88)
    logt /= logt.sum(axis=0, keepdims=True)
    return np.ascontiguousarray(logt, dtype=np.float32)


def _frames(audio: np.ndarray, window: int, block: int) -> np.ndarray:
    """(T, window) sliding windows of 1-D audio, one per block, zero-padded at the start."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    T = len(x) // block
    pad = np.concatenate([np.zeros(window - block, np.float32), x[: T * block]])
    if T == 0:
        return np.zeros((0, window), np.float32)
    view = np.lib.stride_tricks.sliding_window_view(pad, window)[::block]
    return view[:T]


def rolls_to_score(held: np.ndarray, onset: np.ndarray, frame_rate: float, velocity: int = 64, name: str = ""):
    """A transcription's (held, onset) rolls as a Score (notes as in FrameScore.to_score)."""
    from lmm_env.score import FrameScore

    held = np.asarray(held, bool)
    fs = FrameScore(frame_rate, held, np.asarray(onset, bool) & held,
                    np.where(held, velocity, 0).astype(np.uint8), name)
    return fs.to_score()


class _EarBase:
    sample_rate: int
    block_size: int
    history_blocks: int

    @property
    def window(self) -> int:
        return (self.history_blocks + 1) * self.block_size

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.block_size

    def _check(self, audio) -> np.ndarray:
        x = np.asarray(audio, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.window:
            raise ValueError(f"audio must have shape (B, {self.window}), got {np.shape(audio)}")
        return x

    def activations(self, audio: np.ndarray) -> np.ndarray:
        return self._outputs(self._check(audio))[0]

    def _outputs(self, x):  # -> (held activations, onset evidence or None, key energy)
        raise NotImplementedError

    def transcribe(self, audio: np.ndarray, threshold: float = 0.5, min_frames: int = 3, chunk: int = 512):
        """1-D audio -> (held (T, 88) bool, onset (T, 88) bool), T = len(audio) // block_size.

        held: activation >= ``threshold``, then runs shorter than ``min_frames`` frames are
        dropped (brief ghost notes at attacks). onset: the first frame of each held run, and
        re-strikes of a held key (see the module docstring); never two onsets of a key in
        consecutive frames.
        """
        frames = _frames(audio, self.window, self.block_size)
        T = len(frames)
        act = np.zeros((T, N_KEYS), np.float32)
        ons = np.zeros((T, N_KEYS), bool)
        energy = np.zeros((T, N_KEYS), np.float32)
        have_onset_head = False
        for s in range(0, T, chunk):
            a, o, e = self._outputs(np.ascontiguousarray(frames[s: s + chunk]))
            act[s: s + chunk] = a
            if e is not None:
                energy[s: s + chunk] = e
            if o is not None:
                have_onset_head = True
                ons[s: s + chunk] = o > 0.5
        held = _drop_short_runs(act >= threshold, int(min_frames))
        prev = np.zeros_like(held)
        prev[1:] = held[:-1]
        if not have_onset_head:
            le = 20.0 * np.log10(energy + 1e-5)
            past = np.full_like(le, -200.0)
            past[1:] = le[:-1]
            past[2:] = np.maximum(past[2:], le[:-2])
            ons = le - past > RESTRIKE_DB
        onset = held & (~prev | ons)
        for t in range(1, T):  # a strike spans at most one block: no onsets in consecutive frames
            onset[t] &= ~onset[t - 1] | ~prev[t]
        return held, onset


def _drop_short_runs(held: np.ndarray, n: int) -> np.ndarray:
    """``held`` without the runs of True shorter than ``n`` frames (per key)."""
    if n <= 1 or held.size == 0:
        return held
    T = held.shape[0]
    pad = np.zeros((T + 2, held.shape[1]), np.int8)
    pad[1:-1] = held
    d = np.diff(pad, axis=0)  # +1 at run starts, -1 one past run ends
    out = held.copy()
    starts = np.flatnonzero((d.T == 1).reshape(-1))
    ends = np.flatnonzero((d.T == -1).reshape(-1))
    short = (ends - starts) < n
    for s0, e0 in zip(starts[short], ends[short]):
        k, a = divmod(int(s0), T + 1)
        b = int(e0) - k * (T + 1)
        out[a:b, k] = False
    return out


# --------------------------------------------------------------------------- analytic ear


class AnalyticEar(_EarBase):
    """Harmonic templates over a log-frequency spectrum, fitted by KL-NMF with fixed templates.

    Args:
        history_blocks: blocks of history before the current one (the input is
            (h+1) * block samples; 2 by default).
        bins_per_semitone: resolution of the log-frequency axis the templates live on (2 by
            default: the same F1 as 3 on the test table, a third less NMF work).
        n_fft: analyze only the last ``n_fft`` samples of the input ("auto", the default:
            128 ms, 2048 samples at 16 kHz, or the whole input if shorter; None: all of it). The defaults trade ~0.03-0.06 F1 on Bach chorales (none on
            folk tunes) against the 200 ms, 3-bins-per-semitone ear for a 2048-sample FFT
            instead of 3200 and a third less NMF work; see BENCHMARKS.md.
        iterations: multiplicative updates (after a start at the templates' correlation).
        relative: a key reaches activation 0.5 when its gain is this share of the frame's
            loudest key's gain (plus ``floor``).
        floor: absolute gain floor (linear amplitude units), keeps silence and faint
            tails below 0.5.
        slope: steepness of the squashing in the log-gain domain.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, block_size: int = BLOCK_SIZE, history_blocks: int = 2,
                 iterations: int = 3, relative: float = 0.2, floor: float = 3e-4, slope: float = 2.5,
                 bins_per_semitone: int = 2, n_fft: int | str | None = "auto"):
        from lmm_env._checks import check_int, short_repr
        from lmm_env._checks import check_real

        # the LearnedEar's bounds (it builds one of these from its file's config)
        self.sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)
        self.block_size = check_int("block_size", block_size, 16, 8192)
        self.history_blocks = check_int("history_blocks", history_blocks, 0, 32)
        self.iterations = check_int("iterations", iterations, 1, 1000)
        self.relative = check_real("relative", relative, 0.0, 1.0, lo_open=True)
        self.floor = check_real("floor", floor, 0.0, 1.0)
        self.slope = check_real("slope", slope, 0.0, 100.0, lo_open=True)
        self.bins_per_semitone = check_int("bins_per_semitone", bins_per_semitone, 1, 6)
        full = (self.history_blocks + 1) * self.block_size
        if isinstance(n_fft, str) and n_fft == "auto":  # 128 ms, or the whole window if shorter
            n_fft = min(int(round(2048 * self.sample_rate / SAMPLE_RATE)), full)
        if n_fft is None:
            n_fft = full
        if (isinstance(n_fft, (bool, np.bool_)) or not isinstance(n_fft, (int, np.integer))
                or not self.block_size <= n_fft <= full):
            raise ValueError(f"n_fft={short_repr(n_fft)} is not allowed; use an int from block_size={self.block_size} "
                             f"to the window, (history_blocks + 1) * block_size = {full}")
        self.n_fft = int(n_fft)
        self.config = dict(sample_rate=self.sample_rate, block_size=self.block_size,
                           history_blocks=self.history_blocks, iterations=self.iterations,
                           relative=self.relative, floor=self.floor, slope=self.slope,
                           bins_per_semitone=self.bins_per_semitone, n_fft=self.n_fft)
        bps = self.bins_per_semitone
        self.W = _templates(self.n_fft, self.block_size, self.sample_rate, bps)  # (F, 88)
        self.Ws = _templates(self.block_size, self.block_size // 2, self.sample_rate, bps)
        self.WT = np.ascontiguousarray(self.W.T)
        if not (self.W.sum(axis=1) > 1e-3).all():  # keeps the NMF's denominators away from 0
            raise ValueError("a log-frequency bin lies under no harmonic template")
        self._win_long = _window(self.n_fft, self.block_size)
        self._win_short = _window(self.block_size, self.block_size // 2)
        # gains add up to the spectrum's sum over log bins: the floor is per 3 bins a semitone
        self._floor = np.float32(self.floor * bps / 3.0)

    def long_spectrum(self, x: np.ndarray) -> np.ndarray:
        """(B, F) log-frequency magnitude spectrum of the last ``n_fft`` samples of (B, window) audio."""
        return _log_spectrum(x[:, x.shape[1] - self.n_fft:], self._win_long, self.n_fft, self.sample_rate,
                             self.bins_per_semitone)

    def gains(self, long_spec: np.ndarray) -> np.ndarray:
        """(B, 88) nonnegative template gains explaining the (B, F) long spectrum (KL-NMF)."""
        V = long_spec + np.float32(EPS)
        W = self.W
        # start: correlation with each template (its scale does not matter: one update
        # rescales H to explain V's total)
        H = V @ W
        np.maximum(H, np.float32(EPS), out=H)
        for _ in range(self.iterations):
            R = H @ self.WT  # > 0: H >= EPS and every log bin lies under some template
            np.divide(V, R, out=R)
            H *= R @ W  # columns of W sum to 1
        return H

    def squash(self, H: np.ndarray) -> np.ndarray:
        """sigmoid(slope * log(H / ref)) = r**slope / (1 + r**slope), r = H / ref (overwrites H)."""
        ref = H.max(axis=1, keepdims=True)
        ref *= np.float32(self.relative)
        ref += self._floor
        r = np.divide(H, ref, out=H)  # <= 1 / relative: no overflow
        np.power(r, np.float32(self.slope), out=r)
        return r / (r + np.float32(1.0))

    def activations(self, audio: np.ndarray) -> np.ndarray:
        return self.squash(self.gains(self.long_spectrum(self._check(audio))))

    def _outputs(self, x):
        act = self.squash(self.gains(self.long_spectrum(x)))
        short_spec = _log_spectrum(x[:, x.shape[1] - self.block_size:], self._win_short, self.block_size,
                                   self.sample_rate, self.bins_per_semitone)
        energy = short_spec @ self.Ws
        return act, None, energy


# --------------------------------------------------------------------------- learned ear

try:
    import torch
    from torch import nn
except ImportError:  # pragma: no cover
    torch = None
    nn = None

HARMONICS = (0.5, 1, 2, 3, 4, 5, 6, 8)


def _harmonic_offsets() -> np.ndarray:
    return np.round(12 * BINS_PER_SEMITONE * np.log2(np.asarray(HARMONICS, np.float64))).astype(np.int64)


def _features_np(x: np.ndarray, analytic: AnalyticEar, scale: float):
    """(spec (B, 2, F), analytic activations (B, 88), short-block key energy (B, 88))."""
    long_spec, short_spec = log_spectra(x, analytic.block_size, analytic.sample_rate)
    act = analytic.squash(analytic.gains(long_spec))
    energy = short_spec @ analytic.Ws
    spec = np.stack([np.log1p(long_spec / scale), np.log1p(short_spec / scale)], axis=1).astype(np.float32)
    return spec, act, energy


class LearnedEar(nn.Module if nn is not None else object, _EarBase):
    """Pitch-equivariant network over log-frequency spectra (see the module docstring)."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, block_size: int = BLOCK_SIZE, history_blocks: int = 3,
                 channels: int = 16, kernel: int = 9, hidden: int = 32, scale: float = 1e-3):
        nn.Module.__init__(self)
        from lmm_env._checks import check_int
        from lmm_env._checks import check_real

        # bounded: an ear file's config decides these sizes (see lmm_env.lm.checkpoint)
        self.sample_rate = check_int("sample_rate", sample_rate, 8000, 96000)
        self.block_size = check_int("block_size", block_size, 16, 8192)
        self.history_blocks = check_int("history_blocks", history_blocks, 0, 32)
        self.channels = check_int("channels", channels, 1, 1024)
        self.kernel = check_int("kernel", kernel, 1, 255)
        self.hidden = check_int("hidden", hidden, 1, 4096)
        # the spectra's floor (default 1e-3 of full scale): a string or 1e300 is no ear at all
        self.scale = check_real("scale", scale, 1e-9, 1e3)
        if self.kernel % 2 != 1:
            raise ValueError(f"kernel={kernel!r} must be odd")
        self.config = dict(sample_rate=self.sample_rate, block_size=self.block_size,
                           history_blocks=self.history_blocks, channels=self.channels, kernel=self.kernel,
                           hidden=self.hidden, scale=self.scale)
        # the analytic input as trained (10 KL-NMF updates; the AnalyticEar default is now 3)
        self.analytic = AnalyticEar(self.sample_rate, self.block_size, self.history_blocks, iterations=10,
                                    bins_per_semitone=BINS_PER_SEMITONE, n_fft=None)
        self.n_bins = _n_log_bins()
        offs = _harmonic_offsets()
        self.pad = int(max(0, -offs.min())), int(max(0, _key_bin(N_KEYS - 1) + offs.max() - (self.n_bins - 1)))
        # index into the padded feature map: (88, H)
        gidx = _key_bin(np.arange(N_KEYS))[:, None] + offs[None, :] + self.pad[0]
        self.register_buffer("gather_index", torch.as_tensor(gidx, dtype=torch.long), persistent=False)
        self.conv = nn.Conv1d(2, self.channels, self.kernel, padding=self.kernel // 2)
        self.fc1 = nn.Linear(len(HARMONICS) * self.channels + 2, self.hidden)
        self.fc2 = nn.Linear(self.hidden, 2)
        self.refresh()

    # ---- torch
    def forward(self, spec, act, energy=None):
        """spec (B, 2, F), analytic act (B, 88) -> logits (B, 88, 2) [held, onset]."""
        h = torch.relu(self.conv(spec))  # (B, C, F)
        h = torch.nn.functional.pad(h, self.pad)
        g = h[:, :, self.gather_index]  # (B, C, 88, H)
        g = g.permute(0, 2, 3, 1).reshape(spec.shape[0], N_KEYS, -1)
        a = act.unsqueeze(-1)
        z = torch.cat([g, a, torch.log(a + 1e-3) - torch.log(1 - a + 1e-3)], dim=-1)
        z = torch.relu(self.fc1(z))
        return self.fc2(z)

    def torch_activations(self, audio) -> np.ndarray:
        spec, act, _ = _features_np(self._check(audio), self.analytic, self.scale)
        with torch.no_grad():
            out = self.forward(torch.from_numpy(spec), torch.from_numpy(act))
        return torch.sigmoid(out[..., 0]).numpy()

    # ---- numpy
    def refresh(self) -> None:
        """Rebuild the numpy weight cache from the torch parameters."""
        if self.conv.weight.is_meta:  # a shape-only build (lmm_env.lm.checkpoint.skeleton_shapes): no weights yet
            return
        with torch.no_grad():
            cw = self.conv.weight.detach().cpu().numpy().astype(np.float32)  # (C, 2, K)
            self._np = dict(
                conv_w=np.ascontiguousarray(cw.transpose(2, 1, 0).reshape(self.kernel * 2, self.channels)),
                conv_b=self.conv.bias.detach().cpu().numpy().astype(np.float32),
                fc1_w=np.ascontiguousarray(self.fc1.weight.detach().cpu().numpy().T.astype(np.float32)),
                fc1_b=self.fc1.bias.detach().cpu().numpy().astype(np.float32),
                fc2_w=np.ascontiguousarray(self.fc2.weight.detach().cpu().numpy().T.astype(np.float32)),
                fc2_b=self.fc2.bias.detach().cpu().numpy().astype(np.float32),
            )
        self._gidx = self.gather_index.cpu().numpy()
        # For the numpy conv: gather the bins each output bin needs from each key's harmonics only.
        half = self.kernel // 2
        # padded map positions needed: gidx (88, H) -> input bins gidx - pad0 + (-half..half)
        pos = self._gidx - self.pad[0]  # (88, H) log-bin positions (may be out of range -> zero)
        taps = pos[..., None] + np.arange(-half, half + 1)  # (88, H, K)
        # out-of-range taps read an extra all-zero bin appended to the spectrum (index n_bins)
        self._taps = np.where((taps >= 0) & (taps < self.n_bins), taps, self.n_bins)
        self._flat_taps = (self._taps[..., None] * 2 + np.arange(2)).reshape(-1)  # into (F + 1, 2) rows
        self._pos_valid = ((pos >= 0) & (pos < self.n_bins)).astype(np.float32)  # out-of-range -> padded zero

    def _forward_np(self, spec, act):
        p = self._np
        B = spec.shape[0]
        nh = len(HARMONICS)
        # the conv evaluated only at the gathered positions; all matmuls 2-D (fast BLAS paths)
        sp = np.zeros((B, self.n_bins + 1, 2), np.float32)  # (bin, channel) layout, zero bin last
        sp[:, :-1] = spec.transpose(0, 2, 1)
        tap = sp.reshape(B, -1)[:, self._flat_taps]  # (B, 88 * H * K * 2)
        tap = tap.reshape(B * N_KEYS * nh, self.kernel * 2)
        h = np.maximum(tap @ p["conv_w"] + p["conv_b"], 0.0).reshape(B, N_KEYS, nh, self.channels)
        h *= self._pos_valid[..., None]  # positions outside the spectrum are zero padding
        z = np.empty((B, N_KEYS, nh * self.channels + 2), np.float32)
        z[..., :-2] = h.reshape(B, N_KEYS, -1)
        z[..., -2] = act
        z[..., -1] = np.log((act + 1e-3) / (1 - act + 1e-3))
        z = np.maximum(z.reshape(B * N_KEYS, -1) @ p["fc1_w"] + p["fc1_b"], 0.0)
        return (z @ p["fc2_w"] + p["fc2_b"]).reshape(B, N_KEYS, 2)

    def _outputs(self, x):
        spec, act, energy = _features_np(x, self.analytic, self.scale)
        logits = self._forward_np(spec, act)
        prob = 1.0 / (1.0 + np.exp(-logits))
        return prob[..., 0].astype(np.float32), prob[..., 1].astype(np.float32), energy

    def activations(self, audio: np.ndarray) -> np.ndarray:
        return self._outputs(self._check(audio))[0]


# --------------------------------------------------------------------------- data, training, evaluation


def _vary(score, rng, max_seconds: float):
    """Random transposition, tempo, velocity and crop of a training score."""
    from lmm_env.score import Score

    s = score.transpose(int(rng.integers(-15, 16)))  # wide: covers the extreme keys too
    s = s.with_tempo(float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))
    if s.duration > max_seconds:
        start = float(rng.uniform(0, s.duration - max_seconds))
        s = s.trim(start, start + max_seconds)
    base = rng.uniform(35, 115)
    v = np.clip(np.round(base + rng.normal(0, 12, len(s))), 1, 127).astype(np.int64)
    return Score(s.pitches, s.onsets, s.offsets, v, name=s.name)


def _targets(score, T: int, frame_rate: float):
    fs = score.frames(frame_rate)
    held = np.zeros((T, N_KEYS), bool)
    onset = np.zeros((T, N_KEYS), bool)
    n = min(T, fs.T)
    held[:n] = fs.held[:n]
    onset[:n] = fs.onset[:n]
    return held, onset


def _pick_pieces(n: int, split: str, rng):
    from lmm_env import corpus

    out = []
    names = ("bach-chorales", "folk")
    for i in range(n):
        c = corpus.load(names[i % 2], split)
        out.append(c[int(rng.integers(len(c)))])
    return out


def _eval_pieces(n_each: int, seconds: float = 30.0):
    from lmm_env import corpus

    out = []
    for name in ("folk", "bach-chorales"):
        c = corpus.load(name, "test")
        step = max(1, len(c) // n_each)
        for i in range(min(n_each, len(c))):  # not past the split's end
            out.append((name, c[i * step].trim(0, seconds)))
    return out


def evaluate(ears: dict, n_each: int = 10, synths=("piano", "soundfont"), progress: bool = True) -> dict:
    """Frame F1 and note onset F1 (against the pieces' own times) of each ear on test pieces
    rendered by each synth."""
    from tqdm import tqdm

    from lmm_env.metrics import frame_f1, note_metrics, playable_notes
    from lmm_env.synth import make_synth

    pieces = _eval_pieces(n_each)
    results = {}
    for sname in synths:
        synth = make_synth(sname, SAMPLE_RATE)
        for cname, score in tqdm(pieces, desc=f"eval {sname}", disable=not progress, leave=False):
            audio = synth.render(score)
            T = len(audio) // BLOCK_SIZE
            held_t, onset_t = _targets(score, T, SAMPLE_RATE / BLOCK_SIZE)
            ref = playable_notes(score)  # the audio's own note times (issue 23), unisons once
            for ename, ear in ears.items():
                held, onset = ear.transcribe(audio)
                f = frame_f1(held, held_t)["f1"]
                est = rolls_to_score(held, onset, SAMPLE_RATE / BLOCK_SIZE)
                nf = note_metrics(ref, est)["f1"]
                r = results.setdefault(f"{ename}|{sname}|{cname}", {"frame_f1": [], "note_f1": []})
                r["frame_f1"].append(f)
                r["note_f1"].append(nf)
    return {k: {m: float(np.mean(v)) for m, v in d.items()} for k, d in results.items()}


def table(results: dict) -> str:
    lines = ["| ear | synth | corpus | frame F1 | note F1 |", "|---|---|---|---|---|"]
    for k, d in results.items():
        e, s, c = k.split("|")
        lines.append(f"| {e} | {s} | {c} | {d['frame_f1']:.3f} | {d['note_f1']:.3f} |")
    return "\n".join(lines)


def time_activations(ear, batch: int, repeats: int = 200) -> float:
    """Mean seconds per `activations` call on (batch, window) noise."""
    x = (np.random.default_rng(0).standard_normal((batch, ear.window)) * 0.05).astype(np.float32)
    ear.activations(x)
    t = time.perf_counter()
    for _ in range(repeats):
        ear.activations(x)
    return (time.perf_counter() - t) / repeats


def build_dataset(pairs: int, seed: int, max_seconds: float = 30.0, progress: bool = True):
    from tqdm import tqdm

    from lmm_env.synth import make_synth

    rng = np.random.default_rng(seed)
    synth = make_synth("piano", SAMPLE_RATE)
    analytic = AnalyticEar(history_blocks=3, iterations=10, bins_per_semitone=BINS_PER_SEMITONE, n_fft=None)  # as the LearnedEar sees it
    scale = LearnedEar.__init__.__defaults__[-1]
    specs, acts, helds, onsets = [], [], [], []
    for score in tqdm(_pick_pieces(pairs, "train", rng), desc="render pairs", disable=not progress):
        s = _vary(score, rng, max_seconds)
        audio = synth.render(s) * np.float32(10.0 ** (rng.uniform(-12, 6) / 20.0))
        frames = _frames(audio, analytic.window, BLOCK_SIZE)
        spec, act, _ = _features_np(np.ascontiguousarray(frames), analytic, scale)
        held, onset = _targets(s, len(frames), SAMPLE_RATE / BLOCK_SIZE)
        specs.append(spec)
        acts.append(act)
        helds.append(held)
        onsets.append(onset)
    return (np.concatenate(specs), np.concatenate(acts), np.concatenate(helds), np.concatenate(onsets))


def _checked_pairs(pairs) -> list:
    """``pairs`` as a list, each pair passed through `lmm_env.pairs.check_pair` (a ValueError naming the bad one)."""
    from lmm_env._checks import short_repr
    from lmm_env.pairs import Pair, check_pair

    if isinstance(pairs, (Pair, str, bytes, np.ndarray)) or not hasattr(pairs, "__iter__"):
        raise ValueError(f"pairs={short_repr(pairs)} is not allowed; give a list of lmm_env.pairs.Pair "
                         "(e.g. lmm_env.pairs.load(16))")
    pairs = list(pairs)
    for i, pair in enumerate(pairs):
        check_pair(pair, i, SAMPLE_RATE)
    return pairs


def pairs_dataset(pairs, seed: int = 0, gains: int = 2, progress: bool = True):
    """Features and targets of K score-audio pairs (`lmm_env.pairs`), each heard at ``gains`` random levels.

    Only the pairs' own audio is used (scaled by a gain drawn in [-12, +6] dB): no pair is
    re-rendered transposed or re-timed, so K stays the number of pairs learned from. Every
    pair is checked first (`lmm_env.pairs.check_pair`)."""
    from tqdm import tqdm

    pairs = _checked_pairs(pairs)
    rng = np.random.default_rng(seed)
    analytic = AnalyticEar(history_blocks=3, iterations=10, bins_per_semitone=BINS_PER_SEMITONE, n_fft=None)
    scale = LearnedEar.__init__.__defaults__[-1]
    specs, acts, helds, onsets = [], [], [], []
    for pair in tqdm(pairs, desc="ear features", disable=not progress, leave=False):
        frames = np.ascontiguousarray(_frames(pair.audio, analytic.window, BLOCK_SIZE))
        held, onset = _targets(pair.score, len(frames), SAMPLE_RATE / BLOCK_SIZE)
        for _ in range(gains):
            g = np.float32(10.0 ** (rng.uniform(-12, 6) / 20.0))
            spec, act, _ = _features_np(frames * g, analytic, scale)
            specs.append(spec)
            acts.append(act)
            helds.append(held)
            onsets.append(onset)
    return (np.concatenate(specs), np.concatenate(acts), np.concatenate(helds), np.concatenate(onsets))


def _train_ear(spec, act, held, onset, steps: int, batch: int, lr: float, seed: int, bar, deadline=None):
    """Adam with a one-cycle schedule on (spec, act) -> (held, onset): (model, loss EMA, last step).

    ``bar`` iterates the steps (a tqdm bar); ``deadline`` (time.time() seconds) stops early."""
    model = LearnedEar()
    spec_t, act_t = torch.from_numpy(spec), torch.from_numpy(act)
    y = torch.from_numpy(np.stack([held, onset], axis=-1).astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    pos_w = torch.tensor([1.0, 4.0])
    ema, step = None, -1
    for step in bar:
        idx = torch.randint(0, len(spec_t), (batch,), generator=gen)
        logits = model(spec_t[idx], act_t[idx])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y[idx], pos_weight=pos_w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{ema:.4f}")
        if deadline is not None and time.time() > deadline:
            print(f"time cap reached at step {step}")
            break
    model.eval()
    model.refresh()
    return model, ema, step


def fit_ear(pairs, steps: int = 1500, batch: int = 128, lr: float = 3e-3, seed: int = 0, threads: int | None = 1,
            progress: bool = True):
    """The `LearnedEar` of K score-audio pairs (``lmm_env.pairs.load(K)``); K = 0 gives the `AnalyticEar`.

    ``steps`` Adam steps (one-cycle schedule) of ``batch`` frames, deterministic given ``seed``.
    The defaults take about a minute on one core for K <= 64 (see BENCHMARKS.md); one torch thread
    is the fastest here (the small convolutions scale badly), so ``threads=1`` by default.

    Every pair is checked before any work (`lmm_env.pairs.check_pair`; a ValueError names the
    pair): a `lmm_env.pairs.Pair` whose audio is a non-empty 1-D float numpy array (int16 PCM:
    divide by 32768), all finite, at 16 kHz, ending at most ``PAIR_TOLERANCE_SECONDS`` (0.5 s)
    before the score's last note ends and near silent from ``PAIR_TAIL_SECONDS`` (5 s) after it.
    ``steps`` is an int in [1, 10**6], ``batch`` an int in [1, 65536], ``lr`` a number in (0, 1],
    ``seed`` an int >= 0, ``threads`` None (torch's setting) or an int in [1, 256].

    Pairs of any instrument work: ``lmm_env.pairs.load(K, instrument="soundfont")`` (or a .sf2
    path), or your own recordings, ``lmm_env.pairs.from_files(wavs, midis)``. The ear's
    ``fit_info`` records how many pairs and of which instrument (``Pair.instrument``).
    """
    from lmm_env._checks import check_int, check_seed, short_repr

    steps = check_int("steps", steps, 1, 10**6)
    batch = check_int("batch", batch, 1, 65536)
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.number)) or not 0 < lr <= 1:
        raise ValueError(f"lr={short_repr(lr)} is not allowed; use a learning rate in (0, 1]")
    if seed is None:  # the fit is deterministic in its seed
        raise ValueError("seed=None is not allowed; use an int >= 0")
    seed = check_seed(seed)
    if threads is not None:
        threads = check_int("threads", threads, 1, 256)
    pairs = _checked_pairs(pairs)  # all of them, before any feature is computed
    if len(pairs) == 0:
        return AnalyticEar()
    from tqdm import tqdm

    n_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        spec, act, held, onset = pairs_dataset(pairs, seed=seed, progress=progress)
        model, ema, _ = _train_ear(spec, act, held, onset, steps, batch, lr, seed,
                                   tqdm(range(steps), desc=f"fit ear ({len(pairs)} pairs)", disable=not progress,
                                        leave=False))
    finally:
        torch.set_num_threads(n_threads)
    names = sorted({getattr(p, "instrument", "") or "" for p in pairs})
    model.fit_info = {"pairs": len(pairs), "frames": int(len(spec)), "steps": steps, "final_loss": float(ema),
                      "instrument": names[0] if len(names) == 1 else ", ".join(n or "?" for n in names)}
    return model


# --------------------------------------------------------------------------- the ear of K pairs
# `lmm_env.pairs` builds the K protocol pairs; the ears are fitted on them here (this module imports
# `lmm_env.pairs`, never the reverse).

SHIPPED_EAR_K = (4, 16, 64)  # learned ears shipped for synth="piano", seed 0 (lmm_env/lm/weights/)
_EAR_FORMAT = 1  # bump when fit_ear's recipe changes, so cached ears are refitted
_EARS: dict[tuple, object] = {}


def _synth_tag(synth) -> str:
    """The name the ear cache keys an instrument by (a world synth's name, or a hash of a SoundFont path)."""
    from lmm_env.synth import SYNTHS
    from lmm_env.synth.room import split_room

    base, room = split_room(synth)
    if room is not None:  # "piano@hall": the instrument's tag and the named room's
        return f"{_synth_tag(base)}-{room}"
    if isinstance(synth, str) and synth in SYNTHS:
        return synth
    path = os.fspath(synth)
    return "sf2-" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:10]


def ear_for(K, instrument=_DEFAULT, seed: int = 0, progress: bool = True, *, synth=_DEFAULT):
    """The ear of K pairs: analytic for K = 0, else `fit_ear` on ``lmm_env.pairs.load(K, instrument, seed)``.

    The ear an env made with ``pairs=K`` listens with (and an agent given ``pairs=K``): the
    pairs are rendered through the world's instrument, or the target's in LMMByEar-v0 with
    rendered targets. Shipped for the built-in piano (K = 4, 16, 64, seed 0); otherwise fitted
    once (about 30-45 s on 2 cores for K <= 64, measured; hours for "all") and cached under the
    corpus cache dir, with a warning before the fit saying how long it may take and where it
    goes. A fit whose memory estimate (``BYTES_PER_PAIR`` a pair: ~29 GB for "all") exceeds the
    memory this machine has available is refused with a ValueError before it starts.
    ``instrument`` is "piano" (default), another world synth's name ("soundfont", ...) or a
    SoundFont path (the cache is keyed by it);
    ``synth=`` is its old name (giving both is refused).
    """
    from lmm_env import pairs as pairs_mod
    from lmm_env._checks import check_seed, short_repr, writable_dir
    from lmm_env.lm.checkpoint import WEIGHTS_DIR, load_checkpoint, load_pretrained, save_checkpoint

    synth, what = pairs_mod._instrument_arg(instrument, synth)
    K = pairs_mod.check_k(K)
    # checked before anything is loaded or fitted (a fit takes minutes)
    if not isinstance(synth, (str, os.PathLike)):
        raise ValueError(f"{what}={short_repr(synth)} is not allowed for ear_for (its cache is keyed by the "
                         "instrument's name): use a world synth's name ('piano', 'soundfont', ...) or a SoundFont "
                         "path; for a Synth object, lmm_env.lm.fit_ear(lmm_env.pairs.load(K, instrument=...))")
    pairs_mod._check_synth(synth, 16000, what)
    if seed is None:
        raise ValueError("seed=None is not allowed; use an int >= 0 (the pairs are the same for everyone who uses it)")
    seed = check_seed(seed)
    if K == 0:
        return load_pretrained("ear-analytic")
    key = (K, _synth_tag(synth), seed)
    if key in _EARS:
        return _EARS[key]
    shipped = WEIGHTS_DIR / f"ear_pairs{K}.safetensors"
    if key[1] == "piano" and seed == 0 and K in SHIPPED_EAR_K and shipped.is_file():
        ear = load_checkpoint(shipped)
    else:
        from lmm_env.corpus import cache_dir

        path = Path(cache_dir()) / "ears" / f"pairs{K}-{key[1]}-seed{seed}-v{_EAR_FORMAT}.safetensors"
        if path.is_file():
            ear = load_checkpoint(path)
        else:
            todo = pairs_mod.load(K, synth=synth, seed=seed)  # lazy: nothing rendered yet
            _check_fit_memory(K, len(todo), path)
            try:  # checked before the fit (minutes): an unwritable cache costs the cache, not the ear
                writable_dir(path.parent, "the ear cache folder")
            except ValueError as exc:
                warnings.warn(f"{exc}; the ear of {K} pairs will be fitted but not cached (set LMM_ENV_CACHE to a "
                              "writable folder)", UserWarning, stacklevel=2)
                path = None
            _warn_fit(len(todo), synth, seed, path)
            ear = fit_ear(todo, seed=seed, progress=progress)
            if path is not None:
                save_checkpoint(ear, path, extra={"pairs": K, "synth": key[1], "seed": seed})
    ear.eval()
    _EARS[key] = ear
    return ear


# rough costs of an uncached fit (BENCHMARKS.md): fit_ear's training, a 15 s clip's render, and the
# memory a pair holds while fitting (its audio and the features of it at two gains)
FIT_SECONDS, RENDER_SECONDS_PER_PAIR, BYTES_PER_PAIR = 60.0, 1.5, 3e6


def _warn_fit(n: int, synth, seed: int, path) -> None:
    """Say, before a fit that nothing has cached, what it costs and where it goes (the fit shows progress)."""
    seconds = FIT_SECONDS + RENDER_SECONDS_PER_PAIR * n
    took = f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
    gb = n * BYTES_PER_PAIR / 1e9
    memory = f" and about {gb:.0f} GB of memory" if gb >= 1 else ""
    where = f"it will be cached at {str(path)!r} for next time" if path is not None else "it will not be cached"
    warnings.warn(f"fitting the ear of {n} pairs (synth {os.fspath(synth)!r}, seed {seed}) before this can run: "
                  f"roughly {took} (about {RENDER_SECONDS_PER_PAIR:g} s to render each pair, then the fit){memory}; "
                  f"{where}", UserWarning, stacklevel=3)


def available_memory() -> int | None:
    """Bytes of memory this machine can give now (MemAvailable; else its physical memory), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _check_fit_memory(K, n: int, path) -> None:
    """Refuse, before any render, a fit whose memory estimate (`_warn_fit`'s) exceeds what this machine has:
    it would run for hours and then fail (K = "all" wants ~29 GB)."""
    need, have = n * BYTES_PER_PAIR, available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"pairs={K!r}: fitting the ear of {n} pairs needs about {need / 1e9:.3g} GB of memory, but this machine "
            f"has {have / 1e9:.3g} GB available; use fewer pairs (pairs=4, 16 or 64), or fit it on a machine that "
            f"has the memory (python -m lmm_env.lm.train ear-pairs --pairs {K}, same synth and seed) and copy the ear "
            f"file to {str(path)!r}")


def train_main(argv=None) -> int:
    from tqdm import tqdm

    from lmm_env.lm.checkpoint import WEIGHTS_DIR, save_checkpoint

    ap = argparse.ArgumentParser(prog="python -m lmm_env.lm.train ear",
                                 description="Train the LearnedEar from K score-audio pairs and evaluate both ears.")
    ap.add_argument("--pairs", type=int, default=16,
                    help="training score-audio pairs, 1..1000 (default 16; its own recipe: random pieces, varied and "
                         "up to 30 s; for the ear of K protocol pairs, lmm_env.pairs, use ear-pairs)")
    ap.add_argument("--out", default=str(WEIGHTS_DIR / "ear.safetensors"))
    ap.add_argument("--minutes", type=float, default=15.0,
                    help="safety cap on training time; hitting it breaks determinism (default 15)")
    ap.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-pieces", type=int, default=10, help="test pieces per corpus (default 10; 0: skip)")
    args = ap.parse_args(argv)
    from lmm_env._checks import check_cli_output
    from lmm_env.lm.checkpoint import check_train_options

    check_train_options(ap, args, pairs=(1, 1000))
    check_cli_output(ap, args.out)  # before the training, not after it

    t0 = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    spec, act, held, onset = build_dataset(args.pairs, args.seed)
    print(f"{len(spec)} training frames from {args.pairs} pairs ({time.time() - t0:.1f} s)")
    model, ema, step = _train_ear(spec, act, held, onset, args.steps, 128, 3e-3, args.seed,
                                  tqdm(range(args.steps), desc="train ear"), deadline=time.time() + args.minutes * 60)
    train_seconds = time.time() - t0
    extra = {"pairs": args.pairs, "seed": args.seed, "steps": step + 1, "train_frames": int(len(spec)),
             "train_wall_seconds": round(train_seconds, 1), "final_loss": round(float(ema), 5)}
    if args.eval_pieces > 0:
        res = evaluate({"analytic": AnalyticEar(), "learned": model}, n_each=args.eval_pieces)
        tab = table(res)
        print(tab)
        extra["eval"] = res
        extra["eval_table"] = tab
        extra["eval_note"] = (f"test split, first {args.eval_pieces} evenly spaced pieces of folk and "
                              "bach-chorales, trimmed to 30 s")
    timings = {}
    for ename, ear in (("analytic", AnalyticEar()), ("learned", model)):
        for b in (1, 64):
            timings[f"{ename}_B{b}_us"] = round(time_activations(ear, b, 200 if b == 1 else 20) * 1e6, 1)
    print("activations timing (us per call):", json.dumps(timings))
    extra["activation_us"] = timings
    extra["total_wall_seconds"] = round(time.time() - t0, 1)
    path = save_checkpoint(model, args.out, extra=extra)
    print(f"saved {path} (total {time.time() - t0:.0f} s)")
    return 0


def pairs_main(argv=None) -> int:
    """``python -m lmm_env.lm.train ear-pairs --pairs K``: fit, evaluate and save the ear of K pairs."""
    from lmm_env import pairs as pairs_mod
    from lmm_env.lm.checkpoint import WEIGHTS_DIR, save_checkpoint

    ap = argparse.ArgumentParser(prog="python -m lmm_env.lm.train ear-pairs",
                                 description="Fit the learned ear of K protocol pairs (lmm_env.pairs) with fit_ear.")
    ap.add_argument("--pairs", default="16", help="K: 4, 16, 64 or all (default 16)")
    ap.add_argument("--instrument", "--synth", dest="synth", default="piano",
                    help="instrument the pairs are rendered through: piano (default), grand, soundfont or a "
                         ".sf2/.sf3 path, each optionally @studio, @living-room, @hall or @church")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="default: lmm_env/lm/weights/ear_pairs{K}.safetensors")
    ap.add_argument("--eval-pieces", type=int, default=10, help="test pieces per corpus (default 10; 0: skip)")
    args = ap.parse_args(argv)
    from lmm_env._checks import check_cli_output
    from lmm_env.lm.checkpoint import check_train_options

    check_train_options(ap, args)
    try:
        K = pairs_mod.check_k(args.pairs)
        out = args.out or str(WEIGHTS_DIR / f"ear_pairs{K}.safetensors")
        ps = pairs_mod.load(K, synth=args.synth, seed=args.seed)  # checks the synth and seed (renders nothing)
        _check_fit_memory(K, len(ps), out)  # hours of rendering must not end in a MemoryError
    except ValueError as exc:
        ap.error(str(exc))
    check_cli_output(ap, out)  # before the fit, not after it
    t0 = time.time()
    model = fit_ear(ps, seed=args.seed)
    extra = dict(model.fit_info, synth=args.synth, seed=args.seed, fit_wall_seconds=round(time.time() - t0, 1),
                 command=f"python -m lmm_env.lm.train ear-pairs --pairs {K} --synth {args.synth} --seed {args.seed}")
    if args.eval_pieces > 0:
        res = evaluate({"analytic": AnalyticEar(), f"pairs{K}": model}, n_each=args.eval_pieces)
        print(table(res))
        extra["eval"], extra["eval_table"] = res, table(res)
        extra["eval_note"] = (f"test split, first {args.eval_pieces} evenly spaced pieces of folk and "
                              "bach-chorales, trimmed to 30 s")
    save_checkpoint(model, out, extra=extra)
    print(f"saved {out} ({extra['fit_wall_seconds']} s to fit)")
    return 0
