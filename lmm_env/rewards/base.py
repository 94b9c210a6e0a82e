"""The reward-model interface of lmm_env, and the composite that weighs several.

A reward model judges one step of play. The env gives it, at each episode's start, an
`EpisodeContext` (the target score, the synth, the feature extractor, an RNG), and at
each step a `BatchStepContext`: what every env *heard* (audio block, history, log-mel)
and the score around now. Rewards that look at the keys themselves (motion-space
rewards, for baselines and debugging) declare ``uses_motion = True``; only they receive
the key state. LM rewards never see actions.

Implement ``__call__(ctx: StepContext) -> float`` for one env; override ``batch`` for
speed in vector envs (the built-ins do). ``bind(n_envs)`` is called once before any
``reset(episode, env_index)``, so a model can keep per-env state in arrays.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Mapping

import numpy as np

from lmm_env._checks import check_int, check_real, short_repr


# Bounds on what a reward may ask the env to keep per env (the env allocates rings and tapes for it).
MAX_HISTORY_BLOCKS = 1000  # past audio blocks (50 s at 20 steps per second)
MAX_SCORE_CONTEXT = 10_000  # score frames on each side of now


def _positive(name: str, value) -> float:
    """``value`` as a float if it is a finite number > 0 (not a str or bool), else a ValueError naming ``name``."""
    return check_real(name, value, 0.0, math.inf, lo_open=True, hi_open=True)


class RewardError(RuntimeError):
    """A reward model raised, or returned something that is not a finite number."""


@dataclasses.dataclass
class EpisodeContext:
    """What a reward model learns at the start of an episode (one env).

    Attributes:
        score: the target notes (quantized to the frame grid), a `lmm_env.score.Score`.
        frames: the target's frame view, a `lmm_env.score.FrameScore` (88-key columns).
        n_steps: steps in the episode (score frames plus the tail).
        rng: a generator seeded from the env's RNG, for stochastic rewards.
        synth: the env's synthesizer (render targets through the same instrument).
        features: the env's `lmm_env.audio.LogMel`.
        frame_rate, sample_rate, block_size: timing.
        keys: (lo, hi) playable MIDI pitches.
    """

    score: Any
    frames: Any
    n_steps: int
    rng: np.random.Generator
    synth: Any
    features: Any
    frame_rate: float
    sample_rate: int
    block_size: int
    keys: tuple
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def target_audio(self) -> np.ndarray:
        """The target score played through the env's synth: float32 (n_steps * block_size,).

        Rendered once per episode and shared by every reward that asks (the score is
        quantized to the frame grid, so notes start on block boundaries as the agent's do).
        """
        if "audio" not in self._cache:
            n = self.n_steps * self.block_size
            audio = self.synth.render(self.score, tail=self.n_steps / self.frame_rate)[:n]
            if len(audio) < n:
                audio = np.pad(audio, (0, n - len(audio)))
            self._cache["audio"] = np.ascontiguousarray(audio, dtype=np.float32)
        return self._cache["audio"]

    def target_features(self) -> np.ndarray:
        """Log-mel frames of `target_audio`: float32 (n_steps, n_mels), one per step."""
        if "features" not in self._cache:
            self._cache["features"] = self.features(self.target_audio())
        return self._cache["features"]


@dataclasses.dataclass
class BatchStepContext:
    """One step of ``n`` envs. Arrays have a leading env axis.

    Attributes:
        env_ids: (n,) which envs these rows are.
        step: (n,) index of the frame just played (0-based).
        audio: (n, block_size) float32, the audio heard this step.
        audio_history: (n, history_blocks * block_size), the blocks before it, oldest first.
        features: (n, n_mels) log-mel of ``audio``.
        feature_history: (n, history_blocks, n_mels), oldest first.
        target_held, target_onset: (n, 1 + 2 * score_context, 88) bool target frames from
            ``step - score_context`` to ``step + score_context`` (pitch order, column =
            pitch - 21; frames outside the episode are empty).
        target_velocity: the same, uint8 velocities on held frames.
        score_context: frames of score on each side of now.
        key_down: (n, 88) bool keys held after this step's action, or None unless the model
            declared ``uses_motion``.
        audio_window: (n, (history_blocks + 1) * block_size), ``audio_history`` and ``audio``
            as one array (the env passes a view of its history ring), or None; read it
            through `recent_audio`. A wrapper that replaces ``audio`` or ``audio_history``
            (``dataclasses.replace``) must set it to None.
    """

    env_ids: np.ndarray
    step: np.ndarray
    audio: np.ndarray
    audio_history: np.ndarray
    features: np.ndarray
    feature_history: np.ndarray
    target_held: np.ndarray
    target_onset: np.ndarray
    target_velocity: np.ndarray
    score_context: int
    key_down: np.ndarray | None = None
    audio_window: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.env_ids)

    def recent_audio(self, blocks: int) -> np.ndarray:
        """(n, blocks * block_size) float32: the last ``blocks`` blocks heard, this step's last.

        ``blocks - 1`` must not exceed the history the env keeps (the model's
        ``history_blocks``). A view of the env's ring when it has one, else a new array."""
        block = self.audio.shape[1]
        need = int(blocks) * block
        window = self.audio_window
        if window is not None and window.shape[1] >= need and window.shape[0] == self.audio.shape[0]:
            return window[:, window.shape[1] - need:]
        if need - block > self.audio_history.shape[1]:
            raise ValueError(f"recent_audio({blocks}) needs {blocks - 1} blocks of history; the env keeps "
                             f"{self.audio_history.shape[1] // block} (set the reward's history_blocks)")
        history = self.audio_history[:, self.audio_history.shape[1] - (need - block):]
        return np.concatenate([history, self.audio], axis=1)

    def __getitem__(self, i: int) -> "StepContext":
        return StepContext(
            env_id=int(self.env_ids[i]), step=int(self.step[i]), audio=self.audio[i],
            audio_history=self.audio_history[i], features=self.features[i],
            feature_history=self.feature_history[i], target_held=self.target_held[i],
            target_onset=self.target_onset[i], target_velocity=self.target_velocity[i],
            score_context=self.score_context,
            key_down=None if self.key_down is None else self.key_down[i],
        )


@dataclasses.dataclass
class StepContext:
    """One env's step: the rows of a `BatchStepContext` (see there for each field)."""

    env_id: int
    step: int
    audio: np.ndarray
    audio_history: np.ndarray
    features: np.ndarray
    feature_history: np.ndarray
    target_held: np.ndarray
    target_onset: np.ndarray
    target_velocity: np.ndarray
    score_context: int
    key_down: np.ndarray | None = None


class RewardModel:
    """Base class of every reward. Subclass and implement ``__call__`` (or ``batch``).

    Class attributes a model may set:
        name: how it is reported in ``info["reward_terms"]``.
        uses_motion: True only for motion-space rewards that read the key state.
        history_blocks: past audio blocks (and feature frames) the model needs.
        score_context: score frames on each side of now the model needs.
    """

    name: str = "reward"
    uses_motion: bool = False
    history_blocks: int = 0
    score_context: int = 0

    def bind(self, n_envs: int) -> None:
        """Called once by the env, before any reset, with the number of envs it serves."""
        self.n_envs = int(n_envs)

    def check_world(self, sample_rate: int, block_size: int, frame_rate: float, n_mels: int) -> None:
        """Called once by the env at construction: raise ValueError if the model cannot serve
        a world with this timing (a model trained at another sample or frame rate), so the
        env refuses up front instead of at the first reset. Default: any world."""

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        """Start an episode in env ``env_index``."""

    def __call__(self, ctx: StepContext) -> float:
        raise NotImplementedError(f"{type(self).__name__} implements neither __call__ nor batch")

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        """Rewards for a batch of envs, shape (n,). Default: ``__call__`` per env."""
        out = np.empty(len(ctx), dtype=np.float64)
        for i in range(len(ctx)):
            try:
                value = self(ctx[i])
            except Exception as exc:
                raise _EnvFailure(i, exc) from exc
            out[i] = _one_number(value, i)
        return out

    def terms(self) -> dict[str, np.ndarray] | None:
        """Named parts of the last batch's rewards (for models made of several), else None."""
        return None


class _EnvFailure(Exception):
    """Raised inside a default ``batch``: which env's ``__call__`` failed, and how."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(index, cause)
        self.index, self.cause = index, cause


class _BadValue(Exception):
    """A reward value that is not one real number (env ``index``; None: the whole batch)."""

    def __init__(self, value, index: int | None, why: str):
        super().__init__(value, index, why)
        self.value, self.index, self.why = value, index, why


def _one_number(value, index: int | None) -> float:
    """``value`` as a float if it is one real number (not a bool, str, None or array)."""
    if isinstance(value, (bool, np.bool_)):
        raise _BadValue(value, index, "a bool, not a number")
    if isinstance(value, (numbers.Real, np.floating, np.integer)):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == ():
        return _one_number(value.item(), index)
    if isinstance(value, (np.ndarray, list, tuple)):
        return _raise(_BadValue(value, index, f"a sequence of shape {np.shape(value)}; __call__ must return one "
                                              "number for its env (batch returns shape (n,))"))
    kind = "None" if value is None else f"a {type(value).__name__}"
    raise _BadValue(value, index, f"{kind}, not a number")


def _raise(exc):
    raise exc


def _label(model, label: str | None) -> str:
    """How errors name a model: its registered name (or ``name``) and its class."""
    return f"{label or getattr(model, 'name', None) or type(model).__name__!r} ({type(model).__name__})"


def check_rewards(values, model: RewardModel, ctx: BatchStepContext, label: str | None = None) -> np.ndarray:
    """The batch's rewards as float64 (n,), or a RewardError naming the model, the step and the env."""
    if type(values) is np.ndarray and values.dtype == np.float64 and values.shape == (len(ctx),):
        # the common case, checked cheaply
        if math.isfinite(values[0]) if len(values) == 1 else np.isfinite(values).all():
            return values
    who, step = _label(model, label), int(ctx.step[0])
    try:
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            arr = values.astype(np.float64)
        elif isinstance(values, (np.ndarray, list, tuple)) and np.ndim(values) == 1:
            arr = np.array([_one_number(v, i) for i, v in enumerate(values)], dtype=np.float64)
        elif isinstance(values, np.ndarray) and values.dtype.kind == "b":
            raise _BadValue(values, None, "bools, not numbers")
        else:
            arr = np.asarray(values)
            if arr.dtype.kind not in "fiu":
                raise _BadValue(values, None, f"{type(values).__name__} values, not numbers")
            arr = arr.astype(np.float64)
    except _BadValue as bad:
        where = "" if bad.index is None else f" of env {int(ctx.env_ids[bad.index])}"
        raise RewardError(f"reward {who} returned {short_repr(bad.value)} at step {step}{where}: {bad.why}") from None
    if arr.shape != (len(ctx),):
        raise RewardError(f"reward {who} returned shape {arr.shape} at step {step} for {len(ctx)} envs; batch must "
                          f"return shape ({len(ctx)},), one number per env")
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise RewardError(f"reward {who} returned {float(arr[i])!r} at step {int(ctx.step[i])} of env "
                          f"{int(ctx.env_ids[i])}; rewards must be finite numbers")
    return arr


def call_model(model: RewardModel, ctx: BatchStepContext, label: str | None = None) -> np.ndarray:
    """Run ``model.batch`` with errors that name the model (``label``: its registered name), the step and the env."""
    who = _label(model, label)
    try:
        values = model.batch(ctx)
    except RewardError:
        raise
    except _EnvFailure as f:
        raise RewardError(f"reward {who} raised at step {int(ctx.step[f.index])} of env {int(ctx.env_ids[f.index])}: "
                          f"{f.cause!r}") from f.cause
    except _BadValue as bad:
        raise RewardError(f"reward {who} returned {short_repr(bad.value)} at step {int(ctx.step[0])}"
                          f"{'' if bad.index is None else f' of env {int(ctx.env_ids[bad.index])}'}: {bad.why}") from None
    except Exception as exc:
        envs = [int(e) for e in ctx.env_ids]
        raise RewardError(f"reward {who} raised at step {int(ctx.step[0])} (batch of envs {envs[:8]}"
                          f"{'...' if len(envs) > 8 else ''}): {exc!r}") from exc
    if isinstance(values, (numbers.Real, np.floating, np.integer)) and not isinstance(values, (bool, np.bool_)):
        values = [values]
    return check_rewards(values, model, ctx, label)


def check_needs(model: RewardModel, label: str | None = None) -> tuple[int, int]:
    """``model``'s (history_blocks, score_context): ints (not bools) in their bounds, else a ValueError naming it."""
    out = []
    for attr, hi in (("history_blocks", MAX_HISTORY_BLOCKS), ("score_context", MAX_SCORE_CONTEXT)):
        try:
            out.append(check_int(attr, getattr(model, attr, 0), 0, hi))
        except ValueError as exc:
            raise ValueError(f"reward {_label(model, label)}: {exc} (what the env keeps for it per env)") from None
    return out[0], out[1]


MAX_WEIGHT = 1e6  # bound on a composite part's |weight|: weighted sums of [0, 1] terms stay finite


class CompositeReward(RewardModel):
    """A weighted sum of reward models; each one's value is reported by its name.

    Args:
        parts: {name: (model, weight)}.
    """

    name = "composite"

    def __init__(self, parts: Mapping[str, tuple[RewardModel, float]]):
        if not parts:
            raise ValueError("a composite reward needs at least one part")
        for n, (m, w) in parts.items():
            if not isinstance(m, RewardModel):
                raise TypeError(f"reward {short_repr(n)} is {short_repr(m)}, not a lmm_env.rewards.RewardModel")
            ok = isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, (bool, np.bool_))
            if not (ok and np.isfinite(w) and abs(w) <= MAX_WEIGHT):
                raise ValueError(f"weight {short_repr(w)} of reward {short_repr(n)} is not allowed; use a number with "
                                 f"|weight| <= {MAX_WEIGHT:g} (each term is in [0, 1], so the sum stays finite)")
        self.parts = {n: (m, float(w)) for n, (m, w) in parts.items()}
        needs = [check_needs(m, n) for n, (m, _) in self.parts.items()]
        self.uses_motion = any(m.uses_motion for m, _ in self.parts.values())
        self.history_blocks = max(h for h, _ in needs)
        self.score_context = max(c for _, c in needs)
        self._terms: dict[str, np.ndarray] = {}

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        for m, _ in self.parts.values():
            m.bind(n_envs)

    def check_world(self, sample_rate: int, block_size: int, frame_rate: float, n_mels: int) -> None:
        for n, (m, _) in self.parts.items():
            try:
                m.check_world(sample_rate, block_size, frame_rate, n_mels)
            except ValueError as exc:
                raise ValueError(f"reward {n!r}: {exc}") from None
        # a part may learn what it needs from the world (a judge's window in blocks): ask again
        needs = [check_needs(m, n) for n, (m, _) in self.parts.items()]
        self.history_blocks = max(h for h, _ in needs)
        self.score_context = max(c for _, c in needs)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        for m, _ in self.parts.values():
            m.reset(episode, env_index)

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        total = np.zeros(len(ctx))
        terms = {}
        for n, (m, w) in self.parts.items():
            sub_ctx = ctx if m.uses_motion or ctx.key_down is None else dataclasses.replace(ctx, key_down=None)
            values = call_model(m, sub_ctx, label=n)
            sub_terms = m.terms()
            if sub_terms:
                terms.update(sub_terms)
            terms[n] = values
            total += w * values
        self._terms = terms
        return total

    def terms(self) -> dict[str, np.ndarray]:
        return self._terms
