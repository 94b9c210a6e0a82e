"""`ImproviseReward` ("improvise"): music with no target, judged by the LMs on what was heard.

LMMImprovise-v0 has no score to follow after its prompt. Each step after the prompt is
judged on what was heard alone:

- ``lm_score`` (LM^V): the score LM's log-likelihood of the ear's reading of the heard
  frames given the heard past, ``exp(min(0, lp + score_ref) / score_temperature)`` per
  frame. To keep a step cheap the LM runs every ``stride`` steps over the last ``window``
  heard frames, and that step's term is the mean over the ``stride`` new frames (the
  return is the same; the credit is late by at most ``stride`` steps).
- ``lm_audio`` (LM^A): the audio LM's log density of the heard log-mel frame given the
  heard ones before, ``exp(min(0, lp - audio_ref) / (n_mels * audio_temperature))``.
- ``collapse_gate`` in [0, 1] multiplies both, so that the ways model rewards are gamed
  (silence, one note, a loop: the RL-Tuner / SMART lesson) earn nothing:
  activity (at least ``min_notes_per_s`` heard onsets per second over the last 4 s, and
  at most ``max_notes_per_s``), variety (at least 3 pitch classes among the onsets of the
  last 8 s) and novelty (0 when the last 12 onset pitches repeat with a period of 1 to 8).
  Onsets here are keys heard for two frames in a row after a frame unheard, so the
  one-frame ghost pitches the ear reads at an attack do not count.
- optionally (``key_weight`` > 0, default 0: off) the gate is also multiplied by
  ``in_key ** key_weight``, where ``in_key`` is the share of the free-play onsets of the
  last 8 s whose pitch class is in the scale of the prompt's key (`lmm_env.improv.key_of`
  of the episode's notes; 1 while there are no onsets, or when no key can be estimated).
- optionally (``max_pc_entropy`` set, default None: off) the gate is also multiplied by
  ``min(1, exp((max_pc_entropy - H) / 0.25))``, where ``H`` is the entropy (bits) of the
  pitch classes of the free-play onsets of the last 8 s (only once there are 8 of them).

During the prompt (the episode's target frames), the step is judged by ``ear_match``
against the prompt, as in LMMPiano-v0. Every part is in ``info["reward_terms"]``.
"""
from __future__ import annotations

import math

import numpy as np

from lmm_env._checks import check_int, check_real
from lmm_env.rewards.base import MAX_WEIGHT, BatchStepContext, EpisodeContext, RewardModel, _positive
from lmm_env.rewards.lm import EarMatchReward, _load

ACTIVITY_FRAMES = 80  # 4 s at 20 fps
VARIETY_FRAMES = 160  # 8 s
LOOP_NOTES = 12
LOOP_PERIODS = 8
_PITCH_CLASS = (np.arange(21, 109)[:, None] % 12 == np.arange(12)[None]).astype(np.int64)  # (88, 12)


