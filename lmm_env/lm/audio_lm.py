"""LM^A (`AudioLM`): an autoregressive density model of log-mel frames.

Given the last ``context`` log-mel frames (``LogMel(sample_rate, block_size, n_mels)``, one
frame per env step, oldest first), an MLP predicts, for each of the ``n_mels`` bands
independently, a mixture of ``components`` Laplace densities over the next frame's value
(Laplace rather than Gaussian: heavier tails, so an unexpected band costs nats linearly, not
quadratically, which keeps the density sane on other timbres):

* mixture logits, per band;
* means as offsets from the last frame's value (a residual: "the sound goes on");
* log-scales squashed by a tanh into ``[log(sigma_min), log(sigma_max)]``: every Laplace
  scale ``b`` lies in ``[sigma_min, sigma_max]`` (0.1 and 16 nats by default), so an input
  unlike the training data cannot blow a scale up or down.

The lower bound on the scale keeps densities finite and sane where log-mel values sit exactly
on the silence floor (``LogMel.silence = log(1e-8)``): a band of perfect silence can score at
most ``-log(2 sigma_min)`` nats (1.61 for sigma_min = 0.1).

`log_prob` runs every env step, so it is pure numpy on a weight cache built by `refresh`
(input normalization folded into the first layer). Episode starts pad the history with
``LogMel.silence``; `log_prob_sequence` does the same for a whole clip.

Trained (``python -m lmm_env.lm.train audio``) on SoundFont renderings of the train pieces of
``bach-chorales`` and ``folk`` with random tempo, transposition and velocity, a different
timbre from the env's default additive ``piano`` synth on purpose (a stand-in for abundant
real recordings); the held-out NLL on both timbres is stored in the checkpoint's ``extra``.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmm_env._checks import check_cli, check_cli_output, check_int, check_real
from lmm_env.lm.checkpoint import WEIGHTS_DIR, save_checkpoint

SILENCE = float(np.log(1e-8))  # LogMel's floor with its default eps
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


class AudioLM(nn.Module):
    """p(frame_t | frames_{t-K..t-1}): per-band Laplace mixtures from an MLP.

    Args:
        sample_rate, block_size, n_mels: the `LogMel` features this model reads.
        context: K, frames of history (oldest first).
        hidden: width of the hidden layers; layers: how many (ReLU).
        components: Laplace components per band.
        sigma_min, sigma_max: bounds of every component's scale (nats of log-mel).
        bg_weight, bg_scale: weight and scale of the fixed background component (a Laplace
            around the last frame) that bounds how improbable any frame can be.
        silence: the log-mel floor used to pad histories at episode starts.
    """

    def __init__(self, sample_rate: int = 16000, block_size: int = 800, n_mels: int = 64, context: int = 4,
                 hidden: int = 64, layers: int = 2, components: int = 2, sigma_min: float = 0.1,
                 sigma_max: float = 16.0, bg_weight: float = 0.05, bg_scale: float = 1.0,
                 silence: float = SILENCE):
        super().__init__()
        # bounded: a checkpoint's config decides these sizes (see lmm_env.lm.checkpoint)
        for name, v, lo, hi in (("sample_rate", sample_rate, 1000, 384_000), ("block_size", block_size, 1, 1 << 16),
                                ("n_mels", n_mels, 1, 512), ("context", context, 1, 4096), ("hidden", hidden, 1, 8192),
                                ("layers", layers, 1, 64), ("components", components, 1, 64)):
            check_int(name, v, lo, hi)
        # every float too: a file's NaN or inf scale would make every reward NaN, far from the file
        sigma_min = check_real("sigma_min", sigma_min, 0.0, 100.0, lo_open=True)
        sigma_max = check_real("sigma_max", sigma_max, sigma_min, 1000.0, lo_open=True)
        bg_weight = check_real("bg_weight", bg_weight, 0.0, 1.0, lo_open=True, hi_open=True)
        bg_scale = check_real("bg_scale", bg_scale, 0.0, 1000.0, lo_open=True)
        silence = check_real("silence", silence, -1000.0, 0.0)  # log(eps) of LogMel's floor, eps <= 1
        self.config = {
            "sample_rate": int(sample_rate), "block_size": int(block_size), "n_mels": int(n_mels),
            "context": int(context), "hidden": int(hidden), "layers": int(layers),
            "components": int(components), "sigma_min": float(sigma_min), "sigma_max": float(sigma_max),
            "bg_weight": float(bg_weight), "bg_scale": float(bg_scale),
            "silence": float(silence),
        }
        self.sample_rate, self.block_size, self.n_mels = int(sample_rate), int(block_size), int(n_mels)
        self.context, self.components = int(context), int(components)
        self.sigma_min, self.silence = float(sigma_min), float(silence)
        self.log_sigma_min = math.log(self.sigma_min)
        self.sigma_max = float(sigma_max)
        self._ls_mid = 0.5 * (math.log(self.sigma_max) + self.log_sigma_min)
        self._ls_half = 0.5 * (math.log(self.sigma_max) - self.log_sigma_min)
        self.bg_weight, self.bg_scale = float(bg_weight), float(bg_scale)
        # Per-band input normalization (set from training data; folded into layer 0 for numpy).
        self.register_buffer("in_mean", torch.full((self.n_mels,), -12.0))
        self.register_buffer("in_std", torch.full((self.n_mels,), 3.0))
        dims = [self.context * self.n_mels] + [int(hidden)] * int(layers)
        self.hidden_layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], 3 * self.components * self.n_mels)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
        self._np = None

    numpy_dtype = np.float32  # arithmetic of `log_prob` (set np.float64 and `refresh()` for exactness)

    # ------------------------------------------------------------------ torch

    def forward(self, history: torch.Tensor):
        """history (B, K, n_mels) -> (log_weights, means, log_scales), each (B, components + 1, n_mels).

        The parameters of a per-band Laplace mixture; ``log_weights`` are normalized over the
        components (dim 1). The last component is the fixed background: weight ``bg_weight``,
        mean the last frame, scale ``bg_scale``. Means never lie below the silence floor.
        """
        b = history.shape[0]
        x = ((history - self.in_mean) / self.in_std).reshape(b, -1)
        for layer in self.hidden_layers:
            x = torch.relu(layer(x))
        out = self.head(x).reshape(b, 3, self.components, self.n_mels)
        logits, delta, raw = out.unbind(1)
        last = history[:, -1:, :]
        log_w = torch.log_softmax(logits, dim=1) + math.log1p(-self.bg_weight)
        means = (last + delta).clamp_min(self.silence)
        log_scales = self._ls_mid + self._ls_half * torch.tanh(raw)
        log_w = torch.cat([log_w, torch.full_like(last, math.log(self.bg_weight))], 1)
        means = torch.cat([means, last], 1)
        log_scales = torch.cat([log_scales, torch.full_like(last, math.log(self.bg_scale))], 1)
        return log_w, means, log_scales

    def log_prob_torch(self, history: torch.Tensor, frame: torch.Tensor, per_band: bool = False) -> torch.Tensor:
        """Differentiable log density of ``frame`` (B, n_mels): (B,) total, or (B, n_mels) per band."""
        log_w, means, log_scales = self(history)
        z = (frame[:, None, :] - means).abs() * torch.exp(-log_scales)
        comp = log_w - log_scales - z
        lp = torch.logsumexp(comp, dim=1) - _LOG2
        return lp if per_band else lp.sum(-1)

    # ------------------------------------------------------------------ numpy

    def refresh(self) -> None:
        """Rebuild the numpy weight cache from the torch parameters (after load / training)."""
        with torch.no_grad():
            mats = [(l.weight.detach().double().T.numpy(), l.bias.detach().double().numpy())
                    for l in self.hidden_layers]
            mean = np.tile(self.in_mean.double().numpy(), self.context)
            std = np.tile(self.in_std.double().numpy(), self.context)
            w0, b0 = mats[0]
            # scale folded into layer 0; the mean is subtracted first (no float32 cancellation)
            mats[0] = (w0 / std[:, None], b0)
            head_w = self.head.weight.detach().double().T.numpy()
            head_b = self.head.bias.detach().double().numpy()
        c = self.components * self.n_mels
        dt = self.numpy_dtype
        self._np = {
            "layers": [(np.ascontiguousarray(w, dtype=dt), b.astype(dt)) for w, b in mats],
            "head_w": np.ascontiguousarray(head_w, dtype=dt),
            "head_b": head_b.astype(dt),
            "c": c,
            "in_mean": mean.astype(dt),
            "ls_mid": dt(self._ls_mid),
            "ls_half": dt(self._ls_half),
            "1m_bg": dt(1.0 - self.bg_weight),
            "bg_w": dt(self.bg_weight / self.bg_scale),
            "bg_inv": dt(1.0 / self.bg_scale),
            "silence": dt(self.silence),
            "const": -self.n_mels * _LOG2,
        }

    def _cache(self):
        if self._np is None:
            self.refresh()
        return self._np

    def log_prob(self, history: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Log density (nats) of ``frame`` (B, n_mels) given ``history`` (B, K, n_mels): float64 (B,).

        Pure numpy on the weight cache; no torch call. Arithmetic is ``numpy_dtype`` (float32 by
        default: it agrees with the torch density to ~1e-3 nats per frame; float64 agrees exactly
        but costs ~1.5-2x the time), the result float64.
        """
        cache = self._np if self._np is not None else self._cache()
        history = np.asarray(history, dtype=self.numpy_dtype)
        frame = np.asarray(frame, dtype=self.numpy_dtype)
        b = history.shape[0]
        m, n = self.components, self.n_mels
        x = history.reshape(b, -1) - cache["in_mean"]
        for w, bias in cache["layers"]:
            x = x @ w
            x += bias
            np.maximum(x, 0, out=x)
        out = x @ cache["head_w"]
        out += cache["head_b"]
        out = out.reshape(b, 3, m, n)
        last = history[:, -1]
        ls = np.tanh(out[:, 2])
        ls *= cache["ls_half"]
        ls += cache["ls_mid"]
        inv = np.exp(np.negative(ls, out=ls), out=ls)  # 1 / scale
        z = out[:, 1] + last[:, None, :]  # the means, floored at silence
        np.maximum(z, cache["silence"], out=z)
        np.subtract(frame[:, None, :], z, out=z)
        np.abs(z, out=z)
        z *= inv
        np.minimum(z, 80.0, out=z)  # no float32 denormals (slow) from exp; error < 1e-34
        np.exp(np.negative(z, out=z), out=z)
        z *= inv  # 2 * each component's Laplace density
        # mixture weights: softmax of the logits, scaled by (1 - bg_weight)
        logits = out[:, 0]
        e = logits - logits.max(axis=1)[:, None, :]
        np.maximum(e, -80.0, out=e)  # no float32 denormals (slow) from exp; error < 1e-34
        np.exp(e, out=e)
        z *= e
        p = z.sum(axis=1)
        p /= e.sum(axis=1)
        p *= cache["1m_bg"]
        # the background component: a Laplace around the last frame
        bg = np.subtract(frame, last)
        np.abs(bg, out=bg)
        bg *= -cache["bg_inv"]
        np.exp(bg, out=bg)
        bg *= cache["bg_w"]
        p += bg  # >= bg_weight / bg_scale * exp(-|frame - last| / bg_scale) > 0
        return np.log(p, out=p).sum(axis=1, dtype=np.float64) + cache["const"]

    def log_prob_per_band(self, history: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Like `log_prob` but (B, n_mels) per band (via torch; for analysis, not stepping)."""
        with torch.no_grad():
            return self.log_prob_torch(torch.as_tensor(np.asarray(history, np.float32)),
                                       torch.as_tensor(np.asarray(frame, np.float32)),
                                       per_band=True).double().numpy()

    def histories(self, feats: np.ndarray) -> np.ndarray:
        """(T, n_mels) frames -> (T, K, n_mels) silence-padded histories (frame t sees t-K..t-1)."""
        feats = np.asarray(feats, dtype=np.float32)
        k = self.context
        padded = np.concatenate([np.full((k, self.n_mels), self.silence, np.float32), feats])
        idx = np.arange(len(feats))[:, None] + np.arange(k)[None, :]
        return padded[idx]

    def log_prob_sequence(self, feats: np.ndarray) -> np.ndarray:
        """(T, n_mels) log-mel frames -> float64 (T,) log density of each given the previous K."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.n_mels:
            raise ValueError(f"feats must be (T, {self.n_mels}), got {feats.shape}")
        if len(feats) == 0:
            return np.zeros(0)
        hist = self.histories(feats)
        return np.concatenate([self.log_prob(hist[i:i + 4096], feats[i:i + 4096])
                               for i in range(0, len(feats), 4096)])


# ====================================================================== data

def _subset(n: int, k: int) -> list[int]:
    """A deterministic, evenly spread subset of ``k`` indices out of ``n``."""
    if n <= k:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))


