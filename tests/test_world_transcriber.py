"""The world-pretrained note transcriber (h's transcriber) and the ``world-transcriber`` agent."""
import gymnasium as gym
import numpy as np
import pytest
import torch

import lmm_env  # noqa: F401
from lmm_env.lm import transcriber as T
from lmm_env.metrics import note_metrics
from lmm_env.score import Score
from lmm_env.synth import make_synth


def test_features_stack_harmonics_of_a_log_spectrum():
    sr = T.SAMPLE_RATE
    t = np.arange(sr) / sr
    a440 = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    f = T.features(a440[None])
    assert f.shape == (1, len(T.HARMONICS), sr // T.HOP + 1, T.N_BINS)
    col = (69 - T.LOWEST) * T.BINS_PER_SEMITONE + 1  # the middle bin of A4
    h = {x: T.HARMONICS.index(x) for x in (0.5, 1, 2)}
    assert int(f[0, h[1]].mean(0).argmax()) == col
    # the 2nd-harmonic channel of A3 reads A4; the sub-octave channel of A5 reads A4
    assert int(f[0, h[2]].mean(0).argmax()) == col - 12 * T.BINS_PER_SEMITONE
    assert int(f[0, h[0.5]].mean(0).argmax()) == col + 12 * T.BINS_PER_SEMITONE


def test_targets_mark_onset_frames_and_what_the_pedal_holds():
    s = Score([60, 64], [0.5, 1.0], [0.7, 1.2], [100, 50], pedal=[(0.4, 1.5)])
    on, fr, vel = T.targets(s, 200)
    assert on[50, 60 - 21] == 1 and on[100, 64 - 21] == 1 and on.sum() == 2
    assert vel[50, 60 - 21] == pytest.approx(100 / 127)
    assert fr[50:150, 60 - 21].all() and not fr[150:, 60 - 21].any()  # held by the pedal until it lifts at 1.5 s


def test_targets_of_a_cut_recording_hold_what_was_struck_before_the_cut():
    s = Score([60, 64], [0.2, 1.5], [2.0, 1.8], [90, 70])
    on, fr, vel = T.targets(s, 100, start=1.0)  # the recording cut at 1 s
    assert on[:, 60 - 21].sum() == 0 and fr[0:100, 60 - 21].all()  # still sounding: held, not struck
    assert on[50, 64 - 21] == 1 and fr[50:80, 64 - 21].all()


def test_decode_reads_onset_peaks_with_sub_frame_times():
    on = np.zeros((100, 88), np.float32)
    fr = np.zeros((100, 88), np.float32)
    vel = np.full((100, 88), 0.5, np.float32)
    k = 60 - 21
    on[19:22, k] = [0.6, 0.9, 0.6]  # symmetric peak at frame 20
    fr[20:40, k] = 0.9
    on[70, k + 4] = 0.3  # under the threshold: no note
    s = T.decode(on, fr, vel)
    assert list(s.pitches) == [60]
    assert s.onsets[0] == pytest.approx(0.20, abs=1e-6)
    assert s.offsets[0] == pytest.approx(0.40, abs=1e-6)
    assert s.velocities[0] == 64
    on[19:22, k] = [0.9, 0.9, 0.3]  # a flat top leans towards the earlier frame
    assert T.decode(on, fr, vel).onsets[0] < 0.20


def test_save_and_load_round_trip_without_code(tmp_path):
    torch.manual_seed(0)
    tr = T.NoteTranscriber(T.NoteNet(channels=4, dilations=(1, 2)), threshold=0.4, meta={"note": "x"})
    path = tmp_path / "t.safetensors"
    tr.save(path)
    back = T.NoteTranscriber.load(path)
    assert back.threshold == 0.4 and back.meta["note"] == "x" and back.net.channels == 4
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    for a, b in zip(tr.probabilities(audio), back.probabilities(audio)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="train them"):
        T.NoteTranscriber.load(tmp_path / "missing.safetensors")
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not NoteTranscriber weights"):
        T.NoteTranscriber.load(tmp_path / "other.safetensors")


def test_long_recordings_are_read_in_chunks_like_one_piece():
    torch.manual_seed(0)
    tr = T.NoteTranscriber(T.NoteNet(channels=4, dilations=(1,)))
    audio = np.random.default_rng(1).normal(0, 0.1, 5 * 16000).astype(np.float32)
    whole = tr.probabilities(audio, chunk_seconds=30.0)
    chunked = tr.probabilities(audio, chunk_seconds=1.3)
    assert [x.shape for x in whole] == [x.shape for x in chunked] == [(5 * 100 + 1, 88)] * 3
    # the per-clip normalization differs a little between chunks; the read stays close
    assert np.abs(whole[1] - chunked[1]).mean() < 0.05


def test_the_shipped_transcriber_writes_down_a_piece_it_never_trained_on():
    from lmm_env import corpus
    from lmm_env.metrics import playable_notes

    tr = T.NoteTranscriber.load()
    piece = corpus.load("piano", "validation")[0].trim(0, 10.0)
    audio = make_synth("soundfont", 16000).render(piece, tail=1.0)
    est = tr.transcribe(audio, 16000)
    m = note_metrics(playable_notes(piece.sustained(keep_pedal=True)), est)
    assert m["f1"] > 0.8, m  # an instrument it never heard, with no pairs (K = 0)
    again = tr.transcribe(audio, 16000)
    np.testing.assert_array_equal(est.onsets, again.onsets)  # deterministic


def test_shipped_adaptations_load_without_adapting(monkeypatch):
    monkeypatch.setattr(T, "_CACHE", {})
    monkeypatch.setattr(T, "adapt", lambda *a, **k: pytest.fail("a shipped adaptation was adapted again"))
    for K, instrument in T.SHIPPED_ADAPTED:
        tr = T.transcriber_for(K, instrument)
        assert tr.meta["adapted_pairs"] == K and tr.meta["instrument"] == instrument


def test_a_melody_is_read_at_its_own_threshold_and_voices_at_the_calibrated_one():
    from lmm_env import corpus
    from lmm_env.synth import make_synth

    tr = T.transcriber_for(16, "soundfont")
    synth = make_synth("soundfont")
    tune = corpus.load("folk", "validation")[0].trim(0, 8)
    piece = corpus.load("piano", "validation")[0].trim(0, 8)
    frames = {}
    for score, kind, threshold in ((tune, "melody", T.MELODY_THRESHOLD), (piece, "voices", tr.threshold)):
        audio = synth.render(score, tail=0.5)
        on, fr, vel = tr.probabilities(audio)
        frames[kind] = fr
        assert T.texture(fr) == kind and tr.threshold_for(fr) == threshold
        assert tr.transcribe(audio) == T.decode(on, fr, vel, threshold=threshold)
    assert T.texture(np.zeros((10, 88))) == "melody"  # silence: nothing to count
    one = T.NoteTranscriber(tr.net, 0.45, melody_threshold=None)  # a threshold of one's own, for every texture
    assert one.threshold_for(frames["melody"]) == one.threshold_for(frames["voices"]) == 0.45
    assert T.NoteTranscriber(tr.net, 0.45).threshold_for(frames["melody"]) == T.MELODY_THRESHOLD


def test_adapting_fine_tunes_a_copy_and_caches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "cache_folder", lambda: tmp_path / "transcribers")
    monkeypatch.setattr(T, "ADAPT_STEPS", 3)
    monkeypatch.setattr(T, "_CACHE", {})
    shipped = T.transcriber_for(0, "grand")
    before = {k: v.clone() for k, v in shipped.net.state_dict().items()}
    with pytest.warns(UserWarning, match="adapting the transcriber to 4 pairs"):
        adapted = T.transcriber_for(4, "grand")  # none shipped for the grand: adapted here
    assert adapted is not shipped and adapted.meta["adapted_pairs"] == 4
    assert adapted.threshold in T.THRESHOLDS  # calibrated on the pairs
    assert any(not torch.equal(before[k], v) for k, v in adapted.net.state_dict().items())
    assert all(torch.equal(before[k], v) for k, v in shipped.net.state_dict().items())  # the shipped net is untouched
    assert list((tmp_path / "transcribers").glob("pairs4-grand-seed0-*.safetensors"))
    monkeypatch.setattr(T, "_CACHE", {})
    again = T.transcriber_for(4, "grand")  # from the cache: no warning, same weights
    for k, v in adapted.net.state_dict().items():
        assert torch.equal(again.net.state_dict()[k], v)


