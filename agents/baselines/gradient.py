"""`GradientAgent`: plays a piece by ear, with no learning: analysis by synthesis.

Given only target *audio* (no score), the agent searches for the performance whose sound,
rendered by `DifferentiablePianoSynth` (the env's own piano model, in torch), has the
closest spectrum to the target, by gradient descent. It then plays that performance in
the env step by step, like `ScoreReaderAgent` plays a score.

Pipeline of ``transcribe(audio)``:

1. **Initialization** (cheap guess, not learned): the shipped analytic ear
   (``load_pretrained("ear-analytic").transcribe``) at its default threshold gives the
   initial notes (velocity 64, the ear hears no velocity). The same ear at a lower
   threshold (``candidate_threshold``) proposes extra *candidate* notes it was unsure of,
   and every initial note also gets time-shifted alternatives (``shifts`` frames) as
   candidates, so the gradient stage can add notes, drop notes, and move onsets.
2. **Selection stage** (``steps`` Adam steps): every candidate ``c`` has a gate
   ``g_c = sigmoid(logit_c)`` (the synth's soft onset amplitude) and a velocity
   ``v_c = 127 sigmoid(u_c)``. Candidates are split into *layers* such that within a layer
   no two notes of a key overlap in time; each layer is rendered by
   `DifferentiablePianoSynth` (onset roll = gates, velocity roll, held roll = the note's
   span) and the layers are summed (the synth is linear in its voices), so overlapping
   alternatives sound side by side instead of damping each other. The loss is a
   multi-resolution spectral distance (L1 between log-magnitude STFTs at n_fft 2048 and
   512, plus the env's own 20 fps log-mel, `LogMel.torch`) plus an L1 sparsity prior on
   each note's linear amplitude ``g_c * loudness(v_c)``.
3. **Thresholding**: a candidate's *effective velocity* is the velocity whose loudness is
   ``g_c * loudness(v_c)``; notes with effective velocity >= ``min_velocity`` are kept;
   of kept notes of one key with onsets less than two frames apart, the louder one wins
   (the env needs a key-up step before a re-strike); each note is cut to end one frame
   before the key's next onset.
4. **Velocity stage** (``refine_steps`` steps): the discrete performance is rendered
   exactly as the env would play it (one roll, onsets 1, held spans), and only the
   velocities are refined by the same loss.

The result is a `Score` on the env's frame grid (``agent.score``; ``agent.frames`` is its
`FrameScore`). ``agent.init_score`` is the initialization alone, and ``agent.losses``
records the spectral loss (without the prior) of the initialization and of the result,
rendered through the same differentiable synth, so one can check that descent helped.

Only the built-in piano's timbre is modeled. On audio of another piano (e.g.
`SoundFontSynth`) the fit is a mismatch model: harmonics the model cannot explain may pull
in extra notes, and the velocities are in the built-in piano's loudness scale.
"""
from __future__ import annotations

import math
import os
import time

import gymnasium as gym
import numpy as np

from lmm_env._checks import check_bool, check_int, check_real, check_seed, short_repr
from lmm_env.score import FrameScore, Score
from lmm_env.synth.base import LOWEST_PITCH, N_KEYS

_SILENT = -1.0
MAX_STEPS = 100_000  # Adam steps of either stage (the default is 80: minutes are a few hundred)
MAX_SHIFTS, MAX_SHIFT = 16, 100  # time-shifted alternatives per note, and their reach in frames


def _single_env_sim(env, who: str):
    """The sim of ``env``, one lmm_env task; a clear error for None, a vector env or another env."""
    if env is None:
        raise TypeError(f"{who} needs the env it will play, got None")
    if isinstance(env, gym.vector.VectorEnv) or hasattr(env, "num_envs"):
        raise TypeError(f"{who} plays one env; got a vector env ({type(env).__name__}): "
                        "pass a single env made with gym.make")
    sim = getattr(getattr(env, "unwrapped", None), "sim", None)
    if sim is None:
        raise TypeError(f"{short_repr(env)} is not an lmm_env task (it has no .sim); {who} plays lmm_env tasks")
    return sim


