"""listening-g (issue 24.2): loudness curves, the env's loudness reference, and a g that learns
by ear how hard to strike an instrument it has never heard."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env.agents.benchmark.evaluate import play_episode
from lmm_env.score import Score
from lmm_env.synth import PianoSynth, make_synth
from lmm_env.synth.base import BlockPlayer, Synth
from lmm_env.synth.loudness import LoudnessCurve, loudness_curve, matched_velocities

SOFTER = 30  # the heavy-action piano strikes this many velocities softer than it is asked


class _HeavyPlayer(BlockPlayer):
    def __init__(self, base):
        self.base, self.n_envs, self.block_size, self.sample_rate = base, base.n_envs, base.block_size, base.sample_rate

    def reset(self, env_ids=None):
        self.base.reset(env_ids)

    def step(self, onset, velocity, damped):
        return self.base.step(onset, np.clip(np.asarray(velocity) - SOFTER, 1, 127), damped)


class HeavyActionPiano(Synth):
    """The built-in piano with a heavy action: an instrument no agent has heard, whose loudness
    curve is known (the built-in piano's, 30 velocities later)."""

    name = "heavy-action-piano"

    def __init__(self, sample_rate: int = 16000):
        self.base = PianoSynth(sample_rate=sample_rate)
        self.sample_rate = sample_rate

    def render(self, score, tail: float = 1.0):
        softer = Score(score.pitches, score.onsets, score.offsets, np.clip(score.velocities - SOFTER, 1, 127))
        return self.base.render(softer, tail=tail)

    def player(self, n_envs, block_size):
        return _HeavyPlayer(self.base.player(n_envs, block_size))


def test_loudness_curves_say_how_loud_each_instrument_plays_a_velocity():
    grand, piano = loudness_curve(make_synth("grand")), loudness_curve(make_synth("piano"))
    assert loudness_curve(make_synth("grand")) is grand  # measured once
    for c in (grand, piano):
        assert np.all(np.diff(c.db, axis=1) >= 0)  # harder is never softer
        v = np.array([20.0, 50.0, 80.0, 110.0])
        np.testing.assert_allclose(c.velocity_for(np.full(4, 60), c.level(np.full(4, 60), v)), v, atol=2.0)
    # the grand is louder at mid velocities: the built-in piano must be struck harder to match it
    assert grand.level(60, 80) - piano.level(60, 80) > 3.0
    assert matched_velocities([60], [80], reference=grand, world=piano)[0] > 90
    np.testing.assert_allclose(matched_velocities([60, 72], [40, 90], grand, grand), [40, 90], atol=1.0)
    heavy = loudness_curve(HeavyActionPiano())
    np.testing.assert_allclose(matched_velocities([48, 60, 72], [40, 60, 80], piano, heavy), [70, 90, 110], atol=3)
    with pytest.raises(TypeError, match="make_synth"):
        loudness_curve("grand")
    with pytest.raises(ValueError, match="strictly increasing"):
        LoudnessCurve([60], [1, 127], [[-40.0, -20.0]])
    # what changes loudness changes the curve: a SoundFont's gain, a room
    from lmm_env.synth import SoundFontSynth

    quiet, loud = loudness_curve(SoundFontSynth(gain=-6.0)), loudness_curve(SoundFontSynth(gain=6.0))
    assert loud.level(60, 80) - quiet.level(60, 80) == pytest.approx(12.0, abs=1.0)
    hall = loudness_curve(make_synth("piano@hall"))
    soft_to_loud = hall.level([60, 60], [8, 120])
    assert soft_to_loud[1] - soft_to_loud[0] > 20.0  # each note heard alone: no neighbour's reverb under the soft ones
    np.testing.assert_allclose(matched_velocities([60, 72], [40, 90], loudness_curve(make_synth("grand@hall")), hall),
                               matched_velocities([60, 72], [40, 90], grand, piano), atol=3)
    with pytest.raises(ValueError, match="finite"):
        LoudnessCurve([60, 61], [1, 127], [[0.0, np.nan], [0.0, 1.0]])


def _env(synth, reference="grand", **kw):
    return gym.make("LMMPiano-v0", score="piano", split="validation", synth=synth, reward="key_match",
                    max_seconds=8, loudness_reference=reference, **kw)


def test_the_loudness_reference_sets_what_a_velocity_means_and_the_metric_that_judges_it():
    from lmm_env.agents import load_agent

    on_grand, on_piano = _env("grand"), _env("piano")
    # the score's velocities copied as written: right on the grand, too soft on the built-in piano
    m_grand = play_episode(load_agent("score-reader", on_grand), on_grand, 0, 0)[1]["metrics"]
    m_piano = play_episode(load_agent("score-reader", on_piano), on_piano, 0, 0)[1]["metrics"]
    assert m_grand["matched_velocity_error"] == 0.0 and m_grand["velocity_error"] == 0.0
    assert m_piano["velocity_error"] == 0.0 and m_piano["matched_velocity_error"] > 8.0
    # the reward's target is the score played by the reference: its loudness term knows the difference
    closed = gym.make(
        "LMMPiano-v0", score="piano", split="validation", synth="piano", max_seconds=8, loudness_reference="grand",
        reward="ear_match")
    plain = gym.make("LMMPiano-v0", score="piano", split="validation", synth="piano", max_seconds=8, reward="ear_match")
    reader = load_agent("score-reader", closed)
    loud_ref = play_episode(reader, closed, 0, 0)[4]["ear_loudness"]
    loud_own = play_episode(load_agent("score-reader", plain), plain, 0, 0)[4]["ear_loudness"]
    assert loud_ref < loud_own
    assert "matched_velocity_error" not in play_episode(load_agent("score-reader", plain), plain, 0, 0)[1]["metrics"]
    with pytest.raises(ValueError, match="loudness_reference=.*synth name"):
        _env("piano", reference=3.5)
    with pytest.raises(ValueError, match="loudness_reference='harpsichord' is not allowed"):
        _env("piano", reference="harpsichord")
    with pytest.raises(ValueError, match="loudness_reference=.*LMMPiano-v0"):
        from lmm_env.envs.by_ear import ByEarSim

        ByEarSim(1, score="folk", loudness_reference="grand")


def test_listening_g_learns_by_ear_how_hard_to_strike_an_instrument_it_never_heard():
    from lmm_env.agents import load_agent
    from lmm_env.agents.learned.listening import ListeningGAgent

    env = _env(HeavyActionPiano(), reference="piano")
    heard = play_episode(load_agent("listening-g", env), env, 0, 0)[1]["metrics"]
    perf_heard = env.unwrapped.performance_score()
    deaf = play_episode(ListeningGAgent(env, listen=False), env, 0, 0)[1]["metrics"]
    perf_deaf = env.unwrapped.performance_score()
    assert heard["note_f1"] >= 0.95 and heard["frame_f1"] >= 0.9
    # without listening it strikes as for the body it knows, 30 velocities too soft; by ear it corrects
    assert deaf["matched_velocity_error"] > 20.0
    assert heard["matched_velocity_error"] < 10.0
    assert perf_heard.velocities.mean() > perf_deaf.velocities.mean() + 15


def test_listening_g_plays_the_same_score_differently_on_two_pianos_and_as_loud_as_asked_on_both():
    from lmm_env.agents import load_agent

    played = {}
    for synth in ("grand", "piano"):
        env = _env(synth)
        m = play_episode(load_agent("listening-g", env), env, 0, 1)[1]["metrics"]
        assert m["note_f1"] >= 0.95 and m["matched_velocity_error"] <= 10.0, (synth, m)
        played[synth] = env.unwrapped.performance_score()
    a, b = played["grand"], played["piano"]
    assert len(a) == len(b) and np.array_equal(a.pitches, b.pitches)  # the same keys ...
    assert np.abs(a.velocities.astype(int) - b.velocities.astype(int)).mean() > 4.0  # ... struck differently


def test_listening_g_refuses_what_it_cannot_play():
    from lmm_env.agents import load_agent
    from lmm_env.agents.learned.listening import ListeningGAgent

    with pytest.raises(ValueError, match="does not play LMMByEar-v0"):
        load_agent("listening-g", gym.make("LMMByEar-v0", max_seconds=4))
    with pytest.raises(ValueError, match="plays LMMPiano-v0"):
        ListeningGAgent(gym.make("LMMByEar-v0", max_seconds=4))
    with pytest.raises(ValueError, match="decipher-closed-loop"):
        ListeningGAgent(gym.make("LMMDecipher-v0", max_seconds=4))
    with pytest.raises(ValueError, match="listen="):
        ListeningGAgent(_env("piano"), listen="yes")


def test_the_diff_training_cli_writes_weights_and_its_learning_curve(tmp_path):
    import json

    from lmm_env.agents.learned.differentiable import DiffPolicy, main

    out = tmp_path / "g.safetensors"
    assert main(["--kind", "g", "--corpora", "piano", "--samples", "64", "--window", "16", "--batch", "2",
                 "--eval-every", "32", "--eval-pieces", "1", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["config"]["corpora"] == ["piano"] and len(report["history"]) == 3
    assert DiffPolicy.load(out).cfg.corpora == ("piano",)
    assert not out.with_name(out.name + ".run").exists()