@pytest.mark.parametrize("K,instrument,match", [("all", "piano", "pairs='all' is not allowed"),
                                                (5, "piano", "pairs K=5"),
                                                (4, "harpsichord", "harpsichord")])
def test_transcriber_for_refuses_what_it_cannot_adapt_to(K, instrument, match):
    with pytest.raises(ValueError, match=match):
        T.transcriber_for(K, instrument)


def test_the_agent_plays_what_it_writes_down():
    from lmm_env.agents import load_agent
    from lmm_env.agents.benchmark.evaluate import act

    env = gym.make("LMMByEar-v0", score="exercises-scale", max_seconds=4.0)
    agent = load_agent("world-transcriber", env, pairs=0)
    obs, info = env.reset(seed=0)
    state, start = None, np.ones((1,), bool)
    while True:
        a, state = act(agent, obs, state, start)
        start = np.zeros((1,), bool)
        obs, r, te, tr, info = env.step(np.asarray(a).reshape(-1))
        if te or tr:
            break
    assert info["metrics"]["note_f1"] > 0.9
    with pytest.raises(ValueError, match="both given"):
        from lmm_env.agents.learned.world_transcriber import WorldTranscriberAgent

        WorldTranscriberAgent(env, pairs=0, transcriber=T.NoteTranscriber.load())


@pytest.mark.parametrize("audio,rate,match", [(np.zeros((2, 100), np.float32), 16000, "1-D"),
                                              (np.zeros(0, np.float32), 16000, "non-empty"),
                                              (np.full(100, np.nan, np.float32), 16000, "finite"),
                                              (np.zeros(1600, np.float32), 16.5, "sample_rate=16.5")])
def test_transcribe_refuses_what_is_not_a_mono_recording(audio, rate, match):
    tr = T.NoteTranscriber(T.NoteNet(channels=4, dilations=(1,)))
    with pytest.raises(ValueError, match=match):
        tr.transcribe(audio, rate)


def test_damaged_weights_are_refused_by_name(tmp_path):
    from safetensors.torch import load_file, save_file

    from lmm_env.lm.checkpoint import CheckpointError

    path = tmp_path / "t.safetensors"
    T.NoteTranscriber(T.NoteNet(channels=4, dilations=(1,))).save(path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    tensors["head.bias"] = torch.zeros(5)  # a shape its own config does not build
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="head.bias"):
        T.NoteTranscriber.load(path)
    tensors["head.bias"] = torch.full((3,), float("nan"))
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="non-finite|NaN|finite"):
        T.NoteTranscriber.load(path)
