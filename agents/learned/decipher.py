"""`ListeningDecipherAgent`: learns LMMDecipher-v0's hidden keyboard from what its own presses sound like.

    from lmm_env.agents.learned.decipher import ListeningDecipherAgent
    agent = ListeningDecipherAgent(env, pairs=16, seed=0)     # env = gym.make("LMMDecipher-v0", ...)
    action, _ = agent.predict(obs)

A forward model key -> heard pitch is learned from the agent's own strikes (a count matrix
of the ear's activations after each strike) and inverted into a pitch -> key assignment by a
one-to-one matching; the score is then read through that assignment. It never reads the
layout (``keyboard.reveal()``, ``pitch_of_action``) and never sees a key_match reward.
"""
from __future__ import annotations

import numpy as np

_SILENT = -1.0


class ListeningDecipherAgent:
    """Works out a hidden keyboard by ear while it plays, and reads the score through what it learned.

    **Forward model.** ``counts[k, p]`` accumulates, over every step on which key ``k`` was
    struck (exploration strikes and the notes it plays alike), what the ear heard in the
    windows ending ``lags`` blocks after the strike (the analytic ear hears an attack one
    block late: the strike block and the next; learned ears: the strike block). ``evidence="votes"`` (default for the analytic ear, whose
    activations are relative to the loudest key and spill onto neighbours) adds one vote to
    the ``m`` loudest pitches for ``m`` keys struck; ``"soft"`` (default for learned ears) adds
    the activations. Pitches of known keys that are sounding meanwhile (the tune it plays)
    are removed before a new key's evidence is counted. ``counts / strikes[k]`` is key
    ``k``'s heard-pitch profile; in groups, its own pitch stays near 1 and its partners'
    drop to ``1 / tests``. The inverse map is the one-to-one assignment of highest evidence
    (Hungarian, ``scipy.optimize.linear_sum_assignment`` on ``-log`` evidence), as
    `BabbleAgent`. A key is *confident* when its assigned pitch beats every other pitch of
    its row and every other key of that pitch's column by ``margin`` (pitches owned by
    confident keys are eliminated first, repeatedly).

    **Exploration** (group testing). It strikes ``group_size`` not-yet-confident keys for one
    step, every ``gap`` steps, with partners they were not struck with before (a second test
    separates them); a key still unsure after ``alone_after`` tests is struck alone; after
    ``max_tests`` it is settled by the matching. When the score asks (onset, row 0) for a
    pitch whose key is unknown it first tries the matching's best candidate for that pitch
    (a possible hit). ``explore="always"`` (default) explores on every step until every key
    is confident or settled; ``"quiet"`` only when the score is silent for ``quiet_rows``
    rows or asks for an unknown pitch; ``"needed"`` only in the latter case ("quiet" and
    "needed" explore too slowly: the notes missed meanwhile cost more than the strikes).
    Defaults, chosen on the validation split (bench/learn_decipher.py), ``explore="always"``,
    ``max_tests=2`` and: analytic ear: ``gap=2`` (with ``gap=1`` the late-hearing analytic ear
    mixes neighbouring strikes up), ``group_size=4`` on 64 keys or more (88 keys identified
    in about 90 env steps instead of babble's 176; every key is struck twice, so the learning
    episode has more false-positive notes than babble's), else 1 (on 37 keys groups save no
    steps at this resolution and lose note F1); learned ears: ``group_size=1``, ``gap=1``
    (one key per step, heard in the strike block; the K = 16 ear misreads random 2-4 note
    chords).

    **Acting.** As `ScoreReaderAgent` through the inferred map: row 0 of ``obs["score"]``
    (pitch order) -> keys down at the score's velocity, for pitches whose key is confident or
    settled. ``relayout="never"``: evidence is kept across episodes; ``relayout="episode"``:
    cleared at every new episode (`reset`, or a new episode seen in ``sim.t``).

    It never reads the layout (``keyboard.reveal()``, ``pitch_of_action``) nor any reward;
    it listens to ``env.unwrapped.sim.audio_blocks`` (the episode's recorded audio, as
    ``episode_audio()``), so the env needs ``record_audio=True`` (LMMDecipher-v0's default).

    Args:
        env: an LMMDecipher-v0 env (one env, not a vector env).
        pairs: K of the ear (`lmm_env.lm.ear_for`); 0 (the default) is the analytic ear.
        ear: an ear object or the file of a saved one, instead of ``pairs`` (not both).
        seed: order in which untested keys are tried; a fixed seed gives a deterministic agent.
        group_size: keys per exploration strike (default 4 with the analytic ear on >= 64 keys, else 1).
        gap: steps between exploration strikes (default 2 with the analytic ear, else 1).
        actor: a g policy over score pitches (`lmm_env.agents.learned.differentiable.DiffPolicy` of
            kind "g", e.g. diff-g's) that decides which pitches go down and how hard; the
            inferred map puts its pitches on keys. None: read the score's row 0 directly.

    Attributes: ``pitch_of_action`` (inferred map, -1 where unheard), ``confident``,
    ``settled``, ``explore_steps`` / ``explore_strikes`` (over all episodes).
    """

    oracle = False

    def __init__(self, env, pairs=None, seed: int = 0, group_size: int | None = None, gap: int | None = None,
                 lags=None, velocity: int = 100, margin: float = 0.25, threshold: float = 0.5,
                 alone_after: int = 2, max_tests: int = 2, learn_from_play: bool = True,
                 explore: str = "always", quiet_rows: int = 3, min_activation: float = 0.2,
                 evidence: str | None = None, actor=None, ear=None):
        from lmm_env.agents._ears import resolve_ear

        from lmm_env.agents.baselines.decipher import ear_synth, listening_sim

        sim = listening_sim(env, "ListeningDecipherAgent", velocity)
        if explore not in ("needed", "quiet", "always"):
            raise ValueError(f"explore={explore!r}: use 'needed', 'quiet' or 'always'")
        self.env = env
        self.sim = sim
        kb = sim.keyboard
        self.n_keys, self.n_actions, self.lo = kb.n_keys, kb.n_actions, kb.lo
        self.every_episode = sim.relayout == "episode"
        self.ear = resolve_ear(pairs, ear, synth=ear_synth(sim), sample_rate=sim.sample_rate, progress=True)
        self.pairs = pairs
        analytic = type(self.ear).__name__ == "AnalyticEar"
        self.group_size = int(group_size) if group_size is not None else (4 if analytic and self.n_keys >= 64 else 1)
        self.gap = int(gap) if gap is not None else (2 if analytic else 1)
        self.lags = tuple(lags) if lags is not None else ((0, 1) if analytic else (0,))
        if self.group_size < 1 or self.gap < 1 or not self.lags or min(self.lags) < 0:
            raise ValueError("group_size and gap must be >= 1 and lags non-negative")
        self.velocity, self.margin, self.threshold = velocity, float(margin), float(threshold)
        self.alone_after, self.max_tests = int(alone_after), int(max_tests)
        self.learn_from_play, self.explore, self.quiet_rows = bool(learn_from_play), explore, int(quiet_rows)
        if actor is not None and getattr(getattr(actor, "cfg", None), "kind", None) != "g":
            raise TypeError(f"actor must be a DiffPolicy of kind 'g' (score -> keys), got {actor!r}")
        self.actor = actor
        self.seed = seed
        self.min_activation = float(min_activation)
        self.evidence = evidence if evidence is not None else ("votes" if analytic and self.group_size == 1 else "soft")
        if self.evidence not in ("votes", "soft"):
            raise ValueError(f"evidence={evidence!r}: use 'votes' or 'soft'")
        self._blocks_per_window = -(-self.ear.window // sim.block_size)
        self.explore_steps = 0      # steps on which it struck exploration keys (all episodes)
        self.explore_strikes = 0    # exploration key strikes (all episodes)
        self._clear_evidence()
        self._new_episode()

    # ----------------------------------------------------------------- state
    def _clear_evidence(self) -> None:
        n = self.n_keys
        self.rng = np.random.default_rng(self.seed)
        self._order = self.rng.permutation(n)           # tie-break order of untested keys
        self.counts = np.zeros((n, n), np.float64)      # key x pitch (lo..hi): summed heard activations
        self.strikes = np.zeros(n, np.int64)            # evidence strikes per key
        self.tests = np.zeros(n, np.int64)              # exploration strikes per key
        self.together = np.zeros((n, n), bool)          # keys already struck together in exploration
        self.pitch_of_action = np.full(n, -1, np.int64)  # inferred map (-1: no evidence yet)
        self.confident = np.zeros(n, bool)
        self._dirty = False

    def _new_episode(self) -> None:
        self._pending: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._explaining: dict[int, np.ndarray] = {}
        self._recent = np.full(self.n_keys, -10 ** 9, np.int64)  # last step each key was down
        self._last_t = -1
        self._last_explore = -10 ** 9
        self._prev_down = np.zeros(self.n_keys, bool)

    def reset(self) -> None:
        """A new episode: forget the evidence if the layout changes every episode."""
        if self.every_episode:
            self._clear_evidence()
        self._new_episode()

    @property
    def settled(self) -> np.ndarray:
        """Keys that need no more exploration (confident, or tested ``max_tests`` times)."""
        return self.confident | (self.tests >= self.max_tests)

    @property
    def keys_known(self) -> float:
        """Share of keys confidently identified (the agent's own belief, not a measurement)."""
        return float(self.confident.mean())

    # ----------------------------------------------------------------- hearing
    def _windows(self, ends) -> np.ndarray:
        blocks = self.sim.audio_blocks[0]  # the audio heard so far this episode, one block per step
        W, nb = self.ear.window, self._blocks_per_window
        out = np.zeros((len(ends), W), np.float32)
        for i, b in enumerate(ends):
            seg = np.concatenate(blocks[max(0, b - nb + 1): b + 1])[-W:]
            out[i, W - len(seg):] = seg
        return out

    def _listen(self, t_now: int) -> None:
        """Add the evidence of every strike whose windows have been heard (blocks < t_now)."""
        ready = [p for p in self._pending if p[0] + max(self.lags) < t_now]
        if not ready:
            return
        self._pending = [p for p in self._pending if p[0] + max(self.lags) >= t_now]
        ends = [p[0] + lag for p in ready for lag in self.lags]
        act = self.ear.activations(self._windows(ends))[:, self.lo - 21: self.lo - 21 + self.n_keys]
        act = act.reshape(len(ready), len(self.lags), self.n_keys).mean(axis=1).astype(np.float64)
        for (s, keys, explained), a in zip(ready, act):
            # evidence of m keys struck together: votes for the m pitches heard loudest, or the activations
            novel = np.setdiff1d(keys, self._explaining.get(s, np.zeros(0, np.int64)))
            own = np.setdiff1d(keys, novel)
            if own.size:
                self.counts[own] += self._votes(a, own.size + novel.size)
            if novel.size:
                b = a.copy()
                b[explained] = -1.0  # pitches of known keys sounding meanwhile say nothing about the new keys
                self.counts[novel] += self._votes(b, novel.size)
            self.strikes[keys] += 1
            self._explaining.pop(s, None)
        self._dirty = True

    def _votes(self, a: np.ndarray, m: int) -> np.ndarray:
        if self.evidence == "soft":
            return np.clip(a, 0.0, 1.0)
        v = np.zeros(self.n_keys, np.float64)
        top = np.argsort(-a, kind="stable")[: max(1, min(m, self.n_keys))]
        v[top[a[top] >= self.min_activation]] = 1.0
        return v

    def _infer(self) -> None:
        from scipy.optimize import linear_sum_assignment

        self._dirty = False
        n = self.n_keys
        E = self.counts / np.maximum(self.strikes, 1)[:, None]
        rows, cols = linear_sum_assignment(-np.log(E + 1e-3))
        assign = np.empty(n, np.int64)
        assign[rows] = cols
        heard = self.strikes > 0
        conf = np.zeros(n, bool)
        e_own = E[np.arange(n), assign]
        while True:  # eliminate pitches of confident keys, then look again
            owned = np.zeros(n, bool)
            owned[assign[conf]] = True
            free_cols = ~owned
            changed = False
            for k in np.flatnonzero(heard & ~conf):
                p = assign[k]
                if e_own[k] < self.threshold:
                    continue
                row = E[k, free_cols & (np.arange(n) != p)]
                col = E[~conf & (np.arange(n) != k) & heard, p]
                rm = e_own[k] - (row.max() if row.size else 0.0)
                cm = e_own[k] - (col.max() if col.size else 0.0)
                if rm >= self.margin and cm >= self.margin:
                    conf[k] = True
                    changed = True
            if not changed:
                break
        self.pitch_of_action = np.where(heard, assign + self.lo, -1)
        self.confident = conf

    # ----------------------------------------------------------------- acting
    def _pick_group(self, candidates: np.ndarray) -> np.ndarray:
        """Up to ``group_size`` candidate keys, fewest tests first, never two that were tested together."""
        rank = np.argsort(self._order)  # position of each key in the seeded order
        cand = sorted(candidates.tolist(), key=lambda k: (self.tests[k], rank[k]))
        if not cand:
            return np.zeros(0, np.int64)
        if self.tests[cand[0]] >= self.alone_after or self.group_size == 1:
            return np.array(cand[:1], np.int64)
        group = []
        for k in cand:
            if self.tests[k] >= self.alone_after:
                continue
            if all(not self.together[k, j] for j in group):
                group.append(k)
                if len(group) == self.group_size:
                    break
        return np.array(group, np.int64)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        t = int(self.sim.t[0])
        if t <= self._last_t or (episode_start is not None and bool(np.any(episode_start)) and self._last_t >= 0):
            if self._last_t >= 0:  # a new episode that nobody announced with reset()
                self.reset()
        self._last_t = t
        self._listen(t)
        if self._dirty:
            self._infer()
        score = np.asarray(observation["score"])
        if score.ndim == 4:
            score = score[0]
        action = np.full(self.n_actions, _SILENT, np.float32)
        keys = action[: self.n_keys]
        # play the pitches of row 0 whose key is known (confident, or settled by the matching)
        usable = (self.pitch_of_action >= 0) & self.settled
        if self.actor is not None:  # the learned g decides what to play, in pitch space
            from lmm_env.agents.learned.differentiable import g_obs_input

            p_down, v_down = self.actor.logits(g_obs_input(score, self.actor.cfg.lookahead))
            held_pitch = p_down[0] > 0.5
            vel = np.clip(np.rint(v_down[0]), 1, 127)
        else:
            held_pitch = score[0, 0] > 0.5
            vel = np.rint(score[2, 0] * 127.0)
        key_of_pitch = np.full(self.n_keys, -1, np.int64)
        key_of_pitch[self.pitch_of_action[usable] - self.lo] = np.flatnonzero(usable)
        play = held_pitch & (key_of_pitch >= 0)
        k_play = key_of_pitch[play]
        keys[k_play] = np.maximum((vel[play] - 1.0) / 126.0, 1e-4)
        onset_pitch = (score[1, 0] > 0.5) & held_pitch
        need = np.flatnonzero(onset_pitch & (key_of_pitch < 0))  # pitches asked for now, key unknown
        # explore
        todo = ~self.settled
        if todo.any() and t - self._last_explore >= self.gap:
            rows = min(self.quiet_rows, score.shape[1])
            quiet = not (score[0, :rows] > 0.5).any()
            group = np.zeros(0, np.int64)
            free = todo & ~self._prev_down & (keys <= 0)
            if need.size:
                # a plausible key for a needed pitch (evidence, not yet confident): try it now, it may be a hit
                E = self.counts / np.maximum(self.strikes, 1)[:, None]
                cand = [k for k in np.flatnonzero(free & (self.pitch_of_action >= 0))
                        if self.pitch_of_action[k] - self.lo in need and E[k, self.pitch_of_action[k] - self.lo] >= self.threshold]
                group = np.array(cand[: self.group_size], np.int64) if cand else self._pick_group(np.flatnonzero(free))
            elif (quiet and self.explore in ("quiet", "always")) or self.explore == "always":
                group = self._pick_group(np.flatnonzero(free))
            if group.size:
                keys[group] = (self.velocity - 1) / 126.0
                self.tests[group] += 1
                self.together[np.ix_(group, group)] = True
                self._last_explore = t
                self.explore_steps += 1
                self.explore_strikes += int(group.size)
        down = keys > 0
        onset = down & ~self._prev_down
        if onset.any() and (self.learn_from_play or self._last_explore == t):
            struck = np.flatnonzero(onset) if self.learn_from_play else np.flatnonzero(onset & todo)
            # pitches explained by confident keys down now or lately (they sound in the windows)
            sounding = self.confident & (t - self._recent <= 2 + max(self.lags)) & (self.pitch_of_action >= 0)
            explorers = np.flatnonzero(onset & todo)
            explained = self.pitch_of_action[sounding] - self.lo if explorers.size else np.zeros(0, np.int64)
            if explained.size:
                self._explaining[t] = np.setdiff1d(struck, explorers)  # keys whose own evidence keeps every pitch
            self._pending.append((t, struck, explained))
        self._recent[down] = t
        self._prev_down = down
        return action, state
