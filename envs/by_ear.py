"""LMMByEar-v0 (h: audio -> motion): hear a recording, play it back on the piano."""
from __future__ import annotations

import math
import os
from collections import OrderedDict

import numpy as np

from lmm_env import metrics as metrics_mod
from lmm_env._checks import check_int, short_repr
from lmm_env.audio import SOURCE_RATES, load_audio
from lmm_env.envs.core import Episode, PianoSim
from lmm_env.envs.piano import PianoTaskEnv
from lmm_env.envs.piano_vector import PianoTaskVectorEnv
from lmm_env.score import FrameScore, Score
from lmm_env.synth import Synth, make_synth

_HEARD_VELOCITY = 64  # the ear hears pitch and time, not velocity: its reading carries a flat velocity


class TargetNotFoundError(FileNotFoundError, ValueError):
    """A ``target=`` file that does not exist (also a ValueError, as this was before)."""


class _Recording:
    """A user's target recording (and its optional reference notes)."""

    def __init__(self, audio: np.ndarray, reference: Score | None, name: str):
        self.audio, self.reference, self.name = audio, reference, name


class ByEarSim(PianoSim):
    """The world of LMMPiano-v0 with an audio target instead of a score (see `LMMByEarEnv`)."""

    CACHE = 64  # target renders and ear readings kept per sim (pieces of the pool)

    def __init__(self, n_envs: int = 1, *, target=None, reference=None, target_synth=None,
                 target_sample_rate: int | None = None, **kwargs):
        if target is None and reference is not None:
            raise ValueError("reference= is the reference MIDI of a target recording; it needs target=")
        if reference is not None:
            import pretty_midi

            if not isinstance(reference, (Score, pretty_midi.PrettyMIDI, str, os.PathLike)):
                raise ValueError(f"reference={short_repr(reference)} is not allowed; use a MIDI path, a PrettyMIDI "
                                 "or a lmm_env.score.Score")
        if target_sample_rate is not None:  # checked now: a bad rate failed (or took minutes) only when loading
            if target is None:
                raise ValueError("target_sample_rate= is the sample rate of a target array; without target= the "
                                 "corpus pieces are rendered at the env's sample_rate")
            if isinstance(target, (str, os.PathLike)):
                raise ValueError(f"target_sample_rate= is not allowed with target={short_repr(os.fspath(target))}: "
                                 "a file carries its own sample rate (another rate than the env's is resampled)")
            try:
                target_sample_rate = check_int("target_sample_rate", target_sample_rate, *SOURCE_RATES)
            except ValueError as exc:
                raise ValueError(f"{exc} Hz (samples per second of the target array, e.g. 44100)") from None
        if target is not None and target_synth is not None:  # it would be silently ignored
            what = short_repr(os.fspath(target) if isinstance(target, (str, os.PathLike)) else target)
            raise ValueError(f"target_synth={short_repr(target_synth)} is not allowed with target={what}: it is the "
                             "instrument corpus targets are rendered through, and a recording is heard as it is; "
                             "drop target_synth, or drop target= to play corpus pieces")
        if isinstance(target, (str, os.PathLike)) and not os.path.exists(target):
            raise TargetNotFoundError(f"target file {short_repr(os.fspath(target))} does not exist")
        self._target_spec = (target, reference, target_sample_rate)
        # pairs=K with rendered targets: the ear of K pairs of the target's instrument (it reads the target)
        rendered = target is None and target_synth is not None and not (isinstance(target_synth, str)
                                                                          and target_synth == "world")
        from lmm_env.synth.room import check_room, with_room

        room = check_room(kwargs.get("room"))  # targets are recorded in the world's room too
        if rendered and room is not None and isinstance(target_synth, (str, os.PathLike)):
            target_synth = with_room(target_synth, room, kwargs.get("sample_rate", 16000))
        elif rendered and room is not None and isinstance(target_synth, Synth):
            target_synth = with_room(target_synth, room, target_synth.sample_rate)
        self._pairs_synth = target_synth if rendered else None
        super().__init__(n_envs, **kwargs)
        if target_synth is None or target_synth == "world":
            self.target_synth = self.synth
        else:
            try:
                if not isinstance(target_synth, (str, os.PathLike, Synth)):  # make_synth would repr it whole
                    raise ValueError("use None, 'world', a synth name, a .sf2/.sf3 path or a lmm_env.synth.Synth")
                self.target_synth = make_synth(target_synth, self.sample_rate)
            except ValueError as exc:
                raise ValueError(f"target_synth={short_repr(target_synth)} is not allowed: {exc}") from None
        self.target_synth_name = getattr(self.target_synth, "name", str(target_synth))
        self.listen_ear = self._reward_ear()
        self._cache: OrderedDict = OrderedDict()
        self.target_feats = np.zeros((self.n_envs, 0, self.n_mels), np.float32)
        self.target_audios: list[np.ndarray | None] = [None] * self.n_envs

    # ------------------------------------------------------------------ targets
    def resolve_pool(self, score, split):
        target, reference, source_rate = self._target_spec
        if target is None:
            return super().resolve_pool(score, split)
        # only the first max_seconds are read (a long file is not decoded past them)
        audio, duration = load_audio(target, self.sample_rate, "target", source_rate=source_rate,
                                     max_seconds=self.max_seconds, return_seconds=True)
        if self.max_seconds is not None:
            audio = audio[: int(round(self.max_seconds * self.sample_rate))]
        ref = None
        if reference is not None:
            ref = super().resolve_pool([reference], split)[0]
            # the reference is the notes of the recording (used only for metrics): a wrong file is refused by
            # onsets, not loudness, so reverberation, release tails and room tone pass (lmm_env.pairs.match_problem)
            from lmm_env.pairs import match_problem

            problem = match_problem(audio, ref, self.sample_rate, seconds=duration)
            if problem is not None:
                raise ValueError(f"reference={short_repr(reference)} does not match the target audio: {problem} "
                                 "(the reference is the notes of the recording, used only for metrics; drop it to "
                                 "play the recording without metrics)")
            ref = self.trimmed(ref)  # metrics compare the span played
        name = os.path.basename(os.fspath(target)) if isinstance(target, (str, os.PathLike)) else "target-array"
        return [_Recording(audio, ref, name)]

    def episode_step_bytes(self) -> int:
        # each env also keeps its target's audio and log-mel (and the reward its own copy of the audio)
        return super().episode_step_bytes() + 4 * (2 * self.block_size + self.n_mels)

    def check_pool_bytes(self) -> None:
        item = self.pool[0] if isinstance(self.pool, list) else None
        if isinstance(item, _Recording):
            steps = math.ceil(len(item.audio) / self.block_size)
            seconds = len(item.audio) / self.sample_rate
            self.check_episode_bytes(steps, f"target {short_repr(item.name)} ({seconds:,.0f} s)")
        else:
            super().check_pool_bytes()

    def _resolve_ear(self, pairs, ear, synth, what: str = "synth"):
        if self._pairs_synth is not None:  # rendered targets: their instrument, not the world's
            from lmm_env import pairs as pairs_mod

            if pairs is not None and ear is None:  # checked now: an ear may be fitted before target_synth is built
                pairs_mod._check_synth(self._pairs_synth, self.sample_rate, "target_synth")
            return super()._resolve_ear(pairs, ear, self._pairs_synth, "target_synth")
        return super()._resolve_ear(pairs, ear, synth, what)

    def _reward_ear(self):
        """The ear the reward listens with (it also reads the target audio, so both agree)."""
        def find(model, depth=0):
            ear = getattr(model, "ear", None)
            if hasattr(ear, "transcribe"):
                return ear
            for sub, _ in getattr(model, "parts", {}).values() if depth < 4 else ():
                found = find(sub, depth + 1)
                if found is not None:
                    return found
            return None

        ear = find(self.reward)
        if ear is None:
            ear = self.ear
        if ear is None or isinstance(ear, str):
            from lmm_env.lm import load_pretrained

            ear = load_pretrained(ear or "ear-analytic")
        return ear

    def _render(self, item):
        """(audio, reference Score or None, ear reading FrameScore, name) of a pool item."""
        if isinstance(item, _Recording):
            audio, reference, name = item.audio, item.reference, item.name
            n_steps = int(math.ceil(len(audio) / self.block_size))
            # reference: the MIDI's own times, never snapped to the frame grid (issue 23)
        else:
            score = self.trimmed(item)
            frames = score.frames(self.frame_rate)
            reference = score  # the score's own times, never snapped to the frame grid (issue 23)
            n_steps = frames.T + int(math.ceil(self.tail * self.frame_rate))
            # the target sounds at the score's own times, as a recording would, not on the agent's grid
            audio = self.target_synth.render(score, tail=n_steps / self.frame_rate)
            name = score.name
        n = n_steps * self.block_size
        audio = np.ascontiguousarray(np.pad(np.asarray(audio, np.float32)[:n], (0, max(0, n - len(audio)))))
        if reference is not None:
            # what the target lets a listener hear: notes held on by the sustain pedal sound until
            # it lifts (as MAESTRO's transcription metrics extend them)
            reference = reference.sustained(keep_pedal=True)
        held, onset = self.listen_ear.transcribe(audio)
        heard = FrameScore(self.frame_rate, held, onset & held,
                           np.where(held, _HEARD_VELOCITY, 0).astype(np.uint8), name)
        return audio, reference, heard, name

    def make_episode(self, i, rng, score_index=None, score=None) -> Episode:
        if score is not None:
            item, key = self.given_score(score, score_index), None
        else:
            key = self.pool_index(rng, score_index)
            item = self.pool[key]
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            audio, reference, heard, name, feats = self._cache[key]
        else:
            audio, reference, heard, name = self._render(item)
            feats = self.features(audio)
            if key is not None:
                self._cache[key] = (audio, reference, heard, name, feats)
                while len(self._cache) > self.CACHE:
                    self._cache.popitem(last=False)
        held = None if reference is None else reference.frames(self.frame_rate).held  # frame F1's grid target
        reference = None if reference is None else metrics_mod.playable_notes(reference)  # unisons count once
        return Episode(frames=heard, n_steps=len(feats), reference=reference, target_audio=audio, name=name,
                       target_features=feats, reference_held=held)

    def begin(self, i, episode, rng) -> None:
        super().begin(i, episode, rng)
        n = int(episode.n_steps)
        need = n + self.lookahead + 1
        if self.target_feats.shape[1] < need:
            grown = np.full((self.n_envs, max(need, 2 * self.target_feats.shape[1]), self.n_mels),
                            self.features.silence, np.float32)
            grown[:, : self.target_feats.shape[1]] = self.target_feats
            self.target_feats = grown
        self.target_feats[i] = self.features.silence
        self.target_feats[i, :n] = episode.target_features
        self.target_audios[i] = episode.target_audio

    # ------------------------------------------------------------------ observations
    def spaces(self):
        from gymnasium import spaces

        _, act = super().spaces()
        obs = spaces.Dict({
            "target": spaces.Box(self.features.silence, 30.0, (self.lookahead + 1, self.n_mels), np.float32),
            "audio": spaces.Box(self.features.silence, 30.0, (self.n_mels,), np.float32),
            "key_state": spaces.Box(0.0, 1.0, (self.keyboard.n_actions,), np.float32),
        })
        return obs, act

    def observation(self) -> dict[str, np.ndarray]:
        if self.n_envs == 1:
            t0 = int(self.t[0])
            target = self.target_feats[:, t0 : t0 + self.lookahead + 1].copy()
        else:
            target = self.target_feats[self._arange_n[:, None], self.t[:, None] + self._look]
        kb = self.keyboard
        key_state = kb.down.astype(np.float32)
        if kb.pedal:
            key_state = np.concatenate([key_state, kb.pedal_down[:, None].astype(np.float32)], axis=1)
        return {"target": target, "audio": self.last_features.copy(), "key_state": key_state}