def augment(score, rng: np.random.Generator, crop: float = 30.0):
    """A random tempo (x0.8..1.25), transposition (-5..+6, kept in 21..108), velocity and crop."""
    from lmm_env.score import Score

    score = score.with_tempo(float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))
    lo, hi = int(score.pitches.min()), int(score.pitches.max())
    shifts = [s for s in range(-5, 7) if lo + s >= 21 and hi + s <= 108] or [0]
    shift = int(rng.choice(shifts))
    vel = score.velocities.astype(np.float64) * rng.uniform(0.6, 1.4) + rng.uniform(-20, 20)
    vel = np.clip(np.round(vel), 1, 127).astype(np.int64)
    score = Score(score.pitches.astype(np.int64) + shift, score.onsets, score.offsets, vel, name=score.name)
    if score.duration > crop:
        start = float(rng.uniform(0, score.duration - crop))
        score = score.trim(start, start + crop)
        if len(score) == 0:
            return None
    return score


def random_eq(feats: np.ndarray, rng: np.random.Generator, amplitude: float, eps: float = 1e-8) -> np.ndarray:
    """Apply a smooth random per-band gain (log-amplitude ~ ``amplitude`` nats) to log-mel frames.

    Exact for a linear gain on the mel power: ``log(g * (exp(x) - eps) + eps)``, so the silence
    floor stays where it is. A cheap stand-in for timbre variation between instruments.
    """
    n = feats.shape[1]
    band = np.arange(n) / max(1, n - 1)
    curve = sum(rng.normal(0, amplitude / (j + 1)) * np.cos(np.pi * j * band) for j in range(4))
    power = np.maximum(np.exp(feats.astype(np.float64)) - eps, 0.0)
    return np.log(power * np.exp(curve) + eps).astype(np.float32)


