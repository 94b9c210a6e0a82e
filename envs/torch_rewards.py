"""Torch twins of the built-in rewards, for `TorchPianoSim` (the torch world's per-step path).

Each twin computes its numpy model's per-step formula on the device; what the model
precomputes at each episode's start (target log-mel, target loudness, score-LM logits,
audio-LM log densities of the target) is computed by the numpy model itself, in
`PianoSim.reset_env`, and copied to the device rows of the envs that reset (`mirror_rows`).
So the two worlds share one definition of every reward's targets, and differ only in the
float32 arithmetic of a step (``TORCH_TOLERANCE`` in `lmm_env.envs.torch_sim`, tested).

Supported (`SUPPORTED`): ``key_match``, ``audio_match``, ``ear_match`` (the analytic or a
learned ear, through `lmm_env.lm.ear_torch.TorchEar`), ``score_lm``, ``audio_lm`` and
``closed_loop``, alone or as a ``{name: weight}`` dict, and any `AudioJudgeReward` (a judge
from the field, `lmm_env.judges`, judging windows: the heard audio stays on the device and is
resampled and scored there; the judge must live on the world's device). Any other reward model
(``improvise``, a `SymbolicJudgeReward`, a custom `RewardModel`, a `TorchLMReward`) is refused
when the world is made.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch

from lmm_env.rewards.base import CompositeReward
from lmm_env.rewards.builtin import AudioMatchReward, KeyMatchReward
from lmm_env.rewards.judges import AudioJudgeReward
from lmm_env.rewards.lm import _ENERGY_FLOOR, AudioLMReward, ClosedLoopReward, EarMatchReward, ScoreLMReward

SUPPORTED = ("key_match", "audio_match", "ear_match", "score_lm", "audio_lm", "closed_loop")


@dataclasses.dataclass
class TorchStepContext:
    """One step of every env, on the device (the torch counterpart of `BatchStepContext`).

    Attributes:
        step: (n,) long, index of the frame just played.
        audio: (n, block) float32 heard this step.
        window: (n, (history_blocks + 1) * block) the recent audio, this step's block last.
        features: (n, n_mels) log-mel of ``audio``; feature_history: (n, history_blocks, n_mels).
        target_held: (n, 88) bool target keys held now (pitch order).
        key_down: (n, 88) bool keys held after this step's action (pitch order).
        env_ids: (n,) long arange (rewards gather their per-env targets with it).
    """

    step: torch.Tensor
    audio: torch.Tensor
    window: torch.Tensor
    features: torch.Tensor
    feature_history: torch.Tensor
    target_held: torch.Tensor
    key_down: torch.Tensor
    env_ids: torch.Tensor

    def recent_audio(self, blocks: int) -> torch.Tensor:
        """(n, blocks * block): the last ``blocks`` blocks heard, this step's last."""
        need = int(blocks) * self.audio.shape[1]
        return self.window[:, self.window.shape[1] - need:]


