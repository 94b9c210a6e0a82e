"""LMMImprovise-v0 (LM^M): make music with no target, after an optional prompt."""
from __future__ import annotations

import math

import numpy as np

from lmm_env._checks import short_repr
from lmm_env.envs.core import _ONSET_BIT, Episode, PianoSim
from lmm_env.envs.piano import PianoTaskEnv
from lmm_env.envs.piano_vector import PianoTaskVectorEnv
from lmm_env.score import FrameScore
from lmm_env.synth.base import N_KEYS

PROMPT_PLAYERS = ("world", "agent")


class ImproviseSim(PianoSim):
    """The piano world with a prompt and then free play (see `LMMImproviseEnv`)."""

    score_arg = "prompt"

    def __init__(self, n_envs: int = 1, *, prompt="folk", prompt_seconds: float = 4.0, length_seconds: float = 20.0,
                 prompt_player: str = "world", reward="improvise", **kwargs):
        if prompt_player not in PROMPT_PLAYERS:
            raise ValueError(f"prompt_player={short_repr(prompt_player)} is not allowed; "
                             f"use one of {list(PROMPT_PLAYERS)}")
        for name, v, lo in (("prompt_seconds", prompt_seconds, 0.0), ("length_seconds", length_seconds, 0.5)):
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            if not (ok and math.isfinite(v) and lo <= v <= 3600):
                raise ValueError(f"{name}={short_repr(v)} must be a number of seconds in [{lo}, 3600]")
        for fixed in ("score", "layout"):
            if fixed in kwargs:
                raise ValueError(f"{fixed}= is not an argument of LMMImprovise-v0; the prompt is prompt= "
                                 "(a corpus name, MIDI path, Score, or None) and its length prompt_seconds=")
        if "tail" in kwargs:
            raise ValueError("tail= is not an argument of LMMImprovise-v0: an episode is prompt_seconds of prompt, "
                             "then length_seconds of free play (no target to ring out)")
        self.prompt_player = prompt_player
        self.prompt_seconds, self.length_seconds = float(prompt_seconds), float(length_seconds)
        self.has_prompt = prompt is not None and self.prompt_seconds > 0
        super().__init__(n_envs, score=prompt if self.has_prompt else "folk", reward=reward, tail=0.0, **kwargs)
        self.prompt_steps, self.free_steps = self._steps()
        if self.free_steps < 1:  # nothing would be improvised, yet metrics would be reported
            raise ValueError(
                f"prompt_seconds={prompt_seconds:g}, length_seconds={length_seconds:g} and max_seconds="
                f"{self.max_seconds} leave no step of free play at frame_rate={self.frame_rate:g}; make max_seconds "
                "longer than the prompt (it caps the whole episode, prompt first), or length_seconds at least a step")
        self.prompt_len = np.zeros(self.n_envs, np.int64)  # this episode's prompt steps, per env

    def _steps(self) -> tuple[int, int]:
        """(prompt steps, free steps) of an episode."""
        prompt_steps = int(round(self.prompt_seconds * self.frame_rate)) if self.has_prompt else 0
        free_steps = int(round(self.length_seconds * self.frame_rate))
        if self.max_seconds is not None:  # a cap on the whole episode, prompt first
            cap = max(1, int(round(self.max_seconds * self.frame_rate)))
            prompt_steps = min(prompt_steps, cap)
            free_steps = min(free_steps, cap - prompt_steps)
        return prompt_steps, free_steps

    def resolve_pool(self, score, split):
        return super().resolve_pool(score, split) if self.has_prompt else [None]

    def check_pool_bytes(self) -> None:
        # every episode has the same length (a given prompt is cut to prompt_seconds)
        steps = sum(self._steps())
        self.check_episode_bytes(steps, f"prompt_seconds={self.prompt_seconds:g} and length_seconds="
                                        f"{self.length_seconds:g} at frame_rate={self.frame_rate:g}")

    def check_length(self, score):
        return score  # only the prompt's first seconds are made into frames (make_episode)

    def make_episode(self, i, rng, score_index=None, score=None) -> Episode:
        P = self.prompt_steps
        if not self.has_prompt and score_index is not None and (  # a pool of one: the empty prompt
                isinstance(score_index, (bool, np.bool_)) or not isinstance(score_index, (int, np.integer))
                or score_index != 0):
            raise ValueError(f"options['score_index']={short_repr(score_index)} is not allowed: this env has no "
                             "prompt pool (prompt=None or prompt_seconds=0), only index 0; give options={'score': "
                             "...} for a one-off prompt, or make the env with prompt=")
        if self.has_prompt or score is not None:
            s = self.pick_score(rng, score_index, score)
            if s.duration > self.prompt_seconds + 1.0:  # only the prompt's frames are needed
                s = s.trim(0.0, self.prompt_seconds + 1.0)
            frames = s.frames(self.frame_rate)
            name = s.name
            P = P if self.has_prompt else int(round(self.prompt_seconds * self.frame_rate))
        else:
            frames, name = FrameScore(self.frame_rate, np.zeros((0, N_KEYS), bool), np.zeros((0, N_KEYS), bool),
                                      np.zeros((0, N_KEYS), np.uint8), "silence"), "no prompt"
        held = np.zeros((P, N_KEYS), bool)
        onset = np.zeros((P, N_KEYS), bool)
        vel = np.zeros((P, N_KEYS), np.uint8)
        n = min(P, frames.T)
        held[:n], onset[:n], vel[:n] = frames.held[:n], frames.onset[:n], frames.velocity[:n]
        if n:  # a note still held at the prompt's end is released one frame early (a clean cut)
            held[n - 1] &= onset[n - 1] | ~held[n - 1]
        prompt = FrameScore(self.frame_rate, held, onset & held, np.where(held, vel, 0).astype(np.uint8), name)
        return Episode(frames=prompt, n_steps=P + self.free_steps, reference=None, name=name)

    def begin(self, i, episode, rng) -> None:
        self.prompt_len[i] = episode.frames.T
        super().begin(i, episode, rng)

    def spaces(self):
        from gymnasium import spaces

        obs, act = super().spaces()
        obs = spaces.Dict(dict(obs.spaces, prompt=spaces.Box(0.0, 1.0, (1,), np.float32)))
        return obs, act

    def observation(self):
        obs = super().observation()
        obs["prompt"] = (self.t < self.prompt_len)[:, None].astype(np.float32)
        return obs

    def step(self, action):
        if self.prompt_player == "world" and self.prompt_steps:
            in_prompt = self.t < self.prompt_len
            if in_prompt.any():  # the world plays the prompt as written; the agent's keys are ignored
                a = self.keyboard.check_action(action).copy()
                codes = self.tapes.tape[self.tape_rows(np.flatnonzero(in_prompt), self.t[in_prompt]), self.lo_col : self.hi_col]
                vel = (codes & 0x7F).astype(np.float32)
                keys = np.where(codes > 0, np.maximum((vel - 1.0) / 126.0, 1e-4), -1.0)
                # a re-struck note needs one step up: release keys whose onset is now but are still down
                restrike = (codes >= _ONSET_BIT) & self.keyboard.down[in_prompt]
                keys[restrike] = -1.0
                a[in_prompt, : self.keyboard.n_keys] = keys
                action = a
        return super().step(action)

    def episode_metrics(self, i: int) -> dict[str, float]:
        """Improvisation metrics of the free part (`lmm_env.improv.improv_metrics`)."""
        from lmm_env import improv

        perf = self.performance_score(i)
        start = self.frames[i].T / self.frame_rate
        keep = perf.onsets >= start - 1e-9
        from lmm_env.score import Score

        free = Score(perf.pitches[keep], perf.onsets[keep] - start, perf.offsets[keep] - start,
                     perf.velocities[keep], name="improvisation") if keep.any() else Score.from_notes([])
        key = None
        prompt = self.frames[i].to_score() if self.frames[i].T else None
        if prompt is not None and len(prompt):
            key = improv.key_of(prompt)
        out = improv.improv_metrics(free, duration=max(self.length_seconds, 1e-3), key=key)
        return {k: float(v) for k, v in out.items()}


