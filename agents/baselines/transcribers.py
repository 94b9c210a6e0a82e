"""Outside transcribers as LMMByEar-v0 agents: the anchors the field already has.

Each agent hears the whole target at the start of an episode
(``env.unwrapped.target_audio()``), transcribes it with an off-the-shelf model trained on
hours of paired audio and MIDI, and plays the notes it wrote down (pitch, onset, release
and velocity) step by step, as the reference oracle plays the hidden notes. They sit in the
benchmark's by-ear table beside the agents that learn from K pairs, so the table shows
what pairs-hungry supervision reaches on the same audio.

* ``basic-pitch`` (Spotify, ICASSP 2022; its ONNX model, run by onnxruntime): a small
  instrument-agnostic note transcriber. Install: ``pip install --no-deps basic-pitch==0.4.0``
  then ``pip install onnxruntime "resampy<0.4.3" "setuptools<81"`` (its wheel declares
  TensorFlow on Python >= 3.11; the ONNX model needs none of it).
* ``transkun`` (Transkun V2, Yan & Duan: a semi-CRF transformer trained on MAESTRO v3,
  ~200 hours of piano). Install: ``pip install --no-deps transkun==2.0.1`` then
  ``pip install moduleconf ncls soxr``. It asks torchaudio for one thing, a mel filterbank;
  torchaudio does not import beside torch 2.13, so `_melscale_fbanks` (torchaudio's
  formula: HTK mel scale, triangular filters, no normalization) stands in for it while the
  model is built. Its weights load with ``torch.load(weights_only=True)``: no code runs.

Neither is installed by default: building one that is missing raises an ImportError with its
install line, and the benchmark's ``baselines`` skips it with a note.
"""
from __future__ import annotations

import contextlib
import sys
import types

import numpy as np

from lmm_env._checks import short_repr

BASIC_PITCH_INSTALL = ('pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime "resampy<0.4.3" '
                       '"setuptools<81"')
TRANSKUN_INSTALL = "pip install --no-deps transkun==2.0.1 && pip install moduleconf ncls soxr"


class TranscriberAgent:
    """Plays what ``transcribe(audio, sample_rate) -> Score`` writes down from the target (LMMByEar-v0)."""

    oracle = False
    name = "transcriber"

    def __init__(self, env):
        sim = getattr(getattr(env, "unwrapped", None), "sim", None)
        if sim is None or not hasattr(env.unwrapped, "target_audio"):
            raise TypeError(f"{short_repr(env)} is not LMMByEar-v0; {type(self).__name__} plays LMMByEar-v0")
        if sim.n_envs != 1:
            raise ValueError(f"{type(self).__name__} plays one env; this world holds {sim.n_envs}")
        self.env, self.sim = env, sim
        self.cols = np.arange(sim.keyboard.lo, sim.keyboard.hi + 1) - 21
        self._heard = None
        self._frames = None
        self.notes = None  # the last transcription (a Score)

    def transcribe(self, audio: np.ndarray, sample_rate: int):
        raise NotImplementedError

    def reset(self) -> None:
        self._heard = None

    # transcriptions of recent targets, by the audio's digest: a benchmark plays the same target at
    # every K (only the reward's ear changes), and Transkun needs seconds a clip on a CPU
    MEMO = 64  # targets remembered per transcriber class

    def _memo_store(self):
        """Where transcriptions are remembered: one store per class (an outside model is the same for every
        instance); an agent whose transcriber is its own keeps one per instance."""
        from collections import OrderedDict

        memo = type(self).__dict__.get("_memo")
        if memo is None:
            memo = OrderedDict()
            setattr(type(self), "_memo", memo)
        return memo

    def _transcribe_memo(self, audio: np.ndarray, sample_rate: int):
        import hashlib

        memo = self._memo_store()
        key = (hashlib.sha1(audio.tobytes()).hexdigest(), len(audio), sample_rate)
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        notes = memo[key] = self.transcribe(audio, sample_rate)
        while len(memo) > self.MEMO:
            memo.popitem(last=False)
        return notes

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        target = self.env.unwrapped.target_audio()
        if target is not self._heard or (episode_start is not None and bool(np.any(episode_start))):
            self.notes = self._transcribe_memo(np.ascontiguousarray(target, np.float32), int(self.sim.sample_rate))
            self._frames, self._heard = self.notes.frames(self.sim.frame_rate), target
        from lmm_env.agents.baselines.by_ear import frame_action

        return frame_action(self._frames, int(self.sim.t[0]), self.cols, self.sim.keyboard.n_actions), state


