"""The LM package's shared parts: load_pretrained names, the train CLI, metadata checks."""
from __future__ import annotations

import subprocess
import sys

import pytest

from lmm_env.lm import PRETRAINED, CheckpointError, load_checkpoint, load_pretrained, read_metadata
from lmm_env.lm.checkpoint import WEIGHTS_DIR


def test_every_shipped_model_loads_by_name_and_is_shared():
    for name in PRETRAINED:
        model = load_pretrained(name)
        assert load_pretrained(name) is model  # cached: envs share one copy
        assert load_pretrained(name, cached=False) is not model
    assert type(load_pretrained("score")).__name__ == "ScoreLM"
    assert type(load_pretrained("judge")).__name__ == "ScoreLM"
    assert type(load_pretrained("audio")).__name__ == "AudioLM"
    assert type(load_pretrained("ear")).__name__ == "LearnedEar"
    assert type(load_pretrained("ear-analytic")).__name__ == "AnalyticEar"
    assert type(load_pretrained("motion")).__name__ == "MotionLM"


def test_shipped_weights_are_small_and_carry_their_metrics():
    files = list(WEIGHTS_DIR.glob("*.safetensors"))
    # every file-backed shipped model (score, judge, audio, ear) is there
    assert {v for v in PRETRAINED.values() if ":" not in v} <= {f.name for f in files}
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    # the note transcriber has its own format (lmm_env.lm.transcriber): it loads and says what made it
    from lmm_env.lm.transcriber import NoteTranscriber

    transcribers = [f for f in files if f.name.startswith("transcriber")]
    assert transcribers
    for f in transcribers:
        assert NoteTranscriber.load(f).meta["command"].startswith("python -m lmm_env.lm.train transcriber")
    for f in set(files) - set(transcribers):
        meta = read_metadata(f)
        assert meta["class"] in ("ScoreLM", "AudioLM", "LearnedEar", "MotionLM") and meta["extra"]


def test_unknown_names_and_wrong_classes_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="unknown model 'scores'"):
        load_pretrained("scores")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="holds a ScoreLM, not the AudioLM"):
        load_checkpoint(WEIGHTS_DIR / "score_lm.safetensors", expect="AudioLM")
    not_ours = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file
    import torch

    save_file({"w": torch.zeros(2)}, str(not_ours))
    with pytest.raises(CheckpointError, match="lacks lmm_env metadata"):
        load_checkpoint(not_ours)


def test_train_cli_lists_its_models_and_rejects_unknown_ones():
    out = subprocess.run([sys.executable, "-m", "lmm_env.lm.train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "score,audio,ear" in out.stdout
    out = subprocess.run([sys.executable, "-m", "lmm_env.lm.train", "video"], capture_output=True, text=True)
    assert out.returncode == 2 and "unknown model 'video'" in out.stderr
    out = subprocess.run([sys.executable, "-m", "lmm_env.lm.train", "score", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--out" in out.stdout
