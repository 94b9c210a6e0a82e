"""LMMPiano-v0: read a score, play an 88-key piano, be rewarded by what you hear."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from lmm_env._checks import check_seed, short_repr
from lmm_env.envs.core import PianoSim
from lmm_env.envs.render import render_frame


def make_spaces(sim: PianoSim):
    """(observation_space, action_space) of one env: the sim's own (see `PianoSim.spaces`)."""
    return sim.spaces()


def check_reset_options(options, allowed) -> dict:
    """``options`` (None: {}) if it is a dict whose keys are all in ``allowed``, else a ValueError."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options={short_repr(options)} is not allowed; reset options are a dict with keys from "
                         f"{list(allowed)}, or None")
    unknown = set(options) - set(allowed)
    if unknown:
        raise ValueError(f"unknown reset options {short_repr(sorted(unknown, key=repr))}; allowed: {list(allowed)}")
    return options


class PianoTaskEnv(gym.Env):
    """What every lmm_env task shares: reset, step, results. A subclass builds ``self.sim``.

    Reset options: ``score_index`` (the i-th piece of the pool) or ``score`` (a `Score`,
    MIDI path or PrettyMIDI to play this episode).
    """

    # "human" is listed on the class only so that gym.make passes it to the constructor, which refuses
    # it; otherwise gymnasium would swap in its HumanRendering wrapper, which fails at reset without
    # pygame. An instance lists the modes it renders (what gymnasium's env checker tries).
    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}
    reset_options = ("score_index", "score")

    def _setup(self, make_sim, render_mode: str | None) -> None:
        """Check ``render_mode``, then build the world: ``make_sim()`` returns the task's `PianoSim`."""
        if render_mode == "human":
            raise ValueError("render_mode='human' is not supported: lmm_env envs draw frames but open no window; "
                             "use render_mode='rgb_array' and show env.render()'s frames, or record videos with "
                             "lmm_env.envs.RecordEpisodeVideo")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode={short_repr(render_mode)} is not supported; use None or 'rgb_array'")
        self.render_mode = render_mode
        self.sim = make_sim()
        self.metadata = dict(self.metadata, render_modes=["rgb_array"], render_fps=self.sim.frame_rate)
        self.observation_space, self.action_space = make_spaces(self.sim)
        self._needs_reset = True

    @property
    def keyboard(self):
        return self.sim.keyboard

    @property
    def synth(self):
        return self.sim.synth

    @property
    def reward_model(self):
        return self.sim.reward

    @property
    def pairs(self):
        """K, the score-audio pairs the reward's ear was fitted on (None: the ear was given)."""
        return self.sim.pairs

    @property
    def pairs_instrument(self):
        """Whose K pairs the reward's ear was fitted on (the world's instrument; for LMMByEar-v0
        rendered targets, the target's), or None when an ear was given."""
        return self.sim.pairs_instrument

    @property
    def ear_source(self) -> str:
        """What the reward listens with, in words (e.g. "pairs K=16 of 'soundfont'")."""
        return self.sim.ear_source

    def _check_options(self, options):
        return check_reset_options(options, self.reset_options)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=check_seed(seed))
        options = self._check_options(options)
        self.sim.reset_env(0, self.np_random, options.get("score_index"), options.get("score"))
        self._needs_reset = False
        obs = {k: v[0] for k, v in self.sim.observation().items()}
        return obs, {"score_name": self.sim.names[0], "n_steps": int(self.sim.n_steps[0]), "pairs": self.sim.pairs}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        a = np.asarray(action)
        if a.shape != self.action_space.shape:
            raise ValueError(f"action shape {a.shape} is wrong; expected {self.action_space.shape}")
        rewards, truncated, terms = self.sim.step(a[None])
        obs = {k: v[0] for k, v in self.sim.observation().items()}
        info = {"reward_terms": {k: float(v[0]) for k, v in terms.items()}}
        done = bool(truncated[0])
        if done:
            info["metrics"] = self.sim.episode_metrics(0)
            info["pairs"] = self.sim.pairs
            self._needs_reset = True
        return obs, float(rewards[0]), False, done, info

    def performance(self):
        """What was played so far, as a PrettyMIDI (notes from key-down to key-up)."""
        return self.sim.performance_midi(0)

    def performance_score(self):
        """What was played so far, as a `Score` on the frame grid."""
        return self.sim.performance_score(0)

    def target_score(self):
        """The current episode's target notes as the reward sees them (quantized to the frame grid)."""
        return self.sim.scores[0]

    def episode_audio(self) -> np.ndarray:
        """The audio heard so far this episode (float32, mono, at ``sample_rate``)."""
        return self.sim.episode_audio(0)

    def episode_metrics(self) -> dict[str, float]:
        """Metrics of the episode so far (the same as the last step's ``info["metrics"]``)."""
        return self.sim.episode_metrics(0)

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; make the env with render_mode='rgb_array'")
            return None
        return render_frame(self.sim, 0)


