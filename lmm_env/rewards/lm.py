"""Closed-loop rewards: judge what the agent *heard* with an ear and language models.

None of these rewards reads the action or the key state (``uses_motion = False``): they
see the heard audio (and its log-mel), the score around now, and what the episode's
target sounds like through the env's own synth. That is the seed's closed loop: play,
listen, judge with internal models of scores (LM^V) and audio (LM^A).

- `EarMatchReward` ("ear_match"): the ear's reading of the heard block against the target
  score frame (pitch), and the heard loudness against the target's (velocity).
- `ScoreLMReward` ("score_lm"): how probable the notes the ear heard are under `ScoreLM`
  given the score so far, relative to the target frame's own probability.
- `AudioLMReward` ("audio_lm"): how expected the heard log-mel frame is under `AudioLM`
  given what was heard before, relative to the target audio's own log density.
- `ClosedLoopReward` ("closed_loop", the default of LMMPiano-v0): their weighted sum.
- `TorchLMReward`: turns any autoregressive torch LM plus a featurizer into a reward.

Every reward here is in [0, 1] per step (1 = as good as the target itself), so returns
of episodes of equal length compare directly.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from lmm_env._checks import check_int, check_real, short_repr

from lmm_env.rewards.base import (
    MAX_HISTORY_BLOCKS, MAX_SCORE_CONTEXT, MAX_WEIGHT, BatchStepContext, CompositeReward, EpisodeContext, RewardError,
    RewardModel, _positive,
)

_ENERGY_FLOOR = 1e-7  # mean-square level below which a block counts as silence (-70 dB)


def _load(model, expect: str):
    """A model object, or a shipped name / checkpoint path loaded with `load_pretrained`."""
    from lmm_env.lm.checkpoint import PRETRAINED

    given = model
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        from lmm_env.lm import load_pretrained

        model = load_pretrained(model)
    if expect == "ear":
        ok = hasattr(model, "activations") and hasattr(model, "history_blocks")
    elif expect == "score":
        ok = hasattr(model, "next_frame_logits")
    else:
        ok = hasattr(model, "log_prob") and hasattr(model, "log_prob_sequence")
    if not ok:
        # name what was given (a file, a value) and what it holds, not the model's repr
        what = {"ear": "an ear (AnalyticEar or LearnedEar)", "score": "a score LM (ScoreLM)",
                "audio": "an audio LM (AudioLM)"}[expect]
        src = (f"{os.fspath(given)!r} holds a {type(model).__name__}, not" if model is not given
               else f"{short_repr(given)} (type {type(given).__name__}) is not")
        raise TypeError(f"{src} {what}; pass a shipped name "
                        f"({', '.join(PRETRAINED)}), a .safetensors file of one, or such a model object")
    return model


def refuse_timing(model, sample_rate: int, block_size: int, frame_rate: float, what: str) -> None:
    """ValueError unless ``model`` (trained at its own sample rate and block) serves this timing."""
    sr, block = getattr(model, "sample_rate", None), getattr(model, "block_size", None)
    if sr is None:
        sr, block = model.config.get("sample_rate"), model.config.get("block_size")
    if (sr, block) != (sample_rate, block_size):
        raise ValueError(
            f"the {what} was trained at sample_rate={sr}, {block} samples per step, but the env runs at "
            f"sample_rate={sample_rate}, {block_size} samples per step (frame_rate={frame_rate:g}); "
            f"use sample_rate={sr}, frame_rate={sr / block:g}, or retrain the model with `python -m lmm_env.lm.train`")


def refuse_score_lm_rate(lm, frame_rate: float) -> None:
    """ValueError unless the score LM models frames at the env's ``frame_rate``."""
    fr = float(lm.config.get("frame_rate", frame_rate))
    if abs(fr - frame_rate) > 1e-6:
        raise ValueError(f"the score LM models frames at {fr:g} per second, but the env steps at "
                         f"frame_rate={frame_rate:g}; use frame_rate={fr:g} or retrain it")


def refuse_audio_lm_world(lm, sample_rate: int, block_size: int, frame_rate: float, n_mels: int) -> None:
    """ValueError unless the audio LM was trained at this timing and mel count."""
    refuse_timing(lm, sample_rate, block_size, frame_rate, "audio LM")
    want = int(lm.config["n_mels"])
    if n_mels != want:
        raise ValueError(f"the audio LM models {want} mel bands, but the env computes n_mels={n_mels}; "
                         f"use n_mels={want}")