def render_features(scores, synth, logmel) -> list[np.ndarray]:
    """Log-mel frames of each score rendered by ``synth`` (with its 1 s release tail)."""
    out = []
    for s in scores:
        audio = synth.render(s)
        n = len(audio) // logmel.block_size * logmel.block_size
        out.append(logmel(audio[:n]))
    return out


def corpus_scores(split: str, max_pieces: int, seed: int, desc: str):
    """Augmented scores of up to ``max_pieces`` pieces from each of bach-chorales and folk."""
    from tqdm import tqdm

    from lmm_env import corpus

    rng = np.random.default_rng(seed)
    jobs = []
    for name in ("bach-chorales", "folk"):
        c = corpus.load(name, split)
        jobs += [(c, i) for i in _subset(len(c), max_pieces)]
    scores = []
    for c, i in tqdm(jobs, desc=desc, unit="piece", mininterval=2.0):
        s = augment(c[i], rng)
        if s is not None and len(s):
            scores.append(s)
    return scores


class FrameSet:
    """Clips of frames stored back to back, each preceded by K silence frames."""

    def __init__(self, clips, k: int, n_mels: int, silence: float = SILENCE):
        pad = np.full((k, n_mels), silence, np.float32)
        parts, idx, pos = [], [], 0
        for f in clips:
            parts += [pad, f.astype(np.float32)]
            idx.append(np.arange(pos + k, pos + k + len(f)))
            pos += k + len(f)
        self.data = torch.from_numpy(np.concatenate(parts))
        self.idx = torch.from_numpy(np.concatenate(idx))
        self.k = k
        self.offsets = torch.arange(-k, 0)

    def __len__(self):
        return len(self.idx)

    def batch(self, rows: torch.Tensor):
        t = self.idx[rows]
        return self.data[t[:, None] + self.offsets], self.data[t]

    def frames(self):
        return self.data[self.idx]

    def prev(self):
        return self.data[self.idx - 1]


