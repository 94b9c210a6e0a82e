"""Judges from the field (issue 25): MusicGen-style audio judges and causal LMs over MIDI tokens as
reward LMs. Tiny configs built in code, offline; the tests that need the 'judges' extra skip without it."""
from __future__ import annotations

import os
import sys

import gymnasium as gym
import numpy as np
import pytest

import lmm_env  # noqa: F401
from lmm_env import judges, rewards
from lmm_env.agents.benchmark.evaluate import play_episode
from lmm_env.judges import AudioJudge, SymbolicJudge
from lmm_env.rewards import AudioJudgeReward, SymbolicJudgeReward

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_CODEC = dict(sampling_rate=32000, target_bandwidths=[1.25], upsampling_ratios=[8, 5, 4, 4], codebook_size=64,
                  codebook_dim=16, hidden_size=16, num_filters=4, num_residual_layers=1, audio_channels=1)
TINY_DECODER = dict(vocab_size=64, num_codebooks=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    ffn_dim=64, max_position_embeddings=128, pad_token_id=64, bos_token_id=64)


def _needs_extra():
    pytest.importorskip("transformers")
    pytest.importorskip("miditok")


@pytest.fixture(scope="module")
def tiny_musicgen():
    _needs_extra()
    import torch
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration, T5Config

    torch.manual_seed(0)
    t5 = T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    cfg = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=EncodecConfig(**TINY_CODEC).to_dict(),
                         decoder=MusicgenDecoderConfig(**TINY_DECODER).to_dict())
    return MusicgenForConditionalGeneration(cfg).eval()


@pytest.fixture(scope="module")
def tiny_gpt2():
    _needs_extra()
    import miditok
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tok = miditok.REMI()
    lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=32, n_layer=2, n_head=2))
    return lm.eval(), tok


# ---------------------------------------------------------------- stub judges: no extra needed

class LoudnessJudge(AudioJudge):
    """Prefers quiet audio: its log-likelihood is minus the mean |sample| (x 100)."""

    sample_rate, frame_samples, context_frames, name = 16000, 400, 1000, "quiet"

    def __init__(self):
        self.calls = 0

    def score(self, audio):
        self.calls += 1
        return -100.0 * np.abs(np.asarray(audio, np.float64)).mean(axis=1)


class FewNotesJudge(SymbolicJudge):
    """Prefers fewer notes: log-likelihood minus the note count / 10."""

    context_tokens, name = 1000, "few"

    def score_notes(self, notes):
        return np.array([-len(s) / 10.0 for s in notes], np.float64)


def _piano(reward, **kw):
    return gym.make("LMMPiano-v0", reward=reward, **{"max_seconds": 4, **kw})


class Louder:
    """The score reader, striking every note ``factor`` times harder (clipped)."""

    def __init__(self, env, factor):
        from lmm_env.agents import load_agent

        self.base, self.factor = load_agent("score-reader", env), factor

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        a, s = self.base.predict(obs, state, episode_start, deterministic)
        a = np.asarray(a, np.float32).copy()
        a[a > 0] = np.clip(a[a > 0] * self.factor, 1e-4, 1.0)
        return a, s


def _judge_steps(env, agent, name):
    """Per-step values of reward term ``name`` over one episode."""
    obs, _ = env.reset(seed=0, options={"score_index": 0})
    values = []
    while True:
        obs, _, _, trunc, info = env.step(agent.predict(obs)[0])
        values.append(info["reward_terms"][name])
        if trunc:
            return np.array(values)


def test_an_audio_judge_reward_is_one_for_the_target_zero_off_schedule_and_follows_the_judge():
    from lmm_env.agents import load_agent

    env = _piano(AudioJudgeReward(LoudnessJudge(), window_seconds=0.5, every=10))
    oracle = _judge_steps(env, load_agent("score-reader", env), "audio_judge")
    judged = (np.arange(len(oracle)) + 1) % 10 == 0
    assert np.all(oracle[judged] == 1.0) and np.all(oracle[~judged] == 0.0)
    softer = _judge_steps(env, Louder(env, 0.3), "audio_judge")
    louder = _judge_steps(env, Louder(env, 3.0), "audio_judge")
    # the judge prefers quiet: softer play is as likely as the target's (1.0), louder play is not
    assert np.all(softer[judged] == 1.0)
    assert np.all((louder >= 0) & (louder <= 1)) and louder[judged].mean() < 0.9