class ImproviseReward(RewardModel):
    """See the module docstring. Args: ``ear``, ``score_lm``, ``audio_lm`` (objects or names),
    weights of the two LM terms, their temperatures and references, ``stride``, ``window``,
    ``min_notes_per_s``, ``max_notes_per_s``, ``key_weight`` (0: no key term), ``max_pc_entropy`` (None: no entropy term)."""

    name = "improvise"

    def __init__(self, ear="ear-analytic", score_lm="score", audio_lm="audio", score_weight: float = 0.5,
                 audio_weight: float = 0.5, score_ref: float = 3.0, score_temperature: float = 4.0,
                 audio_ref: float = 0.0, audio_temperature: float = 0.5, stride: int = 20, window: int = 64,
                 min_notes_per_s: float = 0.5, max_notes_per_s: float = 12.0, threshold: float = 0.5,
                 key_weight: float = 0.0, max_pc_entropy: float | None = None):
        self.ear_reward = ear if isinstance(ear, EarMatchReward) else EarMatchReward(ear)
        self.ear = self.ear_reward.ear
        self.lm = _load(score_lm, "score")
        self.audio_lm = _load(audio_lm, "audio")
        self.score_temperature = _positive("score_temperature", score_temperature)
        self.audio_temperature = _positive("audio_temperature", audio_temperature)
        self.stride = check_int("stride", stride, 1, 200)
        self.window = check_int("window", window, self.stride + 1, 1024)
        self.min_notes = check_real("min_notes_per_s", min_notes_per_s, 0.0, math.inf, hi_open=True)
        self.max_notes = check_real("max_notes_per_s", max_notes_per_s, 0.0, math.inf, hi_open=True)
        if not self.min_notes < self.max_notes:
            raise ValueError(f"min_notes_per_s={min_notes_per_s!r} and max_notes_per_s={max_notes_per_s!r} "
                             "must satisfy 0 <= min < max")
        self.key_weight = check_real("key_weight", key_weight, 0.0, math.inf, hi_open=True)
        self.max_pc_entropy = (None if max_pc_entropy is None  # bits
                               else check_real("max_pc_entropy", max_pc_entropy, 0.0, math.log2(12), lo_open=True))
        self.score_weight = check_real("score_weight", score_weight, -MAX_WEIGHT, MAX_WEIGHT)
        self.audio_weight = check_real("audio_weight", audio_weight, -MAX_WEIGHT, MAX_WEIGHT)
        self.score_ref = check_real("score_ref", score_ref, -MAX_WEIGHT, MAX_WEIGHT)  # nats
        self.audio_ref = check_real("audio_ref", audio_ref, -MAX_WEIGHT, MAX_WEIGHT)
        self.threshold = check_real("threshold", threshold, 0.0, 1.0, lo_open=True, hi_open=True)
        self.context = int(self.audio_lm.context)
        self.n_mels = int(self.audio_lm.config["n_mels"])
        self.history_blocks = max(self.ear_reward.history_blocks, self.context)
        self._terms = {}

    def bind(self, n_envs: int) -> None:
        super().bind(n_envs)
        self.ear_reward.bind(n_envs)
        n = n_envs
        self._prompt = np.zeros(n, np.int64)
        self._fr = 20.0
        self._held = np.zeros((n, self.window, 88), bool)  # ring of heard frames (row t % window)
        self._onset = np.zeros((n, self.window, 88), bool)
        self._prev = np.zeros((n, 88), bool)
        self._prev2 = np.zeros((n, 88), bool)
        # rings of this episode's free-play onsets, with their running sums (no window sums per step)
        self._counts = np.zeros((n, ACTIVITY_FRAMES), np.int64)  # onsets per frame
        self._count_sum = np.zeros(n, np.int64)
        self._pc = np.zeros((n, VARIETY_FRAMES, 12), np.int64)  # onset pitch classes per frame
        self._pc_sum = np.zeros((n, 12), np.int64)
        self._notes = np.full((n, LOOP_NOTES + LOOP_PERIODS), -1, np.int64)  # last onset pitches
        self._loop = np.zeros(n, bool)  # do the last notes loop? (changes only when notes are pushed)
        self._since_run = np.zeros(n, np.int64)
        self._last_lm = np.zeros(n)
        self._scale = np.ones((n, 12), bool)  # pitch classes of the prompt's key (all: no key term)

    def check_world(self, sample_rate, block_size, frame_rate, n_mels) -> None:
        from lmm_env.rewards.lm import refuse_audio_lm_world, refuse_score_lm_rate

        self.ear_reward.check_world(sample_rate, block_size, frame_rate, n_mels)
        refuse_audio_lm_world(self.audio_lm, sample_rate, block_size, frame_rate, n_mels)
        refuse_score_lm_rate(self.lm, frame_rate)

    def reset(self, episode: EpisodeContext, env_index: int = 0) -> None:
        self.ear_reward.reset(episode, env_index)
        i = env_index
        self._prompt[i] = min(episode.frames.T, episode.n_steps)
        self._fr = float(episode.frame_rate)
        self._held[i] = self._onset[i] = self._prev[i] = self._prev2[i] = False
        self._forget_notes(np.array([i]))
        self._since_run[i] = 0
        self._last_lm[i] = 0.0
        self._scale[i] = True
        if self.key_weight > 0:
            self._scale[i] = self._prompt_scale(episode)

    @staticmethod
    def _prompt_scale(episode: EpisodeContext) -> np.ndarray:
        """(12,) bool: the scale of the key of the episode's notes (all True when there is none)."""
        from lmm_env.improv import SCALES, key_of

        try:
            tonic, mode = key_of(episode.score)
        except (ValueError, TypeError):
            return np.ones(12, bool)
        member = np.zeros(12, bool)
        member[(tonic + np.asarray(SCALES[mode])) % 12] = True
        return member

    def _forget_notes(self, rows: np.ndarray) -> None:
        self._counts[rows] = 0
        self._count_sum[rows] = 0
        self._pc[rows] = 0
        self._pc_sum[rows] = 0
        self._notes[rows] = -1
        self._loop[rows] = False

    # ------------------------------------------------------------------ parts
    def _score_lm(self, rows: np.ndarray, step: np.ndarray) -> np.ndarray:
        """Mean per-frame lm_score of the last ``stride`` heard frames of envs ``rows`` (batched LM run)."""
        import torch

        W, S = self.window, self.stride
        locals_, sinces, heldw, onw = [], [], [], []
        for r, t in zip(rows, step):
            order = (np.arange(t + 1 - W, t + 1)) % W  # oldest first; rows before the episode are silent
            held, onset = self._held[r, order], self._onset[r, order]
            if t + 1 < W:
                held[: W - t - 1] = onset[: W - t - 1] = False
            local, since = self.lm._np_features(held, onset)
            locals_.append(local)
            sinces.append(since)
            heldw.append(held[-S:])
            onw.append(onset[-S:])
        n = torch.get_num_threads()
        try:
            if n != 1:
                torch.set_num_threads(1)
            with torch.inference_mode():
                logits = self.lm._core(torch.from_numpy(np.stack(locals_)), torch.from_numpy(np.stack(sinces)))
                logits = logits[:, -S:].numpy()
        finally:
            if n != 1:
                torch.set_num_threads(n)
        lp = self.lm.frame_log_prob(logits, np.stack(heldw), np.stack(onw))  # (B, S)
        return np.exp(np.minimum(0.0, lp + self.score_ref) / self.score_temperature).mean(axis=1)

    def batch(self, ctx: BatchStepContext) -> np.ndarray:
        ids, step = ctx.env_ids, ctx.step
        free = step >= self._prompt[ids]
        all_free = bool(free.all())
        # ear_match only judges the prompt's steps; free play needs the ear's reading alone
        ear_part = np.zeros(len(ids)) if all_free else self.ear_reward.batch(ctx)
        heard = self.ear_reward.hear(ctx) > self.threshold
        prev = self._prev[ids]
        onset = heard & prev & ~self._prev2[ids]  # confirmed: heard two frames after an unheard one
        self._prev2[ids] = prev
        self._prev[ids] = heard
        start = step == self._prompt[ids]  # free play starts: forget the prompt's notes
        if start.any():
            self._forget_notes(ids[start])
        slot = step % self.window
        self._held[ids, slot] = heard
        self._onset[ids, slot] = onset
        n_on = onset.sum(axis=1)
        aslot = step % ACTIVITY_FRAMES
        self._count_sum[ids] += n_on - self._counts[ids, aslot]
        self._counts[ids, aslot] = n_on
        vslot = step % VARIETY_FRAMES
        pcs = onset.astype(np.int64) @ _PITCH_CLASS
        self._pc_sum[ids] += pcs - self._pc[ids, vslot]
        self._pc[ids, vslot] = pcs
        pushed = np.flatnonzero(n_on)
        for row in pushed:  # push this step's onset pitches (low to high)
            p = np.flatnonzero(onset[row]) + 21
            buf = self._notes[ids[row]]
            k = min(len(p), len(buf))
            buf[:-k] = buf[k:].copy()
            buf[-k:] = p[-k:]
        if len(pushed):
            seq = self._notes[ids[pushed]]
            tail = seq[:, -LOOP_NOTES:]
            loop = np.zeros(len(pushed), bool)
            for p in range(1, LOOP_PERIODS + 1):
                before = seq[:, LOOP_PERIODS - p: LOOP_PERIODS - p + LOOP_NOTES]
                loop |= (tail == before).all(axis=1) & (before >= 0).all(axis=1)
            self._loop[ids[pushed]] = loop
        out = ear_part if not all_free else np.zeros(len(ids))
        gate = np.zeros(len(ids))
        lm_a = np.zeros(len(ids))
        lm_v = np.zeros(len(ids))
        if free.any():
            # activity: onsets per second over the last 4 s of free play
            secs = np.clip(step - self._prompt[ids] + 1, 1, ACTIVITY_FRAMES) / self._fr
            rate = self._count_sum[ids] / secs
            activity = np.clip(rate / max(self.min_notes, 1e-9), 0.0, 1.0) * np.clip(self.max_notes / np.maximum(rate, 1e-9), 0.0, 1.0)
            variety = np.minimum(np.count_nonzero(self._pc_sum[ids], axis=1) / 3.0, 1.0)
            gate = activity * variety * ~self._loop[ids]
            if self.key_weight > 0:
                pcs_recent = self._pc_sum[ids]
                total = pcs_recent.sum(axis=1)
                inside = (pcs_recent * self._scale[ids]).sum(axis=1)
                in_key = np.where(total > 0, inside / np.maximum(total, 1), 1.0)
                gate = gate * in_key ** self.key_weight
            if self.max_pc_entropy is not None:
                c = self._pc_sum[ids].astype(np.float64)
                total = c.sum(axis=1)
                q = c / np.maximum(total, 1)[:, None]
                h = -(q * np.log2(np.where(q > 0, q, 1.0))).sum(axis=1)
                over = np.where(total >= 8, h - self.max_pc_entropy, 0.0)
                gate = gate * np.minimum(1.0, np.exp(-over / 0.25))
            history = ctx.feature_history[:, ctx.feature_history.shape[1] - self.context:]
            lp = self.audio_lm.log_prob(history, ctx.features)
            lm_a = np.exp(np.minimum(0.0, lp - self.audio_ref) / (self.n_mels * self.audio_temperature))
            # LM^V every `stride` free steps, over the last `window` heard frames
            self._since_run[ids] += free
            run = free & (self._since_run[ids] >= self.stride)
            if run.any():
                rows = np.flatnonzero(run)
                self._last_lm[ids[rows]] = self._score_lm(ids[rows], step[rows])
                self._since_run[ids[rows]] = 0
            lm_v = np.where(run, self._last_lm[ids] * self.stride, 0.0)
            free_part = gate * (self.score_weight * lm_v + self.audio_weight * lm_a)
            out = free_part if all_free else np.where(free, free_part, out)
        self._terms = {"collapse_gate": np.where(free, gate, 1.0), "lm_score": lm_v, "lm_audio": lm_a,
                       "prompt_ear_match": np.where(free, 0.0, ear_part)}
        return out

    def terms(self):
        return self._terms
