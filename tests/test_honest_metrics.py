"""Honest metrics (issue 23): notes are judged against the score's own times, not the frame-snapped copy.

A note the frame grid moves more than the 50 ms onset tolerance away from its true onset
must be a miss even when the agent plays the snapped frame exactly, in ``info["metrics"]``
of the single env, of its batched twin, of LMMByEar-v0 with a recording and its reference
MIDI, and in the benchmark's rows.
"""
import math

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401  (registers the envs)
from lmm_env.agents.baselines.simple import ScoreReaderAgent
from lmm_env.metrics import note_metrics
from lmm_env.score import Score

FR = 5  # 200 ms frames: snapping moves an onset by up to 100 ms, twice the tolerance

# C4 on the grid; E4 at 0.29 s, which the grid puts at frame round(1.45) = 1 = 0.2 s (90 ms early);
# G4 at 0.61 s, snapped to frame 3 = 0.6 s (10 ms early, within the tolerance)
HAND = Score.from_notes([(60, 0.0, 0.8, 70), (64, 0.29, 1.0, 90), (67, 0.61, 1.2, 110)], name="hand")
KW = dict(score=HAND, frame_rate=FR, tail=0.4, reward="key_match")  # the ear rewards need 20 fps


def _play(env, agent):
    obs, info = env.reset(seed=0)
    while True:
        obs, _, terminated, truncated, info = env.step(agent.predict(obs)[0])
        if terminated or truncated:
            return info


def test_the_snapped_reference_counted_a_note_90_ms_off_as_a_hit_the_honest_one_does_not():
    snapped = HAND.frames(FR).to_score()
    assert snapped.onsets.tolist() == [0.0, 0.2, 0.6]
    played = snapped  # what a perfect agent on the 5 fps grid plays
    assert note_metrics(snapped, played)["f1"] == 1.0  # the old, snapped reference: every note a hit
    m = note_metrics(HAND, played)
    assert m["n_matched"] == 2 and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["onset_lag_ms"] == pytest.approx(-5.0)  # the matched deviations: 0 and -10 ms


def test_env_metrics_judge_the_score_reader_against_the_true_onsets():
    env = gym.make("LMMPiano-v0", **KW)
    info = _play(env, ScoreReaderAgent(env))
    m = info["metrics"]
    assert m["frame_f1"] == 1.0  # on the frame grid the score-reader is perfect (RoboPianist's frame F1)
    assert (m["n_ref"], m["n_est"], m["n_matched"]) == (3, 3, 2)  # but E4 came 90 ms early: a miss
    assert m["note_f1"] == pytest.approx(2 / 3)
    assert m["onset_velocity_f1"] == pytest.approx(2 / 3)  # the two matched notes at their velocities
    assert m["onset_lag_ms"] == pytest.approx(-5.0)
    assert m["velocity_error"] == 0.0
    # offsets: C4 0.8 s and G4 1.2 s are on the grid, E4 was never matched
    assert m["onset_offset_f1"] == pytest.approx(2 / 3)


def test_the_batched_twin_reports_the_same_honest_metrics():
    n = 2
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, **KW)
    single = gym.make("LMMPiano-v0", **KW)
    want = _play(single, ScoreReaderAgent(single))["metrics"]
    agent = ScoreReaderAgent(venv)
    obs, _ = venv.reset(seed=0)
    while True:
        obs, _, _, truncated, infos = venv.step(agent.predict(obs)[0])
        if truncated.any():
            break
    assert truncated.all() and infos["_metrics"].all()
    assert {"note_f1", "onset_offset_f1", "onset_velocity_f1", "onset_lag_ms"} <= set(infos["metrics"])
    for k, v in want.items():  # NaN where undefined (e.g. distinct 4-grams of under 5 notes) on both
        np.testing.assert_array_equal(infos["metrics"][k], [v] * n, err_msg=k)