class LMMPianoEnv(PianoTaskEnv):
    """Play a score on a piano and be judged by the audio it makes: ``LMMPiano-v0``, the mapping g.

    ## Description
    Each step the agent sees the score ahead (X^V) and the log-mel of the audio its keys
    made in the last step (X^A), and sets 88 keys (X^M). The world is a piano synthesizer
    that renders one block of audio per step; the reward comes from reward models that
    listen to that audio (the default) or, for baselines, look at the keys.

    ``gym.make("LMMPiano-v0")`` makes this env; ``gym.make_vec("LMMPiano-v0", num_envs=N)``
    its natively batched twin (`LMMPianoVectorEnv`; `make_vector_env` with
    ``backend="torch"`` for `LMMPianoTorchVectorEnv`, thousands of envs on one device).
    Every task env also has the methods of `PianoTaskEnv` (``performance()``,
    ``episode_audio()``, ``target_score()``, ``episode_metrics()``, ...).

    ## Action Space
    ``Box(-1, 1, (n_keys,), float32)`` (``n_keys`` = 88 by default, plus one for the
    sustain pedal with ``pedal=True``). Key ``i`` is down while ``a[i] > 0``; when it goes
    down it strikes with MIDI velocity ``1 + round(126 * a[i])``; it sustains while held
    and releases (its damper falls) when ``a[i] <= 0``. Re-striking a key needs one step
    with it up. Action ``i`` plays pitch ``keys[0] + i`` (``layout="identity"``) or a
    hidden seeded permutation of the range (``layout="shuffled"``). Values beyond [-1, 1]
    are clipped; NaN/inf, wrong shapes and non-float dtypes raise ``ValueError``.

    ## Observation Space
    ``Dict`` of:

    * ``"score"``: ``Box(0, 1, (3, lookahead + 1, n_keys), float32)``, the target from the
      frame this step plays (row 0) to ``lookahead`` frames ahead; columns are pitches
      ``keys[0] .. keys[1]`` in pitch order (whatever the layout). Channel 0: key held;
      channel 1: key struck on that frame; channel 2: target velocity / 127 on every
      held frame of a note (0 elsewhere). Rows past the end are 0.
    * ``"audio"``: ``Box(log(1e-8), 30, (n_mels,), float32)``, log-mel of the audio heard
      during the previous step (`lmm_env.audio.LogMel`); silence at reset.
    * ``"key_state"``: ``Box(0, 1, (n_actions,), float32)``, which keys (by action index)
      are down, then the pedal if ``pedal=True``.

    ## Rewards
    ``reward="closed_loop"`` (default): judged only on what was *heard* (never the keys):
    ``ear_match + 0.5 * score_lm + 0.5 * audio_lm``, each in [0, 1] per step:
    ``ear_match``, the shipped ear's pitch reading of the heard audio against the target
    frame (soft F1) and its loudness against the target played through the same synth;
    ``score_lm``, how probable the heard notes are under the score LM (LM^V) given the
    score so far, relative to the target frame's own probability; ``audio_lm``, how
    expected the heard log-mel frame is under the audio LM (LM^A) given what was heard
    before, relative to the target audio's. See `lmm_env.rewards.ClosedLoopReward`; the
    shipped models need ``sample_rate=16000, frame_rate=20`` (the defaults).
    Also registered: ``"ear_match"``, ``"score_lm"``, ``"audio_lm"`` alone;
    ``"audio_match"``: ``exp(-mean |heard log-mel - target log-mel| / 2)``;
    ``"key_match"``: RoboPianist-style key-press reward computed from the keys (motion
    space; for baselines). A ``{name: weight}`` dict sums registered rewards; any
    `lmm_env.rewards.RewardModel` plugs in. ``info["reward_terms"]`` has every term by
    name each step.

    ## Starting State
    All keys up, silence; a score is drawn from the pool with the env's RNG (or
    ``reset(options={"score_index": i})`` / ``{"score": a_score_or_midi}``). ``info`` at
    reset holds ``score_name``, ``n_steps`` (the episode's length) and ``pairs``.

    ## Episode End
    No termination. Truncation after the score's frames plus ``tail`` seconds (releases
    ring out). The last step's ``info["metrics"]`` holds frame precision/recall/F1
    (RoboPianist's definition, on the frame grid); against the score's own, unquantized
    note times (not the frame-snapped copy): note onset precision/recall/F1 (``note_*``,
    mir_eval, 50 ms), onset+offset F1 (``onset_offset_f1``, offsets within 20 % of the
    note, at least 50 ms), onset+velocity F1 (``onset_velocity_f1``, mir_eval's velocity
    matching), the median signed onset deviation of matched notes (``onset_lag_ms``) and
    the velocity error on matched notes (`lmm_env.metrics.note_metrics`; the score's
    unisons count once, `lmm_env.metrics.playable_notes`); with ``pedal=True`` also
    ``pedal_f1`` (against the score's sustain pedal, NaN when it has none); and the
    diagnostics pitch-class entropy and note
    density of what was played beside the target's (a policy that games a model reward by
    collapsing to one note or to silence shows there). Stepping after the end raises
    ``RuntimeError`` until the next ``reset()``.

    ## Arguments
    * ``score`` (``"folk"``): a corpus name (see `lmm_env.corpus.names`), a MIDI path, a
      PrettyMIDI, a `Score`, or a list of those. Each reset draws one, or takes
      ``reset(options={"score_index": i})``, the i-th of that pool (for evaluation).
    * ``split`` (``"train"``): corpus split, ``"train"``, ``"validation"`` or ``"test"``.
    * ``frame_rate`` (20): steps per second; ``sample_rate`` (16000): audio Hz; their
      ratio must be a whole number of samples.
    * ``lookahead`` (10): score frames shown beyond the current one.
    * ``keys`` (``(21, 108)``): playable MIDI range, inclusive; scores are folded into it
      by octaves (``out_of_range="transpose"``, the default, or ``"reject"``/``"drop"``).
    * ``layout`` (``"identity"``/``"shuffled"``), ``layout_seed`` (0): the keyboard's
      layout and the seed of a shuffled one; ``pedal`` (False): a sustain-pedal action.
    * ``synth``: ``"piano"`` (fast additive piano, default), ``"grand"`` (a sampled concert
      grand shipped in the package, as fast), ``"soundfont"`` (TimGM6mb through
      tinysoundfont) or a path to any .sf2/.sf3 file, or a `lmm_env.synth.Synth`.
    * ``room`` (None: dry): the room the world is heard in, one of
      `lmm_env.synth.room.ROOMS` ("studio", "living-room", "hall", "church") or a
      `lmm_env.synth.room.Room` (a measured impulse response and a noise floor). Every task
      takes it; targets, and the pairs of ``pairs=K``, are heard in the same room.
    * ``loudness_reference`` (None: the world's own instrument): the instrument whose loudness
      the score's velocities mean, e.g. ``"grand"``: "velocity 80" is how loud the grand
      plays it, and a world that plays softer must strike harder to match. The reward's
      target audio is the score played by it (heard in ``room``), and ``info["metrics"]``
      adds ``matched_velocity_error``: the velocity error against the velocities at which
      the world sounds as loud as the reference (`lmm_env.synth.loudness`; per key, peak
      level of single notes). An agent has to listen to play it well on an instrument it
      does not know.
    * ``reward`` (``"closed_loop"``): see Rewards. ``n_mels`` (64): log-mel bands of
      ``"audio"``. ``tail`` (0.5 s). ``max_seconds``: trim long pieces to their first
      ``max_seconds`` (None = whole piece; a piece over ``MAX_EPISODE_SECONDS``, 3 hours,
      is refused without it).
    * ``render_mode``: None or ``"rgb_array"`` (keyboard under a scrolling piano roll);
      ``"human"`` is refused (the envs open no window).
    * ``record_audio`` (True): keep the episode's audio for `episode_audio`.
    * ``pairs``: K score-audio pairs (`lmm_env.pairs`: 0, 4, 16, 64 or "all") the reward's
      ear is fitted on (K = 0: the analytic ear); recorded in ``info["pairs"]``. Or
      ``ear``: an ear object, a shipped name, or a saved .safetensors file (`lmm_env.lm.fit_ear(pairs)`). Default: neither
      (the reward's own default ear, the analytic one; ``info["pairs"]`` is None).

    ## Version History
    * v0: the task as above. Within v0 (same spaces): the default reward became
      ``"closed_loop"`` (it was ``"audio_match"``); ``pairs``/``ear`` were added; values the
      env cannot play (``render_mode="human"``, untrimmed pieces over 3 hours, pools too
      large for memory) are refused when it is made instead of failing later;
      ``loudness_reference`` was added (issue 24.2).
    """

    def __init__(self, score="folk", split: str = "train", frame_rate: float = 20, sample_rate: int = 16000,
                 lookahead: int = 10, keys=(21, 108), layout: str = "identity", layout_seed: int = 0,
                 pedal: bool = False, synth="piano", reward="closed_loop", render_mode: str | None = None,
                 n_mels: int = 64, tail: float = 0.5, max_seconds: float | None = None,
                 out_of_range: str = "transpose", record_audio: bool = True, pairs=None, ear=None, room=None,
                 loudness_reference=None):
        self._setup(lambda: PianoSim(
            1, score=score, split=split, frame_rate=frame_rate, sample_rate=sample_rate, lookahead=lookahead,
            keys=keys, layout=layout, layout_seed=layout_seed, pedal=pedal, synth=synth, reward=reward,
            n_mels=n_mels, tail=tail, max_seconds=max_seconds, out_of_range=out_of_range,
            record_audio=record_audio, pairs=pairs, ear=ear, room=room, loudness_reference=loudness_reference,
        ), render_mode)
