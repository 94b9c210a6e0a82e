"""How far the synth's voice loop is from its floor: the same inputs with smaller table sets.

    OMP_NUM_THREADS=1 .venv/bin/python bench/voice_kernel_floor.py

Records 160 steps of random play (each key uniform in [-1, 1]: ~88 voice renders per env a
step) from a live batch of 256 envs, then replays those key events through variants of the
voice loop of `lmm_env/synth/_voices.py`, timed per env-step:

* ``working set M``: the same loop, but voice rows are read from the first M table rows
  (row index modulo M), so the table data a step touches shrinks from the real ~34 MB
  (M = all) to one row (6.4 KB, L1). The arithmetic and the number of renders are unchanged:
  M = 1 is the loop's cost with memory out of the way.
* ``int16 tables``: the real tables stored as 16-bit integers with one float32 scale per 32
  samples (half the bytes; the sound changes by at most 1.5e-5 of each chunk's peak).

Used in BENCHMARKS.md ("Dense play") to say why 256 batched envs stop at ~4x the single env.
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
from numba import njit

import lmm_env  # noqa: F401
from lmm_env.synth._voices import step_voices
from lmm_env.synth.piano import PianoPlayer, PianoSynth

CHUNK = 32  # samples per int16 scale


@njit(nogil=True)
def voices_in_working_set(onset, velocity, damped, active, pos, rel, gain_soft, gain_bright, next_slot,
           soft_of_velocity, bright_of_velocity, tables, release, slots, n_table_blocks,
           n_release_blocks, out, M):  # pragma: no cover - compiled
    """`_step_voices` reading table row ``(k * n_blocks + p) % M``: the same work on M rows of data."""
    n_envs, block = out.shape
    n_keys = onset.shape[0] // n_envs
    for e in range(n_envs):
        o = out[e]
        for k in range(n_keys):
            fk = e * n_keys + k
            base = fk * slots
            if damped[fk] or onset[fk]:
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
                vel = velocity[fk]
                gain_soft[v] = soft_of_velocity[vel]
                gain_bright[v] = bright_of_velocity[vel]
            for s in range(slots):
                v = base + s
                if not active[v]:
                    continue
                p = pos[v]
                rows = tables[(k * n_table_blocks + p) % M]
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
                if r >= n_release_blocks or p >= n_table_blocks:
                    active[v] = False


@njit(nogil=True)
def voices_int16(onset, velocity, damped, active, pos, rel, gain_soft, gain_bright, next_slot,
           soft_of_velocity, bright_of_velocity, qrows, scales, release, slots, n_table_blocks,
           n_release_blocks, out):  # pragma: no cover - compiled
    """`_step_voices` on int16 rows with one float32 scale per 32 samples (block a multiple of 32)."""
    n_envs, block = out.shape
    n_keys = onset.shape[0] // n_envs
    nchunk = block // 32
    for e in range(n_envs):
        o = out[e]
        for k in range(n_keys):
            fk = e * n_keys + k
            base = fk * slots
            if damped[fk] or onset[fk]:
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
                vel = velocity[fk]
                gain_soft[v] = soft_of_velocity[vel]
                gain_bright[v] = bright_of_velocity[vel]
            for s in range(slots):
                v = base + s
                if not active[v]:
                    continue
                p = pos[v]
                row = k * n_table_blocks + p
                qs = qrows[row, 0]
                qb = qrows[row, 1]
                sc = scales[row]
                gs = gain_soft[v]
                gb = gain_bright[v]
                r = rel[v]
                if r < 0:
                    for c in range(nchunk):
                        ss = sc[0, c]; sb = sc[1, c]
                        for j in range(c * 32, c * 32 + 32):
                            o[j] += gs * (ss * qs[j]) + gb * (sb * qb[j])
                else:
                    env = release[r]
                    for c in range(nchunk):
                        ss = sc[0, c]; sb = sc[1, c]
                        for j in range(c * 32, c * 32 + 32):
                            o[j] += (gs * (ss * qs[j]) + gb * (sb * qb[j])) * env[j]
                    r += 1
                    rel[v] = r
                p += 1
                pos[v] = p
                if r >= n_release_blocks or p >= n_table_blocks:
                    active[v] = False


def record(n_envs: int, steps: int):
    """(onset, velocity, damped) of each step of random play in a live batch."""
    venv = gym.make_vec("LMMPiano-v0", num_envs=n_envs, reward="key_match", max_seconds=30.0)
    sim, events = venv.unwrapped.sim, []
    inner = sim.player.step

    def capture(onset, velocity, damped):
        events.append((onset.reshape(-1).copy(), velocity.reshape(-1).astype(np.int64), damped.reshape(-1).copy()))
        return inner(onset, velocity, damped)

    sim.player.step = capture
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        venv.step(rng.uniform(-1, 1, venv.action_space.shape).astype(np.float32))
    venv.close()
    return events, sim.synth, sim.block_size


def replay(events, synth, n_envs, block, rows, scales, modulo, skip=20):
    """(microseconds per env-step after ``skip`` steps, every step's output)."""
    p = PianoPlayer(synth, n_envs, block)
    spent, outs = 0.0, []
    for i, (onset, velocity, damped) in enumerate(events):
        out = np.zeros((n_envs, block), np.float32)
        t = time.perf_counter()
        state = (onset, velocity, damped, p.active, p.pos, p.rel, p.gain_soft, p.gain_bright, p.next_slot,
                 p._soft_of_velocity, p._bright_of_velocity)
        if scales is None and modulo is None:
            step_voices(*state, rows, p._release, p.slots, p.n_table_blocks, p.n_release_blocks, out)
        elif scales is None:
            voices_in_working_set(*state, rows, p._release, p.slots, p.n_table_blocks, p.n_release_blocks, out, modulo)
        else:
            voices_int16(*state, rows, scales, p._release, p.slots, p.n_table_blocks, p.n_release_blocks, out)
        if i >= skip:
            spent += time.perf_counter() - t
        outs.append(out)
    return spent / (len(events) - skip) / n_envs * 1e6, np.stack(outs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envs", type=int, default=256)
    ap.add_argument("--steps", type=int, default=160)
    args = ap.parse_args()
    events, synth, block = record(args.envs, args.steps)
    rows = PianoPlayer(synth, 1, block)._rows  # (88 * blocks, [soft, bright], block) float32
    n_rows = rows.shape[0]
    chunks = rows.reshape(n_rows, 2, block // CHUNK, CHUNK)
    peak = np.abs(chunks).max(-1)
    scale = np.where(peak > 0, peak / 32767.0, 1.0).astype(np.float32)
    q = np.round(chunks / scale[..., None]).astype(np.int16).reshape(rows.shape)
    assert block % CHUNK == 0, f"block {block} is not a multiple of {CHUNK}"
    print(f"{args.envs} envs, {args.steps} steps of random play; voice loop microseconds per env-step")
    print()
    print("| variant | table data | us per env-step |")
    print("|---|---:|---:|")
    us, shipped = replay(events, synth, args.envs, block, rows, None, None)
    print(f"| shipped loop (`step_voices`) | {n_rows * rows[0].nbytes / 1024:,.0f} KB | {us:.1f} |")
    for m in (1, 16, 64, 256, 1024, n_rows):
        us, out = replay(events, synth, args.envs, block, rows, None, m)
        if m == n_rows:
            full = out
            assert np.array_equal(full, shipped), "the working-set loop at M = all must be the shipped loop"
        print(f"| working set {m if m < n_rows else 'all'} rows | {m * rows[0].nbytes / 1024:,.0f} KB | {us:.1f} |")
    us, out = replay(events, synth, args.envs, block, q, scale, n_rows)
    print(f"| int16 tables, all rows | {n_rows * q[0].nbytes / 1024:,.0f} KB | {us:.1f} |")
    print()
    print(f"int16 against float32 tables: largest sample difference {np.abs(out - full).max():.1e} "
          f"(peak {np.abs(full).max():.2f})")


if __name__ == "__main__":
    main()