class LMMByEarEnv(PianoTaskEnv):
    """Hear a recording and play it back: ``LMMByEar-v0``, the mapping h (audio -> motion), with no score.

    ## Description
    The agent hears the *target audio* a little ahead of now and what its own keys made,
    and must reproduce the target on the piano. Neither the observation nor the reward
    reads the target's notes: the observation holds its log-mel frames; the reward compares
    what was heard with the target *audio*, through the ear (``ear_match``: the ear's
    reading of the heard block against its reading of the target, and the loudness of
    both), LM^A (``audio_lm``: the heard frame's log density given the heard past,
    against the target audio's own) and LM^V (``score_lm``: the ear's reading of what was
    heard, given the ear's reading of the target so far). The target's notes, when there
    are any, are used only for ``info["metrics"]``.

    ``gym.make("LMMByEar-v0")`` makes this env; ``gym.make_vec("LMMByEar-v0", num_envs=N)``
    its batched twin (`LMMByEarVectorEnv`).

    ## Action Space
    ``Box(-1, 1, (n_keys,), float32)``, as LMMPiano-v0 (identity layout).

    ## Observation Space
    ``Dict`` of:

    * ``"target"``: ``Box(log(1e-8), 30, (lookahead + 1, n_mels), float32)``, log-mel frames
      of the target audio from the step being played (row 0) to ``lookahead`` steps ahead
      (silence past the end), the same features as ``"audio"``.
    * ``"audio"``: log-mel of what was heard in the last step (silence at reset).
    * ``"key_state"``: which keys are down (by action index).

    Whole-recording agents (e.g. `lmm_env.agents.GradientAgent`) may listen to the whole
    target first with ``env.unwrapped.target_audio()``; ``reference_score()`` gives the
    hidden reference notes, for oracles and metrics only.

    ## Rewards
    Default ``"closed_loop"`` (as LMMPiano-v0, each term in [0, 1] per step), where the
    "target" the terms compare to is the ear's reading of the target audio and the target
    audio itself; ``pairs=K`` (or ``ear=``) chooses the ear for both: with corpus targets
    rendered through ``target_synth``, the ear of K pairs of *that* instrument (the target's);
    else of the world's ``synth`` (``env.unwrapped.sim.pairs_instrument`` says which,
    ``env.unwrapped.sim.ear_source`` what the reward listens with). Any registered reward
    works; ``"key_match"`` would read the ear's reading, not the notes.

    ## Starting State
    All keys up, silence. A corpus piece is drawn (or ``options={"score_index": i}``) and
    rendered through ``target_synth`` at its own times (not the agent's frame grid), its
    sustain pedal applied; or the given recording.

    ## Episode End
    Truncation after the target's frames (plus ``tail`` for corpus pieces; a recording
    carries its own). ``info["metrics"]`` holds LMMPiano-v0's note / frame metrics against
    the reference notes at their own times (the corpus piece, or the MIDI ``reference=``,
    never snapped to the frame grid; a note held on by the sustain pedal counts as sounding
    until the pedal lifts, `lmm_env.score.Score.sustained`), and only the diversity
    diagnostics when there is no reference.

    ## Arguments
    LMMPiano-v0's (``score``, ``split``, ``synth``, ``keys``, ``frame_rate``,
    ``max_seconds``, ``reward``, ``pairs``, ``ear``, ...; no ``layout``), plus:

    * ``target``: None (default: corpus pieces from ``score``/``split``), a path to a WAV
      (FLAC, OGG) file, or a float numpy array of samples in [-1, 1] (a list is refused:
      convert it with ``np.asarray(samples, np.float32)``; a peak above 100 is refused as
      unscaled int PCM), 1-D or (n, channels) with at most 8 channels; another sample rate
      (a file's in [4000, 384000] Hz) is resampled. With ``max_seconds`` only that much of
      the recording is read (and of ``reference``); at most `lmm_env.audio.MAX_SAMPLES`.
    * ``reference``: the target recording's notes (MIDI path, PrettyMIDI or `Score`),
      used only for metrics; optional, and only with ``target``. It is checked against the
      recording by note onsets (`lmm_env.pairs.match_problem`): refused if its last note ends
      over 0.5 s after the recording, if its notes line up with the recording only when
      shifted in time or no better than at a random offset (another take, another piece), or
      if the recording has notes over a second after its last note. Reverberation, release
      tails and room tone after the last note are fine.
    * ``target_synth``: the instrument corpus targets are rendered through: None or
      ``"world"`` (default: the world's own ``synth``), ``"piano"``, ``"grand"``, ``"soundfont"`` or a .sf2/.sf3 path, each optionally ``"@<room>"`` (a timbre
      the agent's world does not have: the seed's advanced setup). Refused with ``target``
      (a recording is heard as it is).
    * ``target_sample_rate``: the rate in Hz of a ``target`` array (default ``sample_rate``):
      an int in [4000, 384000] (`lmm_env.audio.SOURCE_RATES`). Refused with a file ``target``
      (the file carries its own rate) and without ``target`` (corpus pieces are rendered at
      ``sample_rate``).

    ``layout=`` is refused (the keyboard is the identity; LMMDecipher-v0 hides it).

    ## Version History
    * v0: the task as above. Within v0: ``target_sample_rate`` is checked when the env is
      made (and refused beside a file or without a target); a long recording is read only
      as far as the episode goes (``max_seconds``); ``target_synth`` beside a recording is
      refused; ``pairs=K`` with ``target_synth`` is the ear of K pairs of the target's
      instrument (it was the world's); ``reference`` is checked by note onsets (it was
      refused when the recording stayed above -60 dB for 2 s after its last note, which
      every reverberant or noisy recording does).
    """

    def __init__(self, target=None, reference=None, target_synth=None, target_sample_rate: int | None = None,
                 render_mode: str | None = None, record_audio: bool = True, **kwargs):
        if "layout" in kwargs:
            raise ValueError("layout= is not an argument of LMMByEar-v0 (the keyboard is the identity); "
                             "use LMMDecipher-v0 for a hidden layout")
        self._setup(lambda: ByEarSim(1, target=target, reference=reference, target_synth=target_synth,
                                     target_sample_rate=target_sample_rate, record_audio=record_audio, **kwargs),
                    render_mode)

    def target_audio(self) -> np.ndarray:
        """The whole target recording of this episode (float32 at ``sample_rate``)."""
        if self._needs_reset and self.sim.target_audios[0] is None:
            raise RuntimeError("call reset() first: the target is chosen at reset")
        return self.sim.target_audios[0]

    def reference_score(self):
        """The hidden reference notes (None without one). For oracles and metrics only."""
        return self.sim.references[0]


class LMMByEarVectorEnv(PianoTaskVectorEnv):
    """``num_envs`` LMMByEar-v0 envs stepped as one batch (same arguments as `LMMByEarEnv`)."""

    sim_class = ByEarSim
    task_id = "LMMByEar-v0"


__all__ = ["LMMByEarEnv", "LMMByEarVectorEnv", "ByEarSim"]
