"""Rewards over judges from the field (`lmm_env.judges`): an audio judge on what was heard, a
symbolic judge on the notes the ear heard (or the keys played).

Both behave like the built-in LM rewards. Every ``every`` steps (``every="episode"``: once,
at the episode's last step, over all of it) the judge scores the last ``window_seconds`` of
play, and the same window of the target (cached per piece); the reward is::

    judge = exp(min(0, ll(play) - ll(target)) / temperature)      on judged steps, else 0

in [0, 1]: 1.0 when the play is at least as likely as the target's own (exactly 1.0 when the
window is the target's, sample for sample or token for token), falling as the judge finds it
less likely. ``ll`` is the judge's mean log-likelihood per token.
"""
from __future__ import annotations

import hashlib
import math
from collections import OrderedDict

import numpy as np

from lmm_env._checks import check_int, short_repr
from lmm_env.rewards.base import MAX_HISTORY_BLOCKS, EpisodeContext, RewardModel, _positive

EPISODE = "episode"
_CACHE_PIECES = 256  # target scores kept per reward (pieces, LRU)


def _check_every(every):
    if isinstance(every, str):
        if every != EPISODE:
            raise ValueError(f"every={every!r} is not allowed; use a number of steps >= 1 or {EPISODE!r}")
        return EPISODE
    return check_int("every", every, 1, 1_000_000)


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class _JudgeRewardBase(RewardModel):
    """What the audio and symbolic judge rewards share: the schedule, the cache, the formula."""

    def __init__(self, judge, window_seconds: float, every, temperature: float):
        self.judge = judge
        self.window_seconds = _positive("window_seconds", window_seconds)
        self.every = _check_every(every)
        self.temperature = _positive("temperature", temperature)
        self._cache: OrderedDict = OrderedDict()

    def _window_steps(self, frame_rate: float) -> int:
        w = self.window_seconds * frame_rate
        if abs(w - round(w)) > 1e-9 or round(w) < 1:
            raise ValueError(f"window_seconds={self.window_seconds:g} is not a whole number of steps at "
                             f"{frame_rate:g} steps per second; use a multiple of {1 / frame_rate:g} s")
        return int(round(w))

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._n_steps = np.zeros(n_envs, np.int64)
        self._targets: list = [None] * n_envs

    def judged(self, ctx) -> np.ndarray:
        """Which rows of the batch are judged this step."""
        step = np.asarray(ctx.step)
        if self.every == EPISODE:
            return step == self._n_steps[ctx.env_ids] - 1
        return (step + 1) % self.every == 0

    def _cached(self, key, compute):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = compute()
        self._cache[key] = value
        while len(self._cache) > _CACHE_PIECES:
            self._cache.popitem(last=False)
        return value

    def _reward(self, ll_play: np.ndarray, ll_target: np.ndarray) -> np.ndarray:
        """exp(min(0, gap) / temperature); a window with nothing to score (NaN: no token) is
        worth 1.0 beside a target with nothing either, else 0.0 (silence is not "as likely")."""
        ll_play, ll_target = np.asarray(ll_play, np.float64), np.asarray(ll_target, np.float64)
        empty_play, empty_target = np.isnan(ll_play), np.isnan(ll_target)
        gap = np.minimum(np.where(empty_play | empty_target, 0.0, ll_play - ll_target), 0.0)
        out = np.exp(gap / self.temperature)
        out[empty_play != empty_target] = 0.0
        return out


