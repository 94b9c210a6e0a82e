"""`ScoreLM` (LM^V): an autoregressive model of score frames at 20 frames per second.

A frame is two rows of 88 bits: ``held`` (the key is down) and ``onset`` (the key is struck
on this frame). The model predicts frame ``t`` from frames ``0 .. t-1`` (frame ``-1`` is
silence) as 2 x 88 independent Bernoulli logits. Everything is computed in parallel over
time (no recurrence), so scoring a whole 1000-frame piece costs ~3 ms on one CPU thread:

* row ``t`` describes frame ``t-1`` per key by held, onset and the length of the current run
  of held frames (log-scaled, capped at ``run_cap``), plus "frames since the last onset
  anywhere" (the rhythm clock, capped at ``clock``);
* a linear map of those 3 x 88 values plus a clock embedding gives a ``width``-dim frame
  embedding; a stack of residual causal convolutions over time (kernel 2, dilations
  1, 2, 4, ..., receptive field ``1 + sum(dilations)`` frames) turns it into a context vector;
* a convolution over the key axis (shared across pitches) turns the per-key values into
  ``channels`` local features per key; the context vector adds a bias to them (before a
  ReLU) and supplies, per frame, a (2 x channels) matrix reading them into each key's held and
  onset logits, plus absolute-pitch logits (2 x 88).

Row ``t`` of the output depends on ``frames[:, :t]`` only, and only on the last
``model.context`` of them (which ``stream()`` uses).

Train with ``python -m lmm_env.lm.train score --help``; the shipped weights are
``lmm_env/lm/weights/score_lm.safetensors`` (``lmm_env.lm.load_pretrained("score")``).
A second, independent ScoreLM, the *judge* (``load_pretrained("judge")``,
``judge_lm.safetensors``), is trained by the same command on the validation split and
evaluated on the test split (``--train-split validation --eval-split test``; its exact command
is in its checkpoint's metadata): it scores free improvisation (`lmm_env.improv`) with a
model that the reward's ScoreLM never shared data or weights with.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lmm_env._checks import check_cli, check_cli_output, check_int, check_real, short_repr

N_KEYS = 88
DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "score_lm.safetensors"

__all__ = ["ScoreLM", "ScoreLMStream", "train_main", "stack_frames", "RepeatLastBaseline", "KeyFrequencyBaseline"]


def stack_frames(held, onset) -> np.ndarray:
    """(T, 88) held and onset rolls -> (T, 2, 88) float32 (channel 0 held, 1 onset)."""
    held = np.asarray(held, dtype=bool)
    onset = np.asarray(onset, dtype=bool)
    if held.ndim != 2 or held.shape[1] != N_KEYS or onset.shape != held.shape:
        raise ValueError(f"held and onset must both have shape (T, {N_KEYS}); got {held.shape} and {onset.shape}")
    return np.stack([held, onset], axis=1).astype(np.float32)


class ScoreLM(nn.Module):
    """Autoregressive Bernoulli model of (held, onset) frames over 88 keys; see the module doc.

    Args:
        width: channels of the per-frame embedding and of the causal temporal convolutions.
        dilations: one residual causal convolution (kernel 2 over time) per entry, with that
            dilation; the receptive field over frames is ``1 + sum(dilations)``.
        channels: features per key from the key-axis convolution.
        kernel: width (in semitones) of that convolution; odd.
        clock: frames-since-last-onset are encoded in ``clock + 1`` bins (capped).
        run_cap: the held-run-length feature is capped at this many frames.
        frame_rate: the frame grid the model was trained on (frames per second).
    """

    def __init__(self, width: int = 48, dilations=(1, 2, 4, 8, 16, 32), channels: int = 6, kernel: int = 9,
                 clock: int = 48, run_cap: int = 64, frame_rate: float = 20.0):
        super().__init__()
        # bounded: a checkpoint's config decides these sizes (see lmm_env.lm.checkpoint)
        width, channels, kernel, clock, run_cap = (
            check_int(name, v, 1, hi) for name, v, hi in (("width", width, 8192), ("channels", channels, 1024),
                                                          ("kernel", kernel, 255), ("clock", clock, 100_000),
                                                          ("run_cap", run_cap, 100_000)))
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {kernel}")
        if not isinstance(dilations, (list, tuple)) or not 1 <= len(dilations) <= 64:
            raise ValueError(f"dilations={short_repr(dilations)} must be a list of 1 to 64 ints")
        dilations = [check_int("dilations[i]", d, 1, 4096) for d in dilations]
        # a number, not "20" or True (float() would take both); the envs run at 1 to 1000 fps
        frame_rate = check_real("frame_rate", frame_rate, 1.0, 1000.0)
        self.config = dict(width=width, dilations=dilations, channels=channels, kernel=kernel, clock=clock,
                           run_cap=run_cap, frame_rate=frame_rate)
        self.frame_rate = frame_rate
        self.clock = clock
        self.run_cap = run_cap
        self.channels = channels
        self.dilations = dilations
        # frames that can influence a row: the temporal receptive field plus the frames the
        # capped run-length and clock features look back over (used by the stream's window)
        self.context = sum(dilations) + max(run_cap, clock) + 1
        self.inp = nn.Linear(3 * N_KEYS, width)
        self.clock_emb = nn.Embedding(clock + 1, width)
        self.tconv = nn.ModuleList([nn.Conv1d(width, width, 2, dilation=d) for d in dilations])
        with torch.no_grad():
            for c in self.tconv:
                c.weight.mul_(0.5)
        self.key_conv = nn.Conv1d(3, channels, kernel, padding=kernel // 2)  # shared across pitches
        self.key_pos = nn.Parameter(torch.zeros(channels, N_KEYS))  # pitch-dependent bias
        # per frame: absolute-pitch logits (2 x 88), a bias per key channel, and the (2 x C)
        # matrix that reads each key's channels into its held and onset logits
        self.out = nn.Linear(width, 2 * N_KEYS + 3 * channels)
        self.out_bias = nn.Parameter(torch.zeros(2, N_KEYS))
        self.checkpoint_extra: dict = {}

    # ------------------------------------------------------------------ features

    def _run_table(self, dtype=torch.float32) -> torch.Tensor:
        """log1p(run) / 3 for run = 0 .. run_cap (a lookup shared by the torch and numpy paths)."""
        return torch.log1p(torch.arange(self.run_cap + 1, dtype=torch.float64)).div(3.0).to(dtype)

    def _features(self, frames: torch.Tensor):
        """Shifted (causal) per-key features (B, T, 3, 88) and clock bins (B, T) int64."""
        B, T = frames.shape[:2]
        prev = F.pad(frames[:, :-1], (0, 0, 0, 0, 1, 0))  # row t holds frame t-1 (row 0: silence)
        held = prev[:, :, 0] > 0.5  # (B, T, 88)
        idx = torch.arange(T, device=frames.device).view(1, T, 1)
        # run length of held frames ending at row t (i.e. at frame t-1), via last unheld index
        last_off = torch.cummax(torch.where(held, -1, idx), dim=1).values
        run = (idx - last_off).clamp(0, self.run_cap)  # 0 when not held
        # frames since the last onset anywhere (0 = onset on the previous frame), capped
        any_on = prev[:, :, 1].amax(dim=2) > 0.5  # (B, T)
        idx1 = idx[..., 0]
        last_on = torch.cummax(torch.where(any_on, idx1, -(10 ** 6)), dim=1).values
        since = (idx1 - last_on).clamp(max=self.clock)
        run_feat = self._run_table(frames.dtype).to(frames.device)[run]
        local = torch.cat([prev, run_feat.unsqueeze(2)], dim=2)  # (B, T, 3, 88)
        return local, since

    def _np_features(self, held: np.ndarray, onset: np.ndarray):
        """The same features as ``_features`` for one (T, 88) piece, in numpy (faster)."""
        T = held.shape[0]
        local = np.zeros((T, 3, N_KEYS), np.float32)
        since = np.full(T, self.clock, np.int64)
        if T > 1:
            hp = held[:-1]
            local[1:, 0] = hp
            local[1:, 1] = onset[:-1]
            idx = np.arange(1, T, dtype=np.int64)
            last_off = np.maximum.accumulate(np.where(hp, 0, idx[:, None]), axis=0)  # row 0 is unheld
            run = np.minimum(idx[:, None] - last_off, self.run_cap)
            local[1:, 2] = self._run_table().numpy()[run]
            last_on = np.maximum.accumulate(np.where(onset[:-1].any(axis=1), idx, -(10 ** 6)))
            since[1:] = np.minimum(idx - last_on, self.clock)
        return local, since

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 2, 88) in {0, 1} -> logits (B, T, 2, 88); row t sees frames[:, :t] only."""
        if frames.ndim != 4 or frames.shape[2:] != (2, N_KEYS):
            raise ValueError(f"frames must have shape (B, T, 2, {N_KEYS}), got {tuple(frames.shape)}")
        frames = frames.to(self.out_bias.dtype)
        B, T = frames.shape[:2]
        if T == 0:
            return frames.new_zeros((B, 0, 2, N_KEYS))
        return self._core(*self._features(frames))

    def _core(self, local: torch.Tensor, since: torch.Tensor) -> torch.Tensor:
        """Features (B, T, 3, 88) and clock bins (B, T) -> logits (B, T, 2, 88)."""
        B, T = local.shape[:2]
        x = self.inp(local.reshape(B, T, 3 * N_KEYS)) + self.clock_emb(since)  # (B, T, W)
        if torch.is_grad_enabled():  # training: convolutions
            h = x.transpose(1, 2).contiguous()  # (B, W, T)
            for conv, d in zip(self.tconv, self.dilations):
                # causal: output t reads rows t-d and t (zero padding on both sides, keep the first T)
                h = h + F.conv1d(F.relu(h), conv.weight, conv.bias, padding=d, dilation=d)[..., :T]
            h = h.transpose(1, 2)
        else:  # inference: the same sums as two matmuls a layer, ~3x faster than conv1d on CPU
            h = x
            width = x.shape[-1]
            for conv, d in zip(self.tconv, self.dilations):
                w = conv.weight  # (out, in, 2): tap 0 reads row t - d, tap 1 row t
                z = torch.matmul(F.relu(h), torch.cat([w[:, :, 1], w[:, :, 0]]).T)  # (B, T, 2W)
                y = z[..., :width] + conv.bias
                if d < T:
                    y[:, d:] += z[:, : T - d, width:]
                h = h + y
        C = self.channels
        o = self.out(F.relu(h)).reshape(B * T, -1)
        glob = o[:, :2 * N_KEYS].reshape(B * T, 2, N_KEYS)
        beta = o[:, 2 * N_KEYS:2 * N_KEYS + C].unsqueeze(2)  # (BT, C, 1)
        mix = o[:, 2 * N_KEYS + C:].reshape(B * T, 2, C)
        flat = local.reshape(B * T, 3, N_KEYS)
        z = F.relu(self.key_conv(flat) + self.key_pos + beta)  # (BT, C, 88)
        out = torch.baddbmm(glob + self.out_bias, mix, z)
        return out.reshape(B, T, 2, N_KEYS)

    def stream(self) -> "ScoreLMStream":
        """An incremental scorer (re-runs the last ``self.context`` frames per new frame)."""
        return ScoreLMStream(self)

    # ------------------------------------------------------------------ numpy API

    def next_frame_logits(self, held: np.ndarray, onset: np.ndarray) -> np.ndarray:
        """(T, 88) held/onset -> float32 (T, 2, 88) logits; row t predicts frame t from frames < t.

        Runs torch on one thread (restoring the caller's setting): the work is small and a
        second thread only slows it down on a busy machine.
        """
        held = np.asarray(held, dtype=bool)
        onset = np.asarray(onset, dtype=bool)
        if held.ndim != 2 or held.shape[1] != N_KEYS or onset.shape != held.shape:
            raise ValueError(f"held and onset must both have shape (T, {N_KEYS}); got {held.shape} and {onset.shape}")
        if held.shape[0] == 0:
            return np.zeros((0, 2, N_KEYS), np.float32)
        local, since = self._np_features(held, onset)
        n = torch.get_num_threads()
        try:
            if n != 1:
                torch.set_num_threads(1)
            with torch.inference_mode():
                out = self._core(torch.from_numpy(local)[None], torch.from_numpy(since)[None])
                return out[0].numpy().astype(np.float32, copy=False)
        finally:
            if n != 1:
                torch.set_num_threads(n)

    @staticmethod
    def frame_log_prob(logits: np.ndarray, held: np.ndarray, onset: np.ndarray) -> np.ndarray:
        """Bernoulli log-likelihood (nats) of each frame, summed over the 2 x 88 bits.

        ``logits`` (..., 2, 88); ``held``/``onset`` (..., 88) bool; leading dims broadcast.
        Returns float64 of the broadcast leading shape. Pure numpy.
        """
        z = np.asarray(logits, dtype=np.float64)
        y = np.stack(np.broadcast_arrays(np.asarray(held, dtype=bool), np.asarray(onset, dtype=bool)), axis=-2)
        # log p(y) = -softplus(-z) if y else -softplus(z); softplus(a) = max(a,0) + log1p(exp(-|a|))
        s = np.where(y, -z, z)
        lp = -(np.maximum(s, 0.0) + np.log1p(np.exp(-np.abs(s))))
        return lp.sum(axis=(-2, -1))

    def nll_per_frame(self, frames_list) -> float:
        """Mean negative log-likelihood (nats per frame) over a list of FrameScore, frame-weighted."""
        total, n = 0.0, 0
        for fs in frames_list:
            if fs.T == 0:
                continue
            total += float(self.piece_nll(fs.held, fs.onset))
            n += fs.T
        return total / max(n, 1)

    def piece_nll(self, held, onset) -> float:
        """Total NLL (nats) of one piece, frames 0..T-1."""
        x = torch.from_numpy(stack_frames(held, onset)).unsqueeze(0)
        with torch.no_grad():
            logits = self(x)
            return float(F.binary_cross_entropy_with_logits(logits, x, reduction="sum"))


