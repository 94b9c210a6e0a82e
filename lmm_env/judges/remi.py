"""A small symbolic judge with meaning: a GPT-2 over REMI tokens of the package's own corpora.

Random weights judge nothing. This one is trained here, on the train splits of the folk,
piano and Bach corpora (each crop transposed by a random -5..+6 semitones), and shipped
(``weights/remi_judge.safetensors``, its config and learning curve in ``remi_judge.json``)::

    from lmm_env.judges.remi import load
    judge = load()                                   # a CausalLMJudge
    gym.make("LMMPiano-v0", reward={"closed_loop": 1.0, "remi-judge": 0.5})   # registered by name

Retrain with ``python -m lmm_env.judges.remi`` (``scripts/train/remi_judge.sh``); it ends by
ranking, on held-out tunes, each tune above three spoiled copies of it (``rank``):
time-shifted (every note moved by up to +-150 ms), wrong-key (a quarter of the notes a
semitone off) and random (random keys in the tune's range, on its rhythm).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lmm_env.judges.base import require_extra

WEIGHTS = Path(__file__).resolve().parent / "weights" / "remi_judge.safetensors"
CONFIG = dict(n_layer=3, n_embd=128, n_head=4, n_positions=512)
CORPORA = ("folk", "piano", "bach-chorales")
TRANSPOSE = range(-5, 7)
VARIANTS = ("time-shifted", "wrong-key", "random")


def tokenizer():
    """The judge's tokenizer: miditok's REMI with its default config (what the judge was trained on)."""
    require_extra("the REMI judge")
    import miditok

    return miditok.REMI()


def _model(tok, config: dict | None = None):
    transformers = require_extra("the REMI judge")
    cfg = transformers.GPT2Config(vocab_size=len(tok), bos_token_id=tok.vocab["BOS_None"],
                                  eos_token_id=tok.vocab["EOS_None"], pad_token_id=tok.pad_token_id,
                                  **(config or CONFIG))
    return transformers.GPT2LMHeadModel(cfg)


def _pitch_ids(tok) -> tuple[int, int]:
    """(id of Pitch_21, id of Pitch_108): REMI numbers the pitch tokens in pitch order."""
    lo, hi = tok.vocab["Pitch_21"], tok.vocab["Pitch_108"]
    assert hi - lo == 87, "REMI's pitch tokens are not contiguous"
    return lo, hi


def load(path=WEIGHTS, device="cpu"):
    """The shipped (or a retrained) REMI judge, a `CausalLMJudge` (safetensors: no code is run)."""
    from safetensors.torch import load_model

    from lmm_env.judges.symbolic import CausalLMJudge

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no REMI judge at {str(path)!r}; retrain it with scripts/train/remi_judge.sh")
    meta = json.loads(path.with_suffix(".json").read_text())
    tok = tokenizer()
    lm = _model(tok, meta["config"])
    load_model(lm, str(path))
    return CausalLMJudge(lm.eval(), tok, device=device, name="remi-judge")


def _pieces(name: str, split: str, seconds: float | None = None):
    from lmm_env import corpus

    out = []
    for s in corpus.load(name, split):
        if s is None or len(s) < 4:
            continue
        out.append(s.trim(0.0, seconds) if seconds and s.duration > seconds else s)
    return out


def _transposed(score, k: int):
    from lmm_env.score import Score

    p = np.asarray(score.pitches) + k
    if p.min() < 21 or p.max() > 108:
        return None
    return Score(p, score.onsets, score.offsets, score.velocities, name=score.name)


def token_pool(names, split: str, tok, transpose=(0,)) -> list[np.ndarray]:
    """Each piece of the corpora ``names`` (split ``split``) as REMI ids, once per transposition."""
    from lmm_env.judges.symbolic import notes_to_symusic

    out = []
    for name in names:
        for s in _pieces(name, split):
            for k in transpose:
                t = _transposed(s, k)
                if t is not None:
                    seq = tok.encode(notes_to_symusic(t))
                    out.append(np.asarray((seq[0] if isinstance(seq, list) else seq).ids, np.int64))
    return out


def _batch(pool, rng, batch: int, length: int, bos: int, pad: int, pitches=None):
    """A batch of random crops (ids, mask), each transposed by a random -5..+6 semitones where it fits."""
    import torch

    ids = torch.full((batch, length + 1), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i in range(batch):
        x = pool[int(rng.integers(len(pool)))]
        start = int(rng.integers(0, max(1, len(x) - length + 1)))
        crop = x[start:start + length]
        if pitches is not None:
            lo, hi = pitches
            is_pitch = (crop >= lo) & (crop <= hi)
            k = int(rng.choice(TRANSPOSE))
            if is_pitch.any() and crop[is_pitch].min() + k >= lo and crop[is_pitch].max() + k <= hi:
                crop = np.where(is_pitch, crop + k, crop)
        ids[i, 0] = bos
        ids[i, 1:len(crop) + 1] = torch.from_numpy(crop)
        mask[i, :len(crop) + 1] = 1
    return ids, mask


def _nll(lm, pool, bos, pad, length: int, pieces: int = 200) -> float:
    """Mean NLL per token of the first ``length`` tokens of up to ``pieces`` pieces."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for x in pool[:pieces]:
            ids = torch.tensor([[bos] + list(x[:length])])
            out = lm(input_ids=ids, labels=ids)
            n = ids.shape[1] - 1
            total += out.loss.item() * n
            count += n
    return total / max(count, 1)