def test_a_symbolic_judge_reward_reads_the_heard_notes_like_the_targets():
    from lmm_env.agents import load_agent

    for source in ("heard", "played"):
        env = _piano(SymbolicJudgeReward(FewNotesJudge(), window_seconds=1.0, every=5, source=source))
        oracle = _judge_steps(env, load_agent("score-reader", env), "symbolic_judge")
        judged = (np.arange(len(oracle)) + 1) % 5 == 0
        assert np.all(oracle[judged] == 1.0) and np.all(oracle[~judged] == 0.0), source
        noisy = _judge_steps(env, load_agent("random", env, seed=0), "symbolic_judge")
        assert noisy[judged].mean() < 0.5, source  # random play sounds many more notes than the tune


def test_judge_rewards_are_the_same_batched_as_row_by_row():
    from lmm_env.envs import make_vector_env

    for reward in (lambda: AudioJudgeReward(LoudnessJudge(), window_seconds=0.5, every=4),
                   lambda: SymbolicJudgeReward(FewNotesJudge(), window_seconds=1.0, every=4)):
        venv = make_vector_env(3, score="folk", max_seconds=3, reward=reward())
        venv.reset(seed=[0, 1, 2])
        singles = [_piano(reward(), score="folk", max_seconds=3) for _ in range(3)]
        for i, e in enumerate(singles):
            e.reset(seed=i)
        rng = np.random.default_rng(0)
        for _ in range(30):
            a = rng.uniform(-1, 1, (3, 88)).astype(np.float32) * (rng.random((3, 88)) < 0.05)
            a[a == 0] = -1
            r_batch = venv.step(a)[1]
            r_rows = [e.step(a[i])[1] for i, e in enumerate(singles)]
            np.testing.assert_allclose(r_batch, r_rows, rtol=1e-9, atol=1e-12)


def test_judge_rewards_refuse_windows_they_cannot_judge():
    with pytest.raises(ValueError, match="whole number of steps"):
        _piano(AudioJudgeReward(LoudnessJudge(), window_seconds=0.33))
    judge = LoudnessJudge()
    judge.frame_samples = 640  # 40 ms frames: a 0.5 s window is 12.5 of them
    with pytest.raises(ValueError, match="whole frames"):
        _piano(AudioJudgeReward(judge, window_seconds=0.5))
    judge = LoudnessJudge()
    judge.context_frames = 10
    with pytest.raises(ValueError, match="more than the judge reads at once"):
        _piano(AudioJudgeReward(judge, window_seconds=1.0))
    with pytest.raises(ValueError, match="every="):
        AudioJudgeReward(LoudnessJudge(), every="sometimes")
    with pytest.raises(TypeError, match="AudioJudge"):
        AudioJudgeReward(FewNotesJudge())
    with pytest.raises(ValueError, match="source="):
        SymbolicJudgeReward(FewNotesJudge(), source="both")
    with pytest.raises(ValueError, match="source='played' reads the keys"):
        SymbolicJudgeReward(FewNotesJudge(), source="played", threshold=0.3)


def test_a_registered_judge_is_a_reward_by_name():
    judges.register("quiet-test", LoudnessJudge, overwrite=True, window_seconds=0.5, every=5)
    assert "quiet-test" in judges.names() and "quiet-test" in rewards.names()
    for spec in ("quiet-test", {"key_match": 1.0, "quiet-test": 0.5},
                 {AudioJudgeReward(LoudnessJudge(), window_seconds=0.5, every=5): 1.0}):
        env = _piano(spec)  # in a composite too, the env keeps the window's history for the judge
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        for step in range(12):
            a = np.where(rng.random(88) < 0.05, 0.8, -1.0).astype(np.float32)
            terms = env.step(a)[4]["reward_terms"]
            name = "quiet-test" if "quiet-test" in terms else "audio_judge"
            assert 0.0 <= terms[name] <= 1.0 and (terms[name] == 0.0 or (step + 1) % 5 == 0)
    assert set(terms) >= {"audio_judge"}
    with pytest.raises(ValueError, match="already a registered reward"):
        judges.register("closed_loop", LoudnessJudge)
    with pytest.raises(ValueError, match="unknown judge"):
        judges.make("no-such-judge")
    judges.register("broken-test", lambda: "not a judge", overwrite=True)
    with pytest.raises(TypeError, match="not a lmm_env.judges"):
        _piano("broken-test")