class ScoreLMStream:
    """Incremental ``ScoreLM``: ``logits`` predicts the next frame; ``push`` appends a frame.

    After pushing frames ``0 .. t-1``, ``logits`` equals ``model.next_frame_logits(...)[t]``
    (up to float rounding): row t depends on the last ``model.context`` frames only, so each
    new frame re-runs the model over that window. Use ``copy()`` to branch.
    """

    def __init__(self, model: ScoreLM):
        self.model = model
        self.t = 0
        self.window = np.zeros((0, 2, N_KEYS), np.float32)  # the last <= model.context frames
        self._logits = None

    def copy(self) -> "ScoreLMStream":
        new = ScoreLMStream.__new__(ScoreLMStream)
        new.__dict__.update(self.__dict__)
        return new  # the window is replaced, never modified in place

    @property
    def logits(self) -> np.ndarray:
        """float32 (2, 88) logits of the next frame given the frames pushed so far."""
        if self._logits is None:
            x = np.concatenate([self.window, np.zeros((1, 2, N_KEYS), np.float32)])  # a dummy last frame
            with torch.no_grad():
                self._logits = self.model(torch.from_numpy(x)[None])[0, -1].numpy()
        return self._logits

    def push(self, held_row, onset_row) -> None:
        """Append one frame ((88,) bool held and onset)."""
        held_row = np.asarray(held_row, dtype=bool)
        onset_row = np.asarray(onset_row, dtype=bool)
        if held_row.shape != (N_KEYS,) or onset_row.shape != (N_KEYS,):
            raise ValueError(f"a frame is two (88,) rows, got {held_row.shape} and {onset_row.shape}")
        row = np.stack([held_row, onset_row]).astype(np.float32)[None]
        self.window = np.concatenate([self.window[-(self.model.context - 1):], row])
        self.t += 1
        self._logits = None