# ====================================================================== baselines

def _gauss_lp(x, mu, sigma):
    return -np.log(sigma) - _HALF_LOG_2PI - 0.5 * ((x - mu) / sigma) ** 2


class PrevFrameBaseline:
    """x_t = x_{t-1} + noise, per-band Gaussian or Laplace noise fitted on train frames."""

    def __init__(self, kind: str, sigma_min: float):
        self.kind, self.sigma_min = kind, sigma_min

    def fit(self, fs: FrameSet):
        d = (fs.frames() - fs.prev()).double().numpy()
        if self.kind == "gauss":
            self.loc, self.scale = d.mean(0), np.maximum(d.std(0), self.sigma_min)
        else:
            self.loc = np.median(d, 0)
            self.scale = np.maximum(np.abs(d - self.loc).mean(0), self.sigma_min)
        return self

    def per_band(self, fs: FrameSet) -> np.ndarray:
        d = (fs.frames() - fs.prev()).double().numpy()
        if self.kind == "gauss":
            return _gauss_lp(d, self.loc, self.scale)
        return -np.log(2 * self.scale) - np.abs(d - self.loc) / self.scale


class DiagGMMBaseline:
    """A frame-independent diagonal-covariance GMM over whole frames (EM on train frames)."""

    def __init__(self, components: int, sigma_min: float, seed: int = 0):
        self.m, self.sigma_min, self.seed = components, sigma_min, seed

    def _comp(self, x):
        return (np.log(self.w)[None] + _gauss_lp(x[:, None, :], self.mu[None], self.sd[None]).sum(-1))

    def fit(self, fs: FrameSet, n: int = 20000, iters: int = 25):
        rng = np.random.default_rng(self.seed)
        x = fs.frames().double().numpy()
        x = x[rng.choice(len(x), min(n, len(x)), replace=False)]
        self.mu = x[rng.choice(len(x), self.m, replace=False)].copy()
        self.sd = np.maximum(np.tile(x.std(0), (self.m, 1)), self.sigma_min)
        self.w = np.full(self.m, 1.0 / self.m)
        for _ in range(iters):
            c = self._comp(x)
            r = np.exp(c - c.max(1, keepdims=True))
            r /= r.sum(1, keepdims=True)
            nk = r.sum(0) + 1e-9
            self.w = nk / nk.sum()
            self.mu = (r.T @ x) / nk[:, None]
            var = (r.T @ (x * x)) / nk[:, None] - self.mu ** 2
            self.sd = np.sqrt(np.maximum(var, self.sigma_min ** 2))
        return self

    def per_band(self, fs: FrameSet) -> np.ndarray:
        """Per-band share of the joint log density: log p(x) split by each band's posterior-weighted term."""
        x = fs.frames().double().numpy()
        c = self._comp(x)
        top = c.max(1, keepdims=True)
        total = (np.log(np.exp(c - top).sum(1)) + top[:, 0])
        r = np.exp(c - total[:, None])
        # per band: sum_k r_k * log N(x_b; mu_kb, sd_kb) + share of (log w - entropy) spread evenly,
        # so that the bands sum exactly to the joint log density.
        band = np.einsum("nk,nkb->nb", r, _gauss_lp(x[:, None, :], self.mu[None], self.sd[None]))
        rest = total - band.sum(1)
        return band + rest[:, None] / x.shape[1]


