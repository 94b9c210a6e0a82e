"""``motion-lm``: an improviser (LMMImprovise-v0) that answers its prompt, played by the motion LM.

The agent reads the prompt while the world plays it (the score observation shows the
prompt's frames while it lasts), turns it into notes, and lets the motion LM
(`lmm_env.lm.motion_lm.MotionLM`, LM^M) read them. Then it plays what the LM samples, one
note at a time: each note it plays is read back into the LM, whose GRU state is the memory
of the prompt and of its own play. It plans about 2 s at a time: it draws 4 plans and plays
the one the score LM (LM^V) finds likeliest after everything heard so far, so LM^V's knowledge
of scores chooses among LM^M's motions (``rerank=1``: plain sampling). Keys outside the env's
keyboard are never drawn; a key struck again while it is down is released for one step
first, as a pianist must.

Nothing here trains at play time: the LM was trained on the train splits of the piano,
folk and Bach corpora (``python -m lmm_env.lm.train motion``).
"""
from __future__ import annotations

import math

import numpy as np

from lmm_env._checks import check_int, check_real, check_seed, short_repr
from lmm_env.agents.baselines.improvise import _SILENT, _keys_of
from lmm_env.lm.motion_lm import DUR_EDGES, STEP_SECONDS, MotionLM, encode
from lmm_env.score import Score


