"""Tests of lmm_env.lm.score_lm: the shipped ScoreLM (LM^V), its numpy API and checkpoints."""
import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from lmm_env.lm import CheckpointError, load_checkpoint, load_pretrained, save_checkpoint
from lmm_env.lm.score_lm import KeyFrequencyBaseline, ScoreLM, stack_frames

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lm():
    return load_pretrained("score")


def random_roll(T, seed=0, density=0.04):
    rng = np.random.default_rng(seed)
    held = rng.random((T, 88)) < density
    onset = held & (rng.random((T, 88)) < 0.3)
    return held, onset


def test_pretrained_loads_eval_frozen(lm):
    assert isinstance(lm, ScoreLM)
    assert not lm.training
    assert all(not p.requires_grad for p in lm.parameters())
    assert lm.config["frame_rate"] == 20.0
    json.dumps(lm.config)
    extra = lm.checkpoint_extra["nll_nats_per_frame"]
    for m in ("repeat_last", "key_freq"):
        assert extra["model"]["pooled"] < extra[m]["pooled"]
    assert load_pretrained("score") is lm  # cached


def test_causal(lm):
    held, onset = random_roll(80, seed=1)
    x = torch.from_numpy(stack_frames(held, onset)).unsqueeze(0)
    base = lm(x)
    assert base.shape == (1, 80, 2, 88)
    for t in (0, 37, 79):
        y = x.clone()
        y[:, t] = 1.0 - y[:, t]
        out = lm(y)
        assert torch.equal(out[:, : t + 1], base[:, : t + 1]), t
        if t + 1 < 80:
            assert not torch.equal(out[:, t + 1], base[:, t + 1])


def test_next_frame_logits_causal_and_matches_forward(lm):
    held, onset = random_roll(300, seed=11, density=0.08)
    base = lm.next_frame_logits(held, onset)
    ref = lm(torch.from_numpy(stack_frames(held, onset))[None])[0].numpy()
    np.testing.assert_allclose(base, ref, atol=1e-5)  # the numpy feature path == the torch one
    for t in (0, 150, 299):
        h2, o2 = held.copy(), onset.copy()
        h2[t:] = ~h2[t:]
        o2[t:] = h2[t:] & (np.arange(88) % 3 == 0)
        out = lm.next_frame_logits(h2, o2)
        np.testing.assert_array_equal(out[: t + 1], base[: t + 1])  # rows <= t see frames < t only
        if t + 1 < 300:
            assert not np.array_equal(out[t + 1], base[t + 1])


def test_next_frame_logits_restores_threads(lm):
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        lm.next_frame_logits(*random_roll(20, seed=12))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(n)


def test_batch_rows_independent(lm):
    a = torch.from_numpy(stack_frames(*random_roll(50, seed=2)))
    b = torch.from_numpy(stack_frames(*random_roll(50, seed=3)))
    both = lm(torch.stack([a, b]))
    assert torch.allclose(both[0], lm(a[None])[0], atol=1e-5)
    assert torch.allclose(both[1], lm(b[None])[0], atol=1e-5)


def test_next_frame_logits_shape_and_speed(lm):
    import time

    held, onset = random_roll(2000, seed=4)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = lm.next_frame_logits(held, onset)
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.1  # ~3 us/frame -> ~6 ms; generous for a busy machine
    assert out.shape == (2000, 2, 88) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert lm.next_frame_logits(held[:0], onset[:0]).shape == (0, 2, 88)
    with pytest.raises(ValueError):
        lm.next_frame_logits(held[:, :80], onset[:, :80])


def test_frame_log_prob_matches_torch_bce(lm):
    held, onset = random_roll(64, seed=5)
    logits = lm.next_frame_logits(held, onset)
    lp = ScoreLM.frame_log_prob(logits, held, onset)
    assert lp.shape == (64,) and lp.dtype == np.float64
    x = torch.from_numpy(stack_frames(held, onset)).double()
    ref = -F.binary_cross_entropy_with_logits(torch.from_numpy(logits).double(), x, reduction="none").sum(dim=(1, 2))
    np.testing.assert_allclose(lp, ref.numpy(), rtol=1e-10, atol=1e-9)
    # extreme logits stay finite; broadcasting over leading dims (one frame vs many candidates)
    big = np.full((2, 88), 80.0, np.float32)
    assert np.isfinite(ScoreLM.frame_log_prob(big, np.zeros(88, bool), np.zeros(88, bool)))
    cands_h = np.zeros((5, 88), bool)
    cands_h[np.arange(5), np.arange(5) + 40] = True
    out = ScoreLM.frame_log_prob(logits[10], cands_h, cands_h)
    assert out.shape == (5,)
    np.testing.assert_allclose(out[2], ScoreLM.frame_log_prob(logits[10], cands_h[2], cands_h[2]))
    out2 = ScoreLM.frame_log_prob(logits[None, :3], cands_h[:, None], cands_h[:, None])
    assert out2.shape == (5, 3)