# ---------------------------------------------------------------------- baselines


class RepeatLastBaseline:
    """p(bit_t = bit_{t-1}) = 1 - eps (eps per channel, fitted on train; frame -1 is silence)."""

    def fit(self, rolls):
        changes = np.zeros(2)
        count = 0
        for r in rolls:  # (T, 2, 88) bool
            prev = np.zeros_like(r)
            prev[1:] = r[:-1]
            changes += (r != prev).sum(axis=(0, 2))
            count += r.shape[0] * N_KEYS
        self.eps = (changes + 1.0) / (count + 2.0)
        return self

    def total_nll(self, r) -> float:
        prev = np.zeros_like(r)
        prev[1:] = r[:-1]
        ch = (r != prev)
        eps = self.eps.reshape(1, 2, 1)
        return float(-(np.where(ch, np.log(eps), np.log1p(-eps))).sum())


class KeyFrequencyBaseline:
    """Independent Bernoulli per (channel, key), fitted on train frames (add-one smoothing)."""

    def fit(self, rolls):
        ones = np.zeros((2, N_KEYS))
        n = 0
        for r in rolls:
            ones += r.sum(axis=0)
            n += r.shape[0]
        self.p = (ones + 1.0) / (n + 2.0)
        return self

    def total_nll(self, r) -> float:
        return float(-(np.where(r, np.log(self.p), np.log1p(-self.p))).sum())