def test_the_episode_schedule_judges_once_at_the_end():
    from lmm_env.agents import load_agent

    judge = LoudnessJudge()
    env = _piano(AudioJudgeReward(judge, every="episode"))
    values = _judge_steps(env, load_agent("score-reader", env), "audio_judge")
    assert values[-1] == 1.0 and np.all(values[:-1] == 0.0)
    # a MusicGen-shaped judge (32 kHz, 20 ms frames: a step is 2.5 of them) on an odd number of steps,
    # and an episode longer than its context: silence pads the last frame, the last frames are judged
    shaped = LoudnessJudge()
    shaped.sample_rate, shaped.frame_samples, shaped.context_frames = 32000, 640, 100
    for tail in (0.55, 0.5):
        env = _piano(AudioJudgeReward(shaped, every="episode"), tail=tail)
        values = _judge_steps(env, load_agent("score-reader", env), "audio_judge")
        assert values[-1] == 1.0 and np.all(values[:-1] == 0.0)
        assert _judge_steps(env, Louder(env, 3.0), "audio_judge")[-1] < 1.0


def test_resampling_keeps_a_sine():
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)[None]
    y = judges.resample(x, 16000, 32000)
    assert y.shape == (1, 32000)
    ref = np.sin(2 * np.pi * 440 * np.arange(32000) / 32000)
    np.testing.assert_allclose(y[0, 2000:-2000], ref[2000:-2000], atol=2e-3)
    with pytest.raises(ValueError, match="whole number of samples"):
        judges.resample(x[:, :15999], 16000, 24000)


def test_the_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"lmm_env\[judges\]"):
        judges.require_extra("MusicGenJudge")


# ---------------------------------------------------------------- MusicGen and causal LMs (the extra)

def test_musicgen_judge_scores_exactly_hugging_faces_loss_and_the_full_model_with_null_text(tiny_musicgen):
    import torch

    full = tiny_musicgen
    judge = judges.MusicGenJudge(full.decoder, full.audio_encoder)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((2, 32000))).astype(np.float32)
    ll = judge.score(audio)
    assert ll.shape == (2,) and np.all(np.isfinite(ll))
    for i in range(2):
        codes = full.audio_encoder.encode(torch.from_numpy(audio[i:i + 1, None]), bandwidth=1.25).audio_codes[0]
        inputs, labels = judge.tokens(codes)
        with torch.no_grad():
            loss = full.decoder(input_ids=inputs.reshape(4, -1), labels=labels.transpose(1, 2)).loss
            # the decoder alone is the full model with a null text
            uncond = full.get_unconditional_inputs(num_samples=1)
            whole = full(decoder_input_ids=inputs.reshape(4, -1), encoder_outputs=uncond.encoder_outputs,
                         attention_mask=uncond.attention_mask).logits
            alone = full.decoder(input_ids=inputs.reshape(4, -1)).logits
        assert -ll[i] == pytest.approx(loss.item(), rel=1e-6)
        assert torch.equal(whole, alone)
    # torch in, torch out; the score of a row does not depend on its batch
    np.testing.assert_allclose(judge.score(torch.from_numpy(audio[1:])).numpy(), ll[1:], rtol=1e-6)
    with pytest.raises(ValueError, match="whole number of"):
        judge.score(audio[:, :1000])