class MotionLMAgent:
    """Reads the prompt, then plays the motion LM's continuation of it (sampled with ``seed``).

    Args:
        env: an LMMImprovise-v0 env (single, or its ``unwrapped``).
        seed: the sampling generator's seed; the same seed gives the same improvisation.
        temperature: divides the LM's logits (below 1: safer, above 1: wilder).
        top_p: nucleus sampling mass (1.0: plain sampling).
        model: a `MotionLM`, a ``.safetensors`` file of one, or None (the shipped ``"motion"``).
        rerank: plan ~2 s at a time; with ``rerank=N > 1`` draw N plans and play the one LM^V (the
            score LM, ``load_pretrained("score")``) finds likeliest after what was played: LM^V's
            knowledge of scores choosing among LM^M's motions. 1: plain sampling.
        listen: read the prompt from what was *heard* instead of the score observation: True
            transcribes the episode's audio with the shipped `NoteTranscriber` (h, pretrained on
            the world's pianos), or give a transcriber (anything with ``transcribe(audio,
            sample_rate)`` returning a `Score`). False (default): the score observation.
    """

    oracle = False
    # chosen on the validation split (bench/improviser.py --split validation; BENCHMARKS.md): with LM^V
    # choosing among 4 plans, temperature 1.0 keeps the corpus's diversity and the judge's NLL below it
    TEMPERATURE = 1.0
    TOP_P = 0.95
    RERANK = 4
    CHUNK_STEPS = 40  # a plan covers ~2 s (model steps of 50 ms)

    def __init__(self, env, seed: int | None = 0, temperature: float = TEMPERATURE, top_p: float = TOP_P,
                 model=None, rerank: int = RERANK, listen=False):
        from lmm_env.lm.checkpoint import load_pretrained

        self.sim = _keys_of(env, "MotionLMAgent")
        self.temperature = check_real("temperature", temperature, 0.0, 10.0, lo_open=True)
        self.top_p = check_real("top_p", top_p, 0.0, 1.0, lo_open=True)
        self.rerank = check_int("rerank", rerank, 1, 64)
        if listen is True:
            from lmm_env.lm.transcriber import transcriber_for

            listen = transcriber_for(0)
        elif listen is not False and not callable(getattr(listen, "transcribe", None)):
            raise ValueError(f"listen={short_repr(listen)} is not allowed; use False, True (the shipped transcriber) "
                             "or an object with transcribe(audio, sample_rate) -> Score")
        if listen is not False and not getattr(self.sim, "record_audio", False):
            raise ValueError("listen needs the env's audio: make it with record_audio=True (the default)")
        self.listen = listen
        self._score_lm = load_pretrained("score") if self.rerank > 1 else None
        if check_seed(seed) is None:  # None would make an improvisation irreproducible
            raise ValueError("seed=None is not allowed; use an int >= 0")
        self.seed = int(seed)
        if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
            model = load_pretrained("motion" if model is None else model)
        if not isinstance(model, MotionLM):
            raise ValueError(f"model={short_repr(model)} is not allowed; give a MotionLM, a .safetensors file of "
                             "one, or None (the shipped motion LM)")
        self.model = model
        self.rng = np.random.default_rng(self.seed)  # one generator for the agent's life: episodes differ
        kb = self.sim.keyboard
        self.lo, self.hi, self.n_keys, self.n_actions = kb.lo, kb.hi, kb.n_keys, kb.n_actions
        self.frame_rate = float(self.sim.frame_rate)
        self.reset()

    def reset(self) -> None:
        self._t = 0
        self._prompt_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._sampler = None
        self.prompt_read: Score | None = None
        n = self.n_keys
        self._start = np.full(n, -1, np.int64)
        self._off = np.full(n, -1, np.int64)
        self._vel = np.zeros(n, np.float32)

    # ------------------------------------------------------------------ the prompt
    def prompt_score(self) -> Score:
        """The notes of the prompt as read so far (seconds from the episode's start)."""
        rows = self._prompt_rows
        notes, open_ = [], {}
        for t, (held, onset, vel) in enumerate(rows):
            for k in list(open_):
                if not held[k] or onset[k]:
                    s, v = open_.pop(k)
                    notes.append((k, s, t, v))
            for k in np.flatnonzero(onset & held):
                open_[int(k)] = (t, int(vel[k]))
        for k, (s, v) in open_.items():
            notes.append((k, s, len(rows), v))
        if not notes:
            return Score.from_notes([])
        notes.sort(key=lambda n: (n[1], n[0]))
        k, s, e, v = (np.array(x) for x in zip(*notes))
        fr = self.frame_rate
        return Score(k + self.lo, s / fr, e / fr, np.clip(v, 1, 127), name="prompt")

    def heard_prompt(self) -> Score:
        """The prompt as the transcriber writes down the audio heard so far (seconds from the episode's start)."""
        audio = self.sim.episode_audio(0)
        if not len(audio) or not np.abs(audio).max() > 0:
            return Score.from_notes([])
        return self.listen.transcribe(audio, self.sim.sample_rate)

    def _begin_free_play(self) -> None:
        self._sampler = self.model.sampler(seed=int(self.rng.integers(2**32)), temperature=self.temperature,
                                           top_p=self.top_p, keys=(self.lo, self.hi))
        prompt = self.heard_prompt() if self.listen is not False else self.prompt_score()
        self.prompt_read = prompt  # what the LM read: the prompt as seen, or as heard
        self._sampler.push(encode(prompt))
        # the model's clock (its steps, STEP_SECONDS): the last onset read; the next note's gap counts from it
        steps = lambda x: np.floor(np.asarray(x) / STEP_SECONDS + 0.5).astype(np.int64)  # noqa: E731
        self._last = int(steps(prompt.onsets.max())) if len(prompt) else None
        self._free_start = self._t
        # free play's start in model steps: the plans' clock starts there, and no note starts before it
        self._start_step = self._free_start / self.frame_rate / STEP_SECONDS
        self._first_step = int(math.ceil(self._start_step - 1e-9))
        # every note so far in model steps (pitch, on, off): what LM^V reads when it judges a plan
        self._history = [(int(p), int(a), max(int(b), int(a) + 1))
                         for p, a, b in zip(prompt.pitches, steps(prompt.onsets), steps(prompt.offsets))]
        self._queue: list[tuple[int, int, int, int]] = []  # planned notes (pitch, on, hold, velocity), model steps
        self._pending = None

    def _draw_plan(self, sampler, last):
        """Sample notes (pitch, on, hold, velocity) from ``sampler`` until one starts at or after
        ``CHUNK_STEPS`` past the plan's start; returns them and the last onset."""
        notes = []
        plan_start = self._start_step if last is None else max(last, self._start_step)
        while True:
            if last is None:  # no prompt: the first note starts the free play
                dt, p, v, d = sampler.sample()
                last = self._first_step
            else:
                gap = max(0, math.ceil(self._start_step - last - 1e-9)) if not notes else 0
                dt, p, v, d = sampler.sample(min_dt=gap)
                last = max(last + int(dt), self._first_step)
            notes.append((int(p) + 21, last, int(DUR_EDGES[d]), int(v) * 8 + 4))
            if last >= plan_start + self.CHUNK_STEPS:
                return notes, last

    def _score_lm_nll(self, notes) -> float:
        """LM^V's NLL (nats) of the frames a plan's notes fill, given every note before them."""
        lm = self._score_lm
        lo_t = notes[0][1]
        hi_t = max(notes[-1][1], lo_t + 1)  # the plan's frames: from its first note to its last onset
        w0 = max(0, lo_t - lm.context)
        held = np.zeros((hi_t - w0, 88), bool)
        onset = np.zeros_like(held)
        for p, a, b in self._history + [(p, a, a + hold) for p, a, hold, _ in notes]:
            if b > w0 and a < hi_t:
                held[max(a, w0) - w0: min(b, hi_t) - w0, p - 21] = True
                if a >= w0:
                    onset[a - w0, p - 21] = True
        logits = lm.next_frame_logits(held, onset)
        r = slice(lo_t - w0, hi_t - w0)
        return float(-lm.frame_log_prob(logits[r], held[r], onset[r]).sum())

    def _plan(self) -> None:
        """The next ~CHUNK_STEPS of notes: one sample, or the best of ``rerank`` samples under LM^V."""
        if self.rerank == 1:
            notes, self._last = self._draw_plan(self._sampler, self._last)
        else:
            best = None
            for _ in range(self.rerank):
                branch = self._sampler.copy()
                notes, last = self._draw_plan(branch, self._last)
                nll = self._score_lm_nll(notes)
                if best is None or nll < best[0]:
                    best = (nll, branch, notes, last)
            _, self._sampler, notes, self._last = best
        self._history += [(p, a, a + hold) for p, a, hold, _ in notes]
        self._queue.extend(notes)

    def _next_note(self):
        """The next planned note: (onset step, off step, key column, velocity) in env steps."""
        if not self._queue:
            self._plan()
        p, on_model, hold, v = self._queue.pop(0)
        fr = self.frame_rate
        on = max(int(math.floor(on_model * STEP_SECONDS * fr + 0.5)), self._free_start)
        off = on + max(1, int(math.floor(hold * STEP_SECONDS * fr + 0.5)))
        return on, off, p - self.lo, v

    def _schedule(self, t: int) -> None:
        """Sample notes until the next one starts after step t + 1; put those that start by then on keys."""
        while True:
            if self._pending is None:
                self._pending = self._next_note()
            on, off, k, v = self._pending
            if on > t + 1:
                return
            self._pending = None
            if 0 <= self._start[k] and self._off[k] >= on:  # the key is down just before: release it first
                if self._start[k] >= on - 1:
                    continue  # struck a step ago (or now): no room to lift it; the repeat is dropped
                self._off[k] = on - 1
            self._start[k], self._off[k], self._vel[k] = on, off, max((v - 1) / 126.0, 1e-4)

    # ------------------------------------------------------------------ acting
    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        if episode_start is not None and bool(np.any(episode_start)) and self._t:
            self.reset()
        action = np.full(self.n_actions, _SILENT, np.float32)
        t = self._t
        self._t += 1
        if observation["prompt"][0] > 0.5:
            score = np.asarray(observation["score"])
            held, onset = score[0, 0] > 0.5, score[1, 0] > 0.5
            vel = np.rint(score[2, 0] * 127).astype(np.int64)
            self._prompt_rows.append((held, onset, vel))
            # with prompt_player="agent" the agent plays the prompt as shown (the world ignores these keys otherwise)
            action[: self.n_keys] = np.where(held, np.maximum((vel - 1) / 126.0, 1e-4), _SILENT)
            return action, state
        if self._sampler is None:
            self._begin_free_play()
        self._schedule(t)
        down = (self._start <= t) & (t < self._off)
        action[: self.n_keys] = np.where(down, self._vel, _SILENT)
        return action, state
