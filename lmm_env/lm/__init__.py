"""Language models of the score (LM^V, `ScoreLM`) and of audio (LM^A, `AudioLM`), and ears.

Small, CPU-trainable models shipped with weights (``lmm_env/lm/weights/``):

- `ScoreLM` (``load_pretrained("score")``): autoregressive model of score frames
  (held + onset over 88 keys) at 20 frames per second.
- `AudioLM` (``load_pretrained("audio")``): autoregressive density of log-mel frames,
  trained on SoundFont renderings of the corpus.
- `AnalyticEar` (``"ear-analytic"``) and `LearnedEar` (``"ear"``, trained from K=16
  score-audio pairs): audio -> 88 pitch activations per frame.

- `NoteTranscriber` (`lmm_env.lm.transcriber`, ``weights/transcriber.safetensors``): audio ->
  notes (onset, frame, velocity per key), pretrained on the world's own pianos; adapted to a
  new instrument from its K pairs by ``transcriber_for(K, instrument)``: h's transcriber.
- `MotionLM` (`lmm_env.lm.motion_lm`, ``load_pretrained("motion")``): LM^M, a GRU over notes
  with velocity and hold that continues what it read (the ``motion-lm`` improviser's model).

`fit_ear(pairs)` fits a `LearnedEar` from K protocol pairs (`lmm_env.pairs.load(K)`), and
`ear_for(K, synth)` is the ear of K pairs an env made with ``pairs=K`` listens with (shipped,
cached or fitted once). Both live in `lmm_env.lm.ear`, which reads `lmm_env.pairs` (the data);
`lmm_env.pairs` never imports this package.

Retrain any of them with ``python -m lmm_env.lm.train {score,audio,ear,ear-pairs,transcriber,motion} --help``.
"""
from lmm_env.lm.checkpoint import (
    CheckpointError,
    PRETRAINED,
    load_checkpoint,
    load_pretrained,
    read_metadata,
    save_checkpoint,
)

__all__ = ["CheckpointError", "PRETRAINED", "load_checkpoint", "load_pretrained", "read_metadata",
           "save_checkpoint", "fit_ear", "ear_for"]


def __getattr__(name):
    if name in ("fit_ear", "ear_for"):  # lazily: the ear module imports torch
        from lmm_env.lm.ear import ear_for, fit_ear

        return fit_ear if name == "fit_ear" else ear_for
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
