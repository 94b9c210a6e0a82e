"""`PianoSim`: the batched simulation behind LMMPiano-v0 and its vector twin.

One `PianoSim` runs ``n_envs`` pianos in lockstep: a `Keyboard` turns actions into key
events, a synth player renders one block of audio per env, `LogMel` hears it, and a
reward model judges it against the score. The single env is a `PianoSim` of one: env i of
``make_vec(seed=s)`` and the single env seeded ``s + i`` play the same episodes, with the same
keys, notes and metrics; their audio features and rewards agree to float32 rounding
(``VECTOR_TOLERANCE``, tested), not bit for bit, because BLAS sums a batch of envs in another
order than one. Per-step work is vectorized over envs; only episode starts and ends touch one
env at a time.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence

import numpy as np

from lmm_env import corpus as corpus_mod
from lmm_env import metrics as metrics_mod
from lmm_env import rewards as rewards_mod
from lmm_env._checks import check_int, short_repr
from lmm_env._threads import limit_blas_threads
from lmm_env.audio import LogMel
from lmm_env.keyboard import Keyboard, check_keys
from lmm_env.rewards.base import MAX_HISTORY_BLOCKS, BatchStepContext, EpisodeContext, call_model, check_needs
from lmm_env.score import OUT_OF_RANGE_POLICIES, FrameScore, Score
from lmm_env.synth import make_synth
from lmm_env.synth.base import HIGHEST_PITCH, LOWEST_PITCH, N_KEYS

from .tapes import ROW_BYTES, EpisodeTapes

_ONSET_BIT = 128  # tape code: velocity (1..127) on held frames, + 128 on onset frames
MAX_ENVS = 65_536  # envs in one batch (each holds its synth voices, rings and tapes: ~0.1 MB at the defaults)
# An untrimmed piece's episode holds all its frames: longer ones need max_seconds (which also stays below it).
MAX_EPISODE_SECONDS = 3 * 3600.0
MAX_WORLD_BYTES = 16 << 30  # what a world reserves for its envs' rings, tapes and windows at construction
# A corpus piece's length for the memory estimate of untrimmed corpus pools (listing a corpus does
# not read its pieces). Episode storage follows the pieces actually drawn (envs/tapes.py), so a
# typical length, not the longest (a 497 s folk tune among 9,188 of mostly under a minute), is
# what a batch holds; each drawn piece is still capped by MAX_EPISODE_SECONDS. Exercises: 2-8 s.
CORPUS_TYPICAL_SECONDS = 60.0
EXERCISE_LONGEST_SECONDS = 10.0


def _check_number(name, value, lo, hi, integer=False):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if ok:
        ok = math.isfinite(value) and lo <= value <= hi and (not integer or float(value).is_integer())
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={short_repr(value)} is not allowed; it must be {kind} in [{lo}, {hi}]")
    return int(value) if integer else float(value)


def check_n_envs(n_envs, name: str = "n_envs") -> int:
    """``n_envs`` as an int in [1, MAX_ENVS] (not a bool or a float), else a ValueError naming ``name``."""
    try:
        return check_int(name, n_envs, 1, MAX_ENVS)
    except ValueError as exc:
        raise ValueError(f"{exc} (each env holds its own synth voices, history rings and episode tapes)") from None


def resolve_scores(score, split: str, keys, out_of_range: str, what: str = "score",
                   one_piece: bool = False) -> Sequence[Score]:
    """The pool of scores an env draws from: see `LMMPianoEnv`'s ``score`` argument (``what``: its name).

    ``one_piece``: ``score`` is a single piece (a reset option), never a corpus or a list."""
    import pretty_midi

    in_list = isinstance(score, (list, tuple)) and not one_piece
    pieces = "a MIDI path, a PrettyMIDI or a lmm_env.score.Score"

    def one(item):
        if isinstance(item, Score):
            return Score(item.pitches, item.onsets, item.offsets, item.velocities, name=item.name,
                         out_of_range=out_of_range, keys=keys, pedal=item.pedal)
        if isinstance(item, (pretty_midi.PrettyMIDI, os.PathLike)) or (
            isinstance(item, str) and (os.sep in item or item.lower().endswith((".mid", ".midi")))
        ):
            # the env's out_of_range policy applies to the file's own pitches (not to pitches
            # already folded into the piano's range by a default policy)
            return Score.from_midi(item, out_of_range=out_of_range, keys=keys)
        label = f"{what} item {short_repr(item)}" if in_list else f"{what}={short_repr(item)}"
        if one_piece:
            raise ValueError(f"{label} is not allowed; use {pieces} (one piece for this episode; the corpus "
                             "is chosen when the env is made)")
        if in_list and isinstance(item, str) and item in corpus_mod.names():
            raise ValueError(f"{label} is a corpus name, which a list cannot hold: give the corpus alone "
                             f"({what}={item!r}), or list MIDI paths, PrettyMIDI or lmm_env.score.Score objects")
        if in_list:
            raise ValueError(f"{label} is not allowed; a list holds MIDI paths, PrettyMIDI or lmm_env.score.Score "
                             "objects (a corpus name is given alone, not in a list)")
        raise ValueError(f"{label} is not allowed; use {pieces}, or a corpus name ({', '.join(corpus_mod.names())})")

    if one_piece:
        pool = [one(score)]
    elif isinstance(score, str) and not (os.sep in score or score.lower().endswith((".mid", ".midi"))):
        pool = corpus_mod.load(score, split, keys=keys, out_of_range=out_of_range)
        if tuple(keys) != (LOWEST_PITCH, HIGHEST_PITCH) and len(pool):
            pool.resolve(0)  # a narrow range may fit none of the pieces: the corpus gives up after a few dozen
    elif isinstance(score, (list, tuple)):
        if not score:
            raise ValueError(f"{what}=[] is empty; give at least one score")
        pool = [one(s) for s in score]
    else:
        pool = [one(score)]
    for s in pool if isinstance(pool, list) else ():
        if len(s) == 0:
            raise ValueError(f"score {short_repr(s.name)} has no notes inside keys={keys}")
    if len(pool) == 0:
        raise ValueError(f"{what}={short_repr(score)} with split={split!r} holds no pieces")
    return pool


def _ear_source(ear) -> str:
    """The ear an env was given with ``ear=`` (not ``pairs=K``), in words (``PianoSim.ear_source``)."""
    if ear is None:
        return "the reward's default ear"
    if isinstance(ear, (str, os.PathLike)):
        from lmm_env.lm.checkpoint import PRETRAINED

        name = os.fspath(ear)
        return f"ear {name!r}" if name in PRETRAINED else f"ear file {name!r}"
    fit = getattr(ear, "fit_info", None)
    if isinstance(fit, dict) and "pairs" in fit:
        where = f" of {fit['instrument']!r}" if fit.get("instrument") else ""
        return f"ear object ({type(ear).__name__} fitted on {fit['pairs']} pairs{where})"
    return f"ear object ({type(ear).__name__})"


RELAYOUTS = ("never", "episode")
VECTOR_TOLERANCE = 1e-4  # |single - batched| bound on log-mel features and rewards (float32 rounding)


@dataclasses.dataclass
class Episode:
    """What a task sets up for one episode of one env (`PianoSim.make_episode`).

    Attributes:
        frames: the target the reward judges against, on the frame grid (88 columns): the
            score for LMMPiano-v0, the ear's reading of the target audio for LMMByEar-v0.
        n_steps: steps in the episode.
        reference: the notes metrics are measured against, at their own (unquantized)
            times, or None (then only the diversity diagnostics are reported).
        target_audio: the audio the reward compares what it hears to (None: ``frames``
            played through the world's synth).
        name: the piece's name (``info["score_name"]``).
        reference_held: the reference's (T, 88) held roll for frame F1 (None: computed).
        target_features: log-mel of ``target_audio`` if the task already has it.
    """

    frames: FrameScore
    n_steps: int
    reference: Score | None
    target_audio: np.ndarray | None = None
    name: str = ""
    reference_held: np.ndarray | None = None
    target_features: np.ndarray | None = None


class PianoSim:
    """Batched piano world + score task. See `LMMPianoEnv` for the arguments.

    Other tasks (LMMByEar-v0, LMMImprovise-v0) subclass it and override `make_episode` (what
    the episode asks for) and `observation` (what the agent sees); the world (keyboard,
    synth, ears, history rings, reward plumbing) is this one.
    """

    def __init__(self, n_envs: int = 1, *, score="folk", split: str = "train", frame_rate: float = 20,
                 sample_rate: int = 16000, lookahead: int = 10, keys=(21, 108), layout: str = "identity",
                 layout_seed: int = 0, pedal: bool = False, synth="piano", reward="closed_loop",
                 n_mels: int = 64, tail: float = 0.5, max_seconds: float | None = None,
                 out_of_range: str = "transpose", history_blocks: int | None = None, record_audio: bool = True,
                 relayout: str = "never", seal_layout: bool = False, pairs=None, ear=None, synth_threads: int = 1,
                 room=None, loudness_reference=None):
        self.n_envs = check_n_envs(n_envs)
        self.frame_rate = _check_number("frame_rate", frame_rate, 1, 1000)
        self.sample_rate = _check_number("sample_rate", sample_rate, 8000, 96000, integer=True)
        hop = self.sample_rate / self.frame_rate
        if abs(hop - round(hop)) > 1e-9:
            raise ValueError(
                f"sample_rate={sample_rate} / frame_rate={frame_rate} = {hop:g} samples per step; "
                "it must be a whole number (e.g. 16000 Hz at 20, 25, 40, 50 or 100 frames per second)"
            )
        self.block_size = int(round(hop))
        self.lookahead = _check_number("lookahead", lookahead, 0, 10_000, integer=True)
        self.keys = check_keys(keys)
        self.tail = _check_number("tail", tail, 0, 60)
        if max_seconds is not None:
            max_seconds = _check_number("max_seconds", max_seconds, 1.0 / self.frame_rate, MAX_EPISODE_SECONDS)
        self.max_seconds = max_seconds
        self.n_mels = _check_number("n_mels", n_mels, 1, 512, integer=True)
        if split not in corpus_mod.SPLITS:  # checked with any score: a typo must not pass silently
            raise ValueError(f"split={short_repr(split)} is not allowed; use one of {list(corpus_mod.SPLITS)}")
        self.split = split
        if out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(f"out_of_range={short_repr(out_of_range)} is not allowed; "
                             f"use one of {list(OUT_OF_RANGE_POLICIES)}")
        if history_blocks is not None:
            history_blocks = check_int("history_blocks", history_blocks, 0, MAX_HISTORY_BLOCKS)
        if not isinstance(record_audio, (bool, np.bool_)):
            raise ValueError(f"record_audio={short_repr(record_audio)} is not allowed; use True or False")
        self.record_audio = bool(record_audio)
        if relayout not in RELAYOUTS:
            raise ValueError(f"relayout={short_repr(relayout)} is not allowed; use one of {list(RELAYOUTS)}")
        if relayout == "episode" and layout != "shuffled":
            raise ValueError("relayout='episode' draws a new hidden permutation each reset; it needs layout='shuffled'")
        self.relayout = relayout
        self.out_of_range = out_of_range
        self.pool = self.resolve_pool(score, split)
        self.check_pool_bytes()
        self.keyboard = Keyboard(self.n_envs, self.keys, layout, layout_seed, pedal)
        self.keyboard.sealed = bool(seal_layout)
        from lmm_env.synth.room import check_room, with_room

        self.room = check_room(room)  # the room the world is heard in (None: dry)
        synth = with_room(synth, self.room, self.sample_rate)  # "piano@hall" for named rooms: pairs can name it
        self.synth = make_synth(synth, self.sample_rate)
        self.player = self.synth.player(self.n_envs, self.block_size)
        if synth_threads != 1:
            if not hasattr(self.player, "threads"):
                raise ValueError(f"synth_threads={synth_threads!r}: the {getattr(self.synth, 'name', 'given')!r} synth "
                                 "renders on one thread; use synth_threads=1, or synth='piano'")
            self.player.threads = synth_threads  # checks the value
        self.features = LogMel(self.sample_rate, self.block_size, self.n_mels)
        self.loudness_synth = self._resolve_loudness_reference(loudness_reference)
        limit_blas_threads()  # numpy's BLAS pool would fight torch's for the cores (see _threads)
        self.pairs, self.ear = self._resolve_ear(pairs, ear, synth)
        self.reward = rewards_mod.make(reward, ear=self.ear)
        # refuse models trained at another timing now, not at the first reset
        self.reward.check_world(self.sample_rate, self.block_size, self.frame_rate, self.n_mels)
        self.reward.bind(self.n_envs)
        self._single_reward = self._single_name = None
        parts = getattr(self.reward, "parts", None)
        if parts is not None and len(parts) == 1:
            (name, (model, weight)), = parts.items()
            if weight == 1.0:
                self._single_name, self._single_reward = name, model
        # Keep only the audio history the reward asks for (shifting it costs memory traffic).
        needs_history, self.score_context = check_needs(self.reward, getattr(self.reward, "name", None))
        self.history_blocks = needs_history if history_blocks is None else history_blocks
        if self.history_blocks < needs_history:
            raise ValueError(f"history_blocks={history_blocks} is less than the reward needs ({needs_history})")
        self.pad = max(self.lookahead + 1, self.score_context + 1)
        self.lo_col = self.keys[0] - LOWEST_PITCH
        self.hi_col = self.keys[1] - LOWEST_PITCH + 1
        n = self.n_envs
        self.t = np.zeros(n, dtype=np.int64)
        self.n_steps = np.ones(n, dtype=np.int64)
        self.scores: list[Score | None] = [None] * n
        self.frames: list[FrameScore | None] = [None] * n
        self.references: list[Score | None] = [None] * n
        self.names: list[str] = [""] * n
        self.reference_held: list[np.ndarray | None] = [None] * n
        # Episodes of trimmed pieces never need more than this: reserve it once (no allocation
        # after construction); untrimmed pools start at 256 steps and take longer regions from
        # the shared pool (envs/tapes.py) as pieces need them.
        reserve = 256 if max_seconds is None else int(math.ceil((max_seconds + self.tail) * self.frame_rate)) + 2
        self._check_size(reserve)
        self.tapes = EpisodeTapes(n, self.pad, reserve)
        # History rings: the last L = history_blocks + 1 blocks (and log-mel frames) are kept
        # twice over, so the window ending at the current step is always one contiguous slice
        # (a view, no shifting or concatenation per step).
        L = self.history_blocks + 1
        self._ring_len, self._ring_pos = L, 0
        self.audio_ring = np.zeros((n, 2 * L, self.block_size), np.float32)
        self.feat_ring = np.full((n, 2 * L, self.n_mels), self.features.silence, np.float32)
        self.last_features = np.full((n, self.n_mels), self.features.silence, np.float32)
        self.audio_blocks: list[list[np.ndarray]] = [[] for _ in range(n)]
        self._arange_n = np.arange(n)
        self._look = np.arange(self.lookahead + 1)
        self._ctx = np.arange(-self.score_context, self.score_context + 1)

    def _check_size(self, reserve: int) -> None:
        """Refuse a world whose per-env arrays (history rings, tapes, score window, observation) times
        ``n_envs`` exceed MAX_WORLD_BYTES: each argument is bounded, their product is not."""
        per_env = (2 * (self.history_blocks + 1) * (self.block_size + self.n_mels) * 4 + (2 * self.pad + reserve)
                   * ROW_BYTES + (2 * self.score_context + 1) * N_KEYS * 3 + 3 * (self.lookahead + 1) * N_KEYS * 4)
        if self.n_envs * per_env > MAX_WORLD_BYTES:
            raise ValueError(
                f"n_envs={self.n_envs} with history_blocks={self.history_blocks}, score context "
                f"{self.score_context}, lookahead={self.lookahead}, max_seconds={self.max_seconds} and "
                f"{self.block_size}-sample blocks would take {self.n_envs * per_env / 2**30:.1f} GiB "
                f"({per_env:,} bytes per env); the limit is {MAX_WORLD_BYTES / 2**30:g} GiB: use fewer envs, "
                "a shorter history or max_seconds")

    def _resolve_loudness_reference(self, reference):
        """The synth whose loudness the score's velocities mean (None: the world's own), heard in the world's room."""
        if reference is None:
            return None
        if type(self).make_episode is not PianoSim.make_episode:  # this task renders its own targets
            raise ValueError(f"loudness_reference={short_repr(reference)} is not allowed here: it says how loud a "
                             "score's velocities sound, for the tasks that play a score (LMMPiano-v0, "
                             "LMMDecipher-v0); leave it None")
        from lmm_env.synth import Synth
        from lmm_env.synth.room import with_room

        if not isinstance(reference, (str, os.PathLike, Synth)):  # make_synth would repr it whole
            raise ValueError(f"loudness_reference={short_repr(reference)} is not allowed; use a synth name "
                             "('piano', 'grand', 'soundfont'), a .sf2/.sf3 path or a lmm_env.synth.Synth")
        try:
            ref = with_room(reference, self.room, self.sample_rate)  # the target is heard in the world's room
            return make_synth(ref, self.sample_rate)
        except ValueError as exc:
            raise ValueError(f"loudness_reference={short_repr(reference)} is not allowed: {exc}") from None

    # ------------------------------------------------------------------ storage
    def tape_rows(self, env_ids, t) -> np.ndarray:
        """Pool rows of step ``t`` on the target tapes of ``env_ids`` (see envs/tapes.py)."""
        return self.tapes.off[env_ids] + self.pad + t

    def history(self, i: int, steps: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keys down, strike velocities, pedal) of env ``i``'s first ``steps`` played steps
        (default: all so far), as views (steps, 88), (steps, 88), (steps,)."""
        return self.tapes.history(i, int(self.t[i]) if steps is None else steps)

    # ------------------------------------------------------------------ episodes
    score_arg = "score"  # the argument that gives the pool, as messages name it

    def resolve_pool(self, score, split):
        """The pool of scores episodes draw from (see `LMMPianoEnv`'s ``score``)."""
        pool = resolve_scores(score, split, self.keys, self.out_of_range, self.score_arg)
        for s in pool if isinstance(pool, list) else ():  # corpus pieces are checked when drawn (trimmed)
            self.check_length(s)
        return pool

    def check_length(self, score: Score) -> Score:
        """``score``, unless it is too long to play untrimmed (all its frames are allocated at reset),
        or its episode in every env at once would exceed `MAX_WORLD_BYTES`."""
        if self.max_seconds is None and score.duration > MAX_EPISODE_SECONDS:
            raise ValueError(
                f"score {short_repr(score.name)} lasts {score.duration:,.0f} s; without max_seconds an episode "
                f"plays the whole piece, and pieces over {MAX_EPISODE_SECONDS:,.0f} s are refused: pass "
                "max_seconds= to play its beginning")
        what = f"score {short_repr(score.name)} ({score.duration:,.0f} s)" if score.name else \
            f"a {score.duration:,.0f} s score"
        self.check_episode_bytes(self.episode_steps(score.duration), what)
        return score

    # ------------------------------------------------------------------ episode memory
    extra_step_bytes = 0  # what a twin world keeps per env and step beside the host's (TorchPianoSim: device tapes)

    def episode_step_bytes(self) -> int:
        """Bytes one env's episode holds per step: its frame score (held, onset, velocity) and its pool
        rows (envs/tapes.py); an untrimmed pool grows to twice its live rows and copies them into a new
        pool when full, so it counts four times."""
        return 3 * N_KEYS + (1 if self.max_seconds is not None else 4) * ROW_BYTES + self.extra_step_bytes

    def episode_steps(self, seconds: float) -> int:
        """Steps of the episode of a ``seconds`` long piece (trimmed to max_seconds, plus the tail)."""
        if self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds)
        return math.ceil(seconds * self.frame_rate) + math.ceil(self.tail * self.frame_rate) + 2

    def check_episode_bytes(self, steps: int, what: str) -> None:
        """Refuse episodes of ``steps`` steps (``what`` gives them) if every env playing one at once would
        hold more than MAX_WORLD_BYTES: untrimmed pools grow as pieces are drawn, so this is checked when
        the pool (or a reset's score) is given, not when the memory runs out minutes later."""
        per_env = steps * self.episode_step_bytes()
        if self.n_envs * per_env <= MAX_WORLD_BYTES:
            return
        fit = MAX_WORLD_BYTES // per_env
        raise ValueError(
            f"n_envs={self.n_envs} with {what}, {steps:,} steps an episode, would hold "
            f"{self.n_envs * per_env / 2**30:.1f} GiB of episode storage ({self.episode_step_bytes():,} bytes per env "
            f"and step); the limit is {MAX_WORLD_BYTES / 2**30:g} GiB: pass max_seconds= to cap the episodes"
            f"{f', or use fewer envs (at most {fit:,})' if fit else ''}")

    def check_pool_bytes(self) -> None:
        """`check_episode_bytes` for the longest episode the pool can give (a corpus: its typical piece)."""
        if isinstance(self.pool, list):
            longest = max(self.pool, key=lambda s: s.duration)
            self.check_length(longest)
        else:
            name = getattr(self.pool, "name", "")
            bound = EXERCISE_LONGEST_SECONDS if name.startswith("exercises-") else CORPUS_TYPICAL_SECONDS
            self.check_episode_bytes(self.episode_steps(bound), f"corpus {name!r} (pieces of about {bound:,.0f} s)")

    def _resolve_ear(self, pairs, ear, synth, what: str = "synth"):
        """(K, ear) the reward listens with: ``pairs=K`` fits (or loads) the ear of K pairs of the
        instrument ``synth`` (``what``: its argument's name), ``ear=`` is an ear object or file.

        Sets ``pairs_instrument`` (the instrument ``pairs=K`` means here, `lmm_env.pairs.instrument_name`;
        None for a synth object of your own) and ``ear_source`` (the reward's ear, in words)."""
        if pairs is not None and ear is not None:
            raise ValueError(f"pass pairs= or ear=, not both (got pairs={short_repr(pairs)}, ear={short_repr(ear)})")
        from lmm_env import pairs as pairs_mod

        name = pairs_mod.instrument_name(synth)
        self.pairs_instrument = name if pairs_mod.is_named_instrument(name) else None
        if pairs is None:
            self.ear_source = _ear_source(ear)
            return (None, ear)
        from lmm_env.lm.ear import ear_for

        k = pairs_mod.check_k(pairs)
        if self.pairs_instrument is None:
            raise ValueError(f"pairs={k!r} is the ear of K pairs rendered through {what}, but "
                             f"{what}={short_repr(synth)} is a synth the pairs cannot be named by; pass "
                             f"ear=lmm_env.lm.fit_ear(lmm_env.pairs.load({k!r}, instrument=your_synth)) instead (or a "
                             f"world synth's name or a SoundFont path as {what})")
        self.ear_source = ("pairs K=0 (the analytic ear)" if k == 0
                           else f"pairs K={k} of {self.pairs_instrument!r}")
        return (k, ear_for(k, synth=self.pairs_instrument))

    def pool_index(self, rng: np.random.Generator, score_index=None) -> int:
        """``score_index`` checked against the pool, or one drawn with ``rng``."""
        if score_index is None:
            return int(rng.integers(len(self.pool)))
        if isinstance(score_index, (bool, np.bool_)) or not (
                isinstance(score_index, (int, np.integer)) and 0 <= score_index < len(self.pool)):
            raise ValueError(f"options['score_index']={short_repr(score_index)} is not allowed; "
                             f"use an int in [0, {len(self.pool) - 1}] (the env's pool holds {len(self.pool)} pieces)")
        return int(score_index)

    def given_score(self, score, score_index=None) -> Score:
        """The score of reset option ``score`` (which excludes ``score_index``)."""
        if score_index is not None:
            raise ValueError("reset options 'score' and 'score_index' exclude each other; give one")
        given = resolve_scores(score, self.split, self.keys, self.out_of_range, "options['score']", one_piece=True)[0]
        return self.check_length(given)

    def pick_score(self, rng: np.random.Generator, score_index=None, score=None) -> Score:
        """The episode's score: ``score`` (options["score"]), pool item ``score_index``, or a draw."""
        if score is not None:
            return self.given_score(score, score_index)
        return self.pool[self.pool_index(rng, score_index)]

    def trimmed(self, score: Score) -> Score:
        if self.max_seconds is not None and score.duration > self.max_seconds:
            score = score.trim(0.0, self.max_seconds)
        return self.check_length(score)

    def make_episode(self, i: int, rng: np.random.Generator, score_index=None, score=None) -> Episode:
        """What env ``i``'s next episode asks for (LMMPiano-v0: play the score)."""
        s = self.trimmed(self.pick_score(rng, score_index, score))
        frames = s.frames(self.frame_rate)
        n_steps = frames.T + int(math.ceil(self.tail * self.frame_rate))
        target_audio = None
        if self.loudness_synth is not None:  # the target as the reference instrument plays it, on the frame grid
            target_audio = self.loudness_synth.render(frames.to_score(), tail=n_steps / self.frame_rate)
        # the metrics judge against the score's own times, not the frame-snapped copy (issue 23)
        return Episode(frames=frames, n_steps=n_steps, reference=metrics_mod.playable_notes(s), name=s.name,
                       reference_held=frames.held, target_audio=target_audio)

    def reset_env(self, i: int, rng: np.random.Generator, score_index: int | None = None, score=None) -> None:
        """Start a new episode in env ``i``: ``score``, score ``score_index`` of the pool, or one drawn with ``rng``."""
        self.begin(i, self.make_episode(i, rng, score_index, score), rng)

    def begin(self, i: int, episode: Episode, rng: np.random.Generator) -> None:
        """Lay out env ``i``'s episode: target tape, keyboard, synth, rings, reward."""
        frames, n_steps = episode.frames, int(episode.n_steps)
        code = frames.velocity.copy()
        code[frames.onset] |= _ONSET_BIT
        T = min(frames.T, n_steps)
        self.tapes.begin(i, n_steps)  # a cleared region: tape and histories
        self.tapes.episode_tape(i)[self.pad : self.pad + T] = code[:T]
        self.t[i] = 0
        self.n_steps[i] = n_steps
        self.scores[i] = frames.to_score()
        self.frames[i] = frames
        self.references[i] = episode.reference
        held = episode.reference_held
        if held is None and episode.reference is not None:
            held = episode.reference.frames(self.frame_rate).held
        self.reference_held[i] = held  # the reference's held roll, for frame F1
        self.names[i] = episode.name
        if self.relayout == "episode":
            self.keyboard.relayout(i, rng)
        self.keyboard.reset([i])
        self.player.reset([i])
        self.audio_ring[i] = 0.0
        self.feat_ring[i] = self.features.silence
        self.last_features[i] = self.features.silence
        self.audio_blocks[i] = []
        context = EpisodeContext(
            score=self.scores[i], frames=frames, n_steps=n_steps, rng=np.random.default_rng(rng.integers(2**63)),
            synth=self.synth, features=self.features, frame_rate=self.frame_rate,
            sample_rate=self.sample_rate, block_size=self.block_size, keys=self.keys,
        )
        if episode.target_audio is not None:
            audio = np.asarray(episode.target_audio, np.float32)[: n_steps * self.block_size]
            context._cache["audio"] = np.ascontiguousarray(np.pad(audio, (0, n_steps * self.block_size - len(audio))))
            if episode.target_features is not None:
                context._cache["features"] = episode.target_features
        self.reward.reset(context, i)

    # ------------------------------------------------------------------ observations
    def spaces(self):
        """(observation_space, action_space) of one env."""
        from gymnasium import spaces

        n_keys = self.keyboard.n_keys
        obs = spaces.Dict({
            "score": spaces.Box(0.0, 1.0, (3, self.lookahead + 1, n_keys), np.float32),
            "audio": spaces.Box(self.features.silence, 30.0, (self.n_mels,), np.float32),
            "key_state": spaces.Box(0.0, 1.0, (self.keyboard.n_actions,), np.float32),
        })
        act = spaces.Box(-1.0, 1.0, (self.keyboard.n_actions,), np.float32)
        return obs, act

    def score_window(self, env_ids, t, offsets):
        """Target (held, onset, velocity) frames ``t + offsets`` for each env, 88 columns."""
        codes = self.tapes.tape[self.tape_rows(np.asarray(env_ids), t)[:, None] + offsets]
        return codes > 0, codes >= _ONSET_BIT, codes & 0x7F

    def observation(self) -> dict[str, np.ndarray]:
        tape = self.tapes.tape
        if self.n_envs == 1:  # a slice is several times cheaper than a fancy index
            r0 = int(self.tapes.off[0]) + self.pad + int(self.t[0])
            codes = tape[None, r0 : r0 + self.lookahead + 1, self.lo_col : self.hi_col]
        else:
            codes = tape[self.tape_rows(self._arange_n, self.t)[:, None] + self._look, self.lo_col : self.hi_col]
        score = np.empty((self.n_envs, 3) + codes.shape[1:], np.float32)
        score[:, 0] = codes > 0
        score[:, 1] = codes >= _ONSET_BIT
        np.multiply(codes & 0x7F, 1.0 / 127.0, out=score[:, 2], casting="unsafe")
        kb = self.keyboard
        key_state = kb.down.astype(np.float32)
        if kb.pedal:
            key_state = np.concatenate([key_state, kb.pedal_down[:, None].astype(np.float32)], axis=1)
        return {"score": score, "audio": self.last_features.copy(), "key_state": key_state}

    # ------------------------------------------------------------------ stepping
    def step(self, action):
        """Advance every env one step. Returns (rewards, truncated, terms)."""
        a = self.keyboard.check_action(action)
        onset, velocity, damped, down = self.keyboard.apply(a)
        audio = self.player.step(onset, velocity, damped)
        feats = self.features.block(audio)
        t = self.t
        ar = self._arange_n
        tapes = self.tapes
        if self.n_envs == 1:
            h0 = int(tapes.off[0] + t[0])
            tapes.down[h0] = down[0]
            tapes.vel[h0] = velocity[0] * onset[0]
            tapes.pedal[h0] = self.keyboard.pedal_down[0]
        else:
            rows = tapes.off + t
            tapes.down[rows] = down
            tapes.vel[rows] = velocity * onset
            tapes.pedal[rows] = self.keyboard.pedal_down
        if self.n_envs == 1:
            r0 = int(tapes.off[0]) + self.pad + int(t[0])
            codes = tapes.tape[None, r0 - self.score_context : r0 + self.score_context + 1]
            held, ons, vel = codes > 0, codes >= _ONSET_BIT, codes & 0x7F
        else:
            held, ons, vel = self.score_window(ar, t, self._ctx)
        n, H = self.n_envs, self.history_blocks
        if H:
            p, L = self._ring_pos, self._ring_len
            self.audio_ring[:, p] = audio
            self.audio_ring[:, p + L] = audio
            self.feat_ring[:, p] = feats
            self.feat_ring[:, p + L] = feats
            window = self.audio_ring[:, p + 1 : p + 1 + L].reshape(n, L * self.block_size)
            audio_history = window[:, : H * self.block_size]
            feature_history = self.feat_ring[:, p + 1 : p + L]
            self._ring_pos = (p + 1) % L
        else:
            window, audio_history = audio, audio[:, :0]
            feature_history = self.feat_ring[:, :0]
        ctx = BatchStepContext(
            env_ids=ar, step=t.copy(), audio=audio, audio_history=audio_history,
            features=feats, feature_history=feature_history, target_held=held, target_onset=ons,
            target_velocity=vel, score_context=self.score_context,
            key_down=down if self.reward.uses_motion else None, audio_window=window,
        )
        if self._single_reward is not None:  # one reward at weight 1: skip the composite
            rewards = call_model(self._single_reward, ctx, label=self._single_name)
            terms = dict(self._single_reward.terms() or {}, **{self._single_name: rewards})
        else:
            rewards = call_model(self.reward, ctx)
            terms = self.reward.terms() or {getattr(self.reward, "name", "reward"): rewards}
        self.last_features = feats
        if self.record_audio:
            for i in range(self.n_envs):
                self.audio_blocks[i].append(audio[i])
        self.t = t + 1
        truncated = self.t >= self.n_steps
        return rewards, truncated, terms

    # ------------------------------------------------------------------ results
    def performance_score(self, i: int) -> Score:
        """What env ``i`` played so far, as a Score on the frame grid (key-down times)."""
        steps = int(self.t[i])
        down, vel, _ = self.history(i, steps)
        fs = FrameScore(self.frame_rate, down, vel > 0, self._held_velocity(i, steps))
        return fs.to_score()

    def _held_velocity(self, i: int, steps: int) -> np.ndarray:
        """Velocity of each played note carried over its held frames (for FrameScore)."""
        down, vel, _ = self.history(i, steps)
        vel = vel.astype(np.int64)
        # Forward-fill strike velocities along time while the key stays down.
        idx = np.where(vel > 0, np.arange(steps)[:, None], 0)
        np.maximum.accumulate(idx, axis=0, out=idx)
        filled = vel[idx, np.arange(N_KEYS)[None, :]]
        return np.where(down, np.maximum(filled, 1), 0).astype(np.uint8)

    def performance_midi(self, i: int):
        """The performance of env ``i`` as PrettyMIDI, with sustain-pedal events if used."""
        import pretty_midi

        pm = self.performance_score(i).to_pretty_midi()
        if self.keyboard.pedal:
            ped = self.history(i)[2]
            change = np.flatnonzero(np.diff(np.r_[False, ped, False].astype(np.int8)))
            for j, c in enumerate(change):
                pm.instruments[0].control_changes.append(
                    pretty_midi.ControlChange(64, 127 if j % 2 == 0 else 0, c / self.frame_rate)
                )
        return pm

    def episode_audio(self, i: int) -> np.ndarray:
        if not self.record_audio:
            raise RuntimeError("this env was made with record_audio=False; it keeps no audio")
        blocks = self.audio_blocks[i]
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def episode_metrics(self, i: int) -> dict[str, float]:
        """Metrics against the episode's reference; only diversity diagnostics when it has none."""
        steps = int(self.t[i])
        performance = self.performance_score(i)
        duration = max(steps, 1) / self.frame_rate
        reference = self.references[i]
        if reference is None:
            return {"pitch_class_entropy": metrics_mod.pitch_class_entropy(performance),
                    "note_density": metrics_mod.note_density(performance, duration)}
        ref_held = self.reference_held[i]
        target_held = np.zeros((steps, N_KEYS), bool)
        n = min(steps, len(ref_held))
        target_held[:n] = ref_held[:n]
        down, _, pedal = self.history(i, steps)
        played_pedal = metrics_mod.pedal_intervals(pedal, self.frame_rate) if self.keyboard.pedal else None
        result = metrics_mod.episode_metrics(
            down, target_held, performance, reference, duration=duration, played_pedal=played_pedal,
        )
        if self.loudness_synth is not None:
            result["matched_velocity_error"] = self.matched_velocity_error(reference, performance)
        return result

    def matched_velocities(self, notes) -> np.ndarray:
        """The velocities (float) at which this world plays ``notes`` (a Score) as loud as the
        loudness reference plays them at their own velocities (`lmm_env.synth.loudness`)."""
        from lmm_env.synth.loudness import loudness_curve, matched_velocities

        ref = self.loudness_synth if self.loudness_synth is not None else self.synth
        return matched_velocities(notes.pitches, notes.velocities, loudness_curve(ref), loudness_curve(self.synth))

    def matched_velocity_error(self, reference, performance) -> float:
        """Mean |played - matched velocity| over matched notes: the velocity error against the
        velocities that make this world sound as loud as the reference instrument (NaN: none matched)."""
        v = np.clip(np.rint(self.matched_velocities(reference)), 1, 127).astype(np.int64)
        matched = Score(reference.pitches, reference.onsets, reference.offsets, v, name=reference.name)
        return metrics_mod.note_metrics(matched, performance)["velocity_error"]
