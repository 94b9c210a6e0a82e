"""Training g and h through the differentiable world: `train` (see `lmm_env.agents.learned.differentiable`).

Training never reads the score's key columns as a label. Each step draws ``batch`` windows
of ``window`` frames from corpus pieces (train split), and:

1. the policy plays them in the torch world (`_straight_through_play`): forward, exactly the
   deterministic play (a key is down where ``p = sigmoid(logit) > 0.5``; a strike is a key
   going down, gate 1); where no strike is played, a faint voice at the strike's probability
   ``q = p_t (1 - p_{t-1})`` is rendered where it may matter (``q > candidate``, or where the
   ear hears that pitch in the target: the policy tries the pitches it hears). The gradient
   of each voice's gate flows to ``q``, and every sample of a voice to its key's ``p`` in
   that frame (`render_straight_through`), so striking, holding and letting go are learned;
2. the loss is built from what is heard: the binary cross-entropy of `TorchEar` (the ear of
   K pairs, differentiable) on the rendered audio against the same ear on the *target
   audio* (g: the score's notes as the world's piano plays them, what the env's closed-loop
   reward compares with; h: the recording to imitate), plus ``loudness`` x the L1 distance
   of the frames' loudness (a second render whose gradient reaches only the velocities of
   played strikes and the probabilities of unplayed ones), plus (``lm`` > 0) LM^A's negative
   log-likelihood of the rendered log-mel frames (the LM term of the closed-loop reward).

A *world sample* is one rendered frame (env step) of one piece: ``samples`` caps the frames
the policy renders; for g the target renders are counted beside (``target_samples``). The
learning rate decays on a cosine over the budget. ``history`` keeps the learning curve: note
F1 of the deterministic policy on validation pieces against world samples and wall time. With
``keep_best`` (the default) the returned policy is the one of the best validation point (the
validation split: model selection, never the test split); runs with a learned ear can learn
and then collapse late (BENCHMARKS.md), so the best point is what a user wants.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from lmm_env.agents.learned.differentiable import DiffConfig, DiffPolicy, g_inputs, h_inputs
from lmm_env.score import FrameScore
from lmm_env.synth.base import N_KEYS

_EPS_BCE = 1e-4


def frame_loudness(audio: torch.Tensor, hop: int) -> torch.Tensor:
    """(..., n) audio -> (..., T) block loudness in dB/20 (log10 of RMS), floored at -4 (-80 dB)."""
    T = audio.shape[-1] // hop
    x = audio[..., : T * hop].reshape(*audio.shape[:-1], T, hop)
    return 0.5 * torch.log10(x.square().mean(-1) + 1e-8)


# ----------------------------------------------------------------------------- data

def render_frames(fs: FrameScore, synth, hop: int) -> np.ndarray:
    """``fs`` played by ``synth``, exactly ``fs.T`` blocks of ``hop`` samples (cut or zero-padded)."""
    return render_blocks(fs.to_score(), synth, hop, fs.T)


def render_blocks(score, synth, hop: int, n_blocks: int) -> np.ndarray:
    """``score`` played by ``synth`` at its own times, exactly ``n_blocks`` blocks of ``hop`` samples."""
    audio = synth.render(score, tail=0.0)
    out = np.zeros(n_blocks * hop, np.float32)
    n = min(len(out), len(audio))
    out[:n] = audio[:n]
    return out


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
        return render_frames(fs, synth, self.hop)

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
                            voices: torch.Tensor) -> torch.Tensor:
    """`DifferentiablePianoSynth`'s sound of what `_straight_through_play` plays, with its gradients.

    All rolls (T, 88) or (batch, T, 88). ``voices`` (bool) marks where a voice starts (gate
    may be 0 there: a silent voice that only carries a gradient); ``down`` holds the keys,
    so the sounding voices, velocities and key-up releases are exactly the synth's (and the
    env's); and the gradient of the sound of a voice in frame t reaches its key's "key down"
    probability ``p`` there. One call of the synth (its ``strikes`` and ``hold_prob``
    options: one voice loop); voices are cut at the window's end."""
    return synth(gate, vel, down, strikes=voices, hold_prob=p)


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
    from lmm_env.metrics import playable_notes
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
        if s.duration > seconds:  # as the envs cut an episode (`envs.core.PianoSim.trimmed`)
            s = s.trim(0.0, seconds)
        fs = s.frames(frame_rate)
        if cfg.kind == "g":
            x = g_inputs(fs.held, fs.onset, fs.velocity, cfg.lookahead)
        else:  # h hears the piece at its own times, as LMMByEar-v0's target sounds
            audio = render_blocks(s, synth, hop, fs.T)
            x = h_inputs(ear.activations(_frames(audio, ear.window, ear.block_size)), cfg.lookahead)
        # honest metrics (issue 23): the piece's own times, unisons once, as the envs score notes
        out.append((x, playable_notes(s)))
    return out