class _PerEnvSteps:
    """A per-env array of per-step values, (n_envs, capacity, *shape), grown on demand."""

    def __init__(self, shape=(), dtype=np.float32):
        self.shape, self.dtype = tuple(shape), dtype
        self.data = np.zeros((1, 0) + self.shape, dtype)

    def bind(self, n_envs: int) -> None:
        self.data = np.zeros((n_envs, 0) + self.shape, self.dtype)

    def set(self, env_index: int, values: np.ndarray) -> None:
        n_envs, cap = self.data.shape[:2]
        if len(values) > cap:
            grown = np.zeros((n_envs, max(len(values), 2 * cap)) + self.shape, self.dtype)
            grown[:, :cap] = self.data
            self.data = grown
        self.data[env_index, : len(values)] = values  # steps past the episode are never read

    def get(self, env_ids: np.ndarray, step: np.ndarray) -> np.ndarray:
        if len(env_ids) == 1:  # a basic index is cheaper than a fancy one
            return self.data[int(env_ids[0]), int(step[0])][None]
        return self.data[env_ids, step]


class EarMatchReward(RewardModel):
    """The ear's reading of what was heard, against the target score frame.

    Each step the ear hears the current block and its short history and gives 88 pitch
    activations ``a`` in [0, 1]. With ``t`` the target's held keys now::

        pitch    = (2 tp + 0.5) / (2 tp + fp + fn + 0.5)      tp = sum(a t), fp = sum(a (1 - t)),
                                                               fn = sum((1 - a) t)
        loudness = exp(-|level(heard) - level(target)| / loudness_scale)
        ear_match = (1 - loudness_weight) * pitch + loudness_weight * loudness

    ``pitch`` is a soft F1 (1.0 for silence when silence is wanted); ``level`` is the
    block's log mean-square level (floored at -70 dB), and the target level is that of the
    target score played through the env's synth, so velocities matter. Both parts are
    reported in ``info["reward_terms"]`` as "ear_pitch" and "ear_loudness".

    Args:
        ear: an ear object or a name for `lmm_env.lm.load_pretrained`: "ear-analytic"
            (default; harmonic templates, ~25 us a step at one env, ~6 us per env at 64) or
            "ear" (learned from 16 pairs: more accurate on the built-in synth, several times
            slower; see BENCHMARKS.md).
        loudness_weight: share of the loudness part, in [0, 1].
        loudness_scale: nats of log level that cost a factor e of the loudness part.
    """

    name = "ear_match"

    def __init__(self, ear="ear-analytic", loudness_weight: float = 0.3, loudness_scale: float = 1.0):
        self.ear = _load(ear, "ear")
        self.loudness_weight = check_real("loudness_weight", loudness_weight, 0.0, 1.0)
        self.loudness_scale = _positive("loudness_scale", loudness_scale)
        self.history_blocks = int(self.ear.history_blocks)
        self._levels = _PerEnvSteps()
        self._last_ctx = None
        self.last_activations = None
        self._terms = {}

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._levels.bind(n_envs)

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        refuse_timing(self.ear, sample_rate, block_size, frame_rate, "ear")

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        blocks = episode.target_audio().reshape(episode.n_steps, episode.block_size)
        self._levels.set(env_index, self._level(blocks))

    @staticmethod
    def _level(blocks: np.ndarray) -> np.ndarray:
        power = np.einsum("ij,ij->i", blocks, blocks)  # float32 sums: ~1e-6 relative error, plenty here
        power *= np.float32(1.0 / blocks.shape[1])
        np.maximum(power, np.float32(_ENERGY_FLOOR), out=power)
        return np.log(power, out=power)

    def hear(self, ctx: BatchStepContext) -> np.ndarray:
        """The ear's activations (n, 88) for this step (computed once per step and shared)."""
        if self._last_ctx is not ctx:
            self.last_activations = self.ear.activations(ctx.recent_audio(self.history_blocks + 1))
            self._last_ctx = ctx
        return self.last_activations

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        a = self.hear(ctx)
        target = ctx.target_held[:, ctx.score_context]
        # soft F1 = (2 tp + 0.5) / (2 tp + fp + fn + 0.5), and 2 tp + fp + fn = sum(a) + sum(t)
        pitch = (a * target).sum(axis=1, dtype=np.float64)  # tp
        pitch *= 2.0
        pitch += 0.5
        pitch /= a.sum(axis=1, dtype=np.float64) + target.sum(axis=1) + 0.5
        gap = self._level(ctx.audio)
        gap -= self._levels.get(ctx.env_ids, ctx.step)
        np.abs(gap, out=gap)
        gap *= np.float32(-1.0 / self.loudness_scale)
        loud = np.exp(gap, dtype=np.float64)
        self._terms = {"ear_pitch": pitch, "ear_loudness": loud}
        w = self.loudness_weight
        return (1.0 - w) * pitch + w * loud

    def terms(self):
        return self._terms


