"""Task-level measurements that need an agent playing an env: `probe_keyboard` (keys deciphered).

The core never imports ``lmm_env.envs``: these take an env instance (any lmm_env task
made with ``gym.make``) and an agent with SB3's ``predict``.
"""
from __future__ import annotations

import math
from numbers import Real

import numpy as np

from lmm_env._checks import check_seed, short_repr
from lmm_env.keyboard import check_keys
from lmm_env.score import Score, _check_frame_rate

__all__ = ["probe_score", "probe_keyboard"]

ALONE_SECONDS, ALONE_GAP = 0.3, 0.2
CONTEXT_SECONDS, CONTEXT_GAP = 0.2, 0.05
MAX_LEAD_SECONDS = 3600.0


def _check_lead(lead_seconds):
    if lead_seconds is not None and (isinstance(lead_seconds, (bool, np.bool_)) or not isinstance(lead_seconds, Real)
                                     or not (math.isfinite(lead_seconds) and 0 <= lead_seconds <= MAX_LEAD_SECONDS)):
        raise ValueError(f"lead_seconds={short_repr(lead_seconds)} is not allowed; use None or a number of seconds "
                         f"in [0, {MAX_LEAD_SECONDS:g}]")
    return lead_seconds


def probe_score(keys, lead_seconds: float | None = None, frame_rate: float = 20.0) -> tuple[Score, list]:
    """The probe: every pitch of ``keys`` asked for alone, then every pitch inside a three-note figure.

    A silent lead-in of ``lead_seconds`` (default: two steps per key, room for an agent that
    works the keyboard out inside the episode) comes first. Returns the score and the
    probe's slots ``[(pitch, onset, offset, kind)]`` with kind "alone" or "context".

    Raises ValueError for keys that are not a (lo, hi) pair with 21 <= lo <= hi <= 108, a
    negative or non-finite ``lead_seconds``, or a ``frame_rate`` outside (0, 1000]."""
    lo, hi = check_keys(keys)
    lead_seconds = _check_lead(lead_seconds)
    frame_rate = _check_frame_rate(frame_rate)
    if lead_seconds is None:
        lead_seconds = (2 * (hi - lo + 1) + 4) / frame_rate
    pitches = np.arange(lo, hi + 1)
    notes, slots = [], []
    t = float(lead_seconds)
    for p in pitches:
        notes.append((int(p), t, t + ALONE_SECONDS, 80))
        slots.append((int(p), t, t + ALONE_SECONDS, "alone"))
        t += ALONE_SECONDS + ALONE_GAP
    span = hi - lo + 1
    for p in pitches:  # the pitch between a fourth below and a third above (folded into the range)
        for q, kind in ((p - 5, None), (p, "context"), (p + 4, None)):
            q = int(lo + (q - lo) % span) if span > 1 else int(p)
            if q == p and kind is None:
                q = int(lo + (p - lo + 7) % span) if span > 1 else int(p)
            notes.append((q, t, t + CONTEXT_SECONDS, 80))
            if kind:
                slots.append((int(p), t, t + CONTEXT_SECONDS, kind))
            t += CONTEXT_SECONDS + CONTEXT_GAP
    return Score.from_notes(notes, name=f"keyboard-probe-{lo}-{hi}"), slots


def probe_keyboard(agent, env, seed: int = 0, lead_seconds: float | None = None) -> dict:
    """Play the keyboard probe with ``agent`` in ``env`` and measure which pitches it sounds right.

    A pitch is deciphered when, in each of its two slots (alone, and in a figure), the agent
    struck exactly that pitch, and nothing else, between one frame before the slot's onset
    and the slot's end. Returns ``keys_deciphered`` (share of the range's pitches), the
    shares ``alone`` and ``in_context``, ``probe_steps`` and the per-pitch ``deciphered``
    list. The episode plays the probe whole (the env's ``max_seconds`` is lifted for it).

    Raises TypeError for an agent without ``predict(obs) -> (action, state)`` or an env that
    is not an lmm_env task.
    """
    if not callable(getattr(agent, "predict", None)):
        raise TypeError(f"agent must have predict(obs) -> (action, state) (SB3's interface), got "
                        f"{type(agent).__name__}: {short_repr(agent)}")
    seed = check_seed(seed)
    lead_seconds = _check_lead(lead_seconds)
    u = getattr(env, "unwrapped", None)
    sim = getattr(u, "sim", None)
    if sim is None:
        raise TypeError(f"{short_repr(env)} is not an lmm_env task (it has no .sim)")
    lo, hi = sim.keys
    score, slots = probe_score((lo, hi), lead_seconds, sim.frame_rate)
    saved = sim.max_seconds
    sim.max_seconds = None
    try:
        obs, _ = env.reset(seed=seed, options={"score": score})
        if hasattr(agent, "reset"):
            agent.reset()
        start, steps = np.ones((1,), bool), 0
        while True:
            out = agent.predict(obs, episode_start=start, deterministic=True)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise TypeError(f"agent.predict must return (action, state), got {type(out).__name__}: "
                                f"{short_repr(out)}")
            action = out[0]
            start = np.zeros((1,), bool)
            obs, _, term, trunc, _ = env.step(np.asarray(action, np.float32).reshape(env.action_space.shape))
            steps += 1
            if term or trunc:
                break
        played = u.performance_score()
    finally:
        sim.max_seconds = saved
    tol = 1.0 / sim.frame_rate + 1e-6
    on, pitch = np.asarray(played.onsets), np.asarray(played.pitches)
    ok = {}
    for p, t0, t1, kind in slots:
        struck = set(pitch[(on >= t0 - tol) & (on < t1)].tolist())
        ok.setdefault(p, {})[kind] = struck == {p}
    per_pitch = [bool(v.get("alone") and v.get("context")) for _, v in sorted(ok.items())]
    return {
        "keys_deciphered": float(np.mean(per_pitch)),
        "alone": float(np.mean([v["alone"] for v in ok.values()])),
        "in_context": float(np.mean([v["context"] for v in ok.values()])),
        "probe_steps": steps,
        "deciphered": per_pitch,
    }