def test_by_ear_with_a_recording_scores_against_its_reference_midi(tmp_path):
    sf = pytest.importorskip("soundfile")
    from lmm_env.agents.baselines.by_ear import ReferenceOracle
    from lmm_env.synth import make_synth

    # onsets off the 20 fps grid (the oracle plays them at 0.5, 1.05, 1.55, 2.05 s)
    ref = Score.from_notes([(60, 0.51, 0.9, 80), (64, 1.03, 1.4, 80), (67, 1.53, 1.9, 80), (72, 2.04, 2.4, 80)])
    wav, mid = tmp_path / "take.wav", tmp_path / "take.mid"
    sf.write(wav, make_synth("piano", 16000).render(ref, tail=0.5), 16000)
    ref.to_pretty_midi().write(str(mid))
    env = gym.make("LMMByEar-v0", target=str(wav), reference=str(mid))
    env.reset(seed=0)
    midi = Score.from_midi(str(mid))  # the MIDI's times (on its tick grid, within 1.2 ms of ref's)
    got = env.unwrapped.reference_score()
    np.testing.assert_array_equal(got.onsets, midi.onsets)  # the MIDI's own times, not the frame grid's
    assert np.abs(got.onsets * 20 - np.round(got.onsets * 20)).min() > 0.1
    info = _play(env, ReferenceOracle(env))  # plays the reference on the frame grid
    m = info["metrics"]
    assert m["note_f1"] == 1.0  # every snapped note is within 50 ms
    # played - true: about -10, +20, +20, +10 ms; median about +15 ms (the snapped reference said 0)
    played = np.floor(midi.onsets * 20 + 0.5) / 20
    assert m["onset_lag_ms"] == pytest.approx(np.median(played - midi.onsets) * 1000, abs=1e-6)
    assert m["onset_lag_ms"] == pytest.approx(15.0, abs=0.5)


def test_benchmark_rows_carry_the_trio_and_the_lag():
    from lmm_env.agents.benchmark import runner
    from lmm_env.agents.benchmark.tables import markdown_table

    eps = [{"note_f1": 1.0, "onset_offset_f1": 0.5, "onset_velocity_f1": 0.75, "onset_lag_ms": -10.0,
            "frame_f1": 1.0, "velocity_error": 0.0, "return": 1.0},
           {"note_f1": 0.5, "onset_offset_f1": 0.5, "onset_velocity_f1": 0.25, "onset_lag_ms": math.nan,
            "frame_f1": 0.5, "velocity_error": math.nan, "return": 0.0}]
    row = runner.summary_row("a", "agent", False, "LMMPiano-v0", 0, "piano", eps, {}, 10, 0, 1.0)
    assert tuple(row) == runner.COLUMNS
    assert (row["note_f1"], row["onset_offset_f1"], row["onset_velocity_f1"], row["onset_lag_ms"]) == (
        0.75, 0.5, 0.5, -10.0)
    header = markdown_table([row]).splitlines()[0]
    assert "note F1 | on+off F1 | on+vel F1 | onset lag ms | frame F1" in header
    assert runner.PROTOCOL["note_reference"] == "unquantized"  # old rows (snapped reference) do not resume


def test_outside_transcribers_are_labelled_by_the_pairs_they_trained_on():
    from lmm_env.agents.benchmark import runner
    from lmm_env.agents.benchmark.tables import markdown_table

    eps = [{"note_f1": 1.0, "frame_f1": 1.0, "velocity_error": 0.0, "return": 1.0}]
    rows = [runner.summary_row(name, kind, False, "LMMByEar-v0", 0, "grand", eps, {}, 10, 0, 1.0)
            for name, kind in (("transkun", "outside"), ("basic-pitch", "outside"), ("diff-h", "learned"))]
    lines = markdown_table(rows).splitlines()[2:]
    assert lines[0].startswith("| transkun (outside; ~200 h of MAESTRO v3 pairs) |")
    assert lines[1].startswith("| basic-pitch (outside; hours of pairs of 5 datasets, MAESTRO among them) |")
    assert lines[2].startswith("| diff-h |")


def test_pedal_f1_when_the_reference_carries_a_pedal(tmp_path):
    piece = Score(HAND.pitches, HAND.onsets, HAND.offsets, HAND.velocities, pedal=[(0.0, 0.6)])
    piece.to_pretty_midi().write(str(tmp_path / "pedal.mid"))  # the MIDI's CC64: down 0 .. 0.6 s
    kw = dict(KW, score=str(tmp_path / "pedal.mid"), pedal=True)

    class PedalReader(ScoreReaderAgent):  # the score-reader, with the pedal down for the first 3 steps
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            action, state = super().predict(obs)
            action[-1] = 1.0 if self.t < 3 else -1.0
            self.t += 1
            return action, state

    env = gym.make("LMMPiano-v0", **kw)
    agent = PedalReader(env)
    agent.t = 0
    assert _play(env, agent)["metrics"]["pedal_f1"] == 1.0
    assert _play(env, ScoreReaderAgent(env))["metrics"]["pedal_f1"] == 0.0  # never pressed it
    no_pedal_ref = gym.make("LMMPiano-v0", **dict(kw, score=HAND))
    assert math.isnan(_play(no_pedal_ref, ScoreReaderAgent(no_pedal_ref))["metrics"]["pedal_f1"])  # not measured
    no_pedal_env = gym.make("LMMPiano-v0", **dict(kw, pedal=False))
    assert "pedal_f1" not in _play(no_pedal_env, ScoreReaderAgent(no_pedal_env))["metrics"]
