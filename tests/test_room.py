"""Rooms: the env's block player hears exactly what the offline convolution gives; rooms are deterministic."""
import numpy as np
import pytest

from lmm_env.synth import PianoSynth
from lmm_env.synth.room import ROOMS, Room, check_room, in_room


def _events(T, seed=0):
    rng = np.random.default_rng(seed)
    onset = rng.random((T, 1, 88)) < 0.03
    velocity = rng.integers(20, 120, (T, 1, 88))
    damped = ~onset & (rng.random((T, 1, 88)) < 0.2)
    return onset, velocity, damped


@pytest.mark.parametrize("name", ["studio", "hall"])
def test_the_block_player_equals_the_offline_convolution(name):
    room = Room.named(name)
    dry_synth = PianoSynth(16000)
    T, B = 60, 800
    onset, velocity, damped = _events(T)
    dry_player, wet_player = dry_synth.player(1, B), in_room(dry_synth, room).player(1, B)
    dry = np.concatenate([dry_player.step(onset[t], velocity[t], damped[t])[0] for t in range(T)])
    wet = np.concatenate([wet_player.step(onset[t], velocity[t], damped[t])[0] for t in range(T)])
    np.testing.assert_allclose(wet, room.apply(dry, 16000, tail=False), atol=2e-5)
    assert np.abs(wet - dry).max() > 1e-3  # the room is heard


def test_a_reset_env_starts_dry_of_its_old_tail_and_the_others_keep_theirs():
    room = Room.named("hall")
    player = in_room(PianoSynth(16000), room).player(2, 800)
    onset, velocity, damped = _events(20)
    for t in range(20):
        player.step(np.repeat(onset[t], 2, 0), np.repeat(velocity[t], 2, 0), np.repeat(damped[t], 2, 0))
    player.reset([0])
    silent = np.zeros((2, 88), bool)
    out = player.step(silent, np.ones((2, 88), int), silent)
    noise = room.noise_at(16000)[:800]
    np.testing.assert_allclose(out[0], noise, atol=1e-6)  # env 0: only the noise floor, from its start
    assert np.abs(out[1] - noise).max() > 1e-3  # env 1: still the hall's tail


def test_rooms_are_deterministic_and_checked():
    a, b = Room.named("living-room"), Room.named("living-room")
    assert np.array_equal(a.ir, b.ir) and np.array_equal(a.noise_at(16000), b.noise_at(16000))
    ir = Room.named("church").ir
    rt = 3.0
    late = ir[int(0.9 * rt * 48000):]
    assert np.sqrt(np.mean(late ** 2)) < 10 ** (-45 / 20)  # decays to about -60 dB at its RT60
    assert check_room(None) is None and check_room("hall").name == "hall"
    with pytest.raises(ValueError, match="room='attic' is not allowed"):
        check_room("attic")
    with pytest.raises(ValueError, match="noise_db"):
        Room(np.ones(10, np.float32), 16000, noise_db=5.0)
    with pytest.raises(ValueError, match="at most 10 s"):
        Room(np.ones(16000 * 11, np.float32), 16000)
    assert set(ROOMS) == {"studio", "living-room", "hall", "church"}


def test_a_measured_impulse_response_from_a_wav(tmp_path):
    import soundfile as sf

    ir = np.zeros(1600, np.float32)
    ir[0], ir[800] = 1.0, 0.5  # a direct path and one echo 50 ms later
    sf.write(tmp_path / "ir.wav", ir, 16000, subtype="FLOAT")
    room = Room(str(tmp_path / "ir.wav"), 0, None, "echo")
    y = room.apply(np.r_[1.0, np.zeros(1999)].astype(np.float32), 16000, tail=False)
    assert abs(y[0] - 1.0) < 1e-6 and abs(y[800] - 0.5) < 1e-6 and abs(y[400]) < 1e-6


def test_every_task_hears_the_world_and_its_targets_and_pairs_in_the_room():
    import gymnasium as gym

    import lmm_env  # noqa: F401
    from lmm_env import pairs
    from lmm_env.lm.ear import _synth_tag

    env = gym.make("LMMPiano-v0", score="exercises-scale", max_seconds=2.0, room="hall", pairs=0)
    assert env.unwrapped.sim.synth.name == "piano@hall" and env.unwrapped.pairs_instrument == "piano@hall"
    by_ear = gym.make("LMMByEar-v0", score="exercises-scale", max_seconds=2.0, room="studio", target_synth="soundfont")
    assert by_ear.unwrapped.sim.target_synth.name == "soundfont@studio"
    assert by_ear.unwrapped.pairs_instrument == "soundfont@studio"  # the ear of K pairs recorded in the room
    dry, wet = pairs.load(4)[0].audio, pairs.load(4, instrument="piano@hall")[0].audio
    expect = Room.named("hall").apply(dry, 16000, tail=False)
    np.testing.assert_allclose(wet[: len(dry) - 8000], expect[: len(dry) - 8000], atol=1e-4)
    assert _synth_tag("piano@hall") == "piano-hall"  # its ear is cached apart from the dry piano's
    for task in ("LMMDecipher-v0", "LMMImprovise-v0"):
        kw = {"prompt": None, "length_seconds": 1.0} if task == "LMMImprovise-v0" else {"max_seconds": 1.0}
        assert gym.make(task, room="living-room", **kw).unwrapped.sim.synth.name == "piano@living-room"
    with pytest.raises(ValueError, match="room='attic' is not allowed"):
        gym.make("LMMPiano-v0", room="attic")


def test_a_room_of_your_own_has_the_same_noise_in_every_process():
    import subprocess
    import sys

    code = ("import numpy as np; from lmm_env.synth.room import Room; "
            "print(float(Room(np.ones(4, np.float32), 16000, -60.0, 'attic').noise_at(16000)[:100].sum()))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
