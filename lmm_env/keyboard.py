"""`Keyboard`: turns the agent's actions (motion, X^M) into key events, for many envs at once.

Action semantics (one row per env, float in [-1, 1], values beyond are clipped):

* key ``i`` is down while ``a[i] > 0``; when it goes down its hammer strikes with MIDI
  velocity ``1 + round(126 * a[i])``; it sustains while held and releases when
  ``a[i] <= 0``. Striking a key again needs a step with it up, as on a real piano.
* with ``pedal=True`` the last action dimension is the sustain pedal (down while > 0):
  released keys keep sounding until the pedal lifts.

``keys=(lo, hi)`` (inclusive MIDI pitches) restricts the playable range; action ``i``
plays pitch ``pitch_of_action[i]``. With ``layout="shuffled"`` that mapping is a hidden
permutation drawn from ``layout_seed`` (the pitch->key mapping the seed author's
"decipher" prototype had to discover); ``layout="identity"`` (default) plays ``lo + i``.
`relayout` gives one env a new permutation (LMMDecipher-v0's ``relayout="episode"``), so
envs of one batch may play different instruments.

A *sealed* keyboard (LMMDecipher-v0's) hides its layout: reading ``pitch_of_action``,
``key_of_action`` or ``action_of_pitch`` raises `HiddenLayoutError`. Oracle baselines read
the layout through ``reveal()``, which the benchmark runner forbids to agents that are not
registered as oracles. The layout itself (and every array derived from it, and the
pitch-ordered key buffers that would show where a pressed key landed) is not an attribute
of the keyboard: it lives in this module's private table, keyed by the keyboard, so no
attribute walk from an env (``vars()``, ``__dict__``, containers, closures) reaches it.
Python cannot stop code written to cheat (it can read this module); the guard is against
agents that find the layout by accident or by a generic search of the env's state.
"""
from __future__ import annotations

import weakref

import numpy as np
from numba import njit

from lmm_env.synth.base import HIGHEST_PITCH, LOWEST_PITCH, N_KEYS

COMPILED_APPLY_MAX_ENVS = 16  # `Keyboard.apply` uses its numba loop up to this many envs

LAYOUTS = ("identity", "shuffled")


class HiddenLayoutError(PermissionError):
    """An agent read the hidden pitch->key layout of a sealed keyboard."""


def check_keys(keys) -> tuple[int, int]:
    """Validate a (lo, hi) inclusive MIDI pitch range inside A0..C8."""
    try:
        lo, hi = (int(k) for k in keys)
        ok = (lo, hi) == tuple(keys)
    except (TypeError, ValueError):
        ok = False
    if not ok or not LOWEST_PITCH <= lo <= hi <= HIGHEST_PITCH:
        raise ValueError(
            f"keys={keys!r} must be a (lo, hi) pair of integer MIDI pitches with "
            f"{LOWEST_PITCH} <= lo <= hi <= {HIGHEST_PITCH}"
        )
    return lo, hi


class _Layout:
    """The world's copy of a keyboard's layout and what is derived from it (see the module doc):
    the pitch of each action per env, the scatter indices `Keyboard.apply` uses, and its
    pitch-ordered key buffers."""

    __slots__ = ("pitch", "shared", "lo", "hi", "cols_all", "cols", "rows", "onset88", "vel88", "down88")

    def __init__(self, pitch: np.ndarray, n_envs: int, lo: int, hi: int):
        self.pitch = np.ascontiguousarray(pitch, dtype=np.int64)  # (n_envs, n_keys)
        self.lo, self.hi = lo, hi
        self.shared = bool((self.pitch == self.pitch[0]).all())  # every env has row 0's layout: cheaper scatters
        self.onset88 = np.zeros((n_envs, N_KEYS), dtype=bool)
        self.vel88 = np.zeros((n_envs, N_KEYS), dtype=np.int64)
        self.down88 = np.zeros((n_envs, N_KEYS), dtype=bool)
        self._set_cols()

    def _set_cols(self) -> None:
        """Column (pitch - 21) of each action, as the cheapest index for `Keyboard.apply`'s scatter."""
        self.cols_all = np.ascontiguousarray(self.pitch - LOWEST_PITCH)  # (n_envs, n_keys), compiled path
        if self.shared:
            row = self.pitch[0]
            identity = np.array_equal(row, np.arange(self.lo, self.hi + 1))
            # A slice scatters faster than an index array when the layout is the identity.
            self.cols = slice(self.lo - LOWEST_PITCH, self.hi - LOWEST_PITCH + 1) if identity else row - LOWEST_PITCH
            self.rows = slice(None)
        else:
            self.cols = self.pitch - LOWEST_PITCH
            self.rows = np.arange(len(self.pitch))[:, None]

    def set_row(self, env_id: int, perm: np.ndarray) -> None:
        if self.shared and len(self.pitch) > 1 and not np.array_equal(perm, self.pitch[0]):
            self.shared = False
        self.pitch[env_id] = perm
        self._set_cols()


