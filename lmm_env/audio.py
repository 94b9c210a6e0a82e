"""Log-mel features of audio, one frame per env step (numpy for stepping, torch for gradients).

A frame is computed from exactly one block of ``block_size`` samples (the audio the
agent's keys made during one step): Hann window over the block, FFT of ``n_fft``
(the block itself, or the next power of two when its length has prime factors above 5), power normalized so that a full-scale sine puts 0.25
into its bin, a mel filterbank from librosa (Slaney mel, area-normalized), then
``log(mel + eps)``. Blocks do not overlap, so features of a whole clip (cut into blocks)
equal the features of its blocks computed one by one during an episode, to float32
rounding (|difference| < 1e-5: BLAS may sum a batch in another order than one row).

Speed: pocketfft's float32 real FFT (scipy's raw entry, which has the least overhead per
call; numpy's FFT works in float64), then power and one matmul with the filterbank: faster
than torch's FFT and matmul at every batch size measured (1 to 500 blocks, 1 or 2 threads).
"""
from __future__ import annotations

import math

import numpy as np

from lmm_env._checks import check_int, short_repr


try:  # pocketfft's raw entry: float32 in and out, ~3 us less per call than scipy.fft.rfft
    from scipy.fft._pocketfft.pypocketfft import r2c as _r2c

    def rfft32(x: np.ndarray) -> np.ndarray:
        """Real FFT along the last axis; float32 in, complex64 out (float64 -> complex128)."""
        return _r2c(x, (x.ndim - 1,), True, 0, None, 1)
except ImportError:  # a private module: fall back to the public API if a scipy release moves it
    from scipy.fft import rfft as _scipy_rfft

    def rfft32(x: np.ndarray) -> np.ndarray:
        """Real FFT along the last axis; float32 in, complex64 out (float64 -> complex128)."""
        return _scipy_rfft(x, axis=-1)


def _mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's Slaney mel filterbank (n_mels, n_fft // 2 + 1); its empty-filter warning is checked by the caller."""
    import warnings

    import librosa.filters

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


