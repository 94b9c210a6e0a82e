"""Retrain a shipped model: ``python -m lmm_env.lm.train {score,audio,ear,ear-pairs,transcriber,motion} [options]``.

``ear-pairs --pairs K`` fits the ear of K protocol pairs (`lmm_env.pairs`, `fit_ear`) and
writes ``weights/ear_pairs{K}.safetensors`` (shipped for K = 4, 16, 64). ``transcriber``
pretrains the `NoteTranscriber` (h's transcriber) on the world's pianos
(``weights/transcriber.safetensors``). ``motion`` trains the motion LM (LM^M) of the
``motion-lm`` improviser (``weights/motion_lm.safetensors``).

Each subcommand's ``--help`` lists its options; the defaults reproduce the shipped weights
(on 2 CPU cores in under 20 minutes each) and write them to ``lmm_env/lm/weights/``
unless ``--out`` says otherwise.
"""
from __future__ import annotations

import importlib
import sys

TRAINERS = {
    "score": "lmm_env.lm.score_lm",
    "audio": "lmm_env.lm.audio_lm",
    "ear": "lmm_env.lm.ear",
    "ear-pairs": "lmm_env.lm.ear:pairs_main",
    "transcriber": "lmm_env.lm.transcriber",
    "motion": "lmm_env.lm.motion_lm",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TRAINERS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown model {argv[0]!r}; choose one of: {', '.join(TRAINERS)}", file=sys.stderr)
        print(__doc__.strip())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, _, func = TRAINERS[argv[0]].partition(":")
    return int(getattr(importlib.import_module(module), func or "train_main")(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