# ---------------------------------------------------------------------- training


def _subset(corp, max_pieces: int):
    n = len(corp)
    if max_pieces <= 0 or max_pieces >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, max_pieces).round()})


def _load_rolls(name: str, split: str, max_pieces: int, tempos=(1.0,), desc=""):
    """Deterministic subset of a corpus split -> {tempo: [(T, 2, 88) bool]} (first access converts)."""
    from tqdm import tqdm

    from lmm_env import corpus

    corp = corpus.load(name, split)
    idx = _subset(corp, max_pieces)
    out = {t: [] for t in tempos}
    seen = set()
    for i in tqdm(idx, desc=desc or f"{name}/{split}", leave=False, mininterval=1.0):
        j = corp.resolve(i)
        if j in seen:  # a bad piece falls back to the next one; keep each piece once
            continue
        seen.add(j)
        score = corp[j]
        for t in tempos:
            fs = (score if t == 1.0 else score.with_tempo(t)).frames(20.0)
            if fs.T > 0:
                out[t].append(np.stack([fs.held, fs.onset], axis=1))
    return out


class _Sampler:
    """Random crops with transposition (-5..+6 within the keyboard) and tempo variants."""

    def __init__(self, pools, weights, crop: int, warmup: int, p_start: float, p_tempo: float,
                 shift: tuple[int, int], rng: np.random.Generator):
        self.pools = pools  # list (per corpus) of {tempo: [rolls]}
        self.weights = np.asarray(weights, dtype=float) / np.sum(weights)
        self.crop, self.warmup, self.p_start, self.p_tempo = crop, warmup, p_start, p_tempo
        self.shift = shift
        self.rng = rng
        # pieces are drawn proportionally to their length within a corpus
        self.lens = [{t: np.array([r.shape[0] for r in rolls], float) for t, rolls in pool.items()}
                     for pool in pools]

    def batch(self, B: int):
        rng = self.rng
        x = np.zeros((B, self.crop, 2, N_KEYS), dtype=np.float32)
        mask = np.zeros((B, self.crop), dtype=np.float32)
        for b in range(B):
            c = rng.choice(len(self.pools), p=self.weights)
            tempos = sorted(self.pools[c])
            others = [t for t in tempos if t != 1.0]
            t = 1.0 if (not others or rng.random() >= self.p_tempo) else others[rng.integers(len(others))]
            lens = self.lens[c][t]
            k = rng.choice(len(lens), p=lens / lens.sum())
            r = self.pools[c][t][k]
            T = r.shape[0]
            if T <= self.crop or rng.random() < self.p_start:
                s = 0
            else:
                s = int(rng.integers(0, T - self.crop + 1))
            seg = r[s:s + self.crop]
            keys = np.flatnonzero(seg[:, 0].any(axis=0))
            lo = max(self.shift[0], -int(keys.min())) if len(keys) else self.shift[0]
            hi = min(self.shift[1], N_KEYS - 1 - int(keys.max())) if len(keys) else self.shift[1]
            sh = int(rng.integers(lo, hi + 1)) if lo <= hi else 0
            n = seg.shape[0]
            if sh >= 0:
                x[b, :n, :, sh:] = seg[:, :, :N_KEYS - sh]
            else:
                x[b, :n, :, :N_KEYS + sh] = seg[:, :, -sh:]
            mask[b, :n] = 1.0
            if s > 0:
                mask[b, :self.warmup] = 0.0  # context before the crop is unknown
        return torch.from_numpy(x), torch.from_numpy(mask)


