"""LMMDecipher-v0: the hidden keyboard. Read a score on an instrument whose keys you do not know."""
from __future__ import annotations

from lmm_env.envs.core import PianoSim
from lmm_env.envs.piano import PianoTaskEnv
from lmm_env.envs.piano_vector import PianoTaskVectorEnv


class DecipherSim(PianoSim):
    """LMMPiano-v0's world with a shuffled, sealed keyboard (see `LMMDecipherEnv`)."""

    def __init__(self, n_envs: int = 1, *, relayout: str = "never", layout_seed: int = 0, **kwargs):
        for fixed in ("layout", "seal_layout"):
            if fixed in kwargs:
                raise ValueError(f"{fixed}= is fixed in LMMDecipher-v0 (a shuffled, hidden layout); "
                                 "use LMMPiano-v0 for a visible one")
        super().__init__(n_envs, layout="shuffled", layout_seed=layout_seed, relayout=relayout, seal_layout=True,
                         **kwargs)


class LMMDecipherEnv(PianoTaskEnv):
    """Play a score on a keyboard whose pitch->key layout is hidden and must be worked out: ``LMMDecipher-v0``.

    ## Description
    The same world and task as LMMPiano-v0 (read a score, play it, be judged by what you
    hear), but action ``i`` sounds a hidden pitch: a permutation of the range ``keys``.
    This is the seed author's "decipher" problem: the score names pitches, the agent moves
    keys, and only the ear can tell which key makes which pitch.

    ``gym.make("LMMDecipher-v0")`` makes this env; ``gym.make_vec("LMMDecipher-v0",
    num_envs=N)`` its batched twin (`LMMDecipherVectorEnv`).

    ## Action Space
    ``Box(-1, 1, (n_keys,), float32)``, as LMMPiano-v0: key ``i`` down while ``a[i] > 0``,
    striking at velocity ``1 + round(126 a[i])``; but key ``i`` sounds pitch
    ``perm[i]``, a hidden permutation of ``keys[0]..keys[1]``.

    The keyboard is *sealed*: ``env.unwrapped.keyboard.pitch_of_action`` (and
    ``key_of_action``, ``action_of_pitch``) raise `lmm_env.keyboard.HiddenLayoutError`.
    Oracle baselines read it with ``keyboard.reveal()``; the benchmark runner refuses that
    call to every agent that is not registered as an oracle.

    ## Observation Space
    As LMMPiano-v0: ``"score"`` (3, lookahead + 1, n_keys) with columns in *pitch* order
    (the score does not know the keyboard), ``"audio"`` (log-mel of the last step) and
    ``"key_state"`` (by action index).

    ## Rewards
    As LMMPiano-v0 (default ``"closed_loop"``: judged on what was heard, never on the keys),
    so a right key is only recognised through the ear. ``pairs=K`` / ``ear=`` choose the ear.

    ## Starting State
    All keys up, silence; a score drawn from the pool. With ``relayout="episode"`` every
    reset also draws a new permutation from the env's RNG.

    ## Episode End
    Truncation after the score plus ``tail``; ``info["metrics"]`` as LMMPiano-v0. The
    share of keys an agent has deciphered is measured by
    `lmm_env.tasks.probe_keyboard(agent, env)` (a probe score that asks for every pitch of
    the range, alone and in context), and reported by the benchmark as ``keys_deciphered``.

    ## Arguments
    All of LMMPiano-v0's (``score``, ``split``, ``keys``, ``synth``, ``reward``, ``pairs``,
    ``ear``, ``frame_rate``, ``max_seconds``, ...) except ``layout``, plus:

    * ``relayout``: ``"never"`` (default: one permutation, from ``layout_seed``, for the
      env's life, shared by the envs of a batch) or ``"episode"`` (a new one every reset:
      the instrument must be worked out inside the episode).
    * ``layout_seed`` (0): the permutation of ``relayout="never"``.
    * ``keys``: smaller curricula, e.g. ``(60, 72)`` (13 keys) or ``(48, 84)`` (37 keys);
      scores are folded into the range by octaves.

    ``layout=`` (and the internal ``seal_layout=``) are refused: the layout is always
    shuffled and hidden (LMMPiano-v0 has a visible one).

    ## Version History
    * v0: the task as above. Within v0: the hidden layout moved out of the keyboard's
      attributes (no attribute walk from a sealed env reaches it), and arguments are checked
      when the env is made.
    """

    def __init__(self, relayout: str = "never", layout_seed: int = 0, render_mode: str | None = None,
                 record_audio: bool = True, **kwargs):
        self._setup(lambda: DecipherSim(1, relayout=relayout, layout_seed=layout_seed, record_audio=record_audio,
                                        **kwargs), render_mode)


class LMMDecipherVectorEnv(PianoTaskVectorEnv):
    """``num_envs`` LMMDecipher-v0 envs stepped as one batch (same arguments as `LMMDecipherEnv`)."""

    sim_class = DecipherSim
    task_id = "LMMDecipher-v0"