RUN_FORMAT = "lmm_env.diff-run/1"


def save_run(path, cfg: DiffConfig, net, opt, data: "_Windows", progress: dict, best_state: dict | None) -> None:
    """A resumable snapshot of a run (weights, Adam's state, the data stream's RNG, the learning curve), atomically."""
    import dataclasses
    import json

    from lmm_env.agents.training.checkpoints import _write_atomic

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, st in opt_state["state"].items():
        for name, v in st.items():
            tensors[f"opt.{idx}.{name}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    for k, v in (best_state or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    state = dict(progress, rng=data.rng.bit_generator.state, n=data.n, target_samples=data.target_samples)
    meta = {"format": RUN_FORMAT, "config": json.dumps(dataclasses.asdict(cfg)), "progress": json.dumps(state),
            "param_groups": json.dumps(opt_state["param_groups"])}
    from pathlib import Path

    _write_atomic(tensors, Path(path), meta)


def load_run(path, cfg: DiffConfig, net, opt, data: "_Windows") -> tuple[dict, dict | None]:
    """Restore a `save_run` snapshot into a fresh run of the same ``cfg``; (progress, best state or None).

    The file is checked as every checkpoint is (its format, its config against ``cfg``, its
    tensors against the network before anything is loaded); nothing in it is executed."""
    import dataclasses
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    from lmm_env.lm.checkpoint import check_finite, check_fits, header_dtypes, header_shapes, tensor_dtypes

    shapes, dtypes = header_shapes(path), header_dtypes(path)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != RUN_FORMAT:
        raise ValueError(f"{str(path)!r} is not a diff-training run snapshot (format {RUN_FORMAT})")
    try:
        saved_cfg = json.loads(meta["config"])
        progress = json.loads(meta["progress"])
        groups = json.loads(meta["param_groups"])
        samples, steps, next_eval = (int(progress[k]) for k in ("samples", "steps", "next_eval"))
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} has broken metadata ({exc}); start the run again without --resume") from None
    if saved_cfg != json.loads(json.dumps(dataclasses.asdict(cfg))):
        diff = sorted(k for k in saved_cfg if saved_cfg.get(k) != dataclasses.asdict(cfg).get(k)
                      and json.loads(json.dumps(dataclasses.asdict(cfg))).get(k) != saved_cfg.get(k))
        raise ValueError(f"{str(path)!r} is a run of another config (differs in {diff}); resume with the same "
                         "arguments, or remove it to start again")
    own = net.state_dict()
    for prefix, what in (("net.", "diff policy"), ("best.", "best diff policy")):
        held = {k[len(prefix):]: v for k, v in shapes.items() if k.startswith(prefix)}
        if held or prefix == "net.":
            check_fits(path, {k: tuple(v.shape) for k, v in own.items()}, held, what, expected_dtypes=tensor_dtypes(own),
                       held_dtypes={k[len(prefix):]: v for k, v in dtypes.items() if k.startswith(prefix)})
    tensors = load_file(str(path))
    check_finite(path, tensors)
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    opt_state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            idx, name = k[4:].split(".", 1)
            opt_state.setdefault(int(idx), {})[name] = v
    try:
        opt.load_state_dict({"state": opt_state, "param_groups": groups})
        data.rng.bit_generator.state = progress["rng"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{str(path)!r} holds an optimizer or data state this run cannot take ({exc})") from None
    data.n, data.target_samples = int(progress["n"]), int(progress["target_samples"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} or None
    return dict(progress, samples=samples, steps=steps, next_eval=next_eval), best


def train(cfg: DiffConfig, progress: bool = True, threads: int | None = 1, log=None, checkpoint=None,
          resume: bool = False) -> tuple[DiffPolicy, dict]:
    """Train a policy of ``cfg.kind`` through the differentiable world. Returns (policy, report).

    ``checkpoint`` (a path): a resumable snapshot (`save_run`) is written there at every
    validation point (every 2,048 samples without validation), so a kill loses at most the
    samples since; ``resume=True`` continues from it and ends exactly as an uninterrupted run.

    ``report`` holds ``history``; with ``keep_best``, ``best`` (the kept point) and
    ``final_state`` (the last policy's weights, so a caller can report both)."""
    from tqdm.auto import tqdm

    from lmm_env.audio import LogMel
    from lmm_env.lm.ear import ear_for
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
        ear = ear_for(cfg.pairs, synth=cfg.ear_synth, progress=progress)
        tear = TorchEar(ear)
        for prm in tear.parameters():
            prm.requires_grad_(False)
        synth = DifferentiablePianoSynth(sr, fr)
        data = _Windows(cfg, ear, fr, sr)
        val = _validation(cfg, ear, fr, sr, corpus_name=cfg.corpora[0], n=cfg.eval_pieces) if cfg.eval_every else []
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
        best = {"note_f1": -1.0}
        every = cfg.eval_every if val else 2048  # between snapshots
        if resume:
            if checkpoint is None or not Path(checkpoint).is_file():
                raise FileNotFoundError(f"resume=True, but there is no run snapshot at {checkpoint!r}")
            done, best_state = load_run(checkpoint, cfg, net, opt, data)
            samples, steps, next_eval, history = done["samples"], done["steps"], done["next_eval"], done["history"]
            best.update(done.get("best") or {})
            if best_state is not None:
                best["state"] = best_state
        next_ckpt = next_eval if val else samples + every
        # cosine decay over the sample budget: late steps refine instead of wandering
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda _: 0.5 * (1.0 + math.cos(math.pi * min(1.0, samples / cfg.samples))))
        bar = tqdm(total=cfg.samples, initial=samples, disable=not progress, desc=f"diff-{cfg.kind}", unit="sample")

        def snapshot():
            if checkpoint is not None:
                kept = {k: v for k, v in best.items() if k != "state"}
                save_run(checkpoint, cfg, net, opt, data, {"samples": samples, "steps": steps, "next_eval": next_eval,
                                                           "history": history, "best": kept}, best.get("state"))

        def point():
            net.eval()
            m = evaluate_offline(policy, val)
            net.train()
            history.append({"samples": samples, "target_samples": data.target_samples,
                            "wall_s": time.perf_counter() - t_start, **m})
            if cfg.keep_best and m["note_f1"] >= best["note_f1"]:  # ties: the later, more refined one
                best.update(history[-1], state={k: v.detach().clone() for k, v in net.state_dict().items()})
            if log:
                log(history[-1])

        while samples < cfg.samples:
            if val and samples >= next_eval:
                point()
                next_eval += cfg.eval_every
            if samples >= next_ckpt:
                snapshot()
                next_ckpt = samples + every if not val else next_eval
            net.train()
            x, target_audio, target_act = data.batch()
            B, T = x.shape[:2]
            logits = net(x.reshape(B * T, *x.shape[2:])).reshape(B, T, 2, N_KEYS)
            gate, vel, down, p, voices = _straight_through_play(logits, target_act, cfg.candidate, cfg.listen)
            # two renders, two gradient paths. What is heard (pitch) steers which keys go down.
            # Loudness steers the velocity of a strike the policy plays (q > 0.5), and the
            # probability of one it does not (yet): a played note too loud or too faint is
            # played softer or harder, never dropped for it; a faint unlikely one is made likelier
            audio = render_straight_through(synth, gate, vel.detach(), down, p, voices)
            act = tear(audio).clamp(_EPS_BCE, 1 - _EPS_BCE)
            loss_ear = torch.nn.functional.binary_cross_entropy(act, target_act)
            if cfg.loudness > 0:
                played = gate.detach() > 0.5
                gate_l = torch.where(played, gate.detach(), gate)
                vel_l = torch.where(played, vel, vel.detach())
                audio_v = render_straight_through(synth, gate_l, vel_l, down, p.detach(), voices)
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
        if "state" in best:
            # the last policy too: a best point may be a collapse's early peak (bench/headline.py reports both)
            report["final_state"] = {k: v.detach().clone() for k, v in net.state_dict().items()}
            net.load_state_dict(best.pop("state"))
            report["best"] = best
        net.eval()
        return policy, report
    finally:
        if threads:
            torch.set_num_threads(prev_threads)


# ----------------------------------------------------------------------------- agents
