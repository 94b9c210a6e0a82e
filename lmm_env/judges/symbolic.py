"""Symbolic judges: any causal LM over notes tokenized by miditok (REMI by default).

    from transformers import GPT2Config, GPT2LMHeadModel
    from miditok import REMI
    tok = REMI()
    judge = CausalLMJudge(GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=64, n_head=2)), tok)
    judge.score_notes([score_a, score_b])    # mean log-likelihood per token, one per score

Notes become a one-track MIDI score at 120 beats per minute (a beat is 0.5 s), tokenized;
the LM reads the ids behind the tokenizer's BOS and each next token is scored (what Hugging
Face's own loss averages with ``labels=input_ids``, BOS aside).
"""
from __future__ import annotations

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.judges.base import SymbolicJudge, require_extra

TICKS_PER_BEAT = 480
SECONDS_PER_BEAT = 0.5  # 120 beats per minute: the tick grid notes are written on


def notes_to_symusic(score):
    """A `lmm_env.score.Score` (or anything with pitches/onsets/offsets/velocities in seconds)
    -> a one-track ``symusic.Score`` in ticks at 120 beats per minute."""
    import symusic

    s = symusic.Score(TICKS_PER_BEAT)
    track = symusic.Track(program=0)
    scale = TICKS_PER_BEAT / SECONDS_PER_BEAT
    on = np.rint(np.asarray(score.onsets, np.float64) * scale).astype(np.int64)
    off = np.maximum(np.rint(np.asarray(score.offsets, np.float64) * scale).astype(np.int64), on + 1)
    for p, a, b, v in zip(np.asarray(score.pitches), on, off, np.asarray(score.velocities)):
        track.notes.append(symusic.Note(int(a), int(b - a), int(p), int(v)))
    s.tracks.append(track)
    return s


class CausalLMJudge(SymbolicJudge):
    """A causal LM (a Hugging Face ``*ForCausalLM``, or any module whose ``(input_ids,
    attention_mask)`` call returns ``.logits``) over a miditok tokenizer's ids.

    Args:
        lm: the causal LM (its vocabulary must cover the tokenizer's ids).
        tokenizer: a miditok tokenizer (default: ``miditok.REMI()``).
        context_tokens: the most tokens it reads (default: the LM config's positions).
        device: where the LM runs.
    """

    def __init__(self, lm, tokenizer=None, context_tokens: int | None = None, device="cpu", name: str = "symbolic"):
        require_extra("CausalLMJudge")
        import miditok

        self.tokenizer = tokenizer if tokenizer is not None else miditok.REMI()
        if not isinstance(self.tokenizer, miditok.MusicTokenizer):
            raise TypeError(f"tokenizer={short_repr(tokenizer)} is not a miditok tokenizer (e.g. miditok.REMI())")
        self.lm = lm.to(device).eval()
        cfg = getattr(lm, "config", None)
        limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
        self.context_tokens = int(context_tokens or limit or 1024)
        vocab = getattr(cfg, "vocab_size", None)
        if vocab is not None and vocab < len(self.tokenizer):
            raise ValueError(f"the LM's vocabulary ({vocab}) is smaller than the tokenizer's ({len(self.tokenizer)})")
        self.bos = self.tokenizer.vocab.get("BOS_None", self.tokenizer.pad_token_id)
        self.pad = self.tokenizer.pad_token_id
        self.device = device
        self.name = name

    @classmethod
    def from_pretrained(cls, path, tokenizer=None, device="cpu", **kwargs) -> "CausalLMJudge":
        """A causal LM saved in the folder ``path`` (``save_pretrained``; safetensors weights only,
        offline) over ``tokenizer`` (a miditok tokenizer, e.g. ``miditok.REMI(params="tokenizer.json")``
        for the one it was trained with; default REMI's defaults)."""
        import os
        from pathlib import Path

        transformers = require_extra("CausalLMJudge.from_pretrained")
        if not isinstance(path, (str, os.PathLike)) or not Path(path).is_dir():
            raise FileNotFoundError(f"{short_repr(path)} is not a folder holding a causal LM (save_pretrained)")
        lm = transformers.AutoModelForCausalLM.from_pretrained(os.fspath(path), local_files_only=True,
                                                               use_safetensors=True)
        return cls(lm, tokenizer, device=device, **kwargs)

    def ids(self, score) -> list[int]:
        """The token ids of a note set (no BOS), the last ``context_tokens - 1`` of them."""
        if len(score) == 0:
            return []
        seqs = self.tokenizer.encode(notes_to_symusic(score))
        seq = seqs[0] if isinstance(seqs, list) else seqs
        return list(seq.ids)[-(self.context_tokens - 1):]

    def score_ids(self, batch: list[list[int]]) -> np.ndarray:
        """Mean log-likelihood per token of each id list (read behind BOS); NaN for an empty one."""
        import torch

        n = max((len(x) for x in batch), default=0)
        out = np.full(len(batch), np.nan)
        if n == 0:
            return out
        ids = torch.full((len(batch), n + 1), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(batch):
            ids[i, 0] = self.bos
            ids[i, 1:len(x) + 1] = torch.as_tensor(x, dtype=torch.long)
            mask[i, :len(x) + 1] = 1
        with torch.no_grad():
            logits = self.lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            lp = logp.gather(-1, ids[:, 1:, None].to(self.device))[..., 0].cpu()
        valid = mask[:, 1:].bool()
        sums = (lp * valid).sum(1).double().numpy()
        counts = valid.sum(1).numpy()
        ok = counts > 0
        out[ok] = sums[ok] / counts[ok]
        return out

    def score_notes(self, notes: list) -> np.ndarray:
        return self.score_ids([self.ids(s) for s in notes])
