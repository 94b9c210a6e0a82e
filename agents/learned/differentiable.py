"""Policies that learn a mapping through the differentiable world (the seed's basic setup).

Two policies, one training loop (`lmm_env.agents.training.diff_train.train`, also ``train`` here):

* **g** (``kind="g"``, agent ``"diff-g"``, plays LMMPiano-v0): the score window the env
  observes (``obs["score"]``, held / onset / velocity for now and ``lookahead`` frames) ->
  key actions.
* **h** (``kind="h"``, agent ``"diff-h"``, plays LMMByEar-v0): what the ear of K pairs hears
  in the target audio (activations for the previous frame, now and ``lookahead`` frames) ->
  key actions.

Both are `KeyNet`: a convolution along the keys shared by every key (pitch-equivariant), so
"a note asked for at pitch p" and "a note heard at pitch p" map to key p the same way
everywhere on the keyboard. Each key gets a press probability and a velocity; `DiffAgent`
plays them with discrete keys (down where the probability is above 0.5).

Train with ``python -m lmm_env.agents.learned.differentiable --kind g --samples 20000`` (how the
loss is built from what is heard: `lmm_env.agents.training.diff_train`); the shipped weights
(``agents/weights/diff-g.safetensors``, ``diff-h.safetensors``) hold the command that made
them in their metadata, and the run's learning curve beside them (``diff-g.json``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmm_env._checks import check_cli_output, check_int, short_repr
from lmm_env.score import FrameScore
from lmm_env.synth.base import LOWEST_PITCH

KINDS = ("g", "h")
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
_SILENT = -1.0


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


def _synth_name(spec) -> bool:
    """Whether ``spec`` names an instrument a config may hold: a built-in synth or a .sf2 path (checked when used)."""
    from lmm_env.synth import SYNTHS

    from lmm_env.synth import is_soundfont_path

    return isinstance(spec, str) and (spec in SYNTHS or is_soundfont_path(spec))


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
    keep_best: bool = True       # return the policy of the best validation point (validation split)

    def check(self) -> "DiffConfig":
        """``self`` with every field checked (type and range), else a ValueError naming the field.

        A weights file's config comes through here: nothing in it may be a string where a
        number belongs, a bool where an int belongs, non-finite, or absurdly large."""
        from lmm_env.corpus import names as corpus_names
        from lmm_env._checks import check_real
        from lmm_env.pairs import check_k

        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"kind={short_repr(self.kind)} is not allowed; use one of {list(KINDS)}")
        self.pairs = check_k(self.pairs)
        self.samples = check_int("samples", self.samples, 1, 10**9)
        self.window = check_int("window", self.window, 1, 4096)
        self.batch = check_int("batch", self.batch, 1, 1024)
        if isinstance(self.lookahead, bool) or not (isinstance(self.lookahead, int) and 0 <= self.lookahead <= 10):
            raise ValueError(f"lookahead={short_repr(self.lookahead)} must be an int in [0, 10] (the env's default is 10)")
        # the network's size comes from a file when a policy is loaded: bounded
        if not (isinstance(self.channels, (list, tuple)) and 1 <= len(self.channels) <= 16):
            raise ValueError(f"channels={short_repr(self.channels)} must be a list of 1 to 16 layer widths")
        self.channels = tuple(check_int("channels[i]", c, 1, 1024) for c in self.channels)
        self.kernel = check_int("kernel", self.kernel, 1, 63)
        if self.kernel % 2 != 1:
            raise ValueError(f"kernel={self.kernel} must be odd (the key axis keeps its length)")
        synths = "'piano', 'grand', 'soundfont' or a .sf2/.sf3 path"
        if not _synth_name(self.ear_synth):
            raise ValueError(f"ear_synth={short_repr(self.ear_synth)} is not allowed; use {synths}")
        if (not isinstance(self.target_synths, (list, tuple)) or not 1 <= len(self.target_synths) <= 16
                or not all(_synth_name(t) for t in self.target_synths)):
            raise ValueError(f"target_synths={short_repr(self.target_synths)} is not allowed; use a list of 1 to 16 "
                             f"instruments, each {synths}")
        self.target_synths = tuple(self.target_synths)
        known = corpus_names()
        if (not isinstance(self.corpora, (list, tuple)) or not 1 <= len(self.corpora) <= 16
                or not all(isinstance(c, str) and c in known for c in self.corpora)):
            raise ValueError(f"corpora={short_repr(self.corpora)} is not allowed; use a list of 1 to 16 corpus "
                             f"names from {known}")
        self.corpora = tuple(self.corpora)
        for name in ("candidate", "listen"):
            setattr(self, name, check_real(name, getattr(self, name), 0.0, 1.0, lo_open=True, hi_open=True))
        self.lr = check_real("lr", self.lr, 0.0, 10.0)
        self.loudness = check_real("loudness", self.loudness, 0.0, 1e3)
        self.lm = check_real("lm", self.lm, 0.0, 1e3)
        self.clip = check_real("clip", self.clip, 0.0, 1e6, lo_open=True)
        seed = self.seed  # not None (check_seed's default): a run is deterministic in its seed
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={short_repr(seed)} is not allowed; use an int >= 0 (a run is deterministic in it)")
        self.seed = int(seed)
        self.eval_every = check_int("eval_every", self.eval_every, 0, 10**9)
        self.eval_pieces = check_int("eval_pieces", self.eval_pieces, 0, 1000)
        if not isinstance(self.keep_best, (bool, np.bool_)):
            raise ValueError(f"keep_best={short_repr(self.keep_best)} is not allowed; use True or False")
        self.keep_best = bool(self.keep_best)
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

        from lmm_env.lm.checkpoint import (check_finite, check_fits, header_shapes, json_object, skeleton_dtypes,
                                           skeleton_shapes)

        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"diff policy weights path {short_repr(path)} is not allowed; give the path of a "
                            ".safetensors file (a str or pathlib.Path)")
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"diff policy weights {str(path)!r} is a directory; give the path of a .safetensors file")
        if not path.is_file():
            raise FileNotFoundError(f"diff policy weights {str(path)!r} do not exist")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # a safetensors parse error names no file
            raise ValueError(f"{str(path)!r} is not a safetensors file of a diff policy: {e}") from None
        if meta.get("format") != "lmm_env.diff-policy/1":
            raise ValueError(f"{str(path)!r} is not a diff policy (format {meta.get('format')!r}); "
                             "train one with python -m lmm_env.agents.learned.differentiable")
        if "config" not in meta:
            raise ValueError(f"{str(path)!r} has no config in its metadata; the file was edited")
        raw = json_object(path, "config", meta["config"], error=ValueError)  # also refuses [[[...]]] nesting
        extra = json_object(path, "extra", meta.get("extra", "{}"), error=ValueError)
        try:
            raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            cfg = DiffConfig(**raw).check()
        except (TypeError, ValueError) as e:  # unknown keys, bad types, out-of-range sizes
            raise ValueError(f"{str(path)!r} has a bad config in its metadata: {e}") from None
        if cfg.kind == "h" and cfg.pairs == "all":  # h listens with this ear: make_diff_agent would fit it
            raise ValueError(f"{str(path)!r} asks for the ear of pairs='all' (9,501 pairs), which takes hours to fit "
                             "(rendering alone ~1.5 s a pair); a weights file may name at most 64 pairs. Retrain with "
                             "--pairs 64 or fewer")
        # the network the config describes, on the meta device, against the file's tensors:
        # nothing is allocated for a config that asks for more than the file holds
        build = lambda: KeyNet(cfg.in_channels, tuple(cfg.channels), cfg.kernel)  # noqa: E731
        check_fits(path, skeleton_shapes(build), header_shapes(path), "diff policy",
                   expected_dtypes=skeleton_dtypes(build))
        tensors = load_file(str(path))
        check_finite(path, tensors)
        pol = cls(cfg)
        pol.net.load_state_dict(tensors)
        pol.extra = extra
        return pol


# ----------------------------------------------------------------------------- training

class DiffAgent:
    """Plays a `DiffPolicy` in an env with discrete keys (SB3's ``predict``).

    g reads ``obs["score"]`` (LMMPiano-v0; the keyboard's layout must be readable: on the
    hidden keyboard use ``decipher-closed-loop``). h listens to the target
    (``env.unwrapped.target_audio()``, LMMByEar-v0) with the ear of the policy's K at the
    episode's start, then plays from that reading step by step.
    """

    oracle = False

    def __init__(self, env, policy: DiffPolicy, pairs=None, ear_synth: str | None = None, ear=None):
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
            given = [n for n, v in (("pairs", pairs), ("ear", ear), ("ear_synth", ear_synth)) if v is not None]
            if given:
                raise ValueError(f"diff-g does not listen: it takes no {', '.join(given)} (it reads obs['score'])")
            if kb.sealed:
                raise ValueError("diff-g reads the keyboard's layout, which this env hides; on LMMDecipher-v0 use "
                                 "the agent 'decipher-closed-loop'")
            if "score" not in env.observation_space.spaces:
                raise ValueError("diff-g reads obs['score']; it plays LMMPiano-v0")
            self.column_of_action = np.asarray(kb.pitch_of_action) - kb.lo
        else:
            if not hasattr(env.unwrapped, "target_audio"):
                raise ValueError("diff-h listens to the target audio; it plays LMMByEar-v0")
            from lmm_env.agents._ears import resolve_ear

            if ear is not None and ear_synth is not None:
                raise ValueError(f"ear_synth={ear_synth!r} names whose pairs fit the ear, but ear= was given too; "
                                 "give one of them")
            # pairs=K given: the ear of K pairs of the env's pairs instrument, as the env's own reward hears
            heard = getattr(sim, "pairs_instrument", None) if pairs is not None else None
            self.ear = resolve_ear(pairs, ear, synth=ear_synth or heard or cfg.ear_synth, sample_rate=sim.sample_rate,
                                   default_pairs=cfg.pairs)
            self.column_of_action = np.asarray(kb.pitch_of_action) - LOWEST_PITCH
            self._heard = None
        self.n_actions = kb.n_actions

    def reset(self) -> None:
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
        return action, state


def shipped_path(kind: str) -> Path:
    return WEIGHTS / f"diff-{kind}.safetensors"


def make_diff_agent(kind: str, env, pairs=None, path=None, ear=None) -> DiffAgent:
    """The shipped diff-g / diff-h (or ``path``) built for ``env``; h listens with ``ear`` or the ear of ``pairs``."""
    policy = DiffPolicy.load(path or shipped_path(kind))
    if policy.cfg.kind != kind:
        raise ValueError(f"{path} holds a {policy.cfg.kind} policy, not {kind}")
    return DiffAgent(env, policy, pairs=pairs, ear=ear)


# ----------------------------------------------------------------------------- CLI

def _parse_k(v: str):
    if v == "all":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is not a K: use 0, 4, 16, 64 or all") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmm_env.agents.learned.differentiable",
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
    ap.add_argument("--corpora", default=None,
                    help="comma-separated training corpora; the first is validated on (default: folk,bach-chorales)")
    ap.add_argument("--eval-pieces", type=int, default=8, help="validation pieces at each validation point")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=2048)
    ap.add_argument("--out", default=None, help="weights path (default agents/weights/diff-KIND.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true",
                    help="continue the run whose snapshot is <out>.run (written at every validation point)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else shipped_path(args.kind)
    check_cli_output(ap, out)  # before the training, not after it
    run = out.with_name(out.name + ".run")  # the run's snapshot; removed once the weights are written
    check_cli_output(ap, run, "the run snapshot", suffix=None)
    if run.exists() and not args.resume:
        ap.error(f"{str(run)!r} holds an unfinished run of these weights; continue it with --resume, or remove it "
                 "to start again")
    cfg = DiffConfig(kind=args.kind, pairs=args.pairs, ear_synth=args.ear_synth,
                     target_synths=tuple(s for s in args.target_synths.split(",") if s), samples=args.samples,
                     window=args.window, batch=args.batch, lr=args.lr, lm=args.lm, loudness=args.loudness,
                     listen=args.listen, lookahead=args.lookahead, seed=args.seed, eval_every=args.eval_every,
                     eval_pieces=args.eval_pieces,
                     **({"corpora": tuple(c for c in args.corpora.split(",") if c)} if args.corpora else {}))
    try:  # every flag checked before the ear is fitted or a sample rendered
        cfg.check()
        check_int("--threads", args.threads, 1, 256)
    except ValueError as exc:
        ap.error(str(exc))
    from lmm_env.agents.training.diff_train import train

    policy, report = train(cfg, threads=args.threads, checkpoint=run, resume=args.resume and run.exists(),
                           log=lambda r: print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                           for k, v in r.items()}), flush=True))
    cmd = "python -m lmm_env.agents.learned.differentiable " + " ".join(
        a for a in (argv if argv is not None else __import__("sys").argv[1:]) if a != "--resume")
    policy.save(out, extra={"command": cmd, "samples": report["samples"], "target_samples": report["target_samples"],
                            "wall_s": round(report["wall_s"], 1), "best": report.get("best")})
    curve = {k: v for k, v in report.items() if k != "final_state"}  # the last policy's tensors are not JSON
    out.with_suffix(".json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "command": cmd, **curve}, indent=1))
    run.unlink(missing_ok=True)  # finished: the weights are written
    best = report.get("best")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) after {report['samples']} world samples, "
          f"{report['wall_s']:.0f} s" + (f"; kept the best validation point: note F1 {best['note_f1']:.3f} at "
                                         f"{best['samples']} samples" if best else ""))
    return 0


def train(cfg: DiffConfig, **kwargs):
    """`lmm_env.agents.training.diff_train.train`: learn a `DiffPolicy` through the differentiable world."""
    from lmm_env.agents.training.diff_train import train as _train

    return _train(cfg, **kwargs)


if __name__ == "__main__":
    raise SystemExit(main())
