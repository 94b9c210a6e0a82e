"""Per-episode storage of a batch of envs: target tapes and key histories in one shared pool.

Each env's episode owns a contiguous region of ``2 * pad + n_steps`` rows of four parallel
arrays: the target tape (uint8 codes, ``pad`` rows of silence before and after the piece) and
the played history (keys down, strike velocities, pedal), the history using the first
``n_steps`` rows. Steps address rows as ``off[i] + pad + t`` (tape) and ``off[i] + t``
(history), one fancy index for the whole batch.

Why a pool: a dense (n_envs, longest episode, 88) layout costs every env the longest piece
any env has drawn. With untrimmed folk tunes (one is 497 s long) 256 envs held 670 MB and
4,096 would hold 10.7 GB, and each growth copied everything while the batch waited (0.6 s at
256 envs). Here memory follows the episodes being played: regions are bump-allocated, and
when the pool is full the live regions are compacted into a pool twice their size (a copy
of live rows only, amortized O(1) per row allocated).
"""
from __future__ import annotations

import numpy as np

from lmm_env.synth.base import N_KEYS

ROW_BYTES = 3 * N_KEYS + 1  # one row of the four arrays: tape, down, vel (88 bytes each) and pedal


class EpisodeTapes:
    """Target tapes and played histories of ``n_envs`` episodes, ``pad`` rows of margin each.

    Args:
        n_envs: envs in the batch.
        pad: rows of silence before and after each piece (lookahead / score context reach).
        reserve: steps every env's region holds at least; while episodes fit in it, an env
            reuses its region (trimmed pieces: no allocation after construction).
    """

    MIN_ROWS = 1024

    def __init__(self, n_envs: int, pad: int, reserve: int):
        self.n_envs, self.pad, self.reserve = int(n_envs), int(pad), int(reserve)
        self.reserved_rows = size = 2 * self.pad + self.reserve  # the least any env's region holds
        n = self.n_envs
        self.off = np.arange(n, dtype=np.int64) * size  # first row of each env's region
        self.size = np.full(n, size, dtype=np.int64)  # rows allocated to each env
        self.used = np.full(n, size, dtype=np.int64)  # rows its current episode uses
        self._new_pool(max(n * size, self.MIN_ROWS))
        self.top = n * size  # first free row
        self.compactions = 0

    def _new_pool(self, rows: int) -> None:
        self.tape = np.zeros((rows, N_KEYS), np.uint8)  # target codes (velocity | onset bit)
        self.down = np.zeros((rows, N_KEYS), bool)  # keys down per played step (pitch order)
        self.vel = np.zeros((rows, N_KEYS), np.uint8)  # strike velocities per played step
        self.pedal = np.zeros(rows, bool)

    @property
    def rows(self) -> int:
        """Rows in the pool (its memory is ``rows * 265`` bytes)."""
        return len(self.pedal)

    def begin(self, i: int, n_steps: int) -> None:
        """Give env ``i`` a cleared region for an episode of ``n_steps`` steps."""
        need = 2 * self.pad + int(n_steps)
        size, reserved = int(self.size[i]), self.reserved_rows
        # Reuse the region when it fits and is at most twice what the episode needs (at least
        # its reservation): a region that once held a 497 s tune goes back to the pool instead
        # of pinning its rows for short pieces.
        if not (need <= size <= 2 * max(need, reserved)):
            size = max(need, reserved)  # never below the reservation: short episodes then reuse it
            if self.top + size > self.rows:
                self._compact(i, size)
            self.off[i], self.size[i] = self.top, size
            self.top += size
        self.used[i] = need
        o = int(self.off[i])
        self.tape[o : o + need] = 0
        self.down[o : o + need] = False
        self.vel[o : o + need] = 0
        self.pedal[o : o + need] = False

    def _compact(self, i: int, need: int) -> None:
        """Copy every env's live rows but env ``i``'s into a pool with room for ``need`` more."""
        keep = [j for j in range(self.n_envs) if j != i]
        # each kept env keeps at least its reservation, so episodes up to ``reserve`` steps
        # go on reusing its region after a compaction
        sizes = np.maximum(self.used[keep], self.reserved_rows)
        live = int(sizes.sum()) + need
        old = (self.tape, self.down, self.vel, self.pedal)
        self._new_pool(max(2 * live, self.MIN_ROWS))
        top = 0
        for j, size in zip(keep, sizes.tolist()):
            o, u = int(self.off[j]), int(self.used[j])
            for new, prev in zip((self.tape, self.down, self.vel, self.pedal), old):
                new[top : top + u] = prev[o : o + u]
            self.off[j], self.size[j] = top, size
            top += size
        self.top = top
        self.compactions += 1

    def region(self, i: int) -> slice:
        """Rows of env ``i``'s current episode (tape rows; the history uses the first n_steps)."""
        o = int(self.off[i])
        return slice(o, o + int(self.used[i]))

    def episode_tape(self, i: int) -> np.ndarray:
        """Env ``i``'s target tape, (2 * pad + n_steps, 88): row ``pad + t`` is step t (a view)."""
        return self.tape[self.region(i)]

    def history(self, i: int, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(down, velocity, pedal) of env ``i``'s first ``steps`` played steps (views)."""
        o = int(self.off[i])
        return self.down[o : o + steps], self.vel[o : o + steps], self.pedal[o : o + steps]
