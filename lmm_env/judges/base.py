"""The judge protocol, the codec + token LM judge, resampling, and the registry of judges by name."""
from __future__ import annotations

import abc
import math
from typing import Callable

import numpy as np

from lmm_env._checks import check_int, short_repr

EXTRA_HINT = "pip install 'lmm_env[judges]'  (transformers and miditok; torchaudio is not needed)"


def require_extra(what: str):
    """Import and return ``transformers`` (and check miditok), or an ImportError naming the extra."""
    try:
        import miditok  # noqa: F401
        import transformers
    except ImportError as exc:
        raise ImportError(f"{what} needs the optional extra 'judges' ({exc.name} is missing): {EXTRA_HINT}") from None
    return transformers


class Judge(abc.ABC):
    """A language model that scores music: mean log-likelihood per token (higher: likelier)."""

    name: str = "judge"


class AudioJudge(Judge):
    """A judge that hears audio.

    Attributes:
        sample_rate: the rate it hears at (the env's audio is resampled to it).
        frame_samples: samples (at ``sample_rate``) per token frame; a window must hold a
            whole number of them.
        context_frames: the most token frames it can read at once.
    """

    sample_rate: int
    frame_samples: int
    context_frames: int

    @abc.abstractmethod
    def score(self, audio) -> np.ndarray:
        """(B, n) float audio at ``sample_rate`` (numpy or torch) -> (B,) float64 mean
        log-likelihood per token (torch input: a torch tensor on its device)."""


class SymbolicJudge(Judge):
    """A judge that reads notes.

    Attributes:
        context_tokens: the most tokens it can read at once (longer inputs keep their last).
    """

    context_tokens: int

    @abc.abstractmethod
    def score_notes(self, notes: list) -> np.ndarray:
        """A list of B note sets (`lmm_env.score.Score`s, times in seconds) -> (B,) float64
        mean log-likelihood per token (NaN for a set too short to have a scored token)."""


# ----------------------------------------------------------------------------- resampling

_FILTERS: dict = {}


