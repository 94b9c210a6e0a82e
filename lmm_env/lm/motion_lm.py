"""The motion LM (LM^M): a language model over key presses with velocity, one note at a time.

A performance is a sequence of notes, each a compound token of four parts: the time since
the previous note's onset (``dt``, in 50 ms steps, 0 for a chord tone), the key (88), the
velocity (16 bins of 8) and how long the key is held (``DUR_EDGES``, in 50 ms steps). A GRU
reads the notes so far; four heads predict the next note's parts in turn (``dt``, then the
key given ``dt``, the velocity given both, the hold given all three), so a note costs one
GRU step and sampling is exact ancestral sampling.

Conditioning on a prompt is reading it: the prompt's notes go through the GRU first, and its
state (the key, the tempo, the texture it heard) shapes what it plays next. The GRU state is
also the memory of what it has played. `MotionLM.sampler` streams a continuation,
restricted to the keys of a keyboard. ``python -m lmm_env.lm.train motion`` trains it on the
train splits of the piano, folk and Bach corpora (transposed and tempo-scaled); the judge LM
of `lmm_env.improv` was trained on the validation split, so it never saw these pieces.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lmm_env._checks import check_cli_output, check_int, check_real, check_seed
from lmm_env.score import Score

__all__ = ["MotionLM", "MotionSampler", "encode", "decode", "STEP_SECONDS", "N_DT", "N_PITCH", "N_VEL",
           "DUR_EDGES", "train_main"]

STEP_SECONDS = 0.05  # the model's time unit: one frame of the envs' default 20 fps
N_DT = 41  # 0 .. 40 steps (2 s): a longer gap is read as 2 s
N_PITCH = 88  # MIDI 21..108
N_VEL = 16  # velocity // 8
# hold bins (in steps): 1..16 one by one, then coarser up to 8 s; bin b holds [edge_b, edge_b+1)
DUR_EDGES = np.array(list(range(1, 17)) + [18, 20, 23, 26, 30, 35, 40, 48, 56, 64, 80, 100, 128, 160], np.int64)
N_DUR = len(DUR_EDGES)
PARTS = ("dt", "pitch", "vel", "dur")
SIZES = (N_DT, N_PITCH, N_VEL, N_DUR)  # each part's index SIZES[i] is the start token's
MAX_INTERVAL = 24  # the interval input: pitch - previous pitch, clipped to +-24 semitones
NO_INTERVAL = 2 * MAX_INTERVAL + 1  # its index before the second note
DEFAULT_OUT = Path(__file__).resolve().parent / "weights" / "motion_lm.safetensors"
CORPORA = ("piano", "folk", "bach-chorales")
CORPUS_WEIGHTS = (0.45, 0.35, 0.20)


# --------------------------------------------------------------------------- tokens


def encode(score: Score, transpose: int = 0, tempo: float = 1.0) -> np.ndarray:
    """A score's notes as (n, 4) int64 tokens (dt, pitch, vel, dur), in onset then pitch order.

    ``transpose`` semitones and a ``tempo`` factor (>1: faster) are applied first; notes that
    leave the 88 keys are dropped."""
    p = score.pitches.astype(np.int64) + int(transpose)
    keep = (p >= 21) & (p <= 108)
    on = score.onsets[keep] / tempo
    off = score.offsets[keep] / tempo
    p, v = p[keep], score.velocities[keep].astype(np.int64)
    steps = np.floor(on / STEP_SECONDS + 0.5).astype(np.int64)
    order = np.lexsort((p, steps))
    steps, p, v = steps[order], p[order], v[order]
    hold = np.maximum(1, np.floor((off[order] - on[order]) / STEP_SECONDS + 0.5).astype(np.int64))
    dt = np.diff(steps, prepend=steps[:1] if len(steps) else steps)
    out = np.stack([np.clip(dt, 0, N_DT - 1), p - 21, np.clip(v // 8, 0, N_VEL - 1),
                    np.clip(np.searchsorted(DUR_EDGES, hold, side="right") - 1, 0, N_DUR - 1)], axis=1)
    return out.astype(np.int64)


def decode(tokens: np.ndarray, start_step: int = 0) -> list[tuple[int, int, int, int]]:
    """Tokens -> notes ``(pitch, onset_step, hold_steps, velocity)`` (steps of STEP_SECONDS)."""
    notes, t = [], int(start_step)
    for dt, p, v, d in np.asarray(tokens, np.int64).reshape(-1, 4):
        t += int(dt)
        notes.append((int(p) + 21, t, int(DUR_EDGES[d]), int(v) * 8 + 4))
    return notes


# --------------------------------------------------------------------------- model


def _start_token() -> torch.Tensor:
    """(1, 1, 4): the token that stands before the first note."""
    return torch.tensor(SIZES, dtype=torch.long).view(1, 1, 4)


class MotionLM(nn.Module):
    """GRU over compound note tokens; ``forward(tokens) -> four logit tensors`` for the next note.

    ``tokens``: (B, T, 4) int64. Position t's logits predict note t from notes < t (a start
    token stands before the first)."""

    def __init__(self, hidden: int = 256, embed: int = 48, layers: int = 1):
        super().__init__()
        check_int("hidden", hidden, 8, 4096)
        check_int("embed", embed, 4, 1024)
        check_int("layers", layers, 1, 8)
        self.config = {"hidden": int(hidden), "embed": int(embed), "layers": int(layers)}
        # one extra index per part: the start token
        self.emb = nn.ModuleList(nn.Embedding(n + 1, embed) for n in SIZES)
        self.emb_interval = nn.Embedding(NO_INTERVAL + 1, embed)
        self.gru = nn.GRU(5 * embed, hidden, layers, batch_first=True)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden + i * embed, hidden), nn.GELU(), nn.Linear(hidden, n))
            for i, n in enumerate(SIZES))

    def embed(self, prev: torch.Tensor, interval: torch.Tensor) -> torch.Tensor:
        """GRU input of notes (..., 4) and their intervals (...) -> (..., 5E)."""
        return torch.cat([self.emb[i](prev[..., i]) for i in range(4)] + [self.emb_interval(interval)], dim=-1)

    def _inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, 4) notes -> (B, T, 5E) GRU inputs, each position holding the note *before* it."""
        B = tokens.shape[0]
        prev = torch.cat([_start_token().expand(B, 1, 4), tokens[:, :-1]], dim=1)
        pitch = prev[..., 1]
        interval = (pitch[:, 1:] - pitch[:, :-1]).clamp(-MAX_INTERVAL, MAX_INTERVAL) + MAX_INTERVAL
        interval = torch.cat([interval[:, :1], interval], dim=1)
        interval[:, :2] = NO_INTERVAL  # the start token, and the first note (nothing before it)
        return self.embed(prev, interval)

    def _heads(self, h: torch.Tensor, tokens: torch.Tensor) -> list[torch.Tensor]:
        out, cond = [], []
        for i in range(4):
            out.append(self.heads[i](torch.cat([h] + cond, dim=-1)))
            cond.append(self.emb[i](tokens[..., i]))
        return out

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        h, _ = self.gru(self._inputs(tokens))
        return self._heads(h, tokens)

    def nll(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean NLL per note (nats, the four parts summed) of ``tokens`` (B, T, 4) where ``mask`` (B, T)."""
        logits = self(tokens)
        total = sum(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), tokens[..., i].reshape(-1), reduction="none")
                    for i, lg in enumerate(logits)).view(tokens.shape[:2])
        if mask is None:
            return total.mean()
        return (total * mask).sum() / mask.sum().clamp_min(1)

    def sampler(self, seed: int | None = 0, temperature: float = 1.0, top_p: float = 0.95,
                keys: tuple[int, int] = (21, 108)) -> "MotionSampler":
        return MotionSampler(self, seed=seed, temperature=temperature, top_p=top_p, keys=keys)


def _top_p(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Nucleus filter: keep the most likely values whose mass first reaches ``top_p``."""
    if top_p >= 1.0:
        return probs
    order = np.argsort(-probs, kind="stable")
    cum = np.cumsum(probs[order])
    cut = int(np.searchsorted(cum, top_p * cum[-1])) + 1
    out = np.zeros_like(probs)
    out[order[:cut]] = probs[order[:cut]]
    return out / out.sum()


class MotionSampler:
    """Reads notes (a prompt, or what it played) and samples the next ones, one at a time.

    The GRU state is the memory: `push` feeds a note, `sample` draws the next one (and feeds
    it). Keys outside ``keys`` (MIDI, inclusive) are never drawn; ``min_dt`` forces the next
    note to start at least that many steps after the previous one (a continuation cannot
    start inside the prompt)."""

    def __init__(self, model: MotionLM, seed: int | None = 0, temperature: float = 1.0, top_p: float = 0.95,
                 keys: tuple[int, int] = (21, 108)):
        self.model = model
        self.temperature = check_real("temperature", temperature, 0.0, 10.0, lo_open=True)
        self.top_p = check_real("top_p", top_p, 0.0, 1.0, lo_open=True)
        lo, hi = keys
        check_int("keys[0]", lo, 21, 108)
        check_int("keys[1]", hi, int(lo), 108)
        self.pitch_ok = np.zeros(N_PITCH, bool)
        self.pitch_ok[lo - 21: hi - 21 + 1] = True
        self.rng = np.random.default_rng(check_seed(seed))
        self.h = None
        self.prev = _start_token()
        self.prev_pitch = [N_PITCH, N_PITCH]
        self.n = 0

    def copy(self) -> "MotionSampler":
        """A branch that continues from here (it shares the random generator, so branches drawn one after
        another differ and the whole is reproducible)."""
        new = MotionSampler.__new__(MotionSampler)
        new.__dict__.update(self.__dict__)
        new.prev_pitch = list(self.prev_pitch)  # tensors are replaced, never changed in place
        return new

    def _input(self) -> torch.Tensor:
        """The GRU input of the last note read (the start token before any)."""
        a, b = self.prev_pitch
        interval = NO_INTERVAL if self.n < 2 else int(np.clip(b - a, -MAX_INTERVAL, MAX_INTERVAL)) + MAX_INTERVAL
        return self.model.embed(self.prev, torch.tensor([[interval]]))

    def _read(self, note: np.ndarray, h) -> None:
        self.h = h
        self.prev = torch.from_numpy(np.asarray(note, np.int64).copy()).view(1, 1, 4)
        self.prev_pitch = [self.prev_pitch[1], int(note[1])]
        self.n += 1

    def push(self, tokens: np.ndarray) -> None:
        """Read notes (tokens (n, 4), `encode`'s) without sampling: a prompt, or notes played."""
        with torch.no_grad():
            for row in np.asarray(tokens, np.int64).reshape(-1, 4):
                _, h = self.model.gru(self._input(), self.h)
                self._read(row, h)

    def _draw(self, logits: torch.Tensor, allowed: np.ndarray | None = None) -> int:
        z = logits.double().numpy().reshape(-1) / self.temperature
        if allowed is not None:
            z = np.where(allowed, z, -np.inf)
        p = np.exp(z - z.max())
        p = _top_p(p / p.sum(), self.top_p)
        return int(self.rng.choice(len(p), p=p))

    @torch.no_grad()
    def sample(self, min_dt: int = 0) -> np.ndarray:
        """Draw the next note (tokens (4,)) given everything read so far, and read it."""
        m = self.model
        _, state = m.gru(self._input(), self.h)
        h = state[-1].view(1, 1, -1)
        cond, note = [], []
        for i in range(4):
            logits = m.heads[i](torch.cat([h] + cond, dim=-1))
            allowed = None
            if i == 0 and min_dt > 0:
                allowed = np.arange(N_DT) >= min(int(min_dt), N_DT - 1)
            elif i == 1:
                allowed = self.pitch_ok
            v = self._draw(logits, allowed)
            note.append(v)
            cond.append(m.emb[i](torch.tensor([[v]])))
        row = np.array(note, np.int64)
        self._read(row, state)
        return row


# --------------------------------------------------------------------------- training


def _encode_split(name: str, split: str, max_pieces: int, tempos=(1.0,)) -> dict[float, list[np.ndarray]]:
    from lmm_env import corpus

    pieces = corpus.load(name, split)
    if max_pieces and len(pieces) > max_pieces:  # a deterministic spread, not the first ones
        pieces = [pieces[i] for i in np.linspace(0, len(pieces) - 1, max_pieces).round().astype(int)]
    out = {}
    for t in tempos:
        out[t] = [tok for tok in (encode(s, tempo=t) for s in pieces) if len(tok) >= 8]
    return out


class _Crops:
    """Random crops of encoded pieces: corpus by weight, a tempo, a transposition, a start."""

    def __init__(self, pools, weights, crop: int, warmup: int, p_start: float, p_tempo: float, rng):
        self.pools, self.crop, self.warmup, self.p_start, self.p_tempo, self.rng = pools, crop, warmup, p_start, p_tempo, rng
        self.weights = np.asarray(weights, float) / np.sum(weights)

    def one(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        pool = self.pools[rng.choice(len(self.pools), p=self.weights)]
        tempos = [t for t in pool if t != 1.0]
        tempo = tempos[rng.integers(len(tempos))] if tempos and rng.random() < self.p_tempo else 1.0
        piece = pool[tempo][rng.integers(len(pool[tempo]))]
        if rng.random() < self.p_start or len(piece) <= self.crop:
            start = 0
        else:
            start = int(rng.integers(0, len(piece) - self.crop + 1))
        tok = piece[start: start + self.crop].copy()
        lo, hi = tok[:, 1].min(), tok[:, 1].max()
        shift = int(rng.integers(max(-6, -lo), min(6, N_PITCH - 1 - hi) + 1))
        tok[:, 1] += shift
        if start > 0:  # a crop starts mid-bar: the first note's gap means nothing
            tok[0, 0] = 0
        mask = np.ones(len(tok), np.float32)
        if start > 0:
            mask[: self.warmup] = 0.0
        return tok, mask

    def batch(self, B: int):
        toks, masks = zip(*(self.one() for _ in range(B)))
        T = max(len(t) for t in toks)
        x = np.zeros((B, T, 4), np.int64)
        m = np.zeros((B, T), np.float32)
        for i, (t, mk) in enumerate(zip(toks, masks)):
            x[i, : len(t)], m[i, : len(t)] = t, mk
        return torch.from_numpy(x), torch.from_numpy(m)


@torch.no_grad()
def evaluate_nll(model: MotionLM, pieces: list[np.ndarray], max_notes: int = 400) -> float:
    """Mean NLL per note (nats) over whole pieces (their first ``max_notes`` notes), from their start."""
    model.eval()
    total, n = 0.0, 0
    for tok in pieces:
        x = torch.from_numpy(tok[:max_notes]).unsqueeze(0)
        total += float(model.nll(x)) * x.shape[1]
        n += x.shape[1]
    return total / max(n, 1)


def train_main(argv=None) -> int:
    from lmm_env.corpus import SPLITS

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(
        prog="python -m lmm_env.lm.train motion",
        description="Train the motion LM (LM^M: notes with velocity and hold, one GRU step a note) on the "
                    f"{', '.join(CORPORA)} corpora (weights {CORPUS_WEIGHTS}), transposed and tempo-scaled. "
                    "The defaults rebuild the shipped lmm_env/lm/weights/motion_lm.safetensors (train split; "
                    "the validation split's NLL is stored with it).")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output .safetensors (default: the shipped file)")
    p.add_argument("--train-split", default="train", choices=SPLITS)
    p.add_argument("--eval-split", default="validation", choices=SPLITS)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--minutes", type=float, default=30.0, help="wall-clock cap on the training loop")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-pieces", type=int, default=2500, help="training pieces per corpus (0 = all)")
    p.add_argument("--eval-pieces", type=int, default=60, help="evaluation pieces per corpus")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--crop", type=int, default=160, help="notes per training crop")
    p.add_argument("--warmup", type=int, default=8, help="unscored first notes of mid-piece crops")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--embed", type=int, default=48)
    p.add_argument("--eval-every", type=int, default=500)
    args = p.parse_args(argv)
    from lmm_env.lm.checkpoint import check_model_options, check_train_options, save_checkpoint

    check_train_options(p, args, batch=(1, 1024), crop=(8, 4096), warmup=(0, max(0, args.crop - 1)),
                        eval_every=(1, 10**7), eval_pieces=(1, 10**6))
    check_model_options(p, lambda: MotionLM(hidden=args.hidden, embed=args.embed))
    check_cli_output(p, args.out)
    if args.train_split == args.eval_split:
        p.error(f"--train-split and --eval-split are both {args.train_split!r}; choose two different splits")
    from tqdm import tqdm

    t0 = time.time()
    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    print("encoding corpora ...", flush=True)
    train = [_encode_split(c, args.train_split, args.max_pieces, (1.0, 0.8, 1.25)) for c in CORPORA]
    valid = {c: _encode_split(c, args.eval_split, args.eval_pieces)[1.0] for c in CORPORA}
    print(f"data: {[len(t[1.0]) for t in train]} train pieces, {[len(v) for v in valid.values()]} "
          f"{args.eval_split} pieces, {time.time() - t0:.0f} s", flush=True)
    crops = _Crops(train, CORPUS_WEIGHTS, args.crop, args.warmup, p_start=0.3, p_tempo=0.3, rng=rng)
    model = MotionLM(hidden=args.hidden, embed=args.embed)
    nparams = sum(q.numel() for q in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 20)  # linear warm-up, then cosine decay to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / args.steps))))
    curve = []
    t1, ema, step = time.time(), 0.0, 0
    bar = tqdm(range(args.steps), desc=f"train MotionLM ({nparams / 1e3:.0f}k params)", mininterval=2.0)
    for step in bar:
        model.train()
        x, m = crops.batch(args.batch)
        loss = model.nll(x, m)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        ema = 0.98 * ema + 0.02 * loss.item()
        bar.set_postfix(nll=f"{ema / (1 - 0.98 ** (step + 1)):.3f}")
        last = step + 1 == args.steps or time.time() - t1 > args.minutes * 60
        if (step + 1) % args.eval_every == 0 or last:
            ev = {c: round(evaluate_nll(model, v), 4) for c, v in valid.items()}
            curve.append({"step": step + 1, "train_nll": round(ema / (1 - 0.98 ** (step + 1)), 4), **ev})
            tqdm.write(f"step {step + 1}: {args.eval_split} NLL/note {ev}")
        if last:
            break
    model.eval()
    cmd = "python -m lmm_env.lm.train motion " + " ".join(argv)
    extra = {"command": cmd.strip(), "train_split": args.train_split, "eval_split": args.eval_split,
             "corpora": list(CORPORA), "corpus_weights": list(CORPUS_WEIGHTS), "steps": step + 1,
             "params": nparams, "train_seconds": round(time.time() - t1, 1), "curve": curve,
             "eval_nll_per_note": curve[-1] if curve else {}}
    save_checkpoint(model, args.out, extra)
    print(f"saved {args.out} ({nparams} params, {time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