class AudioJudgeReward(_JudgeRewardBase):
    """An `lmm_env.judges.AudioJudge` (MusicGen, any codec + token LM) on what was heard.

    The window is resampled from the env's rate to the judge's. It must be a whole number of
    steps and of the judge's codec frames, and no longer than its context: `check_world`
    refuses the env otherwise.

    Args:
        judge: an `AudioJudge`.
        window_seconds: the audio judged each time (default 1 s); with ``every="episode"``
            ignored: the whole episode, silence appended up to whole codec frames (its last
            ``context_frames`` frames if it is longer than the judge's context).
        every: judge every this many steps (default 20: once a second at 20 steps/s), or
            ``"episode"``.
        temperature: nats per token that cost a factor e.
    """

    name = "audio_judge"

    def __init__(self, judge, window_seconds: float = 1.0, every=20, temperature: float = 1.0):
        from lmm_env.judges.base import AudioJudge

        if not isinstance(judge, AudioJudge):
            raise TypeError(f"judge={short_repr(judge)} is not a lmm_env.judges.AudioJudge")
        super().__init__(judge, window_seconds, every, temperature)
        self.history_blocks = 0  # set by check_world (the window's blocks before this one)

    def _judge_samples(self, env_samples: int, sample_rate: int, what: str) -> int:
        j = self.judge
        n = env_samples * j.sample_rate / sample_rate
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"{what} ({env_samples} samples at {sample_rate} Hz) is not a whole number of samples at "
                             f"the judge's {j.sample_rate} Hz")
        n = int(round(n))
        if n % j.frame_samples:
            raise ValueError(f"{what} is {n / j.frame_samples:g} of the judge's codec frames ({j.frame_samples} "
                             f"samples at {j.sample_rate} Hz); use a window of whole frames (a multiple of "
                             f"{j.frame_samples / j.sample_rate:g} s)")
        if n // j.frame_samples > j.context_frames:
            raise ValueError(f"{what} is {n // j.frame_samples} codec frames, more than the judge reads at once "
                             f"({j.context_frames}); use a shorter window")
        return n

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        self.sample_rate, self.block_size = int(sample_rate), int(block_size)
        if self.every == EPISODE:
            self.history_blocks = 0
            return
        steps = self._window_steps(frame_rate)
        if steps - 1 > MAX_HISTORY_BLOCKS:
            raise ValueError(f"window_seconds={self.window_seconds:g} needs {steps - 1} blocks of history; the most "
                             f"an env keeps is {MAX_HISTORY_BLOCKS}: use every='episode' for whole episodes")
        self._judge_samples(steps * block_size, sample_rate, f"window_seconds={self.window_seconds:g}")
        self.window_steps = steps
        self.history_blocks = steps - 1

    def bind(self, n_envs: int) -> None:
        from lmm_env.rewards.lm import _PerEnvSteps

        super().bind(n_envs)
        self._played: list = [None] * n_envs  # every="episode": the episode's audio so far
        self._target_ll = _PerEnvSteps((), np.float64)  # per step, NaN where not judged (the torch world mirrors it)
        self._target_ll.bind(n_envs)

    def score_audio(self, windows: np.ndarray) -> np.ndarray:
        """Judge windows (B, n) of env audio: resampled to the judge's rate, mean log-likelihood per token."""
        from lmm_env.judges.base import resample

        return np.asarray(self.judge.score(resample(windows, self.sample_rate, self.judge.sample_rate)), np.float64)

    def _episode_clip(self, audio: np.ndarray) -> np.ndarray:
        """A whole episode's audio as the judge reads it with ``every="episode"``: silence appended up
        to whole codec frames, and only its last ``context_frames`` frames if it is longer."""
        from fractions import Fraction

        j = self.judge
        per_frame = Fraction(j.frame_samples * self.sample_rate, j.sample_rate)  # env samples a codec frame
        unit, frames = per_frame.numerator, per_frame.denominator  # `unit` env samples are `frames` whole frames
        a = np.asarray(audio, np.float32)
        a = np.pad(a, (0, (-len(a)) % unit))
        most = (j.context_frames // frames) * unit
        if most < unit:
            raise ValueError(f"the judge reads at most {j.context_frames} codec frames, fewer than the {frames} "
                             "that whole env samples make")
        return a[len(a) - most:] if len(a) > most else a

    def _windows(self, audio: np.ndarray, ends: np.ndarray, steps: int) -> np.ndarray:
        """(len(ends), steps * block) windows of ``audio`` ending with block ``ends[i]``, silence before it starts."""
        B = self.block_size
        padded = np.concatenate([np.zeros((steps - 1) * B, np.float32), np.asarray(audio, np.float32)])
        if len(ends) == 0:
            return np.zeros((0, steps * B), np.float32)
        return np.stack([padded[e * B:(e + steps) * B] for e in np.asarray(ends, np.int64)])

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        audio = episode.target_audio()
        n = int(episode.n_steps)
        self._n_steps[env_index] = n
        if self.every == EPISODE:
            self._played[env_index] = np.zeros(n * self.block_size, np.float32)
            key = ("episode", _digest(audio))
            ll = self._cached(key, lambda: self.score_audio(self._episode_clip(audio)[None]))
            self._set_targets(env_index, audio, {n - 1: float(ll[0])}, n)
            return
        ends = np.arange(self.every - 1, n, self.every)
        key = (self.window_steps, self.every, _digest(audio))

        def compute():
            return dict(zip(ends.tolist(), self.score_audio(self._windows(audio, ends, self.window_steps)).tolist()))

        self._set_targets(env_index, audio, self._cached(key, compute), n)

    def _set_targets(self, env_index: int, audio: np.ndarray, lls: dict, n: int) -> None:
        self._targets[env_index] = audio  # its scores live in _target_ll (the torch world mirrors them)
        dense = np.full(n, np.nan)
        dense[list(lls)] = list(lls.values())
        self._target_ll.set(env_index, dense)

    def batch(self, ctx) -> np.ndarray:
        out = np.zeros(len(ctx))
        if self.every == EPISODE:
            B = self.block_size
            for i, (e, t) in enumerate(zip(ctx.env_ids, ctx.step)):
                self._played[e][t * B:(t + 1) * B] = ctx.audio[i]
        rows = np.flatnonzero(self.judged(ctx))
        if rows.size == 0:
            return out
        if self.every == EPISODE:
            play = np.stack([self._episode_clip(self._played[ctx.env_ids[i]]) for i in rows])
            target = np.stack([self._episode_clip(self._targets[ctx.env_ids[i]]) for i in rows])
        else:
            play = ctx.recent_audio(self.window_steps)[rows]
            target = np.stack([self._windows(self._targets[ctx.env_ids[i]], np.array([int(ctx.step[i])]),
                                             self.window_steps)[0] for i in rows])
        ll_target = self._target_ll.get(ctx.env_ids[rows], ctx.step[rows])
        same = np.all(play == target, axis=1)  # the target's own window: exactly 1.0, whatever the batch
        values = np.ones(len(rows))
        if not same.all():
            values[~same] = self._reward(self.score_audio(play[~same]), ll_target[~same])
        out[rows] = values
        return out


class SymbolicJudgeReward(_JudgeRewardBase):
    """An `lmm_env.judges.SymbolicJudge` (a causal LM over miditok tokens) on notes.

    ``source="heard"`` (default): the notes the ear hears (its activations above
    ``threshold``, as the score LM reward reads them; the ear is shared with an
    `EarMatchReward` given as ``ear``), against the ear's reading of the target's audio: like
    with like, so the ear's own errors cancel. ``source="played"``: the keys the agent holds
    (a motion-space reward, for baselines), against the score. Notes that sound into the
    window start at its start; velocities are not read (every note is velocity 80).

    Args:
        judge: a `SymbolicJudge`. window_seconds (4 s), every (20 steps, or "episode"),
        temperature (1 nat per token): as `AudioJudgeReward`. ear (default the analytic ear; an
        `EarMatchReward` shares its reading), threshold (0.5): the ear's, with ``source="heard"`` only.
    """

    name = "symbolic_judge"

    def __init__(self, judge, window_seconds: float = 4.0, every=20, temperature: float = 1.0, ear=None,
                 threshold: float | None = None, source: str = "heard"):
        from lmm_env._checks import check_real
        from lmm_env.judges.base import SymbolicJudge
        from lmm_env.rewards.lm import EarMatchReward

        if not isinstance(judge, SymbolicJudge):
            raise TypeError(f"judge={short_repr(judge)} is not a lmm_env.judges.SymbolicJudge")
        super().__init__(judge, window_seconds, every, temperature)
        if source not in ("heard", "played"):
            raise ValueError(f"source={short_repr(source)} is not allowed; use 'heard' (the ear) or 'played' (the keys)")
        self.source = source
        self._reads_ids = hasattr(judge, "ids") and hasattr(judge, "score_ids")  # a CausalLMJudge: compare tokens
        self.uses_motion = source == "played"
        if source == "played" and (ear is not None or threshold is not None):
            raise ValueError("ear= and threshold= read the heard notes; source='played' reads the keys: drop them, "
                             "or use source='heard'")
        self.threshold = check_real("threshold", 0.5 if threshold is None else threshold, 0.0, 1.0, lo_open=True,
                                    hi_open=True)
        ear = "ear-analytic" if ear is None else ear
        self._ear_reward = ear if isinstance(ear, EarMatchReward) else (EarMatchReward(ear) if source == "heard" else None)
        self.history_blocks = self._ear_reward.history_blocks if self._ear_reward is not None else 0

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        if self._ear_reward is not None:
            self._ear_reward.check_world(sample_rate, block_size, frame_rate, n_mels)
        self.frame_rate = float(frame_rate)
        self.window_steps = None if self.every == EPISODE else self._window_steps(frame_rate)

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self._rolls: list = [None] * n_envs
        if self._ear_reward is not None and self._ear_reward.__dict__.get("n_envs") != n_envs:
            self._ear_reward.bind(n_envs)

    def notes(self, held: np.ndarray, start: int, end: int):
        """The notes of a held roll (T, 88) between steps ``start`` and ``end`` (inclusive), as a Score
        with times from the window's start."""
        from lmm_env.score import Score

        w = held[max(start, 0):end + 1]
        if start < 0:
            w = np.concatenate([np.zeros((-start, w.shape[1]), bool), w])
        padded = np.concatenate([np.zeros((1, w.shape[1]), bool), w, np.zeros((1, w.shape[1]), bool)])
        d = np.diff(padded.astype(np.int8), axis=0)  # +1: the key goes down at that step; -1: it went up
        on_k, on_t = np.nonzero(d.T == 1)  # key-major: each key's starts and ends alternate in order
        off_k, off_t = np.nonzero(d.T == -1)
        fr = self.frame_rate
        return Score(on_k + 21, on_t / fr, off_t / fr, np.full(len(on_k), 80), name="window")

    def _target_roll(self, episode: EpisodeContext) -> np.ndarray:
        n = int(episode.n_steps)
        if self.source == "played":
            held = np.zeros((n, 88), bool)
            t = min(episode.frames.T, n)
            held[:t] = episode.frames.held[:t]
            return held
        ear, B, h = self._ear_reward.ear, episode.block_size, self._ear_reward.history_blocks
        audio = np.concatenate([np.zeros(h * B, np.float32), episode.target_audio()])
        windows = np.stack([audio[t * B:(t + h + 1) * B] for t in range(n)])
        return ear.activations(windows) > self.threshold

    def _span(self, t: int, n: int) -> tuple[int, int]:
        return (0, n - 1) if self.every == EPISODE else (t - self.window_steps + 1, t)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        n = int(episode.n_steps)
        self._n_steps[env_index] = n
        target = self._target_roll(episode)
        self._rolls[env_index] = np.zeros((n, 88), bool)
        ends = [n - 1] if self.every == EPISODE else list(range(self.every - 1, n, self.every))
        key = (self.source, self.every, self.window_steps, _digest(target))

        def compute():
            notes = [self.notes(target, *self._span(e, n)) for e in ends]
            ids = [self.judge.ids(s) for s in notes] if self._reads_ids else [None] * len(ends)
            lls = self.judge.score_ids(ids) if self._reads_ids else self.judge.score_notes(notes)
            return {e: (i, float(v)) for e, i, v in zip(ends, ids, lls)}

        self._targets[env_index] = self._cached(key, compute)  # judged step -> (the target's ids, its score)

    def batch(self, ctx) -> np.ndarray:
        if self.source == "heard":
            held = self._ear_reward.hear(ctx) > self.threshold
        else:
            held = np.asarray(ctx.key_down, bool)
        for i, (e, t) in enumerate(zip(ctx.env_ids, ctx.step)):
            self._rolls[e][t] = held[i]
        out = np.zeros(len(ctx))
        rows = np.flatnonzero(self.judged(ctx))
        if rows.size == 0:
            return out
        notes, ids, same, ll_target = [], [], [], []
        for i in rows:
            e, t = int(ctx.env_ids[i]), int(ctx.step[i])
            target_ids, ll = self._targets[e][t]
            score = self.notes(self._rolls[e], *self._span(t, int(self._n_steps[e])))
            notes.append(score)
            ids.append(self.judge.ids(score) if self._reads_ids else None)
            same.append(self._reads_ids and ids[-1] == target_ids)  # the target's own tokens: exactly 1.0
            ll_target.append(ll)
        values = np.ones(len(rows))
        todo = np.flatnonzero(~np.array(same, bool))
        if todo.size:
            if self._reads_ids:
                lls = self.judge.score_ids([ids[j] for j in todo])
            else:
                lls = self.judge.score_notes([notes[j] for j in todo])
            values[todo] = self._reward(np.asarray(lls, np.float64), np.asarray(ll_target)[todo])
        out[rows] = values
        return out
