"""`TorchPianoSim`: PianoSim's per-step path as torch tensors on a device, for thousands of envs.

One world, not a second one: a `TorchPianoSim` holds a `PianoSim` (``self.sim``) and leaves
everything that happens once per episode to it: the score pool, drawing pieces with the
env's RNG, the target tapes, rendering the target through the synth, the reward models'
reset precomputation (target log-mel, loudness, score-LM logits, audio-LM densities) and
the metrics at episode end. What happens every step runs here, on ``device``:

* the target tape (uint8 codes, (n_envs, pad + steps + pad, 88)), uploaded per env at reset;
* the keyboard: `lmm_env.keyboard.Keyboard.apply` on tensors (identity or shuffled layout,
  per-env relayouts, pedal);
* the synth: `PianoPlayer`'s voices (active / blocks since onset / blocks since release /
  layer gains per (env, key, slot)) with the sound model's tables on the device; a block
  is every sounding voice's two table rows (damper envelope included) weighted by its
  layer gains and summed into its env's row;
* `LogMel` by ``torch.fft`` (its ``.torch()`` twin) and the history rings;
* the rewards, through the twins in `lmm_env.envs.torch_rewards`.

Episodes are the numpy world's: for the same seeds and actions the score and key-state
observations are identical and the log-mel features and rewards agree within
``TORCH_TOLERANCE`` (tested on CPU). Truncation is known on the host without a device
round trip (every env advances one step per step); the key history comes back from the
device only for envs whose episode ends (for their metrics).

The mix is one ``embedding_bag`` (gather, scale, sum fused) over a table of every key's
block rows already multiplied by each damper row. ``mix="compact"`` (default) feeds it the
sounding voices only, found by ``nonzero`` (one device sync a step); ``mix="dense"`` feeds it
every voice slot with silent ones at weight 0 (no sync, fixed shapes, more work).
"""
from __future__ import annotations

import numpy as np
import torch

from lmm_env._checks import short_repr
from lmm_env.envs.core import _ONSET_BIT, PianoSim
from lmm_env.keyboard import world_layout
from lmm_env.envs.torch_rewards import SUPPORTED, TorchStepContext, make_torch_reward
from lmm_env.synth import model as synth_model
from lmm_env.synth.base import LOWEST_PITCH, N_KEYS
from lmm_env.synth.piano import PianoSynth

__all__ = ["TorchPianoSim", "TORCH_TOLERANCE", "SUPPORTED"]

MIXES = ("compact", "dense")
# per env and step of the longest episode: the device's dense target tape, key history and pedal history
# (twice while they grow), and the host's staging copy of an uploaded tape
DEVICE_STEP_BYTES = 2 * (2 * N_KEYS + 1) + N_KEYS
TORCH_TOLERANCE = 1e-3  # |torch - numpy| bound on log-mel features and rewards (float32 FFT and sum order)


def _widened(x: torch.Tensor, width: int) -> torch.Tensor:
    """``x`` with dim 1 grown to at least ``width`` (zeros appended, contents kept)."""
    if x.shape[1] >= width:
        return x
    grown = x.new_zeros((x.shape[0], width) + tuple(x.shape[2:]))
    grown[:, : x.shape[1]] = x
    return grown