class ScoreLMReward(RewardModel):
    """How probable the heard notes are under the score LM, relative to the target's.

    The ear's activations above ``threshold`` are the heard frame (held keys; onsets are
    keys newly heard this step). With ``lp(x)`` the log-likelihood of frame ``x`` under
    `ScoreLM` given the *target* score's frames before now (precomputed at reset)::

        score_lm = exp(min(0, lp(heard) - lp(target)) / temperature)

    so 1.0 when the heard frame is at least as probable as the score's own, and falling as
    the heard notes become improbable in the piece's context (wrong key, clashes).

    Args:
        lm: a `ScoreLM` or a name/path for `load_pretrained` (default "score").
        ear: the ear (object or name), or an `EarMatchReward` whose per-step reading to share.
        threshold: activation above which a key counts as heard.
        temperature: nats of log-likelihood that cost a factor e.
    """

    name = "score_lm"

    def __init__(self, lm="score", ear="ear-analytic", threshold: float = 0.5, temperature: float = 10.0):
        self.lm = _load(lm, "score")
        if isinstance(ear, EarMatchReward):
            self._ear_reward = ear
        else:
            self._ear_reward = EarMatchReward(ear)
        self.history_blocks = self._ear_reward.history_blocks
        self.threshold = check_real("threshold", threshold, 0.0, 1.0, lo_open=True, hi_open=True)
        self.temperature = _positive("temperature", temperature)
        self._logits = _PerEnvSteps((2, 88), np.float16)  # float16: 256 envs x 1000 steps = 90 MB
        self._offset = _PerEnvSteps((), np.float64)
        self._prev_heard = np.zeros((1, 88), bool)

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._logits.bind(n_envs)
        self._offset.bind(n_envs)
        self._prev_heard = np.zeros((n_envs, 88), bool)
        if self._ear_reward.__dict__.get("n_envs") != n_envs:
            self._ear_reward.bind(n_envs)

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        self._ear_reward.check_world(sample_rate, block_size, frame_rate, n_mels)
        refuse_score_lm_rate(self.lm, frame_rate)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        frames = episode.frames
        held = np.zeros((episode.n_steps, 88), bool)
        onset = np.zeros((episode.n_steps, 88), bool)
        t = min(frames.T, episode.n_steps)
        held[:t], onset[:t] = frames.held[:t], frames.onset[:t]
        logits = self.lm.next_frame_logits(held, onset).astype(np.float16)
        self._logits.set(env_index, logits)
        # log p(x) = sum(log sigmoid(-l)) + sum(l where x = 1). The first sum is the same for
        # the heard frame and the target's, so lp(heard) - lp(target) is two masked sums of
        # the logits minus the target's own (precomputed here, from the same float16-rounded
        # logits the steps use).
        offset = -np.einsum("ij,ij->i", logits[:, 0], held, dtype=np.float64)
        offset -= np.einsum("ij,ij->i", logits[:, 1], onset, dtype=np.float64)
        self._offset.set(env_index, offset)
        self._prev_heard[env_index] = False

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        heard = self._ear_reward.hear(ctx) > self.threshold
        onset = heard & ~self._prev_heard[ctx.env_ids]
        self._prev_heard[ctx.env_ids] = heard
        logits = self._logits.get(ctx.env_ids, ctx.step)
        gap = np.einsum("ij,ij->i", logits[:, 0], heard, dtype=np.float64)  # lp(heard) - lp(target)
        gap += np.einsum("ij,ij->i", logits[:, 1], onset, dtype=np.float64)
        gap += self._offset.get(ctx.env_ids, ctx.step)
        np.minimum(gap, 0.0, out=gap)
        gap *= 1.0 / self.temperature
        return np.exp(gap, out=gap)


