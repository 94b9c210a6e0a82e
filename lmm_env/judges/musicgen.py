"""MusicGen as a judge: its decoder scoring EnCodec tokens unconditionally (the text encoder dropped).

    judge = MusicGenJudge.from_pretrained("/models/musicgen-small")    # a folder on disk; nothing downloads
    judge = MusicGenJudge.from_configs(decoder=..., audio_encoder=...)  # random weights, any size (tests, timing)

Scoring with the decoder alone gives the full model's logits with a null text (its
unconditional path: the text states are zeroed by their mask, and cross-attention to zeros
adds nothing), at a fraction of the cost; `tests/test_judges.py` checks both that and that the
score is exactly Hugging Face's own loss.
"""
from __future__ import annotations

import os
from pathlib import Path

from lmm_env._checks import short_repr
from lmm_env.judges.base import CodecLMJudge, require_extra


class MusicGenJudge(CodecLMJudge):
    """MusicGen's decoder (a ``MusicgenForCausalLM``) over EnCodec (an ``EncodecModel``) tokens.

    Args:
        decoder: the ``MusicgenForCausalLM`` (``MusicgenForConditionalGeneration.decoder``).
        codec: the ``EncodecModel`` (``.audio_encoder``).
        device: where both run; dtype: e.g. ``torch.bfloat16`` for the decoder (about twice
            as fast on CPUs that have it; scores shift slightly).
    """

    def __init__(self, decoder, codec, device="cpu", dtype=None, name: str = "musicgen"):
        import torch

        require_extra("MusicGenJudge")
        self.decoder = decoder.to(device).eval()
        if dtype is not None:
            self.decoder = self.decoder.to(dtype)
        self.codec = codec.to(device).eval()
        cfg, ccfg = decoder.config, codec.config
        if getattr(ccfg, "audio_channels", 1) != 1 or getattr(cfg, "audio_channels", 1) != 1:
            raise ValueError("MusicGenJudge scores mono audio: use a mono MusicGen (not the stereo checkpoints)")
        hop = int(round(ccfg.sampling_rate / ccfg.frame_rate))
        K = int(cfg.num_codebooks)
        bandwidth = _bandwidth_for(ccfg, K)

        def encode(x: torch.Tensor) -> torch.Tensor:
            out = self.codec.encode(x[:, None], bandwidth=bandwidth)
            codes = out.audio_codes  # (chunks, B, K, T); one chunk without chunking
            if codes.shape[0] != 1:
                raise ValueError("the codec chunked the audio; use a codec config without chunk_length_s")
            return codes[0]

        def logits(tokens: torch.Tensor) -> torch.Tensor:
            B, K_, S = tokens.shape
            out = self.decoder(input_ids=tokens.reshape(B * K_, S)).logits
            return out.reshape(B, K_, S, -1)

        super().__init__(encode, logits, sample_rate=int(ccfg.sampling_rate), frame_samples=hop, num_codebooks=K,
                         pad_token_id=int(cfg.pad_token_id), bos_token_id=int(cfg.bos_token_id),
                         context_frames=int(cfg.max_position_embeddings) - (K - 1), device=device, name=name)

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=None, **kwargs) -> "MusicGenJudge":
        """From a ``MusicgenForConditionalGeneration`` saved in the folder ``path`` (``save_pretrained``
        or a downloaded checkpoint such as facebook/musicgen-small). Offline: never downloads."""
        transformers = require_extra("MusicGenJudge.from_pretrained")
        if not isinstance(path, (str, os.PathLike)) or not Path(path).is_dir():
            raise FileNotFoundError(f"{short_repr(path)} is not a folder; download the weights first (e.g. "
                                    "huggingface-cli download facebook/musicgen-small --local-dir DIR) and give DIR")
        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"
        try:  # safetensors weights only: a pickled checkpoint is refused, never run
            model = transformers.MusicgenForConditionalGeneration.from_pretrained(
                os.fspath(path), local_files_only=True, use_safetensors=True)
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
        return cls(model.decoder, model.audio_encoder, device=device, dtype=dtype, **kwargs)

    @classmethod
    def from_configs(cls, decoder=None, audio_encoder=None, seed: int = 0, **kwargs) -> "MusicGenJudge":
        """Random weights from configs (``MusicgenDecoderConfig`` / ``EncodecConfig`` or dicts of
        their fields; None: musicgen-small's). Judges nothing; for tests and timing."""
        import torch

        transformers = require_extra("MusicGenJudge.from_configs")
        dec = decoder if decoder is not None else {}
        enc = audio_encoder if audio_encoder is not None else {}
        if isinstance(dec, dict):
            dec = transformers.MusicgenDecoderConfig(**dec)
        if isinstance(enc, dict):
            enc = transformers.EncodecConfig(**{"sampling_rate": 32000, "target_bandwidths": [2.2],
                                                "upsampling_ratios": [8, 5, 4, 4], "codebook_size": 2048, **enc})
        torch.manual_seed(seed)
        return cls(transformers.MusicgenForCausalLM(dec), transformers.EncodecModel(enc), **kwargs)


def _bandwidth_for(codec_config, num_codebooks: int) -> float:
    """The codec bandwidth (kbps) that yields ``num_codebooks`` codebooks, or a ValueError."""
    import math

    bits = math.log2(codec_config.codebook_size) * codec_config.frame_rate / 1000.0  # kbps per codebook
    for bw in codec_config.target_bandwidths:
        if int(bw // bits) == num_codebooks or int(round(bw / bits)) == num_codebooks:
            return bw
    raise ValueError(f"the codec gives no bandwidth for {num_codebooks} codebooks (its bandwidths "
                     f"{list(codec_config.target_bandwidths)} kbps at {bits:g} kbps a codebook); the decoder and "
                     "codec do not belong together")