def train(steps: int = 3000, batch: int = 16, length: int = 192, lr: float = 2e-3, seed: int = 0, log=print):
    """Train the judge: (model, tokenizer, report with the validation curve)."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tok = tokenizer()
    bos, pad = tok.vocab["BOS_None"], tok.pad_token_id
    pool = token_pool(CORPORA, "train", tok)
    pitches = _pitch_ids(tok)
    val = {name: token_pool([name], "validation", tok) for name in CORPORA}
    lm = _model(tok)
    opt = torch.optim.AdamW(lm.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 20)  # a short warm-up, then a cosine decay to zero
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, i / steps))))
    curve, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        lm.train()
        ids, mask = _batch(pool, rng, batch, length, bos, pad, pitches)
        labels = ids.masked_fill(mask == 0, -100)
        loss = lm(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps:
            lm.eval()
            point = {"step": step, "wall_s": round(time.perf_counter() - t0, 1), "train_loss": round(loss.item(), 4),
                     **{f"val_nll_{n}": round(_nll(lm, p, bos, pad, length), 4) for n, p in val.items()}}
            curve.append(point)
            log(json.dumps(point))
    report = {"config": CONFIG, "steps": steps, "batch": batch, "length": length, "lr": lr, "seed": seed,
              "train_pieces": len(pool), "curve": curve, "wall_s": round(time.perf_counter() - t0, 1)}
    return lm.eval(), tok, report


def spoil(score, how: str, rng):
    """A spoiled copy of ``score``: "time-shifted" (each note moved by up to +-150 ms),
    "wrong-key" (a quarter of the notes a semitone up or down) or "random" (random keys in its range)."""
    from lmm_env.score import Score

    p = np.asarray(score.pitches).astype(np.int64)
    on, off = np.asarray(score.onsets, np.float64), np.asarray(score.offsets, np.float64)
    if how == "time-shifted":
        shift = rng.uniform(-0.15, 0.15, len(p))
        on2 = np.maximum(on + shift, 0.0)
        return Score(p, on2, on2 + (off - on), score.velocities)
    if how == "wrong-key":
        move = rng.random(len(p)) < 0.25
        p = np.clip(p + move * rng.choice([-1, 1], len(p)), 21, 108)
        return Score(p, on, off, score.velocities)
    if how == "random":
        return Score(rng.integers(p.min(), p.max() + 1, len(p)), on, off, score.velocities)
    raise ValueError(f"how={how!r} is not one of {list(VARIANTS)}")


def rank(judge, names=("folk", "piano"), split: str = "test", seconds: float = 20.0, pieces: int = 0, seed: int = 0):
    """For each corpus, how often the judge finds a held-out tune likelier than each spoiled
    copy of it, and the mean gap in log-likelihood per token."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        tunes = _pieces(name, split, seconds)
        if pieces:
            tunes = tunes[:pieces]
        own = judge.score_notes(tunes)
        out[name] = {"tunes": len(tunes), "ll": float(np.nanmean(own))}
        for how in VARIANTS:
            ll = judge.score_notes([spoil(s, how, rng) for s in tunes])
            ok = np.isfinite(own) & np.isfinite(ll)
            out[name][how] = {"wins": float(np.mean(own[ok] > ll[ok])), "gap": float(np.mean(own[ok] - ll[ok]))}
    return out


def main(argv=None) -> int:
    from safetensors.torch import save_model

    ap = argparse.ArgumentParser(prog="python -m lmm_env.judges.remi", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(WEIGHTS))
    args = ap.parse_args(argv)
    import torch

    lm, tok, report = train(steps=args.steps, seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(lm, str(out))
    from lmm_env.judges.symbolic import CausalLMJudge

    judge = CausalLMJudge(lm, tok, name="remi-judge")
    report["validation_rank"] = rank(judge, split="validation")
    report["command"] = "python -m lmm_env.judges.remi " + " ".join(argv if argv is not None else
                                                                      __import__("sys").argv[1:])
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report["validation_rank"], indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
