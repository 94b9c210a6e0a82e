"""Learn a mapping by backpropagation through the differentiable world (the seed's basic setup).

Two policies, one training loop (`train`):

* **g** (``kind="g"``, agent ``"diff-g"``, plays LMMPiano-v0): the score window the env
  observes (``obs["score"]``, held / onset / velocity for now and ``lookahead`` frames) ->
  soft key actions.
* **h** (``kind="h"``, agent ``"diff-h"``, plays LMMByEar-v0): what the ear of K pairs hears
  in the target audio (activations for the previous frame, now and ``lookahead`` frames) ->
  soft key actions.

Both are `KeyNet`: a convolution along the keys shared by every key (pitch-equivariant), so
"a note asked for at pitch p" and "a note heard at pitch p" map to key p the same way
everywhere on the keyboard. Each key gets a press logit and a velocity.

Training never reads the score's key columns as a label. Each step draws ``batch`` windows
of ``window`` frames from corpus pieces (train split), and:

1. the policy plays them in the torch world: each key is down with probability
   ``p = sigmoid(logit)`` (sampled, at least ``explore``), a strike is a key going down, and
   the strikes are rendered by `DifferentiablePianoSynth` (straight-through: the voices are
   the sampled ones, at gate 1, with the gradient of ``p_t (1 - p_{t-1})``), so the
   gradient says which sampled strikes made the sound closer to the target and which made
   it worse;
2. the loss is built from what is heard: the binary cross-entropy of `TorchEar` (the ear of
   K pairs, differentiable) on the rendered audio against the same ear on the *target
   audio* (g: the score's notes as the world's piano plays them, what the env's closed-loop
   reward compares with; h: the recording to imitate, by the built-in or the SoundFont
   piano), plus the L1 distance of the frames' loudness (dB) for velocity, plus (``lm``
   > 0) LM^A's negative log-likelihood of the rendered log-mel frames (the LM term of the
   closed-loop reward).

A *world sample* is one rendered frame (env step) of one piece: ``samples`` caps the frames
the policy renders; for g the target renders are counted too (``target_samples``).
Learning curves (note F1 of the deterministic policy on validation pieces, against world
samples and wall time) are kept in ``history``.

Train with ``python -m lmm_env.agents.differentiable --kind g --samples 20000``; the
shipped weights (``agents/weights/diff-g.safetensors``, ``diff-h.safetensors``) were made
by the commands in their metadata.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmm_env.score import FrameScore
from lmm_env.synth.base import LOWEST_PITCH, N_KEYS

KINDS = ("g", "h")
WEIGHTS = Path(__file__).resolve().parent / "weights"
_SILENT = -1.0
_EPS_BCE = 1e-4


class KeyNet(nn.Module):
    """(N, in_channels, n_keys) per-key features -> (N, 2, n_keys): press logit, velocity logit."""

    def __init__(self, in_channels: int, channels=(32, 32), kernel: int = 5, press_bias: float = -4.0):
        super().__init__()
        layers, c = [], in_channels
        for ch in channels:
            layers += [nn.Conv1d(c, ch, kernel, padding=kernel // 2), nn.ReLU()]
            c = ch
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(c, 2, 1)
        with torch.no_grad():
            self.head.bias[0] = press_bias
            self.head.bias[1] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclasses.dataclass
class DiffConfig:
    """Everything that defines a run (stored in the weights' metadata)."""

    kind: str = "g"
    pairs: object = 0            # K: the ear the loss (and h's input) listens with
    ear_synth: str = "piano"     # whose K pairs the ear was fitted on
    target_synths: tuple = ("piano",)  # h: instruments rendering the targets (cycled)
    lookahead: int = 4
    channels: tuple = (32, 32)
    kernel: int = 5
    samples: int = 20_000        # world samples (policy renders) to train on
    window: int = 64             # frames per training window
    batch: int = 4
    lr: float = 0.01
    candidate: float = 0.02      # render a strike's voice where its probability exceeds this ...
    listen: float = 0.3          # ... or where the ear hears that pitch in the target
    loudness: float = 0.1
    lm: float = 0.0
    clip: float = 1.0            # gradient norm clip
    seed: int = 0
    corpora: tuple = ("folk", "bach-chorales")
    eval_every: int = 2_048      # world samples between validation points (0: none)
    eval_pieces: int = 8

    def check(self) -> "DiffConfig":
        from lmm_env.pairs import check_k

        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not allowed; use one of {list(KINDS)}")
        self.pairs = check_k(self.pairs)
        for name in ("samples", "window", "batch"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name}={v!r} must be an int >= 1")
        if not (isinstance(self.lookahead, int) and 0 <= self.lookahead <= 10):
            raise ValueError(f"lookahead={self.lookahead!r} must be an int in [0, 10] (the env's default is 10)")
        for name in ("candidate", "listen"):
            if not (0.0 < getattr(self, name) < 1.0):
                raise ValueError(f"{name}={getattr(self, name)!r} must be in (0, 1)")
        for name in ("lr", "loudness", "lm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")
        return self

    @property
    def in_channels(self) -> int:
        return 3 * (self.lookahead + 1) if self.kind == "g" else self.lookahead + 2


# ----------------------------------------------------------------------------- inputs

def g_inputs(held: np.ndarray, onset: np.ndarray, velocity: np.ndarray, lookahead: int) -> np.ndarray:
    """Score rolls (T, n) -> g's input (T, 3 (lookahead + 1), n), as ``obs["score"]`` lays it out."""
    T, n = held.shape
    rolls = np.stack([held, onset, velocity / 127.0]).astype(np.float32)  # (3, T, n)
    pad = np.concatenate([rolls, np.zeros((3, lookahead, n), np.float32)], axis=1)
    idx = np.arange(T)[:, None] + np.arange(lookahead + 1)[None]
    return pad[:, idx].transpose(1, 0, 2, 3).reshape(T, 3 * (lookahead + 1), n)


def g_obs_input(score_obs: np.ndarray, lookahead: int) -> np.ndarray:
    """``obs["score"]`` (3, L + 1, n) or (B, 3, L + 1, n) -> (B, 3 (lookahead + 1), n)."""
    s = np.asarray(score_obs, np.float32)
    if s.ndim == 3:
        s = s[None]
    if s.shape[2] < lookahead + 1:
        raise ValueError(f"the env looks {s.shape[2] - 1} frames ahead; this policy needs lookahead >= {lookahead}")
    s = s[:, :, : lookahead + 1]
    return s.reshape(s.shape[0], -1, s.shape[-1])


def h_inputs(act: np.ndarray, lookahead: int) -> np.ndarray:
    """Ear activations of the target (T, n) -> h's input (T, lookahead + 2, n): frames t-1 .. t+L."""
    T, n = act.shape
    pad = np.concatenate([np.zeros((1, n), np.float32), act.astype(np.float32),
                          np.zeros((lookahead, n), np.float32)])
    idx = np.arange(T)[:, None] + np.arange(lookahead + 2)[None]
    return pad[idx]


def frame_loudness(audio: torch.Tensor, hop: int) -> torch.Tensor:
    """(..., n) audio -> (..., T) block loudness in dB/20 (log10 of RMS), floored at -4 (-80 dB)."""
    T = audio.shape[-1] // hop
    x = audio[..., : T * hop].reshape(*audio.shape[:-1], T, hop)
    return 0.5 * torch.log10(x.square().mean(-1) + 1e-8)


# ----------------------------------------------------------------------------- data

class _Windows:
    """Random training windows from corpus pieces, their target audio and the ear's reading of it."""

    def __init__(self, cfg: DiffConfig, ear, frame_rate: float, sample_rate: int, split: str = "train"):
        from lmm_env import corpus
        from lmm_env.synth import make_synth

        self.cfg, self.ear, self.fr, self.sr = cfg, ear, frame_rate, sample_rate
        self.hop = int(round(sample_rate / frame_rate))
        self.pools = [corpus.load(name, split) for name in cfg.corpora]
        synths = ("piano",) if cfg.kind == "g" else tuple(cfg.target_synths)
        self.synths = [make_synth(s, sample_rate) for s in synths]
        self.rng = np.random.default_rng(cfg.seed)
        self.n = 0
        self.target_samples = 0

    def _frames(self, rng) -> FrameScore:
        pool = self.pools[self.n % len(self.pools)]
        for _ in range(50):
            score = pool[int(rng.integers(len(pool)))]
            if score is None or len(score) == 0:
                continue
            fs = score.frames(self.fr)
            W = self.cfg.window
            start = int(rng.integers(0, max(1, fs.T - W // 2)))
            held = np.zeros((W, N_KEYS), bool)
            onset = np.zeros((W, N_KEYS), bool)
            vel = np.zeros((W, N_KEYS), np.uint8)
            n = min(W, fs.T - start)
            held[:n], onset[:n], vel[:n] = fs.held[start:start + n], fs.onset[start:start + n], fs.velocity[start:start + n]
            onset |= held & np.vstack([np.ones((1, N_KEYS), bool), ~held[:-1]])  # a note cut at the window's start
            if held.any():
                return FrameScore(self.fr, held, onset, vel)
        raise RuntimeError(f"no playable piece found in corpora {list(self.cfg.corpora)}")

    def render(self, fs: FrameScore, synth) -> np.ndarray:
        audio = synth.render(fs.to_score(), tail=0.0)
        out = np.zeros(fs.T * self.hop, np.float32)
        n = min(len(out), len(audio))
        out[:n] = audio[:n]
        return out

    def batch(self):
        """(inputs (B, T, C, 88), target audio (B, T hop), target ear (B, T, 88))."""
        from lmm_env.lm.ear import _frames

        xs, auds, acts = [], [], []
        for _ in range(self.cfg.batch):
            fs = self._frames(self.rng)
            synth = self.synths[self.n % len(self.synths)]
            self.n += 1
            audio = self.render(fs, synth)
            if self.cfg.kind == "g":
                self.target_samples += fs.T
            act = self.ear.activations(_frames(audio, self.ear.window, self.ear.block_size))
            x = (g_inputs(fs.held, fs.onset, fs.velocity, self.cfg.lookahead) if self.cfg.kind == "g"
                 else h_inputs(act, self.cfg.lookahead))
            xs.append(x); auds.append(audio); acts.append(act)
        return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(auds)), torch.from_numpy(np.stack(acts)))


# ----------------------------------------------------------------------------- policy

class DiffPolicy:
    """A trained `KeyNet` with its config: plays rolls offline or steps in an env."""

    def __init__(self, cfg: DiffConfig, net: KeyNet | None = None):
        self.cfg = cfg.check()
        self.net = net if net is not None else KeyNet(cfg.in_channels, tuple(cfg.channels), cfg.kernel)
        self.net.eval()

    @torch.no_grad()
    def logits(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, C, n) inputs -> press probability and velocity (1..127), each (N, n)."""
        out = self.net(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
        return torch.sigmoid(out[:, 0]).numpy(), (1.0 + 126.0 * torch.sigmoid(out[:, 1])).numpy()

    def play_rolls(self, x: np.ndarray) -> FrameScore:
        """Deterministic play of a whole piece's inputs (T, C, 88) -> the performance as rolls."""
        p, v = self.logits(x)
        down = p > 0.5
        onset = down & np.vstack([np.ones((1, down.shape[1]), bool), ~down[:-1]])
        vel = np.where(down, np.clip(np.rint(v), 1, 127), 0).astype(np.uint8)
        # a held key keeps its strike's velocity, as the keyboard does
        for t in range(1, len(down)):
            keep = down[t] & ~onset[t]
            vel[t, keep] = vel[t - 1, keep]
        return FrameScore(float(20.0), down, onset, vel)

    # ---- saving
    def save(self, path, extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        cfg = dataclasses.asdict(self.cfg)
        meta = {"format": "lmm_env.diff-policy/1", "config": json.dumps(cfg), "extra": json.dumps(extra or {})}
        tmp = path.with_suffix(path.suffix + ".tmp")
        save_file({k: v.detach().contiguous() for k, v in self.net.state_dict().items()}, str(tmp), metadata=meta)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "DiffPolicy":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"diff policy weights {str(path)!r} do not exist")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except Exception as e:  # a safetensors parse error names no file
            raise ValueError(f"{str(path)!r} is not a safetensors file of a diff policy: {e}") from None
        if meta.get("format") != "lmm_env.diff-policy/1":
            raise ValueError(f"{str(path)!r} is not a diff policy (format {meta.get('format')!r}); "
                             "train one with python -m lmm_env.agents.differentiable")
        try:
            raw = json.loads(meta["config"])
            raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            cfg = DiffConfig(**raw)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"{str(path)!r} has a bad config in its metadata: {e}") from None
        pol = cls(cfg)
        try:
            pol.net.load_state_dict(tensors)
        except RuntimeError as e:
            raise ValueError(f"{str(path)!r} does not fit its own config: {e}") from None
        if not all(torch.isfinite(t).all() for t in tensors.values()):
            raise ValueError(f"{str(path)!r} holds non-finite weights")
        pol.extra = json.loads(meta.get("extra", "{}"))
        return pol


# ----------------------------------------------------------------------------- training

def _straight_through_play(logits: torch.Tensor, target_act: torch.Tensor, candidate: float, listen: float):
    """What the policy plays, with gradients. logits (B, T, 2, 88) -> (gate, velocity, down, p, voices).

    Forward, exactly the deterministic play: a key is down where ``p = sigmoid(logit) > 0.5``
    and a strike is a key going down (gate 1). Backward, the gradient of each voice's gate
    flows to the strike probability ``q = p_t (1 - p_{t-1})`` (straight-through). Where no
    strike is played, a faint voice at gate ``q`` (its expected loudness: the ear's squashing
    has zero slope at silence, so a silent voice would carry no gradient) is rendered where
    it may matter, so the gradient can also say "striking here would help": where ``q > candidate``, or where the ear hears the key's
    pitch in the target (activation > ``listen``): the policy tries the pitches it hears."""
    p = torch.sigmoid(logits[:, :, 0])
    down = (p.detach() > 0.5).float()
    prev_p = torch.nn.functional.pad(p[:, :-1], (0, 0, 1, 0))
    prev_d = torch.nn.functional.pad(down[:, :-1], (0, 0, 1, 0))
    strike = down * (1.0 - prev_d)
    q = p * (1.0 - prev_p)
    voices = (strike > 0) | (q.detach() > candidate) | (target_act > listen)
    gate = q * voices
    vel = (1.0 + 126.0 * torch.sigmoid(logits[:, :, 1])) * voices
    return gate, vel, down, p, voices


def render_straight_through(synth, gate: torch.Tensor, vel: torch.Tensor, down: torch.Tensor, p: torch.Tensor,
                            voices: torch.Tensor):
    """`DifferentiablePianoSynth`'s sound of one window (T, 88), with a gradient for holding keys.

    ``voices`` (T, 88) bool marks where a voice starts (gate may be 0 there: a silent voice
    that only carries a gradient). The sounding voices, velocities and key-up releases are
    exactly the synth's (and the env's). In addition every sample of a voice is scaled by ``1 + p - p.detach()`` of
    its key in that frame (1 in the forward pass), so the gradient of the loss with respect
    to the voice sounding in frame t reaches the policy's "key down" probability there:
    holding a key on or letting it go is learned, not only striking it. Voices are cut at
    the window's end."""
    from lmm_env.synth import model

    T = gate.shape[0]
    hop = synth.hop
    table_len = synth.tables.shape[-1]
    n_rel = synth.release.shape[0]
    strike = voices.numpy()
    release_frame = synth._release_frames(strike, down.detach().numpy() > 0.5)
    t_idx, k_idx = np.nonzero(strike)
    if len(t_idx) == 0:
        return gate.new_zeros(T * hop) + 0.0 * (gate.sum() + vel.sum() + p.sum())
    r = (release_frame[t_idx, k_idx] - t_idx) * hop
    lengths = np.minimum(np.minimum(table_len, r + n_rel), (T - t_idx) * hop)
    out = gate.new_zeros(T * hop + table_len)
    t_t, k_t = torch.from_numpy(t_idx), torch.from_numpy(k_idx)
    soft, bright = model.layer_gains(vel[t_t, k_t])
    amp = gate[t_t, k_t]
    soft, bright = amp * soft, amp * bright
    release_ext = torch.cat([synth.release, synth.release.new_zeros(1)])
    mod_p = p - p.detach()
    for c in range(0, len(t_idx), synth.chunk):
        sl = slice(c, c + synth.chunk)
        n_max = int(lengths[sl].max())
        n_fr = -(-n_max // hop)
        j = torch.arange(n_max)
        keys = k_t[sl]
        wave = soft[sl, None] * synth.tables[0, keys, :n_max] + bright[sl, None] * synth.tables[1, keys, :n_max]
        r_t = torch.from_numpy(r[sl])
        since = j[None, :] - r_t[:, None]
        gain = torch.where(since < 0, torch.ones(()), release_ext[since.clamp(0, n_rel)])
        frames = (t_t[sl, None] + torch.arange(n_fr)[None]).clamp(max=T - 1)
        mod = mod_p[frames, keys[:, None]]  # (n, n_fr)
        gain = gain + mod.repeat_interleave(hop, dim=1)[:, :n_max]
        valid = j[None, :] < torch.from_numpy(lengths[sl])[:, None]
        start = t_t[sl, None] * hop + j[None, :]
        out = out.index_add(0, start.reshape(-1), (wave * gain * valid).reshape(-1))
    return out[: T * hop]


def evaluate_offline(policy: DiffPolicy, pieces) -> dict:
    """Mean note F1 of the deterministic policy on ``pieces``: [(inputs (T, C, 88), reference Score)]."""
    from lmm_env.metrics import note_metrics

    f1 = []
    for x, ref in pieces:
        played = policy.play_rolls(x).to_score()
        f1.append(note_metrics(ref, played)["f1"])
    return {"note_f1": float(np.mean(f1)) if f1 else float("nan")}


def _validation(cfg: DiffConfig, ear, frame_rate: float, sample_rate: int, split: str = "validation",
                corpus_name: str = "folk", n: int = 8, seconds: float = 20.0, target_synth: str = "piano", seed: int = 0):
    """Held-out pieces as (inputs, reference): g reads the score, h hears it rendered by ``target_synth``."""
    from lmm_env import corpus
    from lmm_env.lm.ear import _frames
    from lmm_env.synth import make_synth

    pool = corpus.load(corpus_name, split)
    rng = np.random.default_rng(seed)
    synth = make_synth(target_synth, sample_rate) if cfg.kind == "h" else None
    hop = int(round(sample_rate / frame_rate))
    out = []
    for i in rng.permutation(len(pool)):
        if len(out) >= n:
            break
        s = pool[int(i)]
        if s is None or len(s) == 0:
            continue
        fs = s.frames(frame_rate)
        T = min(fs.T, int(round(seconds * frame_rate)))
        fs = FrameScore(frame_rate, fs.held[:T], fs.onset[:T], fs.velocity[:T])
        if cfg.kind == "g":
            x = g_inputs(fs.held, fs.onset, fs.velocity, cfg.lookahead)
        else:
            audio = synth.render(fs.to_score(), tail=0.0)[: fs.T * hop]
            audio = np.pad(audio, (0, fs.T * hop - len(audio)))
            x = h_inputs(ear.activations(_frames(audio, ear.window, ear.block_size)), cfg.lookahead)
        out.append((x, fs.to_score()))
    return out


def train(cfg: DiffConfig, progress: bool = True, threads: int | None = 1, log=None) -> tuple[DiffPolicy, dict]:
    """Train a policy of ``cfg.kind`` through the differentiable world. Returns (policy, report)."""
    from tqdm.auto import tqdm

    from lmm_env import pairs as pairs_mod
    from lmm_env.audio import LogMel
    from lmm_env.lm.ear_torch import TorchEar
    from lmm_env.synth import DifferentiablePianoSynth

    cfg.check()
    prev_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    t_start = time.perf_counter()
    try:
        torch.manual_seed(cfg.seed)
        sr, fr = 16000, 20.0
        hop = int(sr / fr)
        ear = pairs_mod.ear_for(cfg.pairs, synth=cfg.ear_synth, progress=progress)
        tear = TorchEar(ear)
        for prm in tear.parameters():
            prm.requires_grad_(False)
        synth = DifferentiablePianoSynth(sr, fr)
        data = _Windows(cfg, ear, fr, sr)
        val = _validation(cfg, ear, fr, sr, n=cfg.eval_pieces) if cfg.eval_every else []
        policy = DiffPolicy(cfg)
        net = policy.net
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        lm = mel = None
        if cfg.lm > 0:
            from lmm_env.lm import load_pretrained

            lm = load_pretrained("audio")
            for prm in lm.parameters():
                prm.requires_grad_(False)
            mel = LogMel(sr, hop, lm.n_mels)
        history = []
        samples, next_eval, steps = 0, 0, 0
        # cosine decay over the sample budget: late steps refine instead of wandering
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda _: 0.5 * (1.0 + math.cos(math.pi * min(1.0, samples / cfg.samples))))
        bar = tqdm(total=cfg.samples, disable=not progress, desc=f"diff-{cfg.kind}", unit="sample")

        def point():
            net.eval()
            m = evaluate_offline(policy, val)
            net.train()
            history.append({"samples": samples, "target_samples": data.target_samples,
                            "wall_s": time.perf_counter() - t_start, **m})
            if log:
                log(history[-1])

        while samples < cfg.samples:
            if val and samples >= next_eval:
                point()
                next_eval += cfg.eval_every
            net.train()
            x, target_audio, target_act = data.batch()
            B, T = x.shape[:2]
            logits = net(x.reshape(B * T, *x.shape[2:])).reshape(B, T, 2, N_KEYS)
            gate, vel, down, p, voices = _straight_through_play(logits, target_act, cfg.candidate, cfg.listen)
            # two renders, two gradient paths. What is heard (pitch) steers which keys go down.
            # Loudness steers the velocity of a strike the policy plays (q > 0.5), and the
            # probability of one it does not (yet): a played note too loud or too faint is
            # played softer or harder, never dropped for it; a faint unlikely one is made likelier
            audio = torch.stack([render_straight_through(synth, gate[b], vel[b].detach(), down[b], p[b], voices[b])
                                 for b in range(B)])
            act = tear(audio).clamp(_EPS_BCE, 1 - _EPS_BCE)
            loss_ear = torch.nn.functional.binary_cross_entropy(act, target_act)
            if cfg.loudness > 0:
                played = gate.detach() > 0.5
                gate_l = torch.where(played, gate.detach(), gate)
                vel_l = torch.where(played, vel, vel.detach())
                audio_v = torch.stack([render_straight_through(synth, gate_l[b], vel_l[b], down[b], p[b].detach(),
                                                               voices[b]) for b in range(B)])
                loss_loud = (frame_loudness(audio_v, hop) - frame_loudness(target_audio, hop)).abs().mean()
            else:
                loss_loud = torch.zeros(())
            loss = loss_ear + cfg.loudness * loss_loud
            if lm is not None:
                feats = mel.torch(audio.reshape(-1))  # one long clip: history crosses windows only at seams
                hist = torch.stack([torch.nn.functional.pad(feats, (0, 0, k, 0), value=lm.silence)[: feats.shape[0]]
                                    for k in range(lm.context, 0, -1)], dim=1)
                loss = loss + cfg.lm * (-lm.log_prob_torch(hist, feats).mean() / lm.n_mels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            opt.step()
            samples += B * T
            sched.step()
            steps += 1
            bar.update(B * T)
            bar.set_postfix(ear=f"{loss_ear.item():.4f}", loud=f"{loss_loud.item():.3f}")
        bar.close()
        if val:
            point()
        report = {"samples": samples, "target_samples": data.target_samples, "steps": steps,
                  "wall_s": time.perf_counter() - t_start, "history": history}
        return policy, report
    finally:
        if threads:
            torch.set_num_threads(prev_threads)


# ----------------------------------------------------------------------------- agents

class DiffAgent:
    """Plays a `DiffPolicy` in an env with discrete keys (SB3's ``predict``).

    g reads ``obs["score"]`` (LMMPiano-v0; the keyboard's layout must be readable: on the
    hidden keyboard use ``decipher-closed-loop``). h listens to the target
    (``env.unwrapped.target_audio()``, LMMByEar-v0) with the ear of the policy's K at the
    episode's start, then plays from that reading step by step.
    """

    oracle = False

    def __init__(self, env, policy: DiffPolicy, pairs=None, ear_synth: str | None = None):
        sim = getattr(env.unwrapped, "sim", None)
        if sim is None:
            raise TypeError(f"{env!r} is not an lmm_env task (it has no .sim)")
        self.env, self.sim, self.policy = env, sim, policy
        cfg = policy.cfg
        kb = sim.keyboard
        if sim.frame_rate != 20 or sim.sample_rate != 16000:
            raise ValueError(f"this policy was trained at 20 fps and 16 kHz; the env runs at {sim.frame_rate} fps, "
                             f"{sim.sample_rate} Hz")
        if cfg.kind == "g":
            if kb.sealed:
                raise ValueError("diff-g reads the keyboard's layout, which this env hides; on LMMDecipher-v0 use "
                                 "the agent 'decipher-closed-loop'")
            if "score" not in env.observation_space.spaces:
                raise ValueError("diff-g reads obs['score']; it plays LMMPiano-v0")
            self.column_of_action = np.asarray(kb.pitch_of_action) - kb.lo
        else:
            if not hasattr(env.unwrapped, "target_audio"):
                raise ValueError("diff-h listens to the target audio; it plays LMMByEar-v0")
            from lmm_env import pairs as pairs_mod

            self.ear = pairs_mod.ear_for(cfg.pairs if pairs is None else pairs,
                                         synth=ear_synth or cfg.ear_synth, progress=False)
            self.column_of_action = np.asarray(kb.pitch_of_action) - LOWEST_PITCH
            self._heard = None
        self.cols_pitch = np.arange(kb.lo, kb.hi + 1) - LOWEST_PITCH
        self.n_actions = kb.n_actions
        self._down = np.zeros(kb.n_keys, bool)
        self._t = 0

    def reset(self) -> None:
        self._t = 0
        self._down[:] = False
        if self.policy.cfg.kind == "h":
            self._heard = None

    def _listen(self):
        from lmm_env.lm.ear import _frames

        target = self.env.unwrapped.target_audio()
        act = self.ear.activations(_frames(np.asarray(target, np.float32), self.ear.window, self.ear.block_size))
        self._x = h_inputs(act, self.policy.cfg.lookahead)
        self._heard = target

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        cfg = self.policy.cfg
        if cfg.kind == "g":
            score = np.asarray(observation["score"])
            if score.ndim == 4 and score.shape[0] != 1:
                raise ValueError("DiffAgent plays one env at a time; got a batch of observations")
            p, v = self.policy.logits(g_obs_input(score, cfg.lookahead))
            p, v = p[0], v[0]  # pitch columns lo..hi
            p, v = p[self.column_of_action], v[self.column_of_action]
        else:
            if self._heard is None or self._heard is not self.env.unwrapped.target_audio():
                self._listen()
            t = min(int(self.sim.t[0]), len(self._x) - 1)
            p, v = self.policy.logits(self._x[t][None])
            p, v = p[0][self.column_of_action], v[0][self.column_of_action]
        action = np.full(self.n_actions, _SILENT, np.float32)
        keys = action[: len(p)]
        down = p > 0.5
        keys[down] = np.maximum((np.clip(np.rint(v[down]), 1, 127) - 1.0) / 126.0, 1e-4)
        self._t += 1
        return action, state


def shipped_path(kind: str) -> Path:
    return WEIGHTS / f"diff-{kind}.safetensors"


def make_diff_agent(kind: str, env, pairs=None, path=None) -> DiffAgent:
    """The shipped diff-g / diff-h (or ``path``) built for ``env``."""
    policy = DiffPolicy.load(path or shipped_path(kind))
    if policy.cfg.kind != kind:
        raise ValueError(f"{path} holds a {policy.cfg.kind} policy, not {kind}")
    return DiffAgent(env, policy, pairs=pairs)


# ----------------------------------------------------------------------------- CLI

def _parse_k(v: str):
    return "all" if v == "all" else int(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmm_env.agents.differentiable",
                                 description="Train g (score -> keys) or h (heard target -> keys) through the "
                                             "differentiable piano; writes safetensors weights and a JSON report.")
    ap.add_argument("--kind", choices=KINDS, default="g")
    ap.add_argument("--pairs", type=_parse_k, default=0, help="K: the ear of K pairs (0, 4, 16, 64, all)")
    ap.add_argument("--ear-synth", default="piano")
    ap.add_argument("--target-synths", default="piano", help="h: comma-separated instruments rendering targets")
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--lm", type=float, default=0.0, help="weight of LM^A's NLL of the rendered audio (0: ear only)")
    ap.add_argument("--loudness", type=float, default=0.1)
    ap.add_argument("--listen", type=float, default=0.3, help="try keys whose pitch the ear hears in the target above this")
    ap.add_argument("--lookahead", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=2048)
    ap.add_argument("--out", default=None, help="weights path (default agents/weights/diff-KIND.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    cfg = DiffConfig(kind=args.kind, pairs=args.pairs, ear_synth=args.ear_synth,
                     target_synths=tuple(s for s in args.target_synths.split(",") if s), samples=args.samples,
                     window=args.window, batch=args.batch, lr=args.lr, lm=args.lm, loudness=args.loudness, listen=args.listen,
                     lookahead=args.lookahead, seed=args.seed, eval_every=args.eval_every)
    policy, report = train(cfg, threads=args.threads,
                           log=lambda r: print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                           for k, v in r.items()}), flush=True))
    out = Path(args.out) if args.out else shipped_path(args.kind)
    cmd = "python -m lmm_env.agents.differentiable " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    policy.save(out, extra={"command": cmd, "samples": report["samples"], "target_samples": report["target_samples"],
                            "wall_s": round(report["wall_s"], 1)})
    out.with_suffix(".json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "command": cmd, **report}, indent=1))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) after {report['samples']} world samples, "
          f"{report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
