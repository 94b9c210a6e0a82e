"""Methods that learn from the K score-audio pairs alone: the comparison for LM mapping.

Nothing here uses a language model, the closed loop or unpaired data; each method sees
only ``lmm_env.pairs.load(K)``:

* `train_supervised_g` (g, LMMPiano-v0): the pitch-equivariant `KeyNet` of diff-g fitted by
  supervised learning on the pairs' scores: in this world a pair's audio is its score
  played key for key, so the pairs say which keys went down, and how hard, for each score
  frame. Played by `DiffAgent` like diff-g. K = 0 gives nothing to learn from.
* `EarReaderAgent` (h, LMMByEar-v0): the ear fitted on the K pairs
  (``lmm_env.lm.ear_for(K)``, supervised on the pairs' audio and notes) transcribes the
  target and the transcription is played as heard, at one velocity.

On the hidden keyboard (LMMDecipher-v0) no pairs-only method exists: the pairs are score
and audio, and carry nothing about which key of an unseen keyboard makes which pitch.
"""
from __future__ import annotations

import numpy as np
import torch

from lmm_env.agents.learned.differentiable import DiffConfig, DiffPolicy, g_inputs
from lmm_env.synth.base import LOWEST_PITCH

_SILENT = -1.0


def train_supervised_g(K, seed: int = 0, steps: int = 400, batch: int = 256, lr: float = 0.01,
                       lookahead: int = 4, threads: int | None = 1) -> DiffPolicy:
    """`KeyNet` fitted on the K pairs' (score frame -> keys down, velocity). Untrained for K = 0."""
    from lmm_env import pairs as pairs_mod

    K = pairs_mod.check_k(K)
    cfg = DiffConfig(kind="g", pairs=K, lookahead=lookahead, seed=seed).check()
    policy = DiffPolicy(cfg)
    data = pairs_mod.load(K, seed=0)
    if len(data) == 0:
        return policy
    xs, held, vel = [], [], []
    for pair in data:
        fs = pair.score.frames(20.0)
        xs.append(g_inputs(fs.held, fs.onset, fs.velocity, lookahead))
        held.append(fs.held)
        vel.append(fs.velocity)
    x = torch.from_numpy(np.concatenate(xs))
    y = torch.from_numpy(np.concatenate(held).astype(np.float32))
    v = torch.from_numpy(np.concatenate(vel).astype(np.float32))
    prev = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = policy.net
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            out = net(x[idx])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y[idx])
            on = y[idx] > 0
            if on.any():  # velocity where a key is down, in units of 127
                pred_v = 1.0 + 126.0 * torch.sigmoid(out[:, 1])
                loss = loss + ((pred_v - v[idx])[on] / 127.0).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
    finally:
        if threads:
            torch.set_num_threads(prev)
    return policy


class EarReaderAgent:
    """Plays what the ear of K pairs (or the ``ear`` handed over) transcribes from the target (LMMByEar-v0), at one velocity."""

    oracle = False

    def __init__(self, env, pairs=None, velocity: int = 80, ear=None):
        from lmm_env.agents._ears import resolve_ear

        if not hasattr(env.unwrapped, "target_audio"):
            raise TypeError(f"{env!r} is not LMMByEar-v0; EarReaderAgent plays LMMByEar-v0")
        if not (isinstance(velocity, int) and 1 <= velocity <= 127):
            raise ValueError(f"velocity={velocity!r} must be an int in [1, 127]")
        self.env, self.sim = env, env.unwrapped.sim
        self.ear = resolve_ear(pairs, ear, synth=getattr(self.sim, "pairs_instrument", None) or "piano", sample_rate=self.sim.sample_rate, default_pairs=16)
        self.velocity = velocity
        kb = self.sim.keyboard
        self.cols = np.asarray(kb.pitch_of_action) - LOWEST_PITCH
        self.n_actions = kb.n_actions
        self._heard = None
        self._held = None

    def reset(self) -> None:
        self._heard = None

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        target = self.env.unwrapped.target_audio()
        if self._heard is not target or (episode_start is not None and bool(np.any(episode_start))):
            held, onset = self.ear.transcribe(np.asarray(target, np.float32))
            # a re-strike needs a key-up step: lift the key on the frame before each onset
            lift = np.zeros_like(held)
            lift[:-1] = onset[1:] & held[:-1]
            self._held, self._heard = held & ~lift, target
        t = int(self.sim.t[0])
        action = np.full(self.n_actions, _SILENT, np.float32)
        if t < len(self._held):
            keys = action[: len(self.cols)]
            keys[self._held[t, self.cols]] = (self.velocity - 1) / 126.0
        return action, state
