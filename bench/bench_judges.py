"""What judges from the field cost (issue 25): per audio-second, per tune, and in the env.

    .venv/bin/python bench/bench_judges.py                       # CPU: every row below
    .venv/bin/python bench/bench_judges.py --only audio          # the audio judge rows only
    .venv/bin/python bench/bench_judges.py --torch-world --device cuda --envs 256 1024   # a GPU (prepared)

Needs the 'judges' extra. Weights are random (built from configs: nothing downloads); cost
does not depend on them. Rows:

* audio judge, seconds of compute per audio-second per env: MusicGen's decoder over EnCodec
  32 kHz tokens, tiny (2 x 32) and musicgen-small-sized (24 layers x 1024, 4 codebooks of
  2048), float32 and bfloat16, 1 s windows at batch 1 and 4 (the env's 16 kHz audio resampled
  to 32 kHz included); ``--sizes tiny-codec``: the tiny decoder over a tiny EnCodec;
* env-steps/s of LMMPiano-v0's numpy vector env with random play and reward
  ``AudioJudgeReward(judge, window_seconds=1, every=20)`` (a judged window per second of play
  per env): small at 4 envs, the others at 8;
* symbolic judge, seconds to score a 30 s two-hand tune: a GPT-2 over REMI tokens, the
  shipped remi-judge (3 x 128) and GPT-2-small dims (12 x 768);
* ``--torch-world``: env-steps/s of the torch world with the judge on ``--device`` (the audio
  stays there), at ``--envs``.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMALL = dict(vocab_size=2048, num_codebooks=4, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
             ffn_dim=4096, max_position_embeddings=2048, pad_token_id=2048, bos_token_id=2048)
TINY = dict(vocab_size=2048, num_codebooks=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            ffn_dim=64, max_position_embeddings=512, pad_token_id=2048, bos_token_id=2048)


TINY_CODEC = dict(hidden_size=16, num_filters=4, num_residual_layers=1, codebook_dim=16)  # EnCodec, 2048 codes


def musicgen(size: str, device="cpu", dtype=None):
    """"small" (musicgen-small's decoder dims), "tiny" (a 2 x 32 decoder) with the full-size EnCodec
    32 kHz, or "tiny-codec" (the tiny decoder over a tiny EnCodec: the cheapest judge there is)."""
    from lmm_env.judges import MusicGenJudge

    return MusicGenJudge.from_configs(decoder=SMALL if size == "small" else TINY,
                                      audio_encoder=TINY_CODEC if size == "tiny-codec" else None,
                                      device=device, dtype=dtype)


def best_of(f, repeats: int = 3) -> float:
    f()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def audio_rows(sizes) -> list[str]:
    import torch

    from lmm_env.judges import resample

    rows = []
    for size in sizes:
        for dtype in (None, torch.bfloat16):
            judge = musicgen(size, dtype=dtype)
            for batch in (1, 4):
                x = (0.1 * np.random.default_rng(0).standard_normal((batch, 16000))).astype(np.float32)
                s = best_of(lambda: judge.score(resample(x, 16000, 32000)), 2 if size == "small" else 3)
                rows.append(f"| audio judge {size}, {'bf16' if dtype else 'fp32'}, batch {batch} | "
                            f"{s / batch:.3f} s per audio-second per env |")
                print(rows[-1], flush=True)
    return rows


def env_rows(cases, steps: int) -> list[str]:
    from lmm_env.envs import make_vector_env
    from lmm_env.rewards import AudioJudgeReward

    rows = []
    for size, n in cases:
        judge = musicgen(size)
        env = make_vector_env(n, score="folk", max_seconds=10, reward=AudioJudgeReward(judge, 1.0, every=20))
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        pool = [np.where(rng.random((n, 88)) < 0.03, rng.uniform(0.2, 1, (n, 88)), -1).astype(np.float32)
                for _ in range(8)]
        for i in range(20):
            env.step(pool[i % 8])
        t = time.perf_counter()
        for i in range(steps):
            env.step(pool[i % 8])
        rate = steps * n / (time.perf_counter() - t)
        rows.append(f"| LMMPiano-v0, {n} envs, AudioJudgeReward({size}, 1 s every 20 steps), random play | "
                    f"{rate:,.0f} env-steps/s |")
        print(rows[-1], flush=True)
    return rows


def symbolic_rows() -> list[str]:
    import miditok
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmm_env import corpus
    from lmm_env.judges import CausalLMJudge
    from lmm_env.judges.remi import load

    from lmm_env.score import Score

    parts, t0 = [], 0.0  # the piano test pieces one after another, the first 30 s of them
    for s in corpus.load("piano", "test"):
        parts.append((s, t0))
        t0 += s.duration
        if t0 >= 30:
            break
    cat = [np.concatenate([getattr(s, f) + (t if f in ("onsets", "offsets") else 0) for s, t in parts])
           for f in ("pitches", "onsets", "offsets", "velocities")]
    tune = Score(*cat, name="piano test, first 30 s").trim(0, 30)
    rows = []
    tok = miditok.REMI()
    judges = {"remi-judge (shipped, 3 x 128)": load(),
              "GPT-2-small dims (12 x 768)": CausalLMJudge(GPT2LMHeadModel(GPT2Config(vocab_size=len(tok))), tok)}
    for name, judge in judges.items():
        n = len(judge.ids(tune))
        s = best_of(lambda: judge.score_notes([tune]))
        rows.append(f"| symbolic judge {name}, a 30 s two-hand tune ({n} tokens) | {s:.3f} s |")
        print(rows[-1], flush=True)
    return rows


def torch_world_rows(size: str, envs, device: str, steps: int) -> list[str]:
    import torch

    from lmm_env.envs import make_vector_env
    from lmm_env.rewards import AudioJudgeReward

    rows = []
    judge = musicgen(size, device=device)
    for n in envs:
        env = make_vector_env(n, backend="torch", device=device, score="folk", max_seconds=10,
                              reward=AudioJudgeReward(judge, 1.0, every=20))
        env.reset(seed=0)
        gen = torch.Generator(device=device).manual_seed(0)
        pool = [torch.where(torch.rand((n, 88), generator=gen, device=device) < 0.03,
                            torch.rand((n, 88), generator=gen, device=device), -torch.ones((n, 88), device=device))
                for _ in range(8)]
        for i in range(20):
            env.step(pool[i % 8])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(steps):
            env.step(pool[i % 8])
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rate = steps * n / (time.perf_counter() - t)
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
        rows.append(f"| torch world on {name}, {n} envs, AudioJudgeReward({size}, 1 s every 20 steps) | "
                    f"{rate:,.0f} env-steps/s |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["audio", "env", "symbolic"], default=None)
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--steps", type=int, default=200, help="timed env steps")
    ap.add_argument("--torch-world", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--envs", type=int, nargs="+", default=[64])
    ap.add_argument("--size", default="small", help="--torch-world: the judge's size")
    args = ap.parse_args(argv)
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| what | cost |\n|---|---|")
    if args.torch_world:
        torch_world_rows(args.size, args.envs, args.device, args.steps)
        return 0
    sizes = [s for s in args.sizes.split(",") if s]
    if args.only in (None, "audio"):
        audio_rows(sizes)
    if args.only in (None, "env"):
        env_rows([(s, 4 if s == "small" else 8) for s in sizes], args.steps)
    if args.only in (None, "symbolic"):
        symbolic_rows()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
