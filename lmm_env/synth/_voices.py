"""The inner loop of `PianoPlayer.step`, compiled with numba.

With dense play (half the keys down and re-struck every few steps: what an untrained policy
does) a block mixes ~88 voice renders per env (44 held, 44 in their damper blocks). As numpy array operations that is six passes over
(voices, block) temporaries and the step is memory-bound: 256 batched envs ran no faster
per env than one (BENCHMARKS.md, "Dense play"). Here each voice's two table rows are read
once and summed straight into its env's output row, which stays in L1.

The arithmetic per sample is the numpy version's, in the same order:
``(gain_soft * soft + gain_bright * bright) * release``, summed over voices in (env, key,
slot) order, in float32, so the result is the same for one env and for env i of a batch.
"""
from __future__ import annotations

from numba import njit, prange


def _step_voices(onset, velocity, damped, active, pos, rel, gain_soft, gain_bright, next_slot,
                soft_of_velocity, bright_of_velocity, tables, release, slots, n_table_blocks,
                n_release_blocks, out):  # pragma: no cover - compiled
    """One block of every env's voices into ``out`` (n_envs, block), which must be zero.

    onset, damped: (n_envs * 88,) bool; velocity: (n_envs * 88,) ints; the voice arrays are
    flat over (env, key, slot); tables: (88 * n_table_blocks, 2, block) [soft, bright] rows;
    release: (n_release_blocks, block) damper gains by blocks since key-up.
    """
    n_envs, block = out.shape
    n_keys = onset.shape[0] // n_envs
    for e in prange(n_envs):  # envs are independent: threads split them (see step_voices_threaded)
        o = out[e]
        for k in range(n_keys):
            fk = e * n_keys + k
            base = fk * slots
            if damped[fk] or onset[fk]:  # key-up and re-strike both damp the sounding voices
                for s in range(slots):
                    v = base + s
                    if active[v] and rel[v] < 0:
                        rel[v] = 0
            if onset[fk]:
                s = next_slot[fk]
                next_slot[fk] = (s + 1) % slots
                v = base + s
                active[v] = True
                pos[v] = 0
                rel[v] = -1
                vel = velocity[fk]  # checked to be in 0..127 by the caller
                gain_soft[v] = soft_of_velocity[vel]
                gain_bright[v] = bright_of_velocity[vel]
            for s in range(slots):
                v = base + s
                if not active[v]:
                    continue
                p = pos[v]
                rows = tables[k * n_table_blocks + p]
                soft = rows[0]
                bright = rows[1]
                gs = gain_soft[v]
                gb = gain_bright[v]
                r = rel[v]
                if r < 0:
                    for j in range(block):
                        o[j] += gs * soft[j] + gb * bright[j]
                else:
                    env = release[r]
                    for j in range(block):
                        o[j] += (gs * soft[j] + gb * bright[j]) * env[j]
                    r += 1
                    rel[v] = r
                p += 1
                pos[v] = p
                if r >= n_release_blocks or p >= n_table_blocks:  # damper or table ran out
                    active[v] = False


# One source, two builds: serial (prange runs as range) and split over envs on numba's threads.
# Only the serial one is cached on disk: numba's cache is keyed by the function's name, which
# the two share (the threaded one compiles on first use, a few seconds, in processes that ask).
step_voices = njit(cache=True, nogil=True)(_step_voices)
step_voices_threaded = njit(nogil=True, parallel=True)(_step_voices)


@njit(cache=True, nogil=True)
def render_notes(keys, onsets, releases, soft, bright, tables, release, out):  # pragma: no cover - compiled
    """Add each note's voice into ``out`` (float32, long enough for every note's tail).

    keys, onsets, releases: per note (int64: key 0..87, onset sample, samples held before the
    damper); soft, bright: float32 layer gains; tables: (2, 88, L); release: damper gains.
    """
    table_len = tables.shape[2]
    n_rel = release.shape[0]
    for i in range(keys.shape[0]):
        r = releases[i]
        length = min(table_len, r + n_rel)
        k = keys[i]
        o = onsets[i]
        gs = soft[i]
        gb = bright[i]
        ts = tables[0, k]
        tb = tables[1, k]
        for j in range(min(length, r)):
            out[o + j] += gs * ts[j] + gb * tb[j]
        for j in range(r, length):
            out[o + j] += (gs * ts[j] + gb * tb[j]) * release[j - r]