def check_device(device) -> "torch.device":
    """``device`` as a torch device the torch world can run on here, or a ValueError saying which can."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={short_repr(device)} is not a torch device ('cpu', 'cuda', 'cuda:0', ...): {exc}") from None
    usable = ["cpu"] + ([f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else [])
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for, but torch sees no CUDA device here; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: torch sees {torch.cuda.device_count()} CUDA device(s); use one of {usable}")
    elif dev.type != "cpu":
        raise ValueError(f"device={device!r} is not supported by the torch world, which runs on 'cpu' or 'cuda' "
                         f"(usable here: {usable})")
    return dev

class TorchPianoSim:
    """LMMPiano-v0's world stepped in torch on ``device``; ``self.sim`` is the `PianoSim` it mirrors.

    Args:
        n_envs: envs in the batch.
        device: a torch device ("cpu", "cuda", "cuda:1", ...).
        mix: how a block of voices is mixed: "compact" (default) gathers the sounding voices
            only (work in proportion to them; ``nonzero`` syncs the device once a step);
            "dense" weighs every (env, key, slot) voice, silent ones by 0 (fixed shapes, no
            sync, ~2x the work of random play and ~20x that of a melody).
        validate_actions: check every action batch for NaN/inf and raise ValueError as the
            numpy world does. The check reads a flag back from the device each step, so the
            default (None) checks on CPU only; unchecked, NaN acts as key up and +-inf as the bound.
        **kwargs: `PianoSim`'s arguments (see `LMMPianoEnv`). Only ``synth="piano"`` (the built-in
            additive piano) has a torch twin; ``record_audio`` must stay False (audio stays on
            the device); the reward must be one of `SUPPORTED` (`lmm_env.envs.torch_rewards`).
    """

    def __init__(self, n_envs: int = 1, *, device="cpu", mix: str = "compact", validate_actions: bool | None = None,
                 **kwargs):
        record_audio = kwargs.pop("record_audio", False)
        if isinstance(record_audio, (bool, np.bool_)) and record_audio:  # PianoSim names other non-bools
            raise ValueError("record_audio=True is not allowed in the torch world: its audio stays on the device; "
                             "use the numpy world (backend='numpy') to record episode audio")
        self.device = check_device(device)
        synth = kwargs.get("synth", "piano")
        if not (isinstance(synth, PianoSynth) or (isinstance(synth, str) and synth == "piano")):
            # checked before the world is built: a SoundFont would first need tinysoundfont
            raise ValueError(f"synth={short_repr(synth)} has no torch twin; the torch world plays synth='piano' (the "
                             "built-in additive piano) only; use backend='numpy' for synth='grand', the SoundFont or a .sf2/.sf3 file")
        if not isinstance(mix, str) or mix not in MIXES:
            raise ValueError(f"mix={short_repr(mix)} is not allowed; use one of {list(MIXES)}")
        if not (validate_actions is None or isinstance(validate_actions, (bool, np.bool_))):  # 1 is not True
            raise ValueError(f"validate_actions={short_repr(validate_actions)} is not allowed; use None, True or False")
        self.mix = mix
        self.validate_actions = self.device.type == "cpu" if validate_actions is None else bool(validate_actions)
        sim = self.sim = PianoSim(n_envs, record_audio=record_audio, **kwargs)
        sim.extra_step_bytes = DEVICE_STEP_BYTES
        sim.check_pool_bytes()  # again, with the device's dense tapes
        if type(sim.synth) is not PianoSynth:  # a subclass of the piano: its voices are not the twin's
            raise ValueError(f"synth={short_repr(kwargs.get('synth'))} has no torch twin; the torch world plays "
                             "synth='piano' (the built-in additive piano) only")
        self.reward = make_torch_reward(sim.reward, self.device)
        dev, n = self.device, sim.n_envs
        self.n_envs, self.keyboard = n, sim.keyboard
        self._build_synth()
        self.features = sim.features
        self._ar = torch.arange(n, device=dev)
        self._tensor_device = self._ar.device  # "cuda" resolved to its index, for the action check
        self._look = torch.arange(sim.lookahead + 1, device=dev)
        # code & 127 -> velocity / 127 exactly as numpy rounds it (float64 product cast to float32)
        self._vel_lut = torch.from_numpy((np.arange(128) * (1.0 / 127.0)).astype(np.float32)).to(dev)
        # keyboard state (by action index) and each action's column (pitch - 21) per env
        self.down = torch.zeros(n, self.keyboard.n_keys, dtype=torch.bool, device=dev)
        self.pedal_down = torch.zeros(n, dtype=torch.bool, device=dev)
        self.cols = torch.from_numpy(world_layout(self.keyboard) - LOWEST_PITCH).to(dev)
        # rings of the last L = history_blocks + 1 blocks and log-mel frames, kept twice over
        L = self._ring_len = sim.history_blocks + 1
        self._ring_pos = 0
        self.audio_ring = torch.zeros(n, 2 * L, sim.block_size, device=dev)
        self.feat_ring = torch.full((n, 2 * L, sim.n_mels), self.features.silence, device=dev)
        self.last_features = torch.full((n, sim.n_mels), self.features.silence, device=dev)
        self.t = torch.zeros(n, dtype=torch.long, device=dev)
        self.tape = torch.zeros(n, 0, N_KEYS, dtype=torch.uint8, device=dev)  # target codes (n, pad + steps + pad, 88)
        self.hist = torch.zeros(n, 0, N_KEYS, dtype=torch.uint8, device=dev)  # 128 * down | struck velocity
        self.pedal_hist = torch.zeros(n, 0, dtype=torch.bool, device=dev)

    # ------------------------------------------------------------------ synth
    def _build_synth(self) -> None:
        synth, b, dev = self.sim.synth, self.sim.block_size, self.device
        table_len = synth.tables.shape[2]
        self.n_table_blocks = nb = -(-table_len // b)
        blocks = np.zeros((2, N_KEYS, nb * b), np.float32)
        blocks[:, :, :table_len] = synth.tables
        rows = blocks.reshape(2, N_KEYS * nb, b).transpose(1, 0, 2)  # (key * block index, [soft, bright], sample)
        self.n_release_blocks = nr = -(-len(synth.release) // b)
        release = np.ones((nr + 1) * b, np.float32)  # row 0 all ones (a held voice), row 1 + r: r blocks after key-up
        release[b:] = 0.0
        release[b : b + len(synth.release)] = synth.release
        release = release.reshape(nr + 1, b)
        # Every (damper row, key, block, layer) pre-multiplied: a voice's block is two weighted
        # rows of this table, so one embedding_bag (gather, scale and sum fused) mixes a batch.
        table = rows[None] * release[:, None, None, :]
        self.table = torch.from_numpy(np.ascontiguousarray(table.reshape(-1, b))).to(dev)
        soft, bright = synth_model.layer_gains(np.arange(128, dtype=np.float32))
        self.soft_of_velocity = torch.from_numpy(soft.astype(np.float32)).to(dev)
        self.bright_of_velocity = torch.from_numpy(bright.astype(np.float32)).to(dev)
        self.slots = S = synth_model.voice_slots(synth.sample_rate, b)
        shape = (self.n_envs, N_KEYS, S)
        self.active = torch.zeros(shape, dtype=torch.bool, device=dev)
        self.pos = torch.zeros(shape, dtype=torch.long, device=dev)  # blocks since onset
        self.rel = torch.full(shape, -1, dtype=torch.long, device=dev)  # blocks since release, -1 = held
        self.gain_soft = torch.zeros(shape, device=dev)
        self.gain_bright = torch.zeros(shape, device=dev)
        self.next_slot = torch.zeros(self.n_envs, N_KEYS, dtype=torch.long, device=dev)
        self._slot_ids = torch.arange(S, device=dev)
        self._key_grid = torch.arange(N_KEYS, device=dev)[None, :, None].expand(shape)

    def _play(self, onset: torch.Tensor, velocity: torch.Tensor, damped: torch.Tensor) -> torch.Tensor:
        """`PianoPlayer.step` on the device: key events at the block start, then one block (n, block)."""
        S = self.slots
        # key-up and re-strike both release the key's sounding voices
        stop = (damped | onset).unsqueeze(-1) & self.active & (self.rel < 0)
        self.rel.masked_fill_(stop, 0)
        slot = self.next_slot
        new = onset.unsqueeze(-1) & (self._slot_ids == slot.unsqueeze(-1))
        self.next_slot = torch.where(onset, (slot + 1) % S, slot)
        self.active |= new
        self.pos.masked_fill_(new, 0)
        self.rel.masked_fill_(new, -1)
        self.gain_soft = torch.where(new, self.soft_of_velocity[velocity].unsqueeze(-1), self.gain_soft)
        self.gain_bright = torch.where(new, self.bright_of_velocity[velocity].unsqueeze(-1), self.gain_bright)
        if self.mix == "compact":
            return self._mix_compact()
        return self._mix_dense()

    def _rows_of(self, key, pos, rel):
        """First `table` row (soft; bright is the next) of voices of ``key`` at ``pos`` with damper ``rel``."""
        return (((rel + 1) * N_KEYS + key) * self.n_table_blocks + pos) * 2

    def _mix_compact(self) -> torch.Tensor:
        """Mix the sounding voices only (found by ``nonzero``: one device sync)."""
        S = self.slots
        idx = self.active.view(-1).nonzero().squeeze(1)  # sorted: voices in (env, key, slot) order
        pos = self.pos.view(-1)[idx]
        rel = self.rel.view(-1)[idx]
        first = self._rows_of(torch.div(idx, S, rounding_mode="floor") % N_KEYS, pos, rel)
        rows = torch.stack([first, first + 1], 1).view(-1)
        weights = torch.stack([self.gain_soft.view(-1)[idx], self.gain_bright.view(-1)[idx]], 1).view(-1)
        env = torch.div(idx, N_KEYS * S, rounding_mode="floor")
        offsets = 2 * torch.searchsorted(env, self._ar)
        out = torch.nn.functional.embedding_bag(rows, self.table, offsets, mode="sum", per_sample_weights=weights)
        # advance; retire voices whose damper or table ran out
        pos = pos + 1
        rel = torch.where(rel >= 0, rel + 1, rel)
        self.pos.view(-1)[idx] = pos
        self.rel.view(-1)[idx] = rel
        self.active.view(-1)[idx] = (rel < self.n_release_blocks) & (pos < self.n_table_blocks)
        return out

    def _mix_dense(self) -> torch.Tensor:
        """Mix every voice slot, silent ones at weight 0: fixed shapes, no device sync."""
        n, nb, nr = self.n_envs, self.n_table_blocks, self.n_release_blocks
        active = self.active
        first = self._rows_of(self._key_grid, self.pos.clamp_max(nb - 1), self.rel.clamp_max(nr - 1))
        rows = torch.stack([first, first + 1], -1).view(n, -1)
        weights = torch.stack([self.gain_soft * active, self.gain_bright * active], -1).view(n, -1)
        out = torch.nn.functional.embedding_bag(rows, self.table, mode="sum", per_sample_weights=weights)
        self.pos = torch.where(active, self.pos + 1, self.pos)
        self.rel = torch.where(active & (self.rel >= 0), self.rel + 1, self.rel)
        self.active = active & (self.rel < nr) & (self.pos < nb)
        return out

    # ------------------------------------------------------------------ keyboard
    def _check_action(self, action) -> torch.Tensor:
        kb = self.keyboard
        if isinstance(action, np.ndarray):
            if action.dtype.kind != "f":
                raise ValueError(f"action dtype {action.dtype} is not allowed; pass floats (float32) in [-1, 1]")
            a = torch.from_numpy(np.ascontiguousarray(action, np.float32))
        elif isinstance(action, torch.Tensor):
            if not action.dtype.is_floating_point:
                raise ValueError(f"action dtype {action.dtype} is not allowed; pass floats (float32) in [-1, 1]")
            if action.device != self._tensor_device and action.device.type != "cpu":  # host tensors are uploaded
                raise ValueError(f"action is a tensor on device {str(action.device)!r}; this world runs on "
                                 f"{str(self._tensor_device)!r}: pass it there (action.to(env.device)), or on the CPU")
            a = action.detach()
        else:
            raise ValueError(f"action of type {type(action).__name__} is not allowed; pass a float torch tensor "
                             "or numpy array")
        if tuple(a.shape) != (self.n_envs, kb.n_actions):
            raise ValueError(f"action shape {tuple(a.shape)} is wrong; expected {(self.n_envs, kb.n_actions)}")
        a = a.to(self.device, torch.float32, non_blocking=True)
        if not self.validate_actions:  # unchecked: NaN is key up, +-inf the bound (on the device, no sync)
            return torch.nan_to_num(a, nan=-1.0, posinf=1.0, neginf=-1.0)
        if not bool(torch.isfinite(a).all()):
            bad = torch.nonzero(~torch.isfinite(a))[0].tolist()
            raise ValueError(f"action holds a non-finite value {float(a[tuple(bad)])!r} at index {tuple(bad)}; "
                             "actions must be finite floats in [-1, 1]")
        return a

    def _keys(self, a: torch.Tensor):
        """`Keyboard.apply`: (onset, velocity, damped, down), each (n, 88) in pitch order."""
        kb, n = self.keyboard, self.n_envs
        keys = a[:, : kb.n_keys]
        down = keys > 0.0
        onset = down & ~self.down
        self.down = down
        if kb.pedal:
            self.pedal_down = a[:, kb.n_keys] > 0.0
        vel = torch.round(keys.clamp(0.0, 1.0) * 126.0) + 1.0
        zeros = torch.zeros(n, N_KEYS, dtype=torch.bool, device=self.device)
        onset88 = zeros.scatter(1, self.cols, onset)
        down88 = zeros.scatter(1, self.cols, down)
        vel88 = torch.zeros(n, N_KEYS, dtype=torch.long, device=self.device).scatter(1, self.cols, vel.long())
        damped = ~(down88 | self.pedal_down[:, None]) if kb.pedal else ~down88
        return onset88, vel88, damped, down88

    # ------------------------------------------------------------------ episodes
    def upload(self, env_ids) -> None:
        """After ``self.sim.reset_env(i, ...)`` for each of ``env_ids``: start their episodes on the device."""
        np_ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if not len(np_ids):
            return
        sim, dev = self.sim, self.device
        ids = torch.from_numpy(np_ids).to(dev)
        # The device keeps dense (n, rows, ...) tapes and histories, as wide as the longest
        # episode started so far; each new episode's rows come from the host pool (envs/tapes.py).
        # Only the rows these episodes use are sent: steps never read past their own region.
        episodes = [sim.tapes.episode_tape(int(i)) for i in np_ids]
        width = max(len(e) for e in episodes)
        self.tape = _widened(self.tape, width)
        rows = np.zeros((len(np_ids), width, N_KEYS), np.uint8)
        for k, episode in enumerate(episodes):
            rows[k, : len(episode)] = episode
        self.tape[ids, :width] = torch.from_numpy(rows).to(dev)
        steps = int(sim.n_steps[np_ids].max())
        self.hist = _widened(self.hist, steps)
        self.pedal_hist = _widened(self.pedal_hist, steps)
        if sim.relayout == "episode":
            self.cols[ids] = torch.from_numpy(world_layout(self.keyboard)[np_ids] - LOWEST_PITCH).to(dev)
        self.t[ids] = 0
        self.down[ids] = False
        self.pedal_down[ids] = False
        self.active[ids] = False
        self.next_slot[ids] = 0
        self.audio_ring[ids] = 0.0
        self.feat_ring[ids] = self.features.silence
        self.last_features[ids] = self.features.silence
        self.reward.reset(ids, np_ids)

    def download_history(self, env_ids) -> None:
        """Copy the key history of ``env_ids`` back to the host `PianoSim` (for its metrics and MIDI)."""
        np_ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        if not len(np_ids):
            return
        sim = self.sim
        steps = int(sim.t[np_ids].max())
        ids = torch.from_numpy(np_ids).to(self.device)
        codes = self.hist[ids, :steps].cpu().numpy()
        pedal = self.pedal_hist[ids, :steps].cpu().numpy()
        for k, i in enumerate(np_ids):
            down, vel, ped = sim.history(int(i))  # views of the host pool, t[i] steps
            n = len(down)
            down[:] = codes[k, :n] >= _ONSET_BIT
            vel[:] = codes[k, :n] & 0x7F
            ped[:] = pedal[k, :n]

    # ------------------------------------------------------------------ observations
    @torch.no_grad()
    def observation(self) -> dict[str, torch.Tensor]:
        """The batch's observation as tensors on the device (see `PianoSim.observation`)."""
        sim = self.sim
        codes = self.tape[self._ar[:, None], sim.pad + self.t[:, None] + self._look, sim.lo_col : sim.hi_col]
        score = torch.stack([codes > 0, codes >= _ONSET_BIT], 1).float()
        score = torch.cat([score, self._vel_lut[(codes & 0x7F).long()].unsqueeze(1)], 1)
        key_state = self.down.float()
        if self.keyboard.pedal:
            key_state = torch.cat([key_state, self.pedal_down[:, None].float()], 1)
        return {"score": score, "audio": self.last_features.clone(), "key_state": key_state}

    # ------------------------------------------------------------------ stepping
    @torch.no_grad()
    def step(self, action):
        """Advance every env one step: (rewards (n,) float32, truncated (n,) host bool array, terms)."""
        sim = self.sim
        a = self._check_action(action)
        onset, velocity, damped, down = self._keys(a)
        audio = self._play(onset, velocity, damped)
        feats = self.features.torch(audio)[:, 0]
        t = self.t
        self.hist[self._ar, t] = (down.to(torch.uint8) << 7) | (velocity * onset).to(torch.uint8)
        if self.keyboard.pedal:
            self.pedal_hist[self._ar, t] = self.pedal_down
        held = self.tape[self._ar, sim.pad + t] > 0
        p, L = self._ring_pos, self._ring_len
        self.audio_ring[:, p] = audio
        self.audio_ring[:, p + L] = audio
        self.feat_ring[:, p] = feats
        self.feat_ring[:, p + L] = feats
        window = self.audio_ring[:, p + 1 : p + 1 + L].reshape(self.n_envs, L * sim.block_size)
        feature_history = self.feat_ring[:, p + 1 : p + L]
        self._ring_pos = (p + 1) % L
        ctx = TorchStepContext(step=t, audio=audio, window=window, features=feats,
                               feature_history=feature_history, target_held=held, key_down=down, env_ids=self._ar)
        rewards, terms = self.reward(ctx)
        self.last_features = feats
        self.t = t + 1
        sim.t = sim.t + 1  # the host's clock: truncation without asking the device
        return rewards, sim.t >= sim.n_steps, terms

    def episode_metrics(self, i: int) -> dict[str, float]:
        """Env ``i``'s metrics so far (its key history is fetched from the device first)."""
        self.download_history([i])
        return self.sim.episode_metrics(i)

    def performance_midi(self, i: int):
        """What env ``i`` played so far, as PrettyMIDI."""
        self.download_history([i])
        return self.sim.performance_midi(i)
