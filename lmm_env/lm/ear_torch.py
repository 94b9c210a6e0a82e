"""The ears in torch: differentiable pitch activations of audio, for learning through the world.

`AnalyticEar` and `LearnedEar` run in numpy at inference (fast per env step, no autograd).
Agents that learn by backpropagation through `DifferentiablePianoSynth` need the same
reading with gradients: ``TorchEar(ear)(audio)`` slides the ear's window over 1-D or
batched audio, one frame per block, zero-padded at the start exactly as
``ear.transcribe`` does, and returns the held activations ``(..., T, 88)`` in [0, 1].

The arithmetic is the numpy ear's, term for term (the same windows, log-frequency map,
KL-NMF updates, squashing and, for the learned ear, network), so on the same audio the two
agree to float32 rounding (tested). Magnitudes use ``sqrt(re^2 + im^2 + tiny)`` so that
silent bins have finite gradients.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lmm_env.lm import ear as _ear

__all__ = ["TorchEar"]


def _dense_log_map(n_fft: int, sample_rate: int, bps: int) -> torch.Tensor:
    """The ear's linear -> log-frequency CSR map as a dense (n_used, F) matrix (x @ M)."""
    ptr, idx, wts, n_used = _ear._log_map(n_fft, sample_rate, bps)
    F = len(ptr) - 1
    m = np.zeros((n_used, F), np.float32)
    rows = np.repeat(np.arange(F), np.diff(ptr))
    m[idx, rows] = wts
    return torch.from_numpy(m)


class _LogSpectrum(nn.Module):
    """(B, n) audio -> (B, F) log-frequency magnitudes under the ear's window ``win``."""

    def __init__(self, n_fft: int, recent: int, sample_rate: int, bps: int):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("win", torch.from_numpy(_ear._window(n_fft, recent).copy()), persistent=False)
        self.register_buffer("map", _dense_log_map(n_fft, sample_rate, bps), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(x * self.win, n=self.n_fft)[..., : self.map.shape[0]]
        mag = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-20)
        return mag @ self.map


class _AnalyticTorch(nn.Module):
    def __init__(self, ear: "_ear.AnalyticEar"):
        super().__init__()
        self.n_fft, self.iterations = ear.n_fft, ear.iterations
        self.relative, self.slope, self.floor = ear.relative, ear.slope, float(ear._floor)
        self.long = _LogSpectrum(ear.n_fft, ear.block_size, ear.sample_rate, ear.bins_per_semitone)
        self.register_buffer("W", torch.from_numpy(ear.W.copy()), persistent=False)

    def gains(self, long_spec: torch.Tensor) -> torch.Tensor:
        V = long_spec + _ear.EPS
        H = (V @ self.W).clamp_min(_ear.EPS)
        for _ in range(self.iterations):
            H = H * ((V / (H @ self.W.T)) @ self.W)
        return H

    def squash(self, H: torch.Tensor) -> torch.Tensor:
        ref = H.amax(dim=-1, keepdim=True) * self.relative + self.floor
        r = (H / ref) ** self.slope
        return r / (r + 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.squash(self.gains(self.long(x[..., x.shape[-1] - self.n_fft:])))


class _LearnedTorch(nn.Module):
    def __init__(self, ear: "_ear.LearnedEar"):
        super().__init__()
        self.ear = ear  # its conv and MLP are used as they are (gradients reach them too)
        self.analytic = _AnalyticTorch(ear.analytic)
        b = ear.block_size
        self.long = _LogSpectrum(ear.window, b, ear.sample_rate, _ear.BINS_PER_SEMITONE)
        self.short = _LogSpectrum(b, b // 2, ear.sample_rate, _ear.BINS_PER_SEMITONE)
        self.block, self.scale = b, ear.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        long_spec = self.long(x)
        short_spec = self.short(x[..., x.shape[-1] - self.block:])
        act = self.analytic.squash(self.analytic.gains(long_spec))
        spec = torch.stack([torch.log1p(long_spec / self.scale), torch.log1p(short_spec / self.scale)], dim=-2)
        logits = self.ear(spec, act)
        return torch.sigmoid(logits[..., 0])


class TorchEar(nn.Module):
    """A differentiable copy of ``ear`` (an `AnalyticEar` or `LearnedEar`).

    ``forward(audio)``: audio ``(n,)`` or ``(B, n)`` float32 tensor -> activations
    ``(T, 88)`` or ``(B, T, 88)``, ``T = n // block_size``; frame t is the window ending
    with block t (zero history before the start), as in ``ear.transcribe``.
    """

    def __init__(self, ear):
        super().__init__()
        if isinstance(ear, _ear.LearnedEar):
            self.core = _LearnedTorch(ear)
        elif isinstance(ear, _ear.AnalyticEar):
            self.core = _AnalyticTorch(ear)
        else:
            raise TypeError(f"TorchEar needs an AnalyticEar or a LearnedEar, got {type(ear).__name__}")
        self.window, self.block_size = int(ear.window), int(ear.block_size)
        self.sample_rate = int(ear.sample_rate)

    def frames(self, audio: torch.Tensor) -> torch.Tensor:
        """(..., n) audio -> (..., T, window) sliding windows, one per block."""
        T = audio.shape[-1] // self.block_size
        x = audio[..., : T * self.block_size]
        x = torch.nn.functional.pad(x, (self.window - self.block_size, 0))
        return x.unfold(-1, self.window, self.block_size)[..., :T, :]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() not in (1, 2):
            raise ValueError(f"audio must be (n,) or (B, n), got shape {tuple(audio.shape)}")
        fr = self.frames(audio)
        shape = fr.shape[:-1]
        return self.core(fr.reshape(-1, self.window)).reshape(*shape, _ear.N_KEYS)
