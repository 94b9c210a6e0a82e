"""Velocity by ear: `LoudnessListener` learns, while it plays, how loud the world's instrument
sounds each velocity, so a g that knows how loud a note should be can strike the velocity
that sounds that loud on an instrument it has never heard.

The agent carries a *body model*: the instrument it trained on (the built-in piano, whose
torch twin g learned through). Every step it plays its own keys on the body model too, and
compares the level of what the world made of those keys (``obs["audio"]``, the log-mel of
the previous step) with what its body model made of them. On steps with strikes, the gap
in dB is a reading of

    delta(key, velocity) = level_world(key, velocity) - level_body(key, velocity)

at the keys and velocities just struck. A ridge regression (prior: the world sounds like
the body) fits ``delta ~ c0 + c1 (v - 64) / 64 + c2 (key - 60) / 24`` over the episode so
far; to sound at a level L it strikes the velocity v with
``level_body(key, v) + delta(key, v) = L`` (the body model's per-key loudness curve,
`lmm_env.synth.loudness`). No key labels, no access to the world's synth: only what it
heard.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lmm_env.synth.base import LOWEST_PITCH, N_KEYS

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

_VELOCITIES = np.arange(1, 128, dtype=np.float64)
_MIN_POWER = 1e-9  # mel power below this is silence: no reading
# Local readings: a sampled instrument's gap to the body is lumpy in key and velocity (velocity
# layers, per-key samples), so readings near a note correct the global fit there. Widths and
# the prior's weight were chosen on the piano corpus's validation split (grand as the world).
SIGMA_KEY, SIGMA_VELOCITY, LOCAL_PRIOR = 3.0, 12.0, 1.0
MAX_NOTES = 600  # readings kept (the latest): bounds the per-step cost on long pieces


N_FEATURES = 4


def _features(pitches: np.ndarray, velocities: np.ndarray) -> np.ndarray:
    """(...) keys and velocities -> (..., 4) regression features [1, u, u^2, (key - 60) / 24], u = (v - 64) / 64."""
    u = (np.asarray(velocities, np.float64) - 64.0) / 64.0
    k = (np.asarray(pitches, np.float64) - 60.0) / 24.0
    u, k = np.broadcast_arrays(u, k)
    return np.stack([np.ones_like(u), u, u * u, k], -1)


class LoudnessListener:
    """Learns the world's loudness against a body model from the agent's own strikes.

    Args:
        body: the body model, a `lmm_env.synth.Synth` (its sample rate is the world's).
        block_size: samples per env step; n_mels: bands of the env's ``obs["audio"]``.
        prior: weight of the prior "the world sounds like the body", in strikes (ridge).
    """

    def __init__(self, body, block_size: int, n_mels: int, prior: float = 4.0):
        from lmm_env.audio import LogMel
        from lmm_env.synth.loudness import loudness_curve

        self.body = body
        self.player = body.player(1, block_size)
        self.mel = LogMel(body.sample_rate, block_size, n_mels)
        self.curve = loudness_curve(body)
        self.prior = float(prior)
        self._body_table = self.curve.level(np.repeat(np.arange(LOWEST_PITCH, LOWEST_PITCH + N_KEYS), 127),
                                            np.tile(_VELOCITIES, N_KEYS)).reshape(N_KEYS, 127)
        self.reset()

    def reset(self) -> None:
        """A new episode: silence on the body model; what was learned of the world is forgotten."""
        self.player.reset()
        self.down = np.zeros(N_KEYS, bool)
        self.gram = self.prior * np.eye(N_FEATURES)
        self.moment = np.zeros(N_FEATURES)
        self._last = (0.0, 0.0)
        self._notes = np.zeros((0, 4))  # per struck note: key, velocity, gap (dB), weight
        self._pending = None

    @property
    def coef(self) -> np.ndarray:
        """(c0, c1, c2) of delta in dB (see the module)."""
        return np.linalg.solve(self.gram, self.moment)

    def delta(self, pitches, velocities) -> np.ndarray:
        """The fitted level gap world - body (dB) of each (key, velocity)."""
        return _features(np.asarray(pitches, np.float64), np.asarray(velocities, np.float64)) @ self.coef

    def hear(self, heard_logmel: np.ndarray) -> None:
        """Read the world's sound of the previous step (``obs["audio"]``) against the body's."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        x, body_frame = pending
        heard = float(np.exp(np.asarray(heard_logmel, np.float64)).sum())
        body = float(np.exp(body_frame.astype(np.float64)).sum())
        last_heard, last_body = self._last
        self._last = (heard, body)
        if x is None:
            return
        # what the strike added (this frame's power over the last one's): ringing notes cancel
        heard, body = heard - last_heard, body - last_body
        if heard < _MIN_POWER or body < _MIN_POWER:
            return
        gap = 10.0 * np.log10(heard / body)
        x, notes = x
        self.gram += np.outer(x, x)
        self.moment += x * gap
        notes = notes.copy(); notes[:, 2] = gap
        self._notes = np.concatenate([self._notes, notes])[-MAX_NOTES:]

    def velocities_for(self, pitches: np.ndarray, levels: np.ndarray) -> np.ndarray:
        """The integer velocities (1..127) that sound ``levels`` dB on the world, as far as heard."""
        pitches = np.asarray(pitches, np.int64)
        if pitches.size == 0:
            return np.zeros(0, np.int64)
        body = self._body_table[pitches - LOWEST_PITCH]  # (n, 127)
        gap = _features(pitches[:, None], _VELOCITIES[None]) @ self.coef
        if len(self._notes):
            nt = self._notes
            k = (np.exp(-0.5 * ((pitches[:, None] - nt[None, :, 0]) / SIGMA_KEY) ** 2)[:, None, :]
                 * np.exp(-0.5 * ((_VELOCITIES[:, None] - nt[None, :, 1]) / SIGMA_VELOCITY) ** 2)[None] * nt[None, None, :, 3])
            # (n, 127, N): near readings pull the global fit toward what was heard there
            local = (k * (nt[None, None, :, 2] - (_features(nt[:, 0], nt[:, 1]) @ self.coef)[None, None])).sum(-1)
            gap = gap + local / (k.sum(-1) + LOCAL_PRIOR)
        return 1 + np.argmin(np.abs(body + gap - np.asarray(levels, np.float64)[:, None]), axis=1)

    def play(self, down: np.ndarray, velocity: np.ndarray) -> None:
        """Play this step's keys (88, pitch order) on the body model, as the world's keyboard does:
        a key going down strikes at its velocity; a key up is damped."""
        down = np.asarray(down, bool)
        onset = down & ~self.down
        self.down = down.copy()
        vel = np.where(onset, np.clip(np.asarray(velocity), 1, 127), 0).astype(np.int64)
        block = self.player.step(onset[None], vel[None], ~down[None])[0]
        x = None
        if onset.any():
            keys = np.flatnonzero(onset)
            pitches, v = keys + LOWEST_PITCH, vel[keys].astype(np.float64)
            w = 10.0 ** (self._body_table[keys, vel[keys] - 1] / 10.0)  # louder strikes dominate the frame
            share = w / w.sum()
            x = ((_features(pitches, v) * share[:, None]).sum(0),
                 np.stack([pitches.astype(np.float64), v, np.zeros_like(v), share], -1))
        self._pending = (x, self.mel.block(block))


class ListeningGAgent:
    """g for two-hand music that listens (``"listening-g"``, LMMPiano-v0; SB3's ``predict``).

    * **Keys**: a `DiffPolicy` (g) trained through the differentiable piano on the two-hand
      ``piano`` corpus, judged only by what the analytic ear hears (no key labels;
      ``scripts/train/listening_g.sh``).
    * **Velocities**: the score says how loud each note is (its velocity, on the env's
      ``loudness_reference`` instrument; None: on the world's own, so the velocity is played
      as written). The agent looks the level up in that instrument's loudness curve and
      strikes the velocity its `LoudnessListener` has heard to sound that loud on this world.
    * **Pedal**: not played. LMMPiano-v0 shows no pedal in ``obs["score"]`` and its target
      is the score's keys, so nothing g sees or is judged by asks for one; an env made with
      ``pedal=True`` gets the pedal up.

    The listener starts each episode knowing nothing of the world beyond its body model (the
    built-in piano) and learns from the episode's own strikes.
    """

    oracle = False

    def __init__(self, env, policy=None, body: str = "piano", listen: bool = True):
        from lmm_env.agents.learned.differentiable import DiffPolicy
        from lmm_env.synth import make_synth
        from lmm_env.synth.loudness import loudness_curve

        sim = getattr(env.unwrapped, "sim", None)
        if sim is None:
            raise TypeError(f"{env!r} is not an lmm_env task (it has no .sim)")
        if "score" not in env.observation_space.spaces or "audio" not in env.observation_space.spaces:
            raise ValueError("listening-g reads obs['score'] and hears obs['audio']; it plays LMMPiano-v0")
        if sim.keyboard.sealed:
            raise ValueError("listening-g reads the keyboard's layout, which this env hides; on LMMDecipher-v0 use "
                             "the agent 'decipher-closed-loop'")
        if sim.frame_rate != 20 or sim.sample_rate != 16000:
            raise ValueError(f"listening-g was trained at 20 fps and 16 kHz; the env runs at {sim.frame_rate} fps, "
                             f"{sim.sample_rate} Hz")
        self.env, self.sim = env, sim
        if not isinstance(listen, (bool, np.bool_)):
            raise ValueError(f"listen={listen!r} is not allowed; use True or False")
        self.listen = bool(listen)  # False: never update the listener (the world is assumed to sound like the body)
        self.policy = policy if policy is not None else DiffPolicy.load(WEIGHTS / "listening-g.safetensors")
        if self.policy.cfg.kind != "g":
            raise ValueError(f"listening-g plays a g policy; this one is {self.policy.cfg.kind!r}")
        kb = sim.keyboard
        self.column_of_action = np.asarray(kb.pitch_of_action) - kb.lo  # score columns lo..hi
        self.pitch_of_action = np.asarray(kb.pitch_of_action)
        self.n_actions = kb.n_actions
        ref = sim.loudness_synth
        self.reference = None if ref is None else loudness_curve(ref)
        self.listener = LoudnessListener(make_synth(body, sim.sample_rate), sim.block_size, sim.n_mels)

    def reset(self) -> None:
        self.listener.reset()

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        from lmm_env.agents.learned.differentiable import g_obs_input

        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        score = np.asarray(observation["score"])
        if score.ndim == 4:
            if score.shape[0] != 1:
                raise ValueError("listening-g plays one env at a time; got a batch of observations")
            score = score[0]
        if self.listen:
            self.listener.hear(np.asarray(observation["audio"]).reshape(-1))
        p, v_net = self.policy.logits(g_obs_input(score, self.policy.cfg.lookahead))
        cols = self.column_of_action
        down = p[0][cols] > 0.5
        # how loud the score asks each key to be: its velocity now; the policy's where the score is silent
        asked = np.rint(score[2, 0][cols] * 127.0)
        asked = np.where(asked > 0, asked, np.rint(v_net[0][cols]))
        vel = np.clip(asked, 1, 127)
        # only a strike's velocity sounds: look up keys going down (a held key keeps its strike)
        strike = down & ~self.listener.down[self.pitch_of_action - LOWEST_PITCH]
        if self.reference is not None and strike.any():
            keys = np.flatnonzero(strike)
            levels = self.reference.level(self.pitch_of_action[keys], vel[keys])
            vel[keys] = self.listener.velocities_for(self.pitch_of_action[keys], levels)
        action = np.full(self.n_actions, -1.0, np.float32)
        keys = action[: len(down)]
        keys[down] = np.maximum((vel[down] - 1.0) / 126.0, 1e-4)
        held = np.zeros(N_KEYS, bool)
        v88 = np.zeros(N_KEYS)
        held[self.pitch_of_action[down] - LOWEST_PITCH] = True
        v88[self.pitch_of_action[down] - LOWEST_PITCH] = vel[down]
        self.listener.play(held, v88)
        return action, state
