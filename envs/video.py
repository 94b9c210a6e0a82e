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


def write_video(frames, audio: np.ndarray, sample_rate: int, fps: float, path) -> Path:
    """Write ``frames`` (a list of (H, W, 3) uint8) and mono ``audio`` to an MP4 at ``path``."""
    import imageio_ffmpeg
    import soundfile as sf

    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write: play at least one step with render_mode='rgb_array'")
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.dtype.kind not in "fiu":
        raise ValueError(f"audio of shape {audio.shape} and dtype {audio.dtype} is not allowed; pass mono samples (1-D)")
    if not np.isfinite(audio).all():
        bad = int(np.count_nonzero(~np.isfinite(audio)))
        raise ValueError(f"audio holds {bad} non-finite (NaN or inf) samples of {audio.size}; a video needs finite sound")
    if not (isinstance(sample_rate, (int, np.integer)) and 1000 <= sample_rate <= 384_000):
        raise ValueError(f"sample_rate={sample_rate!r} is not allowed; use an int in [1000, 384000] Hz")
    if not (isinstance(fps, (int, float, np.number)) and np.isfinite(fps) and 0 < fps <= 1000):
        raise ValueError(f"fps={fps!r} is not allowed; use a number in (0, 1000]")
    h, w = frames[0].shape[:2]
    # H.264 wants even sizes: pad by one pixel where needed
    ph, pw = h + h % 2, w + w % 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as tmp:
        silent, wav = os.path.join(tmp, "video.mp4"), os.path.join(tmp, "audio.wav")
        writer = imageio_ffmpeg.write_frames(silent, (pw, ph), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, ffmpeg_log_level="error")
        writer.send(None)
        for f in frames:
            if f.shape[:2] != (h, w):
                raise ValueError(f"frame of shape {f.shape} differs from the first frame's {(h, w, 3)}")
            if (ph, pw) != (h, w):
                f = np.pad(f, ((0, ph - h), (0, pw - w), (0, 0)))
            writer.send(np.ascontiguousarray(f, dtype=np.uint8))
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
        super().__init__(env)
        if env.render_mode != "rgb_array":
            raise ValueError(f"RecordEpisodeVideo needs render_mode='rgb_array', got {env.render_mode!r}")
        sim = getattr(env.unwrapped, "sim", None)
        if sim is None or not sim.record_audio:
            raise ValueError("RecordEpisodeVideo needs an lmm_env task made with record_audio=True (the default)")
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every={every!r} must be an int >= 1")
        self.folder, self.every, self.prefix = Path(folder), every, name_prefix
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