# Keyboard id -> its _Layout. Entries leave with their keyboard (weakref.finalize), before
# its id can be reused.
_LAYOUTS: dict[int, _Layout] = {}


def _hide(keyboard: "Keyboard", layout: _Layout) -> None:
    if id(keyboard) not in _LAYOUTS:
        weakref.finalize(keyboard, _LAYOUTS.pop, id(keyboard), None)
    _LAYOUTS[id(keyboard)] = layout


def world_layout(keyboard: "Keyboard") -> np.ndarray:
    """(n_envs, n_keys) pitch of each action of every env: for the world's own twins (the torch
    world), which run only visible layouts. A sealed keyboard refuses it as it refuses ``reveal()``."""
    if keyboard.sealed and not keyboard._reveal_allowed:
        raise HiddenLayoutError("world_layout() of a sealed keyboard was refused: only oracles may read the layout")
    return _LAYOUTS[id(keyboard)].pitch.copy()


class Keyboard:
    """Key state of ``n_envs`` pianos, driven by actions.

    Args:
        n_envs: how many independent keyboards.
        keys: (lo, hi) playable MIDI pitches, inclusive. Default the full 88 keys.
        layout: "identity" or "shuffled".
        layout_seed: seed of the shuffled permutation (fixed for the keyboard's life).
        pedal: add a sustain-pedal action dimension.
    """

    def __init__(self, n_envs: int = 1, keys=(LOWEST_PITCH, HIGHEST_PITCH), layout: str = "identity",
                 layout_seed: int = 0, pedal: bool = False):
        self.lo, self.hi = check_keys(keys)
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; use one of {list(LAYOUTS)}")
        self.n_envs = int(n_envs)
        self.n_keys = self.hi - self.lo + 1
        if not isinstance(pedal, (bool, np.bool_)):
            raise ValueError(f"pedal={pedal!r} is not allowed; use True or False")
        if isinstance(layout_seed, (bool, np.bool_)) or not isinstance(layout_seed, (int, np.integer)) or layout_seed < 0:
            raise ValueError(f"layout_seed={layout_seed!r} is not allowed; use an int >= 0")
        self.pedal = bool(pedal)
        self.n_actions = self.n_keys + int(self.pedal)
        self.layout = layout
        pitches = np.arange(self.lo, self.hi + 1)
        if layout == "shuffled":
            pitches = np.random.default_rng(layout_seed).permutation(pitches)
        self.sealed = False
        self._reveal_allowed = True
        self.down = np.zeros((self.n_envs, self.n_keys), dtype=bool)  # by action index
        self.pedal_down = np.zeros(self.n_envs, dtype=bool)
        _hide(self, _Layout(np.tile(pitches, (self.n_envs, 1)), self.n_envs, self.lo, self.hi))

    # ------------------------------------------------------------------ pickling (keeps the hidden layout)
    def __getstate__(self):
        return dict(self.__dict__, _layout_pitch=_LAYOUTS[id(self)].pitch.copy())

    def __setstate__(self, state):
        state = dict(state)
        pitch = state.pop("_layout_pitch")
        self.__dict__.update(state)
        _hide(self, _Layout(pitch, self.n_envs, self.lo, self.hi))

    # ------------------------------------------------------------------ layout
    def relayout(self, env_id: int, rng: np.random.Generator) -> None:
        """Give env ``env_id`` a new hidden permutation of the range, drawn with ``rng``."""
        _LAYOUTS[id(self)].set_row(int(env_id), rng.permutation(np.arange(self.lo, self.hi + 1)))

    def _layout(self) -> np.ndarray:
        hidden = _LAYOUTS[id(self)]
        return hidden.pitch[0] if (hidden.shared or self.n_envs == 1) else hidden.pitch

    def _check_readable(self, what: str) -> None:
        if self.sealed:
            raise HiddenLayoutError(
                f"keyboard.{what} is hidden in this task (the layout is what the agent must decipher); "
                "only oracle baselines may read it, through keyboard.reveal()"
            )

    def reveal(self) -> np.ndarray:
        """The hidden layout (pitch of each action; (n_envs, n_keys) if envs differ), for oracles only."""
        if not self._reveal_allowed:
            raise HiddenLayoutError(
                "keyboard.reveal() was refused: the benchmark runner lets only agents registered as oracles "
                "read the hidden layout"
            )
        return self._layout().copy()

    @property
    def pitch_of_action(self) -> np.ndarray:
        """(n_keys,) MIDI pitch each action index plays ((n_envs, n_keys) once envs differ)."""
        self._check_readable("pitch_of_action")
        return self._layout()

    @property
    def key_of_action(self) -> np.ndarray:
        """Column in the 88-key arrays (pitch - 21) of each action index."""
        self._check_readable("key_of_action")
        return self._layout() - LOWEST_PITCH

    @property
    def action_of_pitch(self) -> np.ndarray:
        """(128,) action index of each MIDI pitch (-1 outside the range); env 0's if envs differ."""
        self._check_readable("action_of_pitch")
        out = np.full(128, -1, dtype=np.int64)
        out[_LAYOUTS[id(self)].pitch[0]] = np.arange(self.n_keys)
        return out

    def pitches_down(self, env_id: int) -> np.ndarray:
        """(n_keys,) bool by pitch (lo..hi) of keys env ``env_id`` holds: the world's view, for rendering.

        On a sealed keyboard it shows where the held keys land, so it is refused with ``reveal()``."""
        if self.sealed and not self._reveal_allowed:
            raise HiddenLayoutError("keyboard.pitches_down() shows the hidden layout (where held keys sound); it was "
                                    "refused as reveal() is: only oracles may read it")
        out = np.zeros(self.n_keys, bool)
        out[_LAYOUTS[id(self)].pitch[env_id] - self.lo] = self.down[env_id]
        return out

    def reset(self, env_ids=None) -> None:
        ids = slice(None) if env_ids is None else np.asarray(env_ids)
        self.down[ids] = False
        self.pedal_down[ids] = False

    def check_action(self, action) -> np.ndarray:
        """Validate an action batch (n_envs, n_actions): float dtype, shape, finite."""
        a = np.asarray(action)
        if a.dtype.kind != "f":
            raise ValueError(f"action dtype {a.dtype} is not allowed; pass floats (float32) in [-1, 1]")
        if a.shape != (self.n_envs, self.n_actions):
            want = (self.n_actions,) if self.n_envs == 1 else (self.n_envs, self.n_actions)
            raise ValueError(f"action shape {a.shape} is wrong; expected {want}")
        if not np.isfinite(a).all():
            bad = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"action holds a non-finite value {a[tuple(bad)]!r} at index {tuple(bad.tolist())}; "
                             "actions must be finite floats in [-1, 1]")
        return a  # values beyond [-1, 1] act as the nearest bound in `apply`

    def apply(self, action: np.ndarray):
        """Move the keys to a checked action batch.

        Returns ``(onset, velocity, damped, down)``, each (n_envs, 88) in pitch order
        (column = pitch - 21): strikes this step, their velocities, keys whose damper is
        down (key up and no pedal), and keys held down.
        """
        keys = action[:, : self.n_keys]
        if self.pedal:
            self.pedal_down = action[:, self.n_keys] > 0.0
        # Few envs: one compiled pass beats ~12 numpy calls (2.3 against 5.6 us at one env);
        # from ~32 envs numpy's vectorized passes win (28 against 105 us at 256).
        hidden = _LAYOUTS[id(self)]
        if self.n_envs <= COMPILED_APPLY_MAX_ENVS and keys.dtype in (np.float32, np.float64):
            return self._apply_compiled(keys, hidden.cols_all)
        down = keys > 0.0
        onset = down & ~self.down
        self.down = down
        rows, cols = hidden.rows, hidden.cols
        onset88, down88, vel88 = hidden.onset88, hidden.down88, hidden.vel88
        onset88[rows, cols] = onset
        down88[rows, cols] = down
        vel = np.clip(keys, 0.0, 1.0)
        vel *= 126.0
        np.rint(vel, out=vel)
        vel += 1.0
        vel88[rows, cols] = vel
        if self.pedal:
            damped = ~(down88 | self.pedal_down[:, None])
        else:
            damped = ~down88
        return onset88.copy(), vel88.copy(), damped, down88.copy()

    def _apply_compiled(self, keys: np.ndarray, cols: np.ndarray):
        """`apply` for float32/float64 key values: the same results from one numba loop."""
        n = self.n_envs
        down = np.empty((n, self.n_keys), bool)
        onset88 = np.zeros((n, N_KEYS), bool)
        vel88 = np.zeros((n, N_KEYS), np.int64)
        down88 = np.zeros((n, N_KEYS), bool)
        damped = np.empty((n, N_KEYS), bool)
        consts = np.array([0.0, 1.0, 126.0], keys.dtype)  # the arithmetic stays in the keys' dtype
        _apply_keys(np.ascontiguousarray(keys), self.down, cols, self.pedal_down, self.pedal, consts,
                    down, onset88, vel88, down88, damped)
        self.down = down
        return onset88, vel88, damped, down88


@njit(cache=True, nogil=True)
def _apply_keys(keys, prev_down, cols, pedal_down, pedal, consts, down, onset88, vel88, down88,
                damped):  # pragma: no cover - compiled
    """`Keyboard.apply`'s arithmetic per key: down = x > 0, onset = down and not before,
    velocity = rint(clip(x, 0, 1) * 126) + 1 in the keys' dtype, scattered to columns ``cols``."""
    zero, one, scale = consts[0], consts[1], consts[2]
    n, k = keys.shape
    for e in range(n):
        for a in range(k):
            x = keys[e, a]
            d = x > zero
            c = cols[e, a]
            down[e, a] = d
            onset88[e, c] = d and not prev_down[e, a]
            down88[e, c] = d
            v = min(max(x, zero), one) * scale
            vel88[e, c] = np.int64(np.rint(v) + one)
        held = pedal and pedal_down[e]
        for c in range(onset88.shape[1]):
            damped[e, c] = not (down88[e, c] or held)
