"""rgb_array frames: a keyboard with pressed keys under a scrolling target/played piano roll."""
from __future__ import annotations

import numpy as np

from lmm_env.synth.base import LOWEST_PITCH

KEY_W = 6  # pixels per key column
ROLL_ROWS = 30  # past frames shown (played vs target), then the lookahead (target only)
ROW_H = 4
KEYBOARD_H = 40
BLACK_PC = {1, 3, 6, 8, 10}

TARGET = np.array([70, 110, 200], np.uint8)
PLAYED = np.array([230, 120, 40], np.uint8)
BOTH = np.array([80, 200, 100], np.uint8)
AHEAD = np.array([60, 80, 130], np.uint8)
BG = np.array([25, 25, 30], np.uint8)


def render_frame(sim, i: int) -> np.ndarray:
    """An (H, W, 3) uint8 image of env ``i``: roll above (now at the line), keys below."""
    lo, hi = sim.keys
    cols = slice(lo - LOWEST_PITCH, hi - LOWEST_PITCH + 1)
    n = hi - lo + 1
    t = int(sim.t[i])
    pad = sim.pad
    ahead = sim.lookahead + 1
    rows = ROLL_ROWS + ahead
    roll = np.empty((rows, n, 3), np.uint8)
    roll[:] = BG
    # Future target frames (top, farthest first).
    tape = sim.tapes.episode_tape(i)
    fut = tape[pad + t : pad + t + ahead, cols] > 0
    roll[:ahead][fut[::-1]] = AHEAD
    # Past frames: target vs played (bottom, most recent last).
    start = max(0, t - ROLL_ROWS)
    past_t = tape[pad + start : pad + t, cols] > 0
    past_p = sim.history(i, t)[0][start:t, cols]
    block = roll[rows - (t - start) :]
    block[past_t & ~past_p] = TARGET
    block[past_p & ~past_t] = PLAYED
    block[past_t & past_p] = BOTH
    img_roll = np.repeat(np.repeat(roll, ROW_H, axis=0), KEY_W, axis=1)
    img_roll[ahead * ROW_H - 1] = 200  # the "now" line
    # Keyboard: white/black keys, pressed keys lit.
    pitches = np.arange(lo, hi + 1)
    black = np.isin(pitches % 12, list(BLACK_PC))
    keys = np.where(black[:, None], np.array([[20, 20, 20]], np.uint8), np.array([[235, 235, 235]], np.uint8))
    keys[sim.keyboard.pitches_down(i)] = PLAYED
    kb = np.repeat(np.repeat(keys[None], KEYBOARD_H, axis=0), KEY_W, axis=1)
    kb[:, ::KEY_W] = 120  # key separators
    return np.concatenate([img_roll, np.full((2, n * KEY_W, 3), 200, np.uint8), kb], axis=0)