def evaluate(model, baselines, rolls_by_corpus) -> dict:
    """NLL (nats/frame) per corpus and pooled, for the model and each baseline."""
    res = {}
    names = ["model"] + list(baselines)
    tot = {m: 0.0 for m in names}
    frames = 0
    for cname, rolls in rolls_by_corpus.items():
        nframes = sum(r.shape[0] for r in rolls)
        frames += nframes
        for m in names:
            s = 0.0
            for r in rolls:
                if m == "model":
                    s += model.piece_nll(r[:, 0], r[:, 1])
                else:
                    s += baselines[m].total_nll(r)
            res.setdefault(m, {})[cname] = s / nframes
            tot[m] += s
        res.setdefault("frames", {})[cname] = nframes
    for m in names:
        res[m]["pooled"] = tot[m] / frames
    res["frames"]["pooled"] = frames
    return res


def format_table(res: dict, cols) -> str:
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    labels = {"model": "ScoreLM (TCN)", "repeat_last": "repeat last frame (eps fitted)",
              "key_freq": "per-key frequencies"}
    for m in ("model", "repeat_last", "key_freq"):
        lines.append(f"| {labels[m]} | " + " | ".join(f"{res[m][c]:.3f}" for c in cols) + " |")
    lines.append("| frames | " + " | ".join(str(res["frames"][c]) for c in cols) + " |")
    return "\n".join(lines)