def test_musicgen_judge_as_a_reward_in_the_env(tiny_musicgen):
    from lmm_env.agents import load_agent

    judge = judges.MusicGenJudge(tiny_musicgen.decoder, tiny_musicgen.audio_encoder)
    env = _piano(AudioJudgeReward(judge, window_seconds=1.0, every=10))
    oracle = _judge_steps(env, load_agent("score-reader", env), "audio_judge")
    judged = (np.arange(len(oracle)) + 1) % 10 == 0
    assert np.all(oracle[judged] == 1.0) and np.all(oracle[~judged] == 0.0)
    played = _judge_steps(env, load_agent("random", env, seed=0), "audio_judge")
    assert np.all(np.isfinite(played)) and np.all((played >= 0) & (played <= 1)) and np.all(played[~judged] == 0)
    with pytest.raises(ValueError, match="whole frames"):  # 50 frames a second: 0.15 s is 7.5 of them
        _piano(AudioJudgeReward(judge, window_seconds=0.15))
    with pytest.raises(ValueError, match="more than the judge reads at once"):
        _piano(AudioJudgeReward(judge, window_seconds=3.0))


def test_causal_lm_judge_scores_hugging_faces_loss(tiny_gpt2):
    import torch

    from lmm_env import corpus

    lm, tok = tiny_gpt2
    judge = judges.CausalLMJudge(lm, tok)
    tunes = [corpus.load("folk", "test")[i].trim(0, 6) for i in range(3)]
    ll = judge.score_notes(tunes)
    for i, s in enumerate(tunes):
        ids = torch.tensor([[judge.bos] + judge.ids(s)])
        with torch.no_grad():
            loss = lm(input_ids=ids, labels=ids).loss
        assert -ll[i] == pytest.approx(loss.item(), rel=1e-5)
    assert np.isnan(judge.score_notes([tunes[0].trim(0, 0.001)])[0]) or len(tunes[0].trim(0, 0.001)) > 0
    env = _piano(SymbolicJudgeReward(judge, window_seconds=2.0, every=10))
    from lmm_env.agents import load_agent

    oracle = _judge_steps(env, load_agent("score-reader", env), "symbolic_judge")
    judged = (np.arange(len(oracle)) + 1) % 10 == 0
    assert np.all(oracle[judged] == 1.0) and np.all(oracle[~judged] == 0.0)

    class Silent:
        def predict(self, obs, *a, **k):
            return np.full(88, -1.0, np.float32), None

    silent = _judge_steps(env, Silent(), "symbolic_judge")  # nothing heard where the tune has notes: 0, not 1
    assert np.all(silent[judged] <= oracle[judged]) and silent[judged].mean() < 0.5


def _torch_vs_numpy(make_reward, steps=24):
    """Rewards of the same random play in the numpy and the torch world (3 envs)."""
    from lmm_env.envs import make_vector_env

    kw = dict(score="folk", max_seconds=3)
    worlds = [make_vector_env(3, reward=make_reward(), **kw),
              make_vector_env(3, backend="torch", as_numpy=True, reward=make_reward(), **kw)]
    for w in worlds:
        w.reset(seed=[0, 1, 2])
    rng = np.random.default_rng(1)
    out = [[], []]
    for _ in range(steps):
        a = np.where(rng.random((3, 88)) < 0.05, rng.uniform(0.1, 1, (3, 88)), -1.0).astype(np.float32)
        for k, w in enumerate(worlds):
            out[k].append(np.asarray(w.step(a)[1], np.float64))
    return np.array(out[0]), np.array(out[1])


def test_the_torch_world_takes_an_audio_judge_reward():
    from lmm_env.envs import make_vector_env
    from lmm_env.envs.torch_sim import TORCH_TOLERANCE

    host, device = _torch_vs_numpy(lambda: AudioJudgeReward(LoudnessJudge(), window_seconds=0.5, every=4))
    judged = (np.arange(len(host)) + 1) % 4 == 0
    assert np.all(device[~judged] == 0.0) and host[judged].min() < 0.99  # it judged something
    np.testing.assert_allclose(device, host, atol=TORCH_TOLERANCE)
    with pytest.raises(ValueError, match="every='episode' has no torch twin"):
        make_vector_env(2, backend="torch", reward=AudioJudgeReward(LoudnessJudge(), every="episode"))
    with pytest.raises(ValueError, match="has no torch twin"):
        make_vector_env(2, backend="torch", reward=SymbolicJudgeReward(FewNotesJudge()))


