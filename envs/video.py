"""Videos with sound: the rendered keyboard and piano roll, with the audio the agent heard.

Gymnasium's ``RecordVideo`` writes silent videos; a piano without its sound says little.
`RecordEpisodeVideo` wraps any lmm_env task made with ``render_mode="rgb_array"`` and, at
the end of each recorded episode, writes an MP4 (H.264 video at the env's frame rate, AAC
audio of ``episode_audio()``), muxed with the ffmpeg that imageio-ffmpeg bundles (no system
package). `write_video(frames, audio, sample_rate, fps, path)` does the writing alone.

    env = RecordEpisodeVideo(gym.make("LMMPiano-v0", render_mode="rgb_array"), "videos/")
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np

from lmm_env._checks import check_int, check_real, short_repr, writable_dir, writable_file


def _check_frames(frames) -> list:
    """``frames`` as a list of (H, W, 3) uint8 arrays of one size (H, W >= 2); else an error naming the bad one."""
    if frames is None or isinstance(frames, (str, bytes)) or not hasattr(frames, "__iter__"):
        raise TypeError(f"frames={short_repr(frames)} is not allowed; pass a list of (H, W, 3) uint8 RGB frames")
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write: play at least one step with render_mode='rgb_array'")
    first = None
    for i, f in enumerate(frames):
        # float, grey or RGBA frames would be written as black, wrapped or corrupt rgb24 video
        ok = isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3
        if not ok or min(f.shape[:2]) < 2:
            what = f"shape {f.shape} and dtype {f.dtype}" if isinstance(f, np.ndarray) else short_repr(f)
            raise ValueError(f"frame {i} of {what} is not allowed; every frame must be an (H, W, 3) uint8 RGB "
                             "array with H, W >= 2 (what render_mode='rgb_array' renders)")
        if first is None:
            first = f.shape
        elif f.shape != first:
            raise ValueError(f"frame {i} of shape {f.shape} differs from frame 0's {first}; all frames need one size")
    return frames


def write_video(frames, audio: np.ndarray, sample_rate: int, fps: float, path) -> Path:
    """Write ``frames`` (a list of (H, W, 3) uint8 of one size) and mono ``audio`` to an MP4 at ``path``
    (ending in .mp4); every argument and the path are checked before anything is encoded."""
    import imageio_ffmpeg
    import soundfile as sf

    frames = _check_frames(frames)
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype.kind not in "fiu":
        raise ValueError(f"audio of shape {audio.shape} and dtype {audio.dtype} is not allowed; pass mono samples (1-D)")
    if not np.isfinite(audio).all():
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise ValueError(f"audio holds {bad} non-finite (NaN or inf) samples of {audio.size}; a video needs finite sound")
    sample_rate = check_int("sample_rate", sample_rate, 1000, 384_000)
    fps = check_real("fps", fps, 0, 1000, lo_open=True)  # a Python float: imageio refuses numpy scalars
    path = writable_file(path, "path")  # now, not after encoding every frame
    if path.suffix.lower() != ".mp4":  # ffmpeg picks the container by the suffix
        raise ValueError(f"path={str(path)!r} is not allowed; give a file path ending in .mp4")
    h, w = frames[0].shape[:2]
    # H.264 wants even sizes: pad by one pixel where needed
    ph, pw = h + h % 2, w + w % 2
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        silent, wav = os.path.join(tmp, "video.mp4"), os.path.join(tmp, "audio.wav")
        writer = imageio_ffmpeg.write_frames(silent, (pw, ph), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, ffmpeg_log_level="error")
        writer.send(None)
        for f in frames:
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)))
            writer.send(np.ascontiguousarray(f))
        writer.close()
        peak = float(np.abs(audio).max()) if len(audio) else 0.0
        sf.write(wav, np.clip(np.asarray(audio, np.float32) / max(1.0, peak), -1, 1), int(sample_rate))
        cmd = [ffmpeg, "-y", "-loglevel", "error", "-i", silent, "-i", wav, "-c:v", "copy", "-c:a", "aac",
               "-b:a", "128k", "-shortest", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"ffmpeg could not mux {path}: {done.stderr.strip()[-500:]}")
    return path


def streams(path) -> dict:
    """{"video": seconds or None, "audio": seconds or None} of a media file, read with the bundled ffmpeg."""
    import re

    import imageio_ffmpeg

    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True).stderr
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", out)
    dur = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None
    return {"video": dur if "Video:" in out else None, "audio": dur if "Audio:" in out else None}


class RecordEpisodeVideo(gym.Wrapper):
    """Write an MP4 with sound of every ``every``-th episode to ``folder`` (``episode-<n>.mp4``)."""

    def __init__(self, env: gym.Env, folder, every: int = 1, name_prefix: str = "episode"):
        if not isinstance(env, gym.Env):  # a vector env: gymnasium's Wrapper would only assert
            raise TypeError(f"RecordEpisodeVideo wraps one env (a gymnasium.Env), got {type(env).__name__}; "
                            "record a single env made with gym.make(..., render_mode='rgb_array')")
        if env.render_mode != "rgb_array":
            raise ValueError(f"RecordEpisodeVideo needs render_mode='rgb_array', got {env.render_mode!r}")
        sim = getattr(env.unwrapped, "sim", None)
        if sim is None:
            raise TypeError(f"{short_repr(env)} is not an lmm_env task (it has no .sim); RecordEpisodeVideo records "
                            "lmm_env tasks")
        if not sim.record_audio:  # else the first save fails: the env keeps no audio
            raise ValueError("RecordEpisodeVideo needs an lmm_env task made with record_audio=True (the default)")
        every = check_int("every", every, 1, 1 << 31)
        # the prefix names a file in the folder: a separator or '..' would write elsewhere
        if not isinstance(name_prefix, str) or not name_prefix or ".." in name_prefix \
                or any(c in name_prefix for c in ("/", "\\", "\0")):
            raise ValueError(f"name_prefix={short_repr(name_prefix)} is not allowed; use a non-empty file name "
                             "without path separators or '..'")
        folder = writable_dir(folder, "folder")  # now, not at the first save
        super().__init__(env)
        self.folder, self.every, self.prefix = folder, every, name_prefix
        self.episode, self.frames, self.paths = -1, [], []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.episode += 1
        self.frames = [self.env.render()] if self.episode % self.every == 0 else []
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.frames:
            self.frames.append(self.env.render())
            if terminated or truncated:
                self.paths.append(self.save())
        return obs, reward, terminated, truncated, info

    def save(self) -> Path:
        """Write the current episode so far (called at its end)."""
        u = self.env.unwrapped
        path = self.folder / f"{self.prefix}-{self.episode}.mp4"
        write_video(self.frames, u.episode_audio(), u.sim.sample_rate, u.sim.frame_rate, path)
        self.frames = []
        return path
