"""`DifferentiablePianoSynth`: the sound model of `PianoSynth` in torch, with gradients."""
from __future__ import annotations

from numbers import Real

import numpy as np
import torch

from lmm_env._checks import check_int, short_repr
from lmm_env.synth import model
from lmm_env.synth.base import N_KEYS, check_sample_rate


class DifferentiablePianoSynth(torch.nn.Module):
    """Frame rolls in, audio out, differentiable in velocities and (soft) onsets.

    ``forward(onset, velocity, held)`` takes rolls of shape (T, 88) or (batch, T, 88) at
    ``frame_rate``:

    * ``onset``: float >= 0. Every entry > 0 strikes that key at the start of that frame
      with amplitude ``onset`` (1 = a normal strike; a soft onset in (0, 1) scales the
      note). Gradients flow to it.
    * ``velocity``: float MIDI velocity (0..127) read at the onsets. Gradients flow to it
      through loudness and brightness. A velocity outside 0..127 (or NaN) at an onset is a
      ValueError (the sound model would give NaN audio); elsewhere it is never read.
    * ``held``: bool/float > 0.5 = key (or pedal) holds the damper off. A note sounds
      from its onset until the first later frame where it is not held, or the key's next
      onset, then releases (as in `PianoSynth`). Default: each note is held for one frame.

    Returns float32 audio of shape (T * hop,) or (batch, T * hop): the same samples the
    env's `PianoSynth` player produces for the same key events (tested to 1e-5).
    Voices are rendered in chunks of ``chunk`` notes to bound memory, and cut at the end of
    the rolls (nothing past ``T * hop`` is computed).

    Two keyword-only options give the straight-through gradient paths of a policy trained
    through this synth (``lmm_env.agents.training.diff_train``); neither changes the audio:

    * ``strikes``: bool, the shape of ``onset``. Where a voice starts (default
      ``onset > 0``). A voice may start where ``onset`` is 0: it is silent, but it carries
      the gradient of the loss to that ``onset`` (and ``velocity``), so a strike not played
      can learn that it would help. ``onset`` is not read outside ``strikes``.
    * ``hold_prob``: float, the shape of ``onset`` (a policy's "key down" probability per
      frame). Every sample of a voice sounding in frame t has ``hold_prob - hold_prob.detach()``
      of its key in frame t added to its gain (0 forward), so the gradient of the loss with
      respect to what the voice sounds in frame t reaches ``hold_prob[t, key]``: holding a
      key on or letting it go is learned, not only striking it. Which frames release the
      voice is still read from ``held``.
    """

    def __init__(self, sample_rate: int = 16000, frame_rate: float = 20, table_seconds: float = model.TABLE_SECONDS,
                 chunk: int = 64):
        super().__init__()
        sample_rate = check_sample_rate(sample_rate)
        if isinstance(frame_rate, (bool, np.bool_)) or not isinstance(frame_rate, Real) or not 1 <= frame_rate <= 1000:
            raise ValueError(f"frame_rate={short_repr(frame_rate)} is not allowed; use a number in [1, 1000]")
        chunk = check_int("chunk", chunk, 1, 1 << 16)
        hop = sample_rate / frame_rate
        if abs(hop - round(hop)) > 1e-9:
            raise ValueError(
                f"sample_rate={sample_rate} / frame_rate={frame_rate} must be a whole number of samples"
            )
        self.sample_rate = int(sample_rate)
        self.frame_rate = frame_rate
        self.hop = int(round(hop))
        self.chunk = int(chunk)
        tables = model.build_tables(self.sample_rate, table_seconds)
        self.register_buffer("tables", torch.from_numpy(np.array(tables)), persistent=False)
        self.register_buffer("release", torch.from_numpy(model.release_envelope(self.sample_rate)), persistent=False)

    def forward(self, onset: torch.Tensor, velocity: torch.Tensor, held: torch.Tensor | None = None, *,
                strikes: torch.Tensor | None = None, hold_prob: torch.Tensor | None = None) -> torch.Tensor:
        if onset.shape != velocity.shape or onset.shape[-1] != N_KEYS or onset.dim() not in (2, 3):
            raise ValueError(
                f"onset {tuple(onset.shape)} and velocity {tuple(velocity.shape)} must both be (T, 88) or (batch, T, 88)"
            )
        for name, roll in (("held", held), ("strikes", strikes), ("hold_prob", hold_prob)):
            if roll is not None and roll.shape != onset.shape:
                raise ValueError(f"{name} {tuple(roll.shape)} must match onset {tuple(onset.shape)}")
        if strikes is not None and strikes.dtype != torch.bool:
            raise TypeError(f"strikes must be a bool tensor, got {strikes.dtype}")
        if onset.dim() == 2:
            return self._render_one(onset, velocity, held, strikes, hold_prob)
        return torch.stack([
            self._render_one(onset[i], velocity[i], *(None if x is None else x[i] for x in (held, strikes, hold_prob)))
            for i in range(onset.shape[0])
        ])

    def _release_frames(self, strike: np.ndarray, held: np.ndarray | None) -> np.ndarray:
        """For every frame/key, the frame at which a note struck there releases."""
        n_frames = strike.shape[0]
        if held is None:
            held = strike.copy()
        # Release at the first frame t' > t that is unheld or struck again.
        stops = (~held) | strike
        release = np.full(strike.shape, n_frames, dtype=np.int64)
        nxt = np.full(N_KEYS, n_frames, dtype=np.int64)
        for t in range(n_frames - 1, -1, -1):
            release[t] = nxt
            nxt = np.where(stops[t], t, nxt)
        return release

    def _render_one(self, onset: torch.Tensor, velocity: torch.Tensor, held: torch.Tensor | None,
                    strikes: torch.Tensor | None = None, hold_prob: torch.Tensor | None = None) -> torch.Tensor:
        n_frames = onset.shape[0]
        hop = self.hop
        table_len = self.tables.shape[-1]
        n_rel = self.release.shape[0]
        struck = onset.detach() > 0 if strikes is None else strikes
        v = velocity.detach()
        # velocities outside 0..127 at a strike, found in the same device-to-host copy as the strikes (no extra sync)
        bad_v = struck & ~((v >= 0) & (v <= 127))
        strike, bad = torch.stack([struck, bad_v]).cpu().numpy()
        if bad.any():
            t, k = (int(i[0]) for i in np.nonzero(bad))
            raise ValueError(f"velocity {float(v[t, k])!r} at frame {t}, key {k} (an onset) is not allowed; "
                             "use MIDI velocities in [0, 127]")
        held_np = None if held is None else (held.detach() > 0.5).cpu().numpy()
        release_frame = self._release_frames(strike, held_np)
        t_idx, k_idx = np.nonzero(strike)
        out = onset.new_zeros(n_frames * hop + table_len)
        if len(t_idx) == 0:
            zero = 0.0 * (onset.sum() + velocity.sum() + (0.0 if hold_prob is None else hold_prob.sum()))
            return out[: n_frames * hop] * 0.0 + zero
        r = (release_frame[t_idx, k_idx] - t_idx) * hop  # samples from onset to release
        # a voice ends when its table or its damper runs out, or at the end of the rolls
        lengths = np.minimum(np.minimum(table_len, r + n_rel), (n_frames - t_idx) * hop)
        t_t = torch.from_numpy(t_idx).to(onset.device)
        k_t = torch.from_numpy(k_idx).to(onset.device)
        amp = onset[t_t, k_t]
        soft, bright = model.layer_gains(velocity[t_t, k_t])
        soft = amp * soft
        bright = amp * bright
        release_ext = torch.cat([self.release, self.release.new_zeros(1)])
        # the per-frame gradient path (see the class docstring); without a gradient it is 0 and skipped
        mod_p = hold_prob - hold_prob.detach() if hold_prob is not None and hold_prob.requires_grad else None
        for c in range(0, len(t_idx), self.chunk):
            sl = slice(c, c + self.chunk)
            n_max = int(lengths[sl].max())
            j = torch.arange(n_max, device=onset.device)
            keys = k_t[sl]
            wave = soft[sl, None] * self.tables[0, keys, :n_max] + bright[sl, None] * self.tables[1, keys, :n_max]
            r_t = torch.from_numpy(r[sl]).to(onset.device)
            since = j[None, :] - r_t[:, None]
            gain = torch.where(since < 0, torch.ones((), device=onset.device),
                               release_ext[since.clamp(0, n_rel)])
            if mod_p is not None:
                n_fr = -(-n_max // hop)
                frames = (t_t[sl, None] + torch.arange(n_fr, device=onset.device)[None]).clamp(max=n_frames - 1)
                gain = gain + mod_p[frames, keys[:, None]].repeat_interleave(hop, dim=1)[:, :n_max]
            valid = j[None, :] < torch.from_numpy(lengths[sl]).to(onset.device)[:, None]
            wave = wave * gain * valid
            start = t_t[sl, None] * hop + j[None, :]
            out = out.index_add(0, start.reshape(-1), wave.reshape(-1))
        return out[: n_frames * hop]