class LogMel:
    """Log-mel feature extractor over non-overlapping blocks.

    Args:
        sample_rate: audio rate in Hz.
        block_size: samples per frame (``sample_rate / frame_rate`` in the env).
        n_mels: mel bands (default 64).
        fmin, fmax: band edges in Hz (fmax default: Nyquist).
        eps: floor inside the log; silence maps to ``log(eps)``.
    """

    def __init__(self, sample_rate: int = 16000, block_size: int = 800, n_mels: int = 64,
                 fmin: float = 20.0, fmax: float | None = None, eps: float = 1e-8):
        if int(n_mels) < 1:
            raise ValueError(f"n_mels={short_repr(n_mels)} must be >= 1")
        if int(block_size) < 16:
            raise ValueError(f"block_size={short_repr(block_size)} must be >= 16 samples")
        self.sample_rate = int(sample_rate)
        self.block_size = int(block_size)
        self.n_mels = int(n_mels)
        # FFT over the block itself when its length factors into 2, 3 and 5 (pocketfft is fast
        # there, e.g. 800 = 2^5 5^2); otherwise zero-pad to the next power of two.
        m = self.block_size
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        self.n_fft = self.block_size if m == 1 else 1 << (self.block_size - 1).bit_length()
        self.eps = float(eps)
        self.silence = float(np.log(self.eps))
        window = np.hanning(self.block_size + 1)[:-1]  # periodic Hann
        # Power normalization: a full-scale sine gives 0.25 in its bin.
        self.window = (window / window.sum()).astype(np.float32)
        fmax = self.sample_rate / 2 if fmax is None else float(fmax)
        mel = _mel_filters(self.sample_rate, self.n_fft, self.n_mels, fmin, fmax)
        empty = np.flatnonzero(mel.max(axis=1) <= 0)
        if empty.size:  # a band no FFT bin reaches: its feature would be log(0 / 0) = NaN
            ok = max((n for n in range(1, self.n_mels) if _mel_filters(self.sample_rate, self.n_fft, n, fmin, fmax)
                      .max(axis=1).min() > 0), default=0)
            raise ValueError(
                f"n_mels={self.n_mels} is not allowed with blocks of {self.block_size} samples at "
                f"sample_rate={self.sample_rate} ({self.n_fft // 2 + 1} FFT bins): mel bands {empty.tolist()[:8]}"
                f"{'...' if empty.size > 8 else ''} would contain no FFT bin and their features would be NaN. "
                f"The most bands without an empty one here is n_mels={ok}; or use longer blocks (a lower frame_rate)")
        # Scale so that a sine's energy lands in the bands with unit gain at the peak.
        mel = mel / mel.max(axis=1, keepdims=True)
        self.mel_basis = np.ascontiguousarray(mel.T.astype(np.float32))  # (n_fft//2+1, n_mels)
        self._torch_cache = {}

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """Features of audio shaped (..., n_blocks * block_size) -> (..., n_blocks, n_mels).

        A single block (..., block_size) gives (..., 1, n_mels); use `block` for (..., n_mels).
        Trailing samples that do not fill a block are an error, not silently dropped.
        """
        audio = np.asarray(audio)
        if audio.shape[-1] % self.block_size:
            raise ValueError(
                f"audio length {audio.shape[-1]} is not a multiple of block_size={self.block_size}"
            )
        blocks = audio.reshape(*audio.shape[:-1], audio.shape[-1] // self.block_size, self.block_size)
        return self.block(blocks)

    def block(self, blocks: np.ndarray) -> np.ndarray:
        """Features of blocks shaped (..., block_size) -> float32 (..., n_mels)."""
        if type(blocks) is not np.ndarray or blocks.dtype != np.float32:
            blocks = np.asarray(blocks, dtype=np.float32)
        if blocks.shape[-1] != self.block_size:
            raise ValueError(f"blocks end in {blocks.shape[-1]} samples; expected block_size={self.block_size}")
        lead = blocks.shape[:-1]
        flat = blocks.reshape(-1, self.block_size)
        if self.n_fft == self.block_size:
            windowed = flat * self.window
        else:
            windowed = np.zeros((len(flat), self.n_fft), np.float32)
            np.multiply(flat, self.window, out=windowed[:, : self.block_size])
        spec = rfft32(windowed)
        power = spec.real ** 2
        power += spec.imag ** 2
        mel = (power @ self.mel_basis).astype(np.float32, copy=False)
        mel += self.eps
        return np.log(mel, out=mel).reshape(*lead, self.n_mels)

    def torch(self, audio):
        """Differentiable twin: torch audio (..., n_blocks * block_size) -> (..., n_blocks, n_mels)."""
        import torch

        key = (audio.device, audio.dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = (
                torch.as_tensor(self.window, dtype=audio.dtype, device=audio.device),
                torch.as_tensor(self.mel_basis, dtype=audio.dtype, device=audio.device),
            )
        window, basis = self._torch_cache[key]
        if audio.shape[-1] % self.block_size:
            raise ValueError(
                f"audio length {audio.shape[-1]} is not a multiple of block_size={self.block_size}"
            )
        blocks = audio.reshape(*audio.shape[:-1], audio.shape[-1] // self.block_size, self.block_size)
        spec = torch.fft.rfft(blocks * window, n=self.n_fft)
        power = spec.real**2 + spec.imag**2
        return torch.log(power @ basis + self.eps)


SOURCE_RATES = (4000, 384000)  # Hz a recording may be given at (telephone speech to 384 kHz studio audio)
MAX_SAMPLES = 1 << 27  # samples load_audio returns at most (512 MiB of float32; 2.3 h at 16 kHz)
MAX_PEAK = 100.0  # float samples live in [-1, 1]; a peak above this is int PCM or another unit, not audio


def load_audio(source, sample_rate: int, what: str = "audio", source_rate: int | None = None,
               allow_silence: bool = False, max_seconds: float | None = None, return_seconds: bool = False):
    """A recording as 1-D float32 at ``sample_rate``: a WAV (or any soundfile format) path or an array.

    Multi-channel audio is mixed to mono; another sample rate is resampled (librosa, with a
    warning saying so). An array is taken to be at ``source_rate`` (default ``sample_rate``;
    an int in `SOURCE_RATES`); a file carries its own rate, so ``source_rate`` is refused
    with a path. A list of samples is refused: pass a float numpy array.
    ``max_seconds`` reads only the first seconds (a file is not decoded past them; an array
    is cut before resampling). ``return_seconds`` also returns the length in seconds of the
    whole recording (not just of what was read). Raises ValueError naming the problem: a
    missing file or a directory, one that is not audio or whose header gives a rate outside
    `SOURCE_RATES`, a 2-D array that is not (n, channels) with at most 8 channels and n >= 256,
    more than `MAX_SAMPLES` samples at ``sample_rate`` (checked before decoding or resampling),
    an empty recording, non-finite samples, a peak above `MAX_PEAK` (samples not in [-1, 1]),
    or all silence (peak below -80 dBFS) unless ``allow_silence``.
    """
    import os
    import warnings

    if source_rate is not None:
        if isinstance(source, (str, os.PathLike)):
            raise ValueError(f"source_rate= is not allowed with the file {what}={short_repr(os.fspath(source))}: "
                             "a file carries its own sample rate")
        source_rate = check_int("source_rate", source_rate, *SOURCE_RATES)
    sr = sample_rate if source_rate is None else source_rate
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = short_repr(path)
        if os.path.isdir(path):
            raise ValueError(f"{what} {name} is a directory, not an audio file; give a WAV (FLAC, OGG) file")
        if not os.path.isfile(path):
            raise ValueError(f"{what} file {name} does not exist")
        import soundfile as sf

        try:  # sf.info reads the header only: a long file is decoded no further than max_seconds
            info = sf.info(path)
        except Exception as exc:  # soundfile raises its own error type (e.g. a MIDI or text file)
            raise ValueError(f"{what} file {name} is not audio soundfile can read (WAV, FLAC, OGG): {exc}") from None
        sr, total = info.samplerate, info.frames
        if not SOURCE_RATES[0] <= sr <= SOURCE_RATES[1]:  # a header saying 1 Hz would resample 16000-fold
            raise ValueError(f"{what} file {name} says its sample rate is {sr} Hz; allowed: {SOURCE_RATES[0]} to "
                             f"{SOURCE_RATES[1]} Hz (the header is wrong, or the file is no recording)")
        n = total if max_seconds is None else min(total, int(math.ceil(max_seconds * sr)))
        _check_length(n, sr, sample_rate, what, name)  # before decoding
        try:
            data, sr = sf.read(path, frames=n, dtype="float32", always_2d=True)
        except Exception as exc:
            raise ValueError(f"{what} file {name} is not audio soundfile can read (WAV, FLAC, OGG): {exc}") from None
        x = data.mean(axis=1)
    elif isinstance(source, np.ndarray):
        if source.dtype.kind != "f":
            raise ValueError(f"{what} array has dtype {source.dtype}; pass float samples in [-1, 1]")
        x = source
        # (n, channels) or (channels, n): up to 8 channels of at least 256 samples, so (3, 3) is no recording
        if x.ndim == 2 and min(x.shape) <= 8 and max(x.shape) >= 256:
            x = x.mean(axis=1 if x.shape[1] <= 8 else 0)
        if x.ndim != 1:
            raise ValueError(f"{what} array has shape {source.shape}; pass 1-D mono samples (or (n, channels) with "
                             "at most 8 channels and n >= 256)")
        total = len(x)
        if max_seconds is not None:  # resample only the part used
            x = x[: int(math.ceil(max_seconds * sr))]
        name = "array"
        _check_length(len(x), sr, sample_rate, what, name)
    else:
        hint = ": np.asarray(samples, np.float32)" if isinstance(source, (list, tuple)) else ""
        raise ValueError(f"{what}={short_repr(source)} is not allowed; pass a WAV path or a float numpy array{hint}")
    if x.size == 0:
        raise ValueError(f"{what} {name} is empty (no samples)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} {name} contains NaN or inf samples")
    peak = float(np.abs(x).max())
    if peak > MAX_PEAK:
        raise ValueError(f"{what} {name} peaks at {peak:.3g}; pass float samples in [-1, 1] (int PCM: divide by "
                         f"32768 for 16-bit); a peak above {MAX_PEAK:g} is not audio in that range")
    cut = len(x) < total
    if sr != sample_rate:
        import librosa

        warnings.warn(f"{what} {name} is at {sr} Hz; resampled to the env's {sample_rate} Hz", stacklevel=3)
        x = librosa.resample(np.asarray(x, np.float32), orig_sr=sr, target_sr=sample_rate)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not allow_silence and float(np.abs(x).max()) < 1e-4:
        raise ValueError(f"{what} {name} is silent{f' in its first {max_seconds:g} s' if cut else ''} "
                         f"(peak {float(np.abs(x).max()):.2e}, below -80 dBFS); give a recording of music")
    return (x, total / sr) if return_seconds else x


def _check_length(n: int, sr: int, sample_rate: int, what: str, name: str) -> None:
    """Refuse audio that would be more than `MAX_SAMPLES` at ``sample_rate`` (checked before decoding or resampling)."""
    out = math.ceil(n * sample_rate / sr)
    if out > MAX_SAMPLES:
        raise ValueError(f"{what} {name} is {n / sr:.1f} s long, {out} samples at {sample_rate} Hz; at most "
                         f"{MAX_SAMPLES} ({MAX_SAMPLES / sample_rate:.0f} s) are read: pass max_seconds= to read its "
                         "start")