def _score(notes, name: str):
    """(onset s, offset s, pitch, velocity) rows -> a Score of the piano's range."""
    from lmm_env.score import Score

    kept = [(int(p), float(on), float(max(off, on + 1e-3)), int(np.clip(round(float(v)), 1, 127)))
            for on, off, p, v in notes if 21 <= int(p) <= 108]
    return Score.from_notes(kept, name=name)


class BasicPitchAgent(TranscriberAgent):
    """basic-pitch's ONNX model (ICASSP 2022) with its default note thresholds."""

    name = "basic-pitch"
    _model = None  # loaded once per process

    def __init__(self, env):
        import logging

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # while it imports: it warns on the root logger about every backend it lacks
        try:
            from basic_pitch import ICASSP_2022_MODEL_PATH
            from basic_pitch.inference import Model
        except ImportError as exc:
            raise ImportError(f"the basic-pitch agent needs basic-pitch with onnxruntime: {BASIC_PITCH_INSTALL} "
                              f"({exc})") from None
        finally:
            root.setLevel(level)
        super().__init__(env)
        if BasicPitchAgent._model is None:
            BasicPitchAgent._model = Model(ICASSP_2022_MODEL_PATH)

    def transcribe(self, audio, sample_rate):
        import os
        import tempfile

        import soundfile as sf
        from basic_pitch.inference import predict

        # basic-pitch reads a file (it resamples to its 22,050 Hz itself)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "target.wav")
            sf.write(path, audio, sample_rate)
            with contextlib.redirect_stdout(None):
                _, _, events = predict(path, BasicPitchAgent._model)
        # velocity: basic-pitch writes MIDI velocity round(127 * amplitude)
        return _score([(on, off, p, round(127 * float(a))) for on, off, p, a, _ in events], "basic-pitch")


def _melscale_fbanks(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int,
                     norm=None, mel_scale: str = "htk"):
    """torchaudio.functional.melscale_fbanks for the HTK scale without normalization: (n_freqs, n_mels)."""
    import torch

    if norm is not None or mel_scale != "htk":
        raise ValueError(f"only norm=None, mel_scale='htk' are reimplemented (got {norm!r}, {mel_scale!r})")
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * np.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * np.log10(1.0 + f_max / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


@contextlib.contextmanager
def _torchaudio_filterbank():
    """While Transkun is built: a ``torchaudio`` that offers only the mel filterbank, if the real one
    does not import (it does not beside torch 2.13). Removed afterwards."""
    try:
        import torchaudio  # noqa: F401

        yield
        return
    except Exception:  # ImportError, or torchaudio's own OSError on a torch it was not built for
        pass
    stand_in = types.ModuleType("torchaudio")
    stand_in.functional = types.SimpleNamespace(melscale_fbanks=_melscale_fbanks)
    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = stand_in
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = saved


class TranskunAgent(TranscriberAgent):
    """Transkun V2 (MAESTRO v3, ~200 h of piano) on CPU, with its default segments (16 s, hop 8 s)."""

    name = "transkun"
    _model = None

    def __init__(self, env):
        try:
            import json
            from importlib.resources import files

            import torch
            from transkun.ModelTransformer import TransKun
        except ImportError as exc:
            raise ImportError(f"the transkun agent needs Transkun V2: {TRANSKUN_INSTALL} ({exc})") from None
        super().__init__(env)
        if TranskunAgent._model is None:
            root = files("transkun") / "pretrained"
            config = TransKun.Config()
            config.__dict__.update(json.loads((root / "2.0.conf").read_text())["Model"]["config"])
            with _torchaudio_filterbank():
                model = TransKun(conf=config)
            checkpoint = torch.load(str(root / "2.0.pt"), map_location="cpu", weights_only=True)
            state = checkpoint.get("best_state_dict", checkpoint.get("state_dict"))
            model.load_state_dict(state, strict=False)
            TranskunAgent._model = model.eval()

    def transcribe(self, audio, sample_rate):
        import torch
        from scipy.signal import resample_poly

        model = TranskunAgent._model
        x = resample_poly(audio.astype(np.float64), model.fs, sample_rate).astype(np.float32)
        with torch.no_grad():
            notes = model.transcribe(torch.from_numpy(x[:, None]), discardSecondHalf=False)
        return _score([(n.start, n.end, n.pitch, n.velocity) for n in notes], "transkun")