class LMMImproviseEnv(PianoTaskEnv):
    """Make music with no score to follow: ``LMMImprovise-v0``, the motion LM, LM^M.

    ## Description
    An episode is an optional *prompt* (the first ``prompt_seconds`` of a corpus piece,
    shown as the score observation while it lasts) and then ``length_seconds`` of free
    play. The prompt is played by the world as written (``prompt_player="world"``, the
    agent's keys are ignored meanwhile) or by the agent (``"agent"``, judged like
    LMMPiano-v0). After it there is no target: the reward judges what was heard alone.

    ``gym.make("LMMImprovise-v0")`` makes this env; ``gym.make_vec("LMMImprovise-v0",
    num_envs=N)`` its batched twin (`LMMImproviseVectorEnv`).

    ## Action Space
    ``Box(-1, 1, (n_keys,), float32)``, as LMMPiano-v0 (the known, identity keyboard).

    ## Observation Space
    LMMPiano-v0's ``"score"`` (the prompt's frames while it lasts, then empty), ``"audio"``,
    ``"key_state"``, plus ``"prompt"``: ``Box(0, 1, (1,))``, 1 while the prompt lasts.

    ## Rewards
    ``reward="improvise"`` (default, `lmm_env.rewards.ImproviseReward`): after the prompt,
    LM^V on the ear's reading of what was heard given the heard past and LM^A on the heard
    audio given the heard past, times a gate that makes silence, a single note or a loop
    earn nothing; during the prompt, ``ear_match`` against it. ``pairs=K`` / ``ear=``
    choose the ear. Every part is in ``info["reward_terms"]``.

    ## Starting State
    All keys up, silence; a prompt piece drawn from the pool (``options={"score_index": i}``
    or ``{"score": ...}`` choose one).

    ## Episode End
    Truncation after the prompt plus ``length_seconds``. ``info["metrics"]`` holds the
    improvisation metrics of the free part (`lmm_env.improv.improv_metrics`): the NLL under
    an independent *judge* LM (not the reward's: trained on another split), pitch-class
    entropy, note density, repetition and the share of notes in the prompt's key (or the
    improvisation's own key without a prompt). `lmm_env.improv.corpus_reference` gives the
    same statistics of held-out corpus pieces, for comparison.

    ## Arguments
    * ``prompt``: a corpus name (default ``"folk"``), MIDI path, `Score`, list of those, or
      None (no prompt). ``split`` chooses the corpus split.
    * ``prompt_seconds`` (4.0, in [0, 3600]; 0: no prompt), ``length_seconds`` (20.0, in
      [0.5, 3600]), ``prompt_player`` (``"world"`` or ``"agent"``).
    * ``max_seconds``: a cap on the whole episode (prompt first, then free play); it must
      leave at least one step of free play.
    * LMMPiano-v0's ``keys``, ``synth``, ``frame_rate``, ``sample_rate``, ``lookahead``,
      ``reward``, ``pairs``, ``ear``, ``n_mels``, ``record_audio``, ``render_mode``.

    ``score=`` (the prompt is ``prompt=``), ``layout=`` and ``tail=`` (there is no target
    to ring out) are refused. Without a prompt pool (``prompt=None`` or
    ``prompt_seconds=0``) ``reset(options={"score_index": i})`` takes only ``i = 0``.

    ## Version History
    * v0: the task as above. Within v0: ``max_seconds`` was added (a cap on prompt plus free
      play, as every task has), and arguments are checked when the env is made.
    """

    def __init__(self, prompt="folk", prompt_seconds: float = 4.0, length_seconds: float = 20.0,
                 prompt_player: str = "world", render_mode: str | None = None, record_audio: bool = True, **kwargs):
        self._setup(lambda: ImproviseSim(1, prompt=prompt, prompt_seconds=prompt_seconds,
                                         length_seconds=length_seconds, prompt_player=prompt_player,
                                         record_audio=record_audio, **kwargs), render_mode)


class LMMImproviseVectorEnv(PianoTaskVectorEnv):
    """``num_envs`` LMMImprovise-v0 envs stepped as one batch (same arguments as `LMMImproviseEnv`)."""

    sim_class = ImproviseSim
    task_id = "LMMImprovise-v0"