class SilenceIsEmptyJudge(LoudnessJudge):
    """A judge with nothing to say about silence (NaN, as a symbolic judge has for no notes)."""

    def score(self, audio):
        x = np.abs(np.asarray(audio, np.float64))
        return np.where(x.max(axis=1) > 0, -100.0 * x.mean(axis=1), np.nan)


def test_the_torch_world_reads_an_empty_score_as_the_numpy_world_does():
    from lmm_env.envs.torch_sim import TORCH_TOLERANCE

    host, device = _torch_vs_numpy(lambda: AudioJudgeReward(SilenceIsEmptyJudge(), window_seconds=0.05, every=2))
    assert np.all(np.isfinite(device))
    np.testing.assert_allclose(device, host, atol=TORCH_TOLERANCE)


def test_the_torch_world_runs_a_musicgen_judge(tiny_musicgen):
    from lmm_env.envs.torch_sim import TORCH_TOLERANCE

    judge = judges.MusicGenJudge(tiny_musicgen.decoder, tiny_musicgen.audio_encoder)
    host, device = _torch_vs_numpy(lambda: AudioJudgeReward(judge, window_seconds=1.0, every=10), steps=20)
    np.testing.assert_allclose(device, host, atol=TORCH_TOLERANCE)


def test_judges_load_from_a_folder_offline_and_refuse_what_is_not_one(tiny_musicgen, tiny_gpt2, tmp_path):
    lm, tok = tiny_gpt2
    tiny_musicgen.save_pretrained(tmp_path / "musicgen")
    lm.save_pretrained(tmp_path / "gpt2")
    audio = (0.1 * np.random.default_rng(1).standard_normal((1, 32000))).astype(np.float32)
    here = judges.MusicGenJudge(tiny_musicgen.decoder, tiny_musicgen.audio_encoder).score(audio)
    loaded = judges.MusicGenJudge.from_pretrained(tmp_path / "musicgen").score(audio)
    np.testing.assert_allclose(loaded, here, rtol=1e-6)
    from lmm_env import corpus

    tune = corpus.load("folk", "test")[0].trim(0, 5)
    np.testing.assert_allclose(judges.CausalLMJudge.from_pretrained(tmp_path / "gpt2", tok).score_notes([tune]),
                               judges.CausalLMJudge(lm, tok).score_notes([tune]), rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        judges.MusicGenJudge.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        judges.CausalLMJudge.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(TypeError, match="miditok"):
        judges.CausalLMJudge(lm, tokenizer="REMI")


def test_distinct_ngrams_shows_a_loop():
    from lmm_env import corpus
    from lmm_env.metrics import distinct_ngrams
    from lmm_env.score import Score

    loop = Score([60, 62, 64] * 10, np.arange(30) * 0.25, np.arange(30) * 0.25 + 0.2)
    assert distinct_ngrams(loop) == pytest.approx(3 / 27)
    assert distinct_ngrams(corpus.load("folk", "test")[0]) > 0.6
    assert np.isnan(distinct_ngrams(loop.trim(0, 0.9)))
    env = _piano("key_match", max_seconds=12)
    from lmm_env.agents import load_agent

    m = play_episode(load_agent("score-reader", env), env, 0, 0)[1]["metrics"]
    assert 0 < m["distinct_4grams"] <= 1


def test_the_shipped_remi_judge_prefers_real_tunes_to_spoiled_ones():
    _needs_extra()
    from lmm_env.judges.remi import VARIANTS, rank

    judge = judges.make("remi-judge")
    result = rank(judge, names=("folk",), split="test", pieces=12, seconds=10)
    for how in VARIANTS:
        assert result["folk"][how]["wins"] >= 0.75 and result["folk"][how]["gap"] > 0, (how, result)
    env = _piano({"remi-judge": 1.0})
    from lmm_env.agents import load_agent

    oracle = _judge_steps(env, load_agent("score-reader", env), "remi-judge")
    judged = (np.arange(len(oracle)) + 1) % 20 == 0
    assert np.all(oracle[judged] == 1.0) and np.all(oracle[~judged] == 0.0)
