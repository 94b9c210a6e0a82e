"""`PianoSynth`: the fast numpy piano the env steps with (see `lmm_env.synth.model`)."""
from __future__ import annotations

import numpy as np

from lmm_env.synth import model
from lmm_env.synth._voices import render_notes, step_voices, step_voices_threaded
from lmm_env.synth.base import N_KEYS, BlockPlayer, Synth, check_player_args, check_sample_rate, render_samples


def _as_score(score):
    from lmm_env.score import Score  # local import: score imports synth.base

    if not isinstance(score, Score):
        score = Score.from_midi(score)  # names a bad path / type / over-long file
    return score.sustained()  # the sustain pedal holds released notes, as the block player's dampers do


class PianoSynth(Synth):
    """Additive piano from precomputed per-key tables; renders hundreds of times real time.

    Args:
        sample_rate: audio rate in Hz (8000..96000).
        table_seconds: how long a held note can ring (its table's length), 0.2..20 s.

    ``render`` plays a whole Score/PrettyMIDI/MIDI path with sample-accurate onsets;
    ``player`` gives the batched block player the env steps with. Both produce the same
    audio for notes that start and end on block boundaries (tested).
    """

    name = "piano"
    differentiable = False

    def __init__(self, sample_rate: int = 16000, table_seconds: float = model.TABLE_SECONDS):
        self.sample_rate = check_sample_rate(sample_rate)
        self.table_seconds = model.check_table_seconds(table_seconds)
        self._build()

    def _build(self) -> None:
        self.tables = model.build_tables(self.sample_rate, self.table_seconds)  # cached per process
        self.release = model.release_envelope(self.sample_rate)

    # Pickled without its tables (34 MB at 16 kHz): a subprocess worker rebuilds them (cached
    # per process), so SubprocVecEnv / AsyncVectorEnv do not ship them to every worker.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("tables", "release")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    def player(self, n_envs: int, block_size: int) -> "PianoPlayer":
        return PianoPlayer(self, n_envs, block_size)

    # Hooks for synths that share these tables' player (GrandPianoSynth):
    def _note_gains(self, velocities: np.ndarray):
        """(soft, bright) float32 layer gains of notes struck at these MIDI velocities."""
        soft, bright = model.layer_gains(velocities.astype(np.float32))
        return soft.astype(np.float32), bright.astype(np.float32)

    def _damper_samples(self, pitches: np.ndarray, onsets: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Sample at which each note's damper falls, before re-strikes: its key-up."""
        return offsets.copy()

    def render(self, score, tail: float = 1.0) -> np.ndarray:
        score = _as_score(score)
        sr = self.sample_rate
        table_len = self.tables.shape[2]
        rel = self.release
        n_rel = len(rel)
        onsets = np.round(score.onsets * sr).astype(np.int64)
        offsets = np.maximum(np.round(score.offsets * sr).astype(np.int64), onsets + 1)
        # A new strike of the same key damps the older voice (see model docstring).
        releases = self._damper_samples(score.pitches, onsets, offsets)
        order = np.lexsort((onsets, score.pitches))  # by pitch, then onset (stable)
        same = score.pitches[order[1:]] == score.pitches[order[:-1]]
        cur, nxt = order[:-1][same], order[1:][same]  # each note and the next strike of its key
        releases[cur] = np.minimum(releases[cur], np.maximum(onsets[nxt], onsets[cur]))
        total = render_samples(score, tail, sr, offsets.max() if len(score) else 0)
        out = np.zeros(total + table_len + n_rel, dtype=np.float32)
        soft, bright = self._note_gains(score.velocities)
        keys = score.pitches.astype(np.int64) - model.LOWEST_PITCH
        render_notes(keys, onsets, (releases - onsets).astype(np.int64), soft, bright, self.tables, rel, out)
        return out[:total]


class PianoPlayer(BlockPlayer):
    """Batched voices of `PianoSynth`: state arrays (n_envs, 88, slots), stepped by block."""

    def __init__(self, synth: PianoSynth, n_envs: int, block_size: int):
        n_envs, block_size = check_player_args(synth, n_envs, block_size)
        self.synth = synth
        self.n_envs = n_envs
        self.block_size = b = block_size
        self.sample_rate = synth.sample_rate
        self.slots = model.voice_slots(synth.sample_rate, b)
        self._threads = 1
        self._layout_tables()
        # Voice state, flat over (env, key, slot) so that one index addresses a voice.
        self._init_voices()

    def _layout_tables(self) -> None:
        synth, b = self.synth, self.block_size
        # Voices start on block boundaries, so a voice always reads whole blocks of its
        # table: tables reshaped to (key, block, sample) make the gather a row copy.
        table_len = synth.tables.shape[2]
        n_blocks = -(-table_len // b)
        self.n_table_blocks = n_blocks
        blocks = np.zeros((2, N_KEYS, n_blocks * b), dtype=np.float32)
        blocks[:, :, :table_len] = synth.tables
        # (key * block index, [soft, bright], sample): a voice's two rows are adjacent.
        self._rows = np.ascontiguousarray(blocks.reshape(2, N_KEYS * n_blocks, b).transpose(1, 0, 2))
        n_rel_blocks = -(-len(synth.release) // b)
        self.n_release_blocks = n_rel_blocks
        release = np.zeros(n_rel_blocks * b, dtype=np.float32)
        release[: len(synth.release)] = synth.release
        self._release = release.reshape(n_rel_blocks, b)

    # Pickled without its table copies (rebuilt from the synth's, see PianoSynth.__getstate__).
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_rows", "_release")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._layout_tables()

    def _init_voices(self) -> None:
        n_voices = self.n_envs * N_KEYS * self.slots
        self.active = np.zeros(n_voices, dtype=bool)
        self.pos = np.zeros(n_voices, dtype=np.int64)  # blocks since onset
        self.rel = np.full(n_voices, -1, dtype=np.int64)  # blocks since release, -1 = held
        self.gain_soft = np.zeros(n_voices, dtype=np.float32)
        self.gain_bright = np.zeros(n_voices, dtype=np.float32)
        self.next_slot = np.zeros(self.n_envs * N_KEYS, dtype=np.int64)  # flat (env, key)
        velocities = np.arange(128, dtype=np.float32)
        self._soft_of_velocity, self._bright_of_velocity = (
            g.astype(np.float32) for g in model.layer_gains(velocities)
        )

    def reset(self, env_ids=None) -> None:
        if env_ids is None:
            self.active.fill(False)
            self.next_slot.fill(0)
        else:
            ids = np.asarray(env_ids)
            self.active.reshape(self.n_envs, -1)[ids] = False
            self.next_slot.reshape(self.n_envs, -1)[ids] = 0

    @property
    def threads(self) -> int:
        """Threads the voice loop splits the envs over (default 1; numba's thread pool)."""
        return self._threads

    @threads.setter
    def threads(self, n: int) -> None:
        import numba

        limit = numba.config.NUMBA_NUM_THREADS
        if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and 1 <= n <= limit):
            raise ValueError(f"threads={n!r} is not allowed; use an int in [1, {limit}] (numba's thread pool)")
        self._threads = int(n)

    def step(self, onset: np.ndarray, velocity: np.ndarray, damped: np.ndarray) -> np.ndarray:
        n = self.n_envs * N_KEYS
        velocity = np.ascontiguousarray(velocity)
        if velocity.dtype.kind not in "iu":  # the numba kernel is compiled for integer velocities
            raise TypeError(f"velocities must be integer MIDI velocities (0..127), got dtype {velocity.dtype}; "
                            "round them, e.g. np.rint(v).astype(np.int64)")
        velocity = velocity.reshape(n)
        if velocity.size and (velocity.min() < 0 or velocity.max() > 127):
            raise ValueError(f"velocities must be MIDI velocities in 0..127, got {velocity.min()}..{velocity.max()}")
        out = np.zeros((self.n_envs, self.block_size), np.float32)
        kernel = step_voices
        if self._threads > 1 and self.n_envs > 1:
            import numba

            numba.set_num_threads(self._threads)
            kernel = step_voices_threaded
        kernel(
            np.ascontiguousarray(onset, bool).reshape(n), velocity,
            np.ascontiguousarray(damped, bool).reshape(n), self.active, self.pos, self.rel,
            self.gain_soft, self.gain_bright, self.next_slot, self._soft_of_velocity, self._bright_of_velocity,
            self._rows, self._release, self.slots, self.n_table_blocks, self.n_release_blocks, out,
        )
        return out