class AudioLMReward(RewardModel):
    """How expected the heard audio is under the audio LM, relative to the target audio.

    With ``lp(x_t | x_<t)`` the log density of a log-mel frame under `AudioLM` given the
    frames before it (the heard ones for the agent; the target's own for the target,
    precomputed at reset), per mel band::

        audio_lm = exp(min(0, lp(heard_t | heard_<t) - lp(target_t | target_<t)) / (n_mels * temperature))

    Noise, clashing notes and clicks are improbable under a model of piano music and cost;
    audio as expected as the target's scores 1.0. Silence is usually *very* expected, so this
    term alone does not punish silence: the ear terms do (see ``info["metrics"]``'s note
    density for a policy that games it).

    Args:
        lm: an `AudioLM` or a name/path for `load_pretrained` (default "audio").
        temperature: nats per mel band that cost a factor e.
    """

    name = "audio_lm"

    def __init__(self, lm="audio", temperature: float = 0.5):
        self.lm = _load(lm, "audio")
        self.temperature = _positive("temperature", temperature)
        self.context = int(self.lm.context)
        self.history_blocks = self.context
        self.n_mels = int(self.lm.config["n_mels"])
        self._target_lp = _PerEnvSteps((), np.float64)

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._target_lp.bind(n_envs)

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        refuse_audio_lm_world(self.lm, sample_rate, block_size, frame_rate, n_mels)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        feats = episode.target_features()
        self._target_lp.set(env_index, self.lm.log_prob_sequence(feats))

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        history = ctx.feature_history[:, ctx.feature_history.shape[1] - self.context:]
        gap = self.lm.log_prob(history, ctx.features) - self._target_lp.get(ctx.env_ids, ctx.step)  # new array
        np.minimum(gap, 0.0, out=gap)
        gap *= 1.0 / (self.n_mels * self.temperature)
        return np.exp(gap, out=gap)


class ClosedLoopReward(CompositeReward):
    """The default reward of LMMPiano-v0: ear + LM^V + LM^A, judged on what was heard.

    ::

        closed_loop = ear_weight * ear_match + score_weight * score_lm + audio_weight * audio_lm

    with the default weights 1.0, 0.5 and 0.5 (each term is in [0, 1]; see
    `EarMatchReward`, `ScoreLMReward`, `AudioLMReward`). Every term, and the ear's pitch and
    loudness parts, is reported by name in ``info["reward_terms"]``. ``score_lm`` reads the
    same ear as ``ear_match`` (one ear pass per step): the analytic ear by default, for
    speed; ``ear="ear"`` uses the learned one. Override the weights here, or build
    your own mix with ``reward={"ear_match": 1.0, "score_lm": 0.2, "my_lm": 0.5}``.
    """

    name = "closed_loop"

    def __init__(self, ear_weight: float = 1.0, score_weight: float = 0.5, audio_weight: float = 0.5,
                 ear="ear-analytic", score_lm="score", audio_lm="audio"):
        ear_reward = EarMatchReward(ear)
        parts = {"ear_match": (ear_reward, ear_weight)}
        if score_weight:
            parts["score_lm"] = (ScoreLMReward(score_lm, ear=ear_reward), score_weight)
        if audio_weight:
            parts["audio_lm"] = (AudioLMReward(audio_lm), audio_weight)
        super().__init__(parts)