def _loudness_db(v):
    """dB of the synth's loudness curve (see `lmm_env.synth.model.loudness`)."""
    from lmm_env.synth import model

    return (v / 127.0 - 1.0) * model.LOUDNESS_RANGE_DB


class GradientAgent:
    """Transcribe target audio by gradient descent through the env's piano, then play it.

    Args:
        env: an LMMPiano env (gives frame rate, sample rate and the key layout), or None
            for transcription only (20 fps, 16 kHz, 88 keys).
        steps: Adam steps of the selection stage (at most 100_000).
        refine_steps: Adam steps of the velocity stage (at most 100_000).
        lr: Adam learning rate (on logits).
        seed: torch seed (the descent is deterministic given it; it only matters for ties).
        init: ``"ear-analytic"`` (the shipped analytic ear), ``"ear"`` (the learned ear), or
            an ear object (e.g. ``lmm_env.lm.ear_for(K)``, the ear of K pairs).
        candidate_threshold: activation threshold at which the ear proposes extra candidates.
        shifts: frame offsets of the time-shifted alternatives of each initial note (at most 16,
            each in [-100, 100]).
        min_velocity: effective velocity below which a candidate is dropped.
        sparsity: weight of the L1 prior on note amplitudes.
        progress: show a tqdm progress bar.
        threads: torch intra-op threads while transcribing, 1 to 1024 (None: leave as is).

    Every argument is checked here (a ValueError or TypeError naming it); ``env`` must be one
    lmm_env task, not a vector env.

    ``transcribe(audio)`` returns the `Score`; ``listen(audio)`` transcribes and arms
    ``predict``, which then plays the transcription one env step per call (reset at
    ``episode_start`` or by ``reset()``).
    """

    def __init__(self, env=None, steps: int = 80, refine_steps: int = 30, lr: float = 0.1, seed: int = 0,
                 init: str = "ear-analytic", candidate_threshold: float = 0.3, shifts=(-1, 1),
                 min_velocity: float = 12.0, sparsity: float = 0.3, progress: bool = True,
                 threads: int | None = 1):
        self._check_args(steps, refine_steps, lr, seed, init, candidate_threshold, shifts, min_velocity, sparsity,
                         progress, threads)
        self.env = env
        if env is not None:
            sim = _single_env_sim(env, type(self).__name__)
            kb = sim.keyboard
            self.frame_rate = float(sim.frame_rate)
            self.sample_rate = int(sim.sample_rate)
            self.column_of_action = np.asarray(kb.pitch_of_action) - LOWEST_PITCH
            self.n_actions = int(kb.n_actions)
        else:
            self.frame_rate, self.sample_rate = 20.0, 16000
            self.column_of_action = np.arange(N_KEYS)
            self.n_actions = N_KEYS
        hop = self.sample_rate / self.frame_rate
        if abs(hop - round(hop)) > 1e-9:
            raise ValueError(f"sample_rate / frame_rate = {hop} is not a whole number of samples")
        self.hop = int(round(hop))
        self.steps, self.refine_steps, self.lr, self.seed = int(steps), int(refine_steps), float(lr), check_seed(seed)
        self.init = init
        self.candidate_threshold = float(candidate_threshold)
        self.shifts = tuple(int(s) for s in shifts)
        self.min_velocity = float(min_velocity)
        self.sparsity = float(sparsity)
        self.progress = bool(progress)
        self.threads = None if threads is None else int(threads)
        self._synth = None
        self._ear = None
        self._mel = None
        self.score: Score | None = None
        self.frames: FrameScore | None = None
        self.init_score: Score | None = None
        self.losses: dict[str, float] = {}
        self.timings: dict[str, float] = {}
        self._t = 0

    @staticmethod
    def _check_args(steps, refine_steps, lr, seed, init, candidate_threshold, shifts, min_velocity, sparsity,
                    progress, threads) -> None:
        """Every argument now, with bounds: a typo must not become a billion Adam steps or a NaN threshold."""
        check_int("steps", steps, 0, MAX_STEPS)
        check_int("refine_steps", refine_steps, 0, MAX_STEPS)
        check_real("lr", lr, 0.0, 10.0, lo_open=True)
        if check_seed(seed) is not None:
            check_int("seed", seed, 0, 2**64 - 1)  # torch's seed range
        if isinstance(init, str):  # loaded at the first transcription: a bad name must fail now
            if init not in ("ear-analytic", "ear") and not (init.endswith(".safetensors") and os.path.isfile(init)):
                raise ValueError(f"init={short_repr(init)} is not allowed; use 'ear-analytic', 'ear', an ear "
                                 ".safetensors file, or an ear object (with .transcribe)")
        elif not callable(getattr(init, "transcribe", None)):
            raise TypeError(f"init={short_repr(init)} is not allowed; use 'ear-analytic', 'ear', an ear .safetensors "
                            "file, or an ear object (with .transcribe, e.g. lmm_env.lm.ear_for(K))")
        check_real("candidate_threshold", candidate_threshold, 0.0, 1.0)
        if isinstance(shifts, (str, bytes)) or not hasattr(shifts, "__len__") or len(shifts) > MAX_SHIFTS:
            raise ValueError(f"shifts={short_repr(shifts)} is not allowed; use a list of at most {MAX_SHIFTS} "
                             f"frame offsets in [-{MAX_SHIFT}, {MAX_SHIFT}]")
        for i, s in enumerate(shifts):
            check_int(f"shifts[{i}]", s, -MAX_SHIFT, MAX_SHIFT)
        check_real("min_velocity", min_velocity, 0.0, 127.0)
        check_real("sparsity", sparsity, 0.0, 1000.0)
        check_bool("progress", progress)
        if threads is not None:
            check_int("threads", threads, 1, 1024)

    # ------------------------------------------------------------------ input

    def load_audio(self, audio) -> np.ndarray:
        """Validate ``audio`` (float array at ``sample_rate`` or a WAV path) -> 1-D float32."""
        from lmm_env.audio import load_audio

        if isinstance(audio, np.ndarray) and audio.ndim != 1:
            raise ValueError(f"audio must be 1-D mono samples, got shape {audio.shape}")
        audio = load_audio(audio, self.sample_rate, "audio", allow_silence=True)
        if audio.size < self.hop:
            raise ValueError(f"audio has {audio.size} samples; at least one frame ({self.hop} samples) is needed")
        return audio

    # ------------------------------------------------------------------ pieces

    def _parts(self):
        import torch

        if self._synth is None:
            from lmm_env.audio import LogMel
            from lmm_env.lm import load_pretrained
            from lmm_env.synth import DifferentiablePianoSynth

            self._synth = DifferentiablePianoSynth(self.sample_rate, self.frame_rate)
            self._ear = load_pretrained(self.init) if isinstance(self.init, str) else self.init
            self._mel = LogMel(self.sample_rate, self.hop)
            self._windows = {n: torch.hann_window(n) for n in (2048, 512)}
        return self._synth, self._ear, self._mel

    def _features(self, audio):
        """Spectral representations of torch audio (n,) used by the loss."""
        import torch

        feats = []
        for n_fft, hop in ((2048, 256), (512, 128)):
            w = self._windows[n_fft]
            spec = torch.stft(audio, n_fft, hop, window=w, center=True, return_complex=True)
            mag = spec.abs() * (2.0 / w.sum())  # a full-scale sine peaks at ~1
            feats.append(torch.log(mag + 1e-4))
        feats.append(self._mel.torch(audio) * 0.5 / math.log(10.0))  # power dB/20-ish scale
        return feats

    @staticmethod
    def _distance(fa, fb):
        return sum((a - b).abs().mean() for a, b in zip(fa, fb))

    def _ear_notes(self, audio, **kw):
        """Ear transcription as arrays (key, onset frame, end frame), end exclusive."""
        held, onset = self._ear.transcribe(audio, **kw)
        fs = FrameScore(self.frame_rate, held, onset & held, np.where(held, 64, 0).astype(np.uint8))
        s = fs.to_score()
        k = s.pitches.astype(np.int64) - LOWEST_PITCH
        t0 = np.rint(s.onsets * self.frame_rate).astype(np.int64)
        t1 = np.rint(s.offsets * self.frame_rate).astype(np.int64)
        return k, t0, t1

    def _render(self, notes_k, notes_t, notes_e, gate, vel, layers, T):
        """Sum of the layers' audio; gate/vel are torch (n,), layers lists of index arrays."""
        import torch

        synth = self._synth
        audio = None
        for idx, held in layers:
            on = torch.zeros(T, N_KEYS)
            vr = torch.zeros(T, N_KEYS)
            ii = torch.from_numpy(idx)
            tt = torch.from_numpy(notes_t[idx])
            kk = torch.from_numpy(notes_k[idx])
            on = on.index_put((tt, kk), gate[ii])
            vr = vr.index_put((tt, kk), vel[ii])
            a = synth(on, vr, held)
            audio = a if audio is None else audio + a
        return audio

    def _layers(self, k, t, e, T):
        """Greedy split into layers where no key's notes overlap; each with its held roll."""
        import torch

        order = np.lexsort((t, k))
        last_end: list[np.ndarray] = []
        assign = np.zeros(len(k), np.int64)
        for i in order:
            for li, ends in enumerate(last_end):
                if ends[k[i]] <= t[i]:
                    break
            else:
                last_end.append(np.full(N_KEYS, -1, np.int64))
                li = len(last_end) - 1
            last_end[li][k[i]] = e[i]
            assign[i] = li
        layers = []
        for li in range(len(last_end)):
            idx = np.flatnonzero(assign == li)
            held = np.zeros((T, N_KEYS), np.float32)
            for i in idx:
                held[t[i]:e[i], k[i]] = 1.0
            layers.append((idx, torch.from_numpy(held)))
        return layers

    # ------------------------------------------------------------------ main

    def transcribe(self, audio) -> Score:
        """Recover a performance from ``audio`` (float array at ``sample_rate`` or WAV path)."""
        import torch

        x = self.load_audio(audio)
        prev_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(int(self.threads))
        try:
            return self._transcribe(x)
        finally:
            if self.threads:
                torch.set_num_threads(prev_threads)

    def _transcribe(self, x: np.ndarray) -> Score:
        import torch
        from tqdm.auto import tqdm

        t_start = time.perf_counter()
        synth, ear, _ = self._parts()
        T = len(x) // self.hop
        if T == 0:
            raise ValueError("audio is shorter than one frame")
        x = x[: T * self.hop]
        gen = torch.Generator().manual_seed(int(self.seed or 0))
        target = torch.from_numpy(x)
        with torch.no_grad():
            f_target = self._features(target)

        # 1. initialization and candidates
        k0, t0, e0 = self._ear_notes(x)
        v0 = np.full(len(k0), 64.0)
        self.init_score = self._to_score(k0, t0, e0, v0, T)
        ck, ct, ce, prior = [k0], [t0], [e0], [np.ones(len(k0), bool)]
        for s in self.shifts:
            ts = t0 + s
            ok = (ts >= 0) & (ts < T)
            ck.append(k0[ok]); ct.append(ts[ok]); ce.append(np.maximum(e0[ok], ts[ok] + 1)); prior.append(np.zeros(ok.sum(), bool))
        if self.candidate_threshold < 0.5:
            k1, t1, e1 = self._ear_notes(x, threshold=self.candidate_threshold, min_frames=2)
            new = np.ones(len(k1), bool)
            for i in range(len(k1)):
                same = (k0 == k1[i]) & (np.abs(t0 - t1[i]) <= max([1] + [abs(s) for s in self.shifts]))
                new[i] = not same.any()
            ck.append(k1[new]); ct.append(t1[new]); ce.append(e1[new]); prior.append(np.zeros(new.sum(), bool))
        k = np.concatenate(ck).astype(np.int64)
        t = np.concatenate(ct).astype(np.int64)
        e = np.minimum(np.concatenate(ce).astype(np.int64), T)
        is_init = np.concatenate(prior)
        # unique (t, k)
        _, uniq = np.unique(t * N_KEYS + k, return_index=True)
        uniq = np.sort(uniq)
        k, t, e, is_init = k[uniq], t[uniq], e[uniq], is_init[uniq]
        self.n_candidates = len(k)

        bar = tqdm(total=self.steps + self.refine_steps, disable=not self.progress, desc="GradientAgent",
                   leave=False)
        # loss of the initialization alone, rendered the same way
        with torch.no_grad():
            self.losses["init"] = self._exact_loss(k0, t0, e0, torch.full((len(k0),), 64.0), T, f_target)
        self.losses["init"] = float(self.losses["init"])

        # 2. selection stage
        if len(k):
            layers = self._layers(k, t, e, T)
            logit = torch.where(torch.from_numpy(is_init), torch.tensor(2.0), torch.tensor(0.0))
            logit = (logit + 0.01 * torch.randn(len(k), generator=gen)).requires_grad_(True)
            u = torch.zeros(len(k), requires_grad=True)  # velocity 63.5
            opt = torch.optim.Adam([logit, u], lr=self.lr)
            n_frames_total = float(T)
            for _ in range(self.steps):
                gate = torch.sigmoid(logit)
                vel = 127.0 * torch.sigmoid(u)
                audio = self._render(k, t, e, gate, vel, layers, T)
                fit = self._distance(self._features(audio), f_target)
                amp = gate * 10.0 ** (_loudness_db(vel) / 20.0)
                loss = fit + self.sparsity * amp.sum() / n_frames_total
                opt.zero_grad()
                loss.backward()
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{fit.item():.4f}", stage="select")
            with torch.no_grad():
                gate = torch.sigmoid(logit).numpy().astype(np.float64)
                vel = 127.0 * torch.sigmoid(u).numpy().astype(np.float64)
            v_eff = vel + 127.0 * 20.0 * np.log10(np.maximum(gate, 1e-9)) / 36.0
        else:
            v_eff = np.zeros(0)

        # 3. threshold into a playable performance
        keep = v_eff >= self.min_velocity
        k, t, e, v = k[keep], t[keep], e[keep], np.clip(v_eff[keep], 1.0, 127.0)
        k, t, e, v = self._playable(k, t, e, v, T)

        # 4. velocity stage on the exact performance
        if len(k) and self.refine_steps:
            u = torch.logit(torch.from_numpy(v / 127.0).float().clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
            opt = torch.optim.Adam([u], lr=self.lr)
            on, held = self._rolls(k, t, e, T)
            for _ in range(self.refine_steps):
                vel = 127.0 * torch.sigmoid(u)
                vr = torch.zeros(T, N_KEYS).index_put((torch.from_numpy(t), torch.from_numpy(k)), vel)
                audio = synth(on, vr, held)
                fit = self._distance(self._features(audio), f_target)
                opt.zero_grad()
                fit.backward()
                opt.step()
                bar.update(1)
                bar.set_postfix(loss=f"{fit.item():.4f}", stage="velocity")
            with torch.no_grad():
                v = (127.0 * torch.sigmoid(u)).numpy().astype(np.float64)
        bar.close()
        v = np.clip(np.rint(v), 1, 127)
        with torch.no_grad():
            self.losses["final"] = float(self._exact_loss(k, t, e, torch.from_numpy(v).float(), T, f_target))
        self.score = self._to_score(k, t, e, v, T)
        self.frames = self.score.frames(self.frame_rate) if len(self.score) else FrameScore(
            self.frame_rate, np.zeros((0, N_KEYS), bool), np.zeros((0, N_KEYS), bool), np.zeros((0, N_KEYS), np.uint8))
        self.timings["transcribe_s"] = time.perf_counter() - t_start
        return self.score

    def _rolls(self, k, t, e, T):
        import torch

        on = np.zeros((T, N_KEYS), np.float32)
        held = np.zeros((T, N_KEYS), np.float32)
        on[t, k] = 1.0
        for i in range(len(k)):
            held[t[i]:e[i], k[i]] = 1.0
        return torch.from_numpy(on), torch.from_numpy(held)

    def _exact_loss(self, k, t, e, vel, T, f_target):
        import torch

        on, held = self._rolls(k, t, e, T)
        vr = torch.zeros(T, N_KEYS).index_put((torch.from_numpy(t), torch.from_numpy(k)), vel.float())
        audio = self._synth(on, vr, held)
        return self._distance(self._features(audio), f_target)

    def _playable(self, k, t, e, v, T):
        """Resolve clashes: per key, onsets >= 2 frames apart (louder wins), notes end before the next."""
        out = []
        for key in np.unique(k):
            idx = np.flatnonzero(k == key)
            idx = idx[np.argsort(t[idx], kind="stable")]
            chosen: list[int] = []
            for i in idx:
                if chosen and t[i] - t[chosen[-1]] < 2:
                    if v[i] > v[chosen[-1]]:
                        chosen[-1] = i
                    continue
                chosen.append(i)
            for j, i in enumerate(chosen):
                end = int(e[i])
                if j + 1 < len(chosen):
                    end = min(end, int(t[chosen[j + 1]]) - 1)
                end = max(end, int(t[i]) + 1)
                out.append((int(key), int(t[i]), min(end, T), float(v[i])))
        if not out:
            z = np.zeros(0, np.int64)
            return z, z.copy(), z.copy(), np.zeros(0)
        a = np.array(out)
        return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2].astype(np.int64), a[:, 3]

    def _to_score(self, k, t, e, v, T) -> Score:
        fr = self.frame_rate
        return Score(np.asarray(k, np.int64) + LOWEST_PITCH, np.asarray(t) / fr, np.asarray(e) / fr,
                     np.clip(np.rint(v), 1, 127).astype(np.int64))

    # ------------------------------------------------------------------ playing

    def listen(self, audio) -> Score:
        """Transcribe ``audio`` and get ready to play it from the start."""
        score = self.transcribe(audio)
        self.reset()
        return score

    def reset(self) -> None:
        self._t = 0

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """The action of the current step of the transcription (SB3's signature)."""
        if self.frames is None:
            raise RuntimeError("GradientAgent has nothing to play: call listen(audio) first")
        if episode_start is not None and bool(np.any(episode_start)):
            self._t = 0
        batch = np.asarray(observation["key_state"]).ndim == 2 if isinstance(observation, dict) else False
        fs = self.frames
        action = np.full(self.n_actions, _SILENT, dtype=np.float32)
        if self._t < fs.T:
            cols = self.column_of_action
            held = fs.held[self._t, cols]
            vel = fs.velocity[self._t, cols].astype(np.float32)
            keys = action[: len(cols)]
            keys[held] = np.maximum((vel[held] - 1.0) / 126.0, 1e-4)
        self._t += 1
        if batch:
            action = np.repeat(action[None], len(observation["key_state"]), axis=0)
        return action, state