def test_nll_beats_key_frequency_baseline_on_heldout(lm):
    from lmm_env import corpus

    pieces = [corpus.load("bach-chorales", "test")[0].frames(20), corpus.load("folk", "test")[0].frames(20)]
    train = [corpus.load(c, "train")[i].frames(20) for c in ("bach-chorales", "folk") for i in range(3)]
    base = KeyFrequencyBaseline().fit([np.stack([f.held, f.onset], 1) for f in train])
    for fs in pieces:
        model_nll = lm.nll_per_frame([fs])
        base_nll = base.total_nll(np.stack([fs.held, fs.onset], 1)) / fs.T
        assert model_nll < 0.7 * base_nll, (fs.name, model_nll, base_nll)
    # nll_per_frame agrees with frame_log_prob over next_frame_logits
    fs = pieces[1]
    lp = ScoreLM.frame_log_prob(lm.next_frame_logits(fs.held, fs.onset), fs.held, fs.onset)
    assert lm.nll_per_frame([fs]) == pytest.approx(-lp.mean(), rel=1e-4)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ScoreLM(width=8, dilations=[1, 2], channels=3, kernel=5, clock=8, run_cap=6)
    path = save_checkpoint(model, tmp_path / "s.safetensors", extra={"note": "test"})
    assert (tmp_path / "s.json").is_file()
    back = load_checkpoint(path, expect="ScoreLM")
    assert isinstance(back, ScoreLM) and back.config == model.config
    assert back.checkpoint_extra == {"note": "test"}
    held, onset = random_roll(40, seed=6)
    model.eval()
    np.testing.assert_array_equal(model.next_frame_logits(held, onset), back.next_frame_logits(held, onset))
    assert isinstance(load_pretrained(str(path), cached=False), ScoreLM)


def test_corrupt_and_mismatched_checkpoints_raise(tmp_path):
    model = ScoreLM(width=8, dilations=[1, 2], channels=3, kernel=5, clock=8, run_cap=6)
    path = save_checkpoint(model, tmp_path / "s.safetensors")
    data = path.read_bytes()
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(trunc)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00\x01not a safetensors file" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(garbage)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")

    # a file whose tensors do not fit the config it names
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["out.weight"] = torch.zeros(3, 3)
    meta = {"class": "ScoreLM", "config": json.dumps(model.config), "format_version": "1"}
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong), metadata=meta)
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(wrong)
    # a config the class rejects
    bad_cfg = dict(model.config, kernel=4)
    save_file(model.state_dict(), str(wrong), metadata=dict(meta, config=json.dumps(bad_cfg)))
    with pytest.raises(CheckpointError):
        load_checkpoint(wrong)
    # wrong class asked for
    with pytest.raises(CheckpointError):
        load_checkpoint(path, expect="AudioLM")


def test_constructor_validates():
    with pytest.raises(ValueError):
        ScoreLM(kernel=4)
    with pytest.raises(ValueError):
        ScoreLM(width=0)
    with pytest.raises(ValueError):
        ScoreLM(dilations=[1, 0])
    with pytest.raises(ValueError):
        ScoreLM(frame_rate=-1)


def test_stream_matches_full_prefix(lm):
    T = lm.context + 60  # past the stream's window, which must then not change the result
    held, onset = random_roll(T, seed=7, density=0.08)
    held[:, 40] = True  # a long held note: its run-length feature saturates inside the window
    full = lm.next_frame_logits(held, onset)
    st = lm.stream()
    for t in range(T):
        if t < 40 or t % 7 == 0 or t > T - 5:
            np.testing.assert_allclose(st.logits, full[t], atol=1e-4)
        if t == 30:
            branch = st.copy()
        st.push(held[t], onset[t])
    assert st.t == T
    # a branch continues from where it was copied, unaffected by the original
    branch.push(held[30], onset[30])
    np.testing.assert_allclose(branch.logits, full[31], atol=1e-4)
    with pytest.raises(ValueError):
        st.push(held[0, :10], onset[0, :10])