def mirror_rows(current: torch.Tensor | None, host: np.ndarray, ids: torch.Tensor, np_ids: np.ndarray,
                device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The device copy of a host per-env array after rows ``np_ids`` changed.

    Copies those rows; if the host array was reallocated to another shape (it grows when a
    longer episode starts), uploads it whole. Returns the (possibly new) device tensor.
    """
    if current is None or tuple(current.shape) != tuple(host.shape):
        return torch.from_numpy(np.ascontiguousarray(host)).to(device, dtype)
    current[ids] = torch.from_numpy(np.ascontiguousarray(host[np_ids])).to(device, dtype)
    return current


class TorchReward:
    """A reward's per-step twin: ``reset(ids, np_ids)`` after host resets, ``__call__(ctx)`` per step."""

    def reset(self, ids: torch.Tensor, np_ids: np.ndarray) -> None:
        """Copy the numpy model's per-episode precomputation of envs ``np_ids`` to the device."""

    def __call__(self, ctx: TorchStepContext) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """(rewards (n,) float32, named sub-terms or None)."""
        raise NotImplementedError


class TorchComposite(TorchReward):
    """`CompositeReward` (and `ClosedLoopReward`): the weighted sum, terms reported by name in its order."""

    def __init__(self, parts: dict[str, tuple[TorchReward, float]]):
        self.parts = parts

    def reset(self, ids, np_ids) -> None:
        done = set()
        for m, _ in self.parts.values():
            if id(m) not in done:
                m.reset(ids, np_ids)
                done.add(id(m))

    def __call__(self, ctx):
        total, terms = None, {}
        for name, (m, w) in self.parts.items():
            values, sub = m(ctx)
            if sub:
                terms.update(sub)
            terms[name] = values
            total = w * values if total is None else total + w * values
        return total, terms


class TorchKeyMatch(TorchReward):
    """`KeyMatchReward`: 0.5 recall of the target's held keys + 0.5 (no key outside the target down)."""

    def __call__(self, ctx):
        target, down = ctx.target_held, ctx.key_down
        n_target = target.sum(1)
        hit = (down & target).sum(1)
        recall = torch.where(n_target > 0, hit / n_target.clamp_min(1), torch.ones((), device=hit.device))
        no_wrong = ~(down & ~target).any(1)
        return 0.5 * recall.float() + 0.5 * no_wrong.float(), None


class TorchAudioMatch(TorchReward):
    """`AudioMatchReward`: ``exp(-mean |heard log-mel - target log-mel| / scale)``."""

    def __init__(self, model: AudioMatchReward, device):
        self.model, self.device, self.targets = model, device, None
        self.factor = -1.0 / model.scale

    def reset(self, ids, np_ids) -> None:
        self.targets = mirror_rows(self.targets, self.model._targets, ids, np_ids, self.device)

    def __call__(self, ctx):
        target = self.targets[ctx.env_ids, ctx.step]
        distance = (ctx.features - target).abs().mean(1)
        return torch.exp(distance * self.factor), None


class TorchEarMatch(TorchReward):
    """`EarMatchReward`: the ear's soft F1 against the target frame, and loudness against the target's."""

    def __init__(self, model: EarMatchReward, device):
        from lmm_env.lm.ear_torch import TorchEar

        try:  # a copy: moving the ear to the device must not move the numpy reward's own
            self.ear = TorchEar(copy.deepcopy(model.ear)).to(device).eval()
        except TypeError as exc:
            raise ValueError(f"the ear of reward 'ear_match' has no torch twin: {exc}") from None
        self.model, self.device, self.levels = model, device, None
        self.blocks = int(model.ear.history_blocks) + 1
        self._ctx = self._act = None

    def reset(self, ids, np_ids) -> None:
        self.levels = mirror_rows(self.levels, self.model._levels.data, ids, np_ids, self.device)

    def hear(self, ctx) -> torch.Tensor:
        """The ear's activations (n, 88) for this step (computed once per step and shared)."""
        if self._ctx is not ctx:
            self._act = self.ear.core(ctx.recent_audio(self.blocks))
            self._ctx = ctx
        return self._act

    def __call__(self, ctx):
        a = self.hear(ctx)
        target = ctx.target_held
        pitch = (2.0 * (a * target).sum(1) + 0.5) / (a.sum(1) + target.sum(1) + 0.5)
        power = (ctx.audio * ctx.audio).sum(1) * (1.0 / ctx.audio.shape[1])
        level = torch.log(power.clamp_min(_ENERGY_FLOOR))
        gap = (level - self.levels[ctx.env_ids, ctx.step]).abs()
        loud = torch.exp(gap * (-1.0 / self.model.loudness_scale))
        w = self.model.loudness_weight
        return (1.0 - w) * pitch + w * loud, {"ear_pitch": pitch, "ear_loudness": loud}


class TorchScoreLM(TorchReward):
    """`ScoreLMReward`: the heard frame's log-likelihood under the score LM, relative to the target's."""

    def __init__(self, model: ScoreLMReward, ear: TorchEarMatch, device):
        self.model, self.ear, self.device = model, ear, device
        self.logits = self.offset = None
        self.prev_heard = None

    def reset(self, ids, np_ids) -> None:
        m = self.model
        self.logits = mirror_rows(self.logits, m._logits.data, ids, np_ids, self.device)  # float16 as on the host
        self.offset = mirror_rows(self.offset, m._offset.data, ids, np_ids, self.device, torch.float32)
        if self.prev_heard is None:
            self.prev_heard = torch.zeros(m._prev_heard.shape, dtype=torch.bool, device=self.device)
        self.prev_heard[ids] = False

    def __call__(self, ctx):
        heard = self.ear.hear(ctx) > self.model.threshold
        onset = heard & ~self.prev_heard
        self.prev_heard = heard
        logits = self.logits[ctx.env_ids, ctx.step].float()
        gap = (logits[:, 0] * heard).sum(1) + (logits[:, 1] * onset).sum(1) + self.offset[ctx.env_ids, ctx.step]
        return torch.exp(gap.clamp_max(0.0) * (1.0 / self.model.temperature)), None


class TorchAudioLM(TorchReward):
    """`AudioLMReward`: the heard log-mel frame's density under the audio LM, relative to the target's."""

    def __init__(self, model: AudioLMReward, device):
        self.model, self.device, self.target_lp = model, device, None
        self.lm = copy.deepcopy(model.lm).to(device).eval()
        self.factor = 1.0 / (model.n_mels * model.temperature)

    def reset(self, ids, np_ids) -> None:
        self.target_lp = mirror_rows(self.target_lp, self.model._target_lp.data, ids, np_ids, self.device,
                                     torch.float32)

    def __call__(self, ctx):
        hist = ctx.feature_history
        lp = self.lm.log_prob_torch(hist[:, hist.shape[1] - self.model.context:], ctx.features)
        gap = lp - self.target_lp[ctx.env_ids, ctx.step]
        return torch.exp(gap.clamp_max(0.0) * self.factor), None


class TorchAudioJudge(TorchReward):
    """`AudioJudgeReward`: the judge on the heard window, on the device, against the target's
    score (computed on the host at reset, mirrored). Within the torch world's tolerance of the
    numpy world: the oracle's windows score 1.0 within it (the numpy world's sample-for-sample
    check would need every env's target audio on the device)."""

    def __init__(self, model, device):
        from lmm_env.rewards.judges import EPISODE

        if model.every == EPISODE:
            raise ValueError("an AudioJudgeReward with every='episode' has no torch twin (it keeps each episode's "
                             "audio); judge windows (every=N) in the torch world, or use backend='numpy'")
        self.model, self.device, self.target_ll = model, device, None

    def reset(self, ids, np_ids) -> None:
        self.target_ll = mirror_rows(self.target_ll, self.model._target_ll.data, ids, np_ids, self.device,
                                     torch.float64)

    def __call__(self, ctx):
        from lmm_env.judges.base import resample

        m = self.model
        out = torch.zeros(ctx.step.shape[0], dtype=torch.float32, device=ctx.step.device)
        judged = (ctx.step + 1) % m.every == 0
        if not bool(judged.any()):  # one sync a step: most steps are not judged
            return out, None
        rows = judged.nonzero()[:, 0]
        play = ctx.recent_audio(m.window_steps)[rows]
        ll = m.judge.score(resample(play, m.sample_rate, m.judge.sample_rate))
        ll = torch.as_tensor(ll, dtype=torch.float64, device=ctx.step.device)  # a judge may answer in numpy
        target = self.target_ll[ctx.env_ids[rows], ctx.step[rows]]
        empty_play, empty_target = torch.isnan(ll), torch.isnan(target)  # no token: as the numpy reward reads it
        gap = torch.where(empty_play | empty_target, torch.zeros_like(ll), ll - target).clamp_max(0.0)
        value = torch.exp(gap / m.temperature)
        value = torch.where(empty_play != empty_target, torch.zeros_like(value), value)
        out[rows] = value.float()
        return out, None


def make_torch_reward(model, device) -> TorchReward:
    """The torch twin of a `PianoSim`'s reward model; ValueError naming a part that has none."""
    memo: dict[int, TorchReward] = {}

    def twin(m, name):
        kind = type(m)
        if kind in (CompositeReward, ClosedLoopReward):
            return TorchComposite({n: (twin(part, n), w) for n, (part, w) in m.parts.items()})
        if id(m) in memo:
            return memo[id(m)]
        if kind is KeyMatchReward:
            out = TorchKeyMatch()
        elif kind is AudioMatchReward:
            out = TorchAudioMatch(m, device)
        elif kind is EarMatchReward:
            out = TorchEarMatch(m, device)
        elif kind is ScoreLMReward:
            out = TorchScoreLM(m, twin(m._ear_reward, "ear_match"), device)
        elif kind is AudioLMReward:
            out = TorchAudioLM(m, device)
        elif isinstance(m, AudioJudgeReward):
            out = TorchAudioJudge(m, device)
        else:
            raise ValueError(f"reward {name!r} ({kind.__name__}) has no torch twin; the torch world computes "
                             f"reward= one of {list(SUPPORTED)}, an AudioJudgeReward (lmm_env.judges), or a "
                             "{name: weight} dict of them (use backend='numpy' for any other reward)")
        memo[id(m)] = out
        return out

    name = getattr(model, "name", "reward")
    top = twin(model, name)
    if isinstance(top, TorchComposite):
        return top
    # a reward object given as is: its terms are its own and its name, as the numpy world reports them
    return TorchComposite({name: (top, 1.0)})