def model_per_band(model: AudioLM, fs: FrameSet, batch: int = 8192) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(fs), batch):
            h, f = fs.batch(torch.arange(i, min(i + batch, len(fs))))
            out.append(model.log_prob_torch(h, f, per_band=True).double().numpy())
    return np.concatenate(out)


# ====================================================================== training

def _fit_norm(model: AudioLM, fs: FrameSet):
    x = fs.frames()
    model.in_mean.copy_(x.mean(0))
    model.in_std.copy_(x.std(0).clamp_min(0.5))


def _eval_nll(model, fs, batch=8192) -> float:
    return float(-model_per_band(model, fs, batch).sum(1).mean())


def train_main(argv) -> int:
    from tqdm import tqdm

    from lmm_env.audio import LogMel
    from lmm_env.synth import make_synth

    p = argparse.ArgumentParser(prog="python -m lmm_env.lm.train audio",
                                description="Train LM^A (AudioLM) on SoundFont renderings of the corpus.")
    p.add_argument("--out", default=str(WEIGHTS_DIR / "audio_lm.safetensors"))
    p.add_argument("--minutes", type=float, default=5.0, help="wall-time cap of the optimization loop")
    p.add_argument("--steps", type=int, default=16000, help="optimizer steps (the LR schedule spans them)")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pieces", type=int, default=300, help="train pieces per corpus (bach, folk)")
    p.add_argument("--eval-pieces", type=int, default=30, help="validation / test pieces per corpus")
    # defaults: the shipped model (small, for a cheap per-step reward; see BENCHMARKS.md)
    p.add_argument("--context", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--components", type=int, default=2)
    p.add_argument("--sigma-min", type=float, default=0.1)
    p.add_argument("--bg-weight", type=float, default=0.05)
    p.add_argument("--bg-scale", type=float, default=1.0)
    p.add_argument("--eq-aug", type=float, default=0.0,
                   help="amplitude (nats) of random smooth EQ applied to half the train clips; 0: off")
    args = p.parse_args(argv)
    from lmm_env.lm.checkpoint import check_model_options, check_train_options

    check_train_options(p, args, max_pieces=(1, 10**6), eval_pieces=(1, 10**6))  # 0 pieces: nothing to fit
    check_cli(p, check_real, "--eq-aug", args.eq_aug, 0.0, 100.0)
    check_model_options(p, lambda: AudioLM(16000, 800, 64, context=args.context, hidden=args.hidden,
                                           layers=args.layers, components=args.components, sigma_min=args.sigma_min,
                                           bg_weight=args.bg_weight, bg_scale=args.bg_scale))
    check_cli_output(p, args.out)  # before the training, not after it

    t_start = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    sr, block, n_mels = 16000, 800, 64
    logmel = LogMel(sr, block, n_mels)
    sf = make_synth("soundfont", sr)
    piano = make_synth("piano", sr)
    k = args.context

    train_scores = corpus_scores("train", args.max_pieces, args.seed, "train pieces")
    val_scores = corpus_scores("validation", args.eval_pieces, args.seed + 1, "validation pieces")
    test_scores = corpus_scores("test", args.eval_pieces, args.seed + 2, "test pieces")
    t0 = time.time()
    train_clips = render_features(tqdm(train_scores, desc="render train", mininterval=2.0), sf, logmel)
    if args.eq_aug > 0:
        eq_rng = np.random.default_rng(args.seed + 100)
        train_clips = [random_eq(f, eq_rng, args.eq_aug) if eq_rng.random() < 0.5 else f for f in train_clips]
    train = FrameSet(train_clips, k, n_mels)
    val = FrameSet(render_features(val_scores, sf, logmel), k, n_mels)
    test = FrameSet(render_features(test_scores, sf, logmel), k, n_mels)
    test_piano = FrameSet(render_features(test_scores, piano, logmel), k, n_mels)
    print(f"frames: train {len(train)} ({len(train_scores)} clips), validation {len(val)}, test {len(test)}, "
          f"test-piano {len(test_piano)}; data {time.time() - t_start:.0f} s (render {time.time() - t0:.0f} s)")

    model = AudioLM(sr, block, n_mels, context=k, hidden=args.hidden, layers=args.layers,
                    components=args.components, sigma_min=args.sigma_min, bg_weight=args.bg_weight,
                    bg_scale=args.bg_scale)
    _fit_norm(model, train)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(args.seed)
    best, best_state, steps_done = math.inf, None, 0
    eval_every = max(1, args.steps // 10)
    t_train = time.time()
    bar = tqdm(range(args.steps), desc="train AudioLM", mininterval=2.0)
    run_loss = None
    for step in bar:
        rows = torch.randint(len(train), (args.batch,), generator=gen)
        h, f = train.batch(rows)
        loss = -model.log_prob_torch(h, f).mean() / n_mels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        steps_done = step + 1
        lv = loss.item()
        run_loss = lv if run_loss is None else 0.98 * run_loss + 0.02 * lv
        last = steps_done == args.steps or time.time() - t_train > 60 * args.minutes
        if steps_done % eval_every == 0 or last:
            model.eval()
            v = _eval_nll(model, val)
            model.train()
            if v < best:
                best, best_state = v, {kk: vv.clone() for kk, vv in model.state_dict().items()}
            bar.set_postfix(loss=f"{run_loss * n_mels:.1f}", val=f"{v:.1f}")
        if last:
            if steps_done < args.steps:
                print(f"time cap of {args.minutes} min reached after {steps_done}/{args.steps} steps")
            break
    train_s = time.time() - t_train
    model.load_state_dict(best_state)
    model.eval()
    model.refresh()

    # ---------------------------------------------------------------- evaluation
    base_a_g = PrevFrameBaseline("gauss", args.sigma_min).fit(train)
    base_a_l = PrevFrameBaseline("laplace", args.sigma_min).fit(train)
    base_b = DiagGMMBaseline(16, args.sigma_min, args.seed).fit(train)
    rows = {
        "AudioLM": {"val": model_per_band(model, val), "test": model_per_band(model, test),
                    "test_piano": model_per_band(model, test_piano)},
        "prev frame + Gaussian": {"val": base_a_g.per_band(val), "test": base_a_g.per_band(test),
                                  "test_piano": base_a_g.per_band(test_piano)},
        "prev frame + Laplace": {"val": base_a_l.per_band(val), "test": base_a_l.per_band(test),
                                 "test_piano": base_a_l.per_band(test_piano)},
        "frame-independent diag GMM (16)": {"val": base_b.per_band(val), "test": base_b.per_band(test),
                                            "test_piano": base_b.per_band(test_piano)},
    }
    metrics = {name: {split: float(-v.sum(1).mean()) for split, v in r.items()} for name, r in rows.items()}
    per_band = {name: [round(float(x), 4) for x in -r["test"].mean(0)] for name, r in rows.items()}
    # A sanity check that the numpy path agrees with torch on held-out data.
    h, f = test.batch(torch.arange(min(2048, len(test))))
    np_lp = model.log_prob(h.numpy(), f.numpy())
    with torch.no_grad():
        t_lp = model.log_prob_torch(h, f).double().numpy()
    max_diff = float(np.max(np.abs(np_lp - t_lp)))

    print()
    print("Held-out NLL, nats per frame (64 bands; lower is better). val/test: SoundFont renderings of "
          f"{len(val_scores)}/{len(test_scores)} augmented validation/test pieces; test-piano: the test "
          "scores through the env's default 'piano' synth (timbre gap).")
    print()
    print("| model | validation | test | test (piano synth) |")
    print("|---|---:|---:|---:|")
    for name, m in metrics.items():
        print(f"| {name} | {m['val']:.2f} | {m['test']:.2f} | {m['test_piano']:.2f} |")
    print()
    groups = 8
    gsize = n_mels // groups
    print("Per-band test NLL (nats per band, mean over groups of bands, low -> high mel):")
    print()
    print("| model | " + " | ".join(f"{g * gsize}-{(g + 1) * gsize - 1}" for g in range(groups)) + " |")
    print("|---|" + "---:|" * groups)
    for name, pb in per_band.items():
        pb = np.asarray(pb)
        print(f"| {name} | " + " | ".join(f"{pb[g * gsize:(g + 1) * gsize].mean():.2f}" for g in range(groups)) + " |")
    print()

    timings = {}
    rng = np.random.default_rng(0)
    for b in (1, 64, 256):
        hh, ff = (t.numpy() for t in test.batch(torch.from_numpy(rng.choice(len(test), b))))
        model.log_prob(hh, ff)
        reps = max(20, 4000 // b)
        t = time.perf_counter()
        for _ in range(reps):
            model.log_prob(hh, ff)
        timings[f"B={b}"] = (time.perf_counter() - t) / reps * 1e6
    print("log_prob time (numpy, us per call): " + ", ".join(f"{kk}: {v:.1f}" for kk, v in timings.items()))
    print(f"numpy vs torch log_prob max |diff| on 2048 test frames: {max_diff:.2e}")

    wall = time.time() - t_start
    extra = {
        "nll_nats_per_frame": metrics,
        "test_nll_per_band": per_band,
        "frames": {"train": len(train), "validation": len(val), "test": len(test)},
        "pieces": {"train": len(train_scores), "validation": len(val_scores), "test": len(test_scores)},
        "steps": steps_done, "batch": args.batch, "lr": args.lr, "seed": args.seed,
        "max_pieces": args.max_pieces, "train_seconds": round(train_s, 1), "wall_seconds": round(wall, 1),
        "log_prob_us": {kk: round(v, 1) for kk, v in timings.items()},
        "numpy_torch_max_abs_diff": max_diff,
        "data": "SoundFont renderings of bach-chorales + folk train pieces, tempo x0.8-1.25, "
                "transpose -5..+6, velocity scale 0.6-1.4 offset +-20, crops <= 30 s",
    }
    out = save_checkpoint(model, args.out, extra=extra)
    size = Path(out).stat().st_size
    print(f"saved {out} ({size / 1e6:.2f} MB); training {train_s:.0f} s, whole run {wall:.0f} s")
    return 0