def _resample_filter(up: int, down: int):
    key = (up, down)
    if key not in _FILTERS:
        from scipy.signal import firwin

        # a windowed-sinc low-pass at the lower Nyquist, as scipy.signal.resample_poly designs it
        half = 10 * max(up, down)
        h = firwin(2 * half + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
        _FILTERS[key] = h.astype(np.float32)
    return _FILTERS[key]


def resample(audio, from_rate: int, to_rate: int):
    """(B, n) audio from ``from_rate`` to ``to_rate`` Hz by polyphase filtering (numpy in,
    numpy out; torch in, torch out on its device, so a GPU world's audio stays there).
    ``n * to_rate / from_rate`` must be whole."""
    import torch

    from_rate, to_rate = int(from_rate), int(to_rate)
    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    is_torch = isinstance(audio, torch.Tensor)
    x = audio if is_torch else torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    if x.ndim != 2:
        raise ValueError(f"audio must be (batch, samples), got shape {tuple(x.shape)}")
    n = x.shape[1]
    if (n * up) % down:
        raise ValueError(f"{n} samples at {from_rate} Hz are not a whole number of samples at {to_rate} Hz")
    if up == down:
        return audio
    h = torch.from_numpy(_resample_filter(up, down)).to(x.device, x.dtype)
    pad = (len(h) - 1) // 2
    z = x.new_zeros(x.shape[0], n * up)
    z[:, ::up] = x  # zero-stuffed
    y = torch.nn.functional.conv1d(z[:, None], h.flip(0)[None, None], padding=pad)[:, 0, ::down]
    y = y[:, : n * up // down]
    return y if is_torch else y.numpy()


# ----------------------------------------------------------------------------- codec + token LM

class CodecLMJudge(AudioJudge):
    """Any codec + token LM pair, scored unconditionally with MusicGen's delay pattern.

    The codec turns audio into K parallel codebook streams (B, K, T); the LM reads them
    *delayed* (codebook k shifted k frames right, pad elsewhere, a start token first: the
    pattern MusicGen is trained on) and predicts each next token. The score of a clip is the
    mean log-probability of its B x K x T codes. ``delay=False`` reads the streams in step
    (an LM trained that way).

    Args:
        encode: (B, n) float tensor at ``sample_rate`` -> (B, K, T) long codes.
        logits: (B, K, S) long tokens -> (B, K, S, V) float logits (V > every code id).
        sample_rate, frame_samples: the codec's rate and hop (samples per code frame).
        num_codebooks: K. pad_token_id, bos_token_id: the LM's pad and start tokens.
        context_frames: the most code frames a window may hold (the LM's positions minus the delay).
        device: where the codec and LM run (numpy audio is moved there).
    """

    def __init__(self, encode: Callable, logits: Callable, sample_rate: int, frame_samples: int, num_codebooks: int,
                 pad_token_id: int, bos_token_id: int, context_frames: int, delay: bool = True, device="cpu",
                 name: str = "codec-lm"):
        if not callable(encode) or not callable(logits):
            raise TypeError("encode and logits must be callables (see CodecLMJudge)")
        self.encode, self.logits = encode, logits
        self.sample_rate = check_int("sample_rate", sample_rate, 1000, 384_000)
        self.frame_samples = check_int("frame_samples", frame_samples, 1, 1 << 20)
        self.num_codebooks = check_int("num_codebooks", num_codebooks, 1, 64)
        self.pad_token_id, self.bos_token_id = int(pad_token_id), int(bos_token_id)
        self.context_frames = check_int("context_frames", context_frames, 1, 1 << 20)
        self.delay = bool(delay)
        self.device = device
        self.name = name

    def tokens(self, codes):
        """(B, K, T) codes -> (inputs, labels), each (B, K, S): labels are the (delayed) codes with
        pad where no code is; inputs are the labels shifted right behind the start token."""
        import torch

        B, K, T = codes.shape
        S = T + (K - 1 if self.delay else 0)
        labels = torch.full((B, K, S), self.pad_token_id, dtype=torch.long, device=codes.device)
        for k in range(K):
            off = k if self.delay else 0
            labels[:, k, off:off + T] = codes[:, k]
        inputs = torch.full_like(labels, self.pad_token_id)
        inputs[:, :, 0] = self.bos_token_id
        inputs[:, :, 1:] = labels[:, :, :-1]
        return inputs, labels

    def score(self, audio) -> np.ndarray:
        import torch

        is_torch = isinstance(audio, torch.Tensor)
        x = audio if is_torch else torch.from_numpy(np.ascontiguousarray(audio, np.float32))
        if x.ndim != 2:
            raise ValueError(f"audio must be (batch, samples), got shape {tuple(x.shape)}")
        if x.shape[1] % self.frame_samples:
            raise ValueError(f"{x.shape[1]} samples are not a whole number of {self.frame_samples}-sample codec "
                             f"frames at {self.sample_rate} Hz")
        frames = x.shape[1] // self.frame_samples
        if frames > self.context_frames:
            raise ValueError(f"{frames} codec frames are more than the judge reads at once ({self.context_frames})")
        with torch.no_grad():
            codes = self.encode(x.to(self.device))
            inputs, labels = self.tokens(codes)
            logp = torch.log_softmax(self.logits(inputs).float(), dim=-1)
            valid = labels != self.pad_token_id
            lp = logp.gather(-1, torch.where(valid, labels, 0)[..., None])[..., 0]  # pad may lie past the vocab
            out = (lp * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp_min(1)
        return out.double() if is_torch else out.double().cpu().numpy()


# ----------------------------------------------------------------------------- registry

_JUDGES: dict[str, tuple[Callable[[], Judge], dict]] = {}


def register(name: str, factory: Callable[[], Judge], overwrite: bool = False, **reward_kwargs) -> None:
    """Make ``reward=name`` (and ``{name: weight}``) a reward over the judge ``factory()`` builds.

    The factory runs when an env is made (so weights load only when used). An `AudioJudge`
    becomes an `lmm_env.rewards.AudioJudgeReward`, a `SymbolicJudge` a
    `lmm_env.rewards.SymbolicJudgeReward`; ``reward_kwargs`` go to it (``window_seconds``,
    ``every``, ``temperature``, ...)."""
    from lmm_env import rewards

    if not isinstance(name, str) or not name:
        raise ValueError(f"judge name {short_repr(name)} must be a non-empty string")
    if not callable(factory):
        raise TypeError(f"factory for judge {name!r} must be callable, got {short_repr(factory)}")
    if name in rewards.names() and name not in _JUDGES and not overwrite:
        raise ValueError(f"{name!r} is already a registered reward; pick another name or pass overwrite=True")
    if name in _JUDGES and not overwrite:
        raise ValueError(f"judge {name!r} is already registered; pass overwrite=True to replace it")
    _JUDGES[name] = (factory, dict(reward_kwargs))

    def reward():
        return judge_reward(make(name), **_JUDGES[name][1])

    rewards.register(name, reward, overwrite=True)


def _remi_judge():
    from lmm_env.judges.remi import load

    return load()


# shipped with the package (trained here on its own corpora; needs the extra to load)
_JUDGES["remi-judge"] = (_remi_judge, {})


def names() -> list[str]:
    """Registered judge names."""
    return sorted(_JUDGES)


def make(name: str) -> Judge:
    """The judge registered as ``name``, built by its factory."""
    if name not in _JUDGES:
        raise ValueError(f"unknown judge {short_repr(name)}; registered judges: {names()} (lmm_env.judges.register)")
    judge = _JUDGES[name][0]()
    if not isinstance(judge, Judge):
        raise TypeError(f"judge {name!r}: its factory returned {short_repr(judge)}, not a lmm_env.judges.AudioJudge "
                        "or SymbolicJudge")
    return judge


def judge_reward(judge: Judge, **kwargs):
    """The reward over ``judge``: `AudioJudgeReward` or `SymbolicJudgeReward` by its kind."""
    from lmm_env.rewards.judges import AudioJudgeReward, SymbolicJudgeReward

    if isinstance(judge, AudioJudge):
        return AudioJudgeReward(judge, **kwargs)
    if isinstance(judge, SymbolicJudge):
        return SymbolicJudgeReward(judge, **kwargs)
    raise TypeError(f"{short_repr(judge)} is neither an AudioJudge nor a SymbolicJudge")