def train_main(argv=None) -> int:
    from lmm_env.corpus import SPLITS

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m lmm_env.lm.train score",
        description="Train ScoreLM (LM^V) on bach-chorales + folk at 20 fps. The defaults rebuild the shipped "
                    "reward model (train split, evaluated on validation); the judge LM of lmm_env.improv is "
                    "this command with --train-split validation --eval-split test --out .../judge_lm.safetensors "
                    "(its exact command is stored in judge_lm.json).")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output .safetensors (default: the shipped file)")
    p.add_argument("--train-split", default="train", choices=SPLITS,
                   help="corpus split to train on (default train)")
    p.add_argument("--eval-split", default="validation", choices=SPLITS,
                   help="corpus split the saved NLL is measured on (default validation); must differ from "
                        "--train-split")
    p.add_argument("--compare", action="append", default=[], metavar="MODEL",
                   help="also evaluate this ScoreLM (a load_pretrained name such as 'score', or a .safetensors "
                        "path) on the same evaluation pieces and store its NLL in the metadata; repeatable")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--minutes", type=float, default=6.5,
                   help="wall-clock cap on the training loop; stops early (not step-deterministic) if hit")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: faster on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pieces", type=int, default=400,
                   help="training pieces per corpus (deterministic subset; 0 = all)")
    p.add_argument("--eval-pieces", type=int, default=150, help="evaluation pieces per corpus (0 = all)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=224, help="frames per training crop")
    p.add_argument("--warmup", type=int, default=24, help="unscored first frames of mid-piece crops")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--tempo-prob", type=float, default=0.25, help="probability of a tempo-scaled crop")
    p.add_argument("--tempos", default="0.8,1.25", help="tempo factors for augmentation (besides 1.0)")
    p.add_argument("--width", type=int, default=48, help="temporal convolution channels")
    p.add_argument("--channels", type=int, default=6, help="per-key channels")
    p.add_argument("--kernel", type=int, default=9, help="key-axis convolution width (odd)")
    args = p.parse_args(argv)
    from lmm_env.lm.checkpoint import check_model_options, check_train_options
    from lmm_env.score import MAX_TEMPO, MIN_TEMPO

    # a step's input is batch x crop frames: both bounded
    check_train_options(p, args, batch=(1, 1024), crop=(1, 4096), warmup=(0, max(0, args.crop - 1)))
    check_cli(p, check_real, "--tempo-prob", args.tempo_prob, 0.0, 1.0)
    try:
        tempos = (1.0,) + tuple(float(t) for t in args.tempos.split(",") if t.strip())
    except ValueError:
        p.error(f"--tempos {args.tempos!r} is not allowed; give comma-separated numbers such as 0.8,1.25")
    for t in tempos:
        check_cli(p, check_real, "--tempos", t, MIN_TEMPO, MAX_TEMPO)
    check_model_options(p, lambda: ScoreLM(width=args.width, channels=args.channels, kernel=args.kernel))
    check_cli_output(p, args.out)  # before the training, not after it
    if args.train_split == args.eval_split:
        p.error(f"--train-split and --eval-split are both {args.train_split!r}: the saved NLL must be measured "
                "on pieces the model was not trained on; choose two different splits")

    from tqdm import tqdm

    from lmm_env.lm.checkpoint import CheckpointError, load_pretrained, save_checkpoint

    compare = {}
    for name in args.compare:  # fail before the long part if a comparison model is missing; loaded
        try:  # before seeding: it must not shift the RNG
            compare[name] = load_pretrained(name, cached=False)
        except CheckpointError as exc:
            p.error(f"--compare {name!r}: {exc}")
        if not isinstance(compare[name], ScoreLM):
            p.error(f"--compare {name!r} is a {type(compare[name]).__name__}, not a ScoreLM")
    t0 = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    corpora = ("bach-chorales", "folk")

    tr_split, ev_split = args.train_split, args.eval_split
    print(f"loading {tr_split} pieces (<= {args.max_pieces} per corpus; first run converts with music21) ...",
          flush=True)
    train = [_load_rolls(c, tr_split, args.max_pieces, tempos, desc=f"{c}/{tr_split}") for c in corpora]
    valid = {c: _load_rolls(c, ev_split, args.eval_pieces, (1.0,), desc=f"{c}/{ev_split}")[1.0]
             for c in corpora}
    t_data = time.time() - t0
    print(f"data: {tr_split} {[len(tr[1.0]) for tr in train]} pieces, {ev_split} "
          f"{[len(v) for v in valid.values()]} pieces, {t_data:.0f} s", flush=True)
    train_plain = [r for tr in train for r in tr[1.0]]
    baselines = {"repeat_last": RepeatLastBaseline().fit(train_plain),
                 "key_freq": KeyFrequencyBaseline().fit(train_plain)}

    model = ScoreLM(width=args.width, channels=args.channels, kernel=args.kernel)
    nparams = sum(p.numel() for p in model.parameters())
    sampler = _Sampler(train, [1.0, 1.0], args.crop, args.warmup, p_start=0.15, p_tempo=args.tempo_prob,
                       shift=(-5, 6), rng=rng)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    model.train()
    t1 = time.time()
    step, ema = 0, 0.0
    bar = tqdm(range(args.steps), desc=f"train ScoreLM ({nparams / 1e3:.0f}k params)", mininterval=2.0)
    stopped_early = False
    for step in bar:
        x, mask = sampler.batch(args.batch)
        logits = model(x)
        bits = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=(2, 3))
        loss = (bits * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(nll=f"{ema / (1 - 0.98 ** (step + 1)):.3f}")  # debiased running mean
        if time.time() - t1 > args.minutes * 60:
            stopped_early = True
            break
    bar.close()
    steps_done = step + 1
    t_train = time.time() - t1
    if stopped_early:
        print(f"note: the --minutes cap ({args.minutes}) stopped training after {steps_done}/{args.steps} steps",
              flush=True)
    model.eval()
    res = evaluate(model, baselines, valid)
    cols = list(corpora) + ["pooled"]
    wall = time.time() - t0
    extra = {
        "command": shlex.join(["python", "-m", "lmm_env.lm.train", "score"] + argv),
        "nll_nats_per_frame": {k: v for k, v in res.items() if k != "frames"},
        "train_split": tr_split, "eval_split": ev_split, "eval_frames": res["frames"],
        "eval_pieces": {c: len(v) for c, v in valid.items()},
        "train_pieces": {c: len(tr[1.0]) for c, tr in zip(corpora, train)},
        "repeat_last_eps": [float(e) for e in baselines["repeat_last"].eps],
        "steps": steps_done, "seed": args.seed, "batch": args.batch, "crop": args.crop,
        "params": nparams, "train_seconds": round(t_train, 1), "wall_seconds": round(wall, 1),
        "threads": args.threads, "stopped_by_minutes_cap": stopped_early,
    }
    if compare:
        extra["compare_nll_nats_per_frame"] = {name: evaluate(m, {}, valid)["model"] for name, m in compare.items()}
    out = save_checkpoint(model, args.out, extra=extra)
    print(f"\n{ev_split} NLL (nats/frame), {steps_done} steps, seed {args.seed}, trained on {tr_split}:\n")
    print(format_table(res, cols))
    for name, nll in extra.get("compare_nll_nats_per_frame", {}).items():
        print(f"| --compare {name} | " + " | ".join(f"{nll[c]:.3f}" for c in cols) + " |")
    print(f"\nsaved {out} ({out.stat().st_size / 1e6:.2f} MB); data {t_data:.0f} s, "
          f"train {t_train:.0f} s, wall {wall:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