class TorchLMReward(RewardModel):
    """Any autoregressive torch LM as a reward: the log-prob of what was heard given the past.

    Each step, ``featurizer(ctx)`` turns what every env heard into the LM's input for this
    step: an int token per env (``kind="categorical"``), or a {0, 1} vector per env
    (``kind="bernoulli"``, e.g. a frame of 88 keys). The adapter keeps the last
    ``context`` inputs of each env (starting from ``start``), runs ``lm`` on them, and
    scores this step's input with the LM's prediction at the last position::

        lm(past) -> (n, context, vocab) logits (or log-probs); reward = scale * log p(now | past)

    The LM must be causal in the sense that its output at the last position predicts the
    next input. Output is logits by default; ``output="log_probs"`` for models that return
    log-probabilities (categorical: log-softmax outputs; bernoulli: log p(bit = 1)).

    Args:
        lm: a torch module mapping (n, context) long tokens or (n, context, D) float frames
            to (n, context, V) or (n, context, D).
        featurizer: callable ``(BatchStepContext) -> np.ndarray`` of shape (n,) ints or (n, D).
        kind: "categorical" or "bernoulli".
        context: past steps the LM sees (1 to MAX_SCORE_CONTEXT = 10,000: each env keeps that many inputs).
        start: the token (int) or frame value (float) that fills the past at episode start.
        scale: multiplies the log-prob (e.g. 1 / D for per-bit nats).
        history_blocks: past audio blocks the featurizer needs in ``ctx.audio_history`` (0 to MAX_HISTORY_BLOCKS).
        name: how the reward is reported.
    """

    def __init__(self, lm, featurizer: Callable[[BatchStepContext], np.ndarray], kind: str = "categorical",
                 context: int = 16, start=0, scale: float = 1.0, output: str = "logits",
                 history_blocks: int = 0, name: str = "torch_lm"):
        import torch

        if not isinstance(lm, torch.nn.Module):
            raise TypeError(f"lm must be a torch.nn.Module, got {type(lm).__name__}")
        if not callable(featurizer):
            raise TypeError(f"featurizer must be callable (BatchStepContext -> array), got {featurizer!r}")
        if kind not in ("categorical", "bernoulli"):
            raise ValueError(f"kind={kind!r} is not allowed; use 'categorical' or 'bernoulli'")
        if output not in ("logits", "log_probs"):
            raise ValueError(f"output={output!r} is not allowed; use 'logits' or 'log_probs'")
        # context sizes the (n_envs, context[, D]) past the first step allocates
        context = check_int("context", context, 1, MAX_SCORE_CONTEXT)
        scale = check_real("scale", scale, -MAX_WEIGHT, MAX_WEIGHT)
        history_blocks = check_int("history_blocks", history_blocks, 0, MAX_HISTORY_BLOCKS)
        self.lm, self.featurizer, self.kind, self.output = lm.eval(), featurizer, kind, output
        self.context, self.start, self.scale = context, start, scale
        self.history_blocks = history_blocks
        self.name = name
        self._past = None

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._past = None  # shaped on the first step, when the featurizer's width is known

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        if self._past is not None:
            self._past[env_index] = self.start

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        import torch

        now = np.asarray(self.featurizer(ctx))
        n = len(ctx)
        if self.kind == "categorical":
            if now.shape != (n,) or now.dtype.kind not in "iu":
                raise RewardError(f"featurizer of {self.name!r} returned {now.dtype} {now.shape}; "
                                  f"a categorical LM needs ints of shape ({n},)")
            if self._past is None:
                self._past = np.full((self.n_envs, self.context), self.start, np.int64)
        else:
            if now.ndim != 2 or now.shape[0] != n:
                raise RewardError(f"featurizer of {self.name!r} returned shape {now.shape}; "
                                  f"a bernoulli LM needs ({n}, D)")
            if self._past is None:
                self._past = np.full((self.n_envs, self.context, now.shape[1]), self.start, np.float32)
        past = self._past[ctx.env_ids]
        with torch.no_grad():
            out = self.lm(torch.from_numpy(past))
            if isinstance(out, (tuple, list)):
                out = out[0]
            last = out[:, -1].double()
            if self.kind == "categorical":
                if not (0 <= now.min() and now.max() < last.shape[-1]):
                    raise RewardError(f"featurizer of {self.name!r} returned token {int(now.max())}, outside the "
                                      f"LM's vocabulary of {last.shape[-1]}")
                logp = torch.log_softmax(last, dim=-1)  # idempotent on log-probs
                lp = logp.gather(1, torch.from_numpy(now.astype(np.int64))[:, None])[:, 0]
            else:
                x = torch.from_numpy(now.astype(np.float64))
                if self.output == "logits":
                    lp = (x * torch.nn.functional.logsigmoid(last)
                          + (1 - x) * torch.nn.functional.logsigmoid(-last)).sum(1)
                else:
                    lp1 = last.clamp(max=0.0)
                    lp0 = torch.log1p(-lp1.exp().clamp(max=1 - 1e-12))
                    lp = (x * lp1 + (1 - x) * lp0).sum(1)
        self._past[ctx.env_ids, :-1] = past[:, 1:]
        self._past[ctx.env_ids, -1] = now
        return self.scale * lp.numpy()
