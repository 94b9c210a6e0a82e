"""The LMM challenge tasks: LMMDecipher-v0, LMMByEar-v0, LMMImprovise-v0, and the K-pairs protocol."""
import warnings

import gymnasium as gym
import numpy as np
import pytest
import soundfile as sf

import lmm_env
from lmm_env import pairs
from lmm_env.agents.registry import make_agent
from lmm_env.keyboard import HiddenLayoutError
from lmm_env.score import Score
from lmm_env.tasks import probe_keyboard

SHORT = {
    "LMMPiano-v0": dict(max_seconds=3),
    "LMMDecipher-v0": dict(max_seconds=3, keys=(60, 72)),
    "LMMByEar-v0": dict(max_seconds=3),
    "LMMImprovise-v0": dict(prompt_seconds=1, length_seconds=2),
}


def _rollout(env, seed, steps=40):
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(0)
    out = [obs]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        out.append((obs, r))
        if term or trunc:
            obs, _ = env.reset()
    return out


def _same(a, b):
    if isinstance(a, dict):
        return all(_same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("env_id", list(SHORT))
def test_check_env_and_determinism(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check

    env = gym.make(env_id, **SHORT[env_id])
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check(env.unwrapped, warn=False)
    a, b = _rollout(env, 3), _rollout(gym.make(env_id, **SHORT[env_id]), 3)
    assert all(_same(x, y) for x, y in zip(a, b)), "same seed must give the same episode, bit for bit"


@pytest.mark.parametrize("env_id", list(SHORT))
def test_vector_twin_matches_single_env(env_id):
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **SHORT[env_id])
    obs_v, _ = venv.reset(seed=5)
    env = gym.make(env_id, **SHORT[env_id])
    obs1, _ = env.reset(seed=6)
    for k in obs1:
        assert np.array_equal(obs_v[k][1], obs1[k])
    from lmm_env.envs.core import VECTOR_TOLERANCE

    # Seeded actions: the check must not depend on an unseeded action draw. The two agree to the
    # stated float32 tolerance (BLAS sums a batch in another order than one env), not bit for bit.
    act = np.random.default_rng(0).uniform(-1, 1, (2,) + venv.single_action_space.shape).astype(np.float32)
    _, rv, *_ = venv.step(act)
    _, r1, *_ = env.step(act[1])
    assert abs(rv[1] - r1) <= VECTOR_TOLERANCE


@pytest.mark.parametrize("env_id,agent", [("LMMPiano-v0", "score-reader"), ("LMMDecipher-v0", "score-reader"),
                                          ("LMMByEar-v0", "reference-oracle")])
def test_oracles_play_perfectly(env_id, agent):
    env = gym.make(env_id, split="test", max_seconds=6)
    oracle = make_agent(agent, env)
    obs, _ = env.reset(seed=0, options={"score_index": 1})
    while True:
        action, _ = oracle.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            break
    assert info["metrics"]["note_f1"] == pytest.approx(1.0)


def test_decipher_hides_the_layout_and_relayouts():
    env = gym.make("LMMDecipher-v0", keys=(60, 72), relayout="episode")
    kb = env.unwrapped.keyboard
    with pytest.raises(HiddenLayoutError):
        kb.pitch_of_action
    env.reset(seed=0)
    first = kb.reveal()
    env.reset(seed=1)
    assert sorted(kb.reveal()) == list(range(60, 73)) and not np.array_equal(first, kb.reveal())
    kb._reveal_allowed = False
    with pytest.raises(HiddenLayoutError, match="oracles"):
        kb.reveal()
    with pytest.raises(ValueError, match="relayout"):
        gym.make("LMMDecipher-v0", relayout="sometimes")


def test_babble_deciphers_the_full_keyboard_with_the_analytic_ear():
    env = gym.make("LMMDecipher-v0", layout_seed=3)
    babble = make_agent("babble", env, pairs=0)
    result = probe_keyboard(babble, env)
    assert result["keys_deciphered"] >= 0.99
    assert babble.babble_steps == 2 * 88
    rand = probe_keyboard(make_agent("random", env), env)
    assert rand["keys_deciphered"] < 0.05


def _wav(tmp_path, audio, sr=16000, name="target.wav"):
    path = tmp_path / name
    sf.write(path, audio, sr)
    return str(path)


def _rendered(seconds=3.0):
    from lmm_env.synth import PianoSynth

    score = Score.from_notes([(60 + 2 * i, 0.4 * i, 0.4 * i + 0.35, 90) for i in range(int(seconds / 0.4))])
    return score, PianoSynth(16000).render(score, tail=0.3)


def test_by_ear_plays_a_wav_without_reference(tmp_path):
    score, audio = _rendered()
    env = gym.make("LMMByEar-v0", target=_wav(tmp_path, audio))
    obs, info = env.reset(seed=0)
    assert obs["target"].shape == (11, 64) and obs["target"][0].max() > -10  # the target is heard ahead
    while True:
        obs, r, term, trunc, info = env.step(env.action_space.sample())
        if term or trunc:
            break
    assert "note_f1" not in info["metrics"] and "note_density" in info["metrics"]


def test_by_ear_observation_and_reward_ignore_the_reference(tmp_path):
    score, audio = _rendered()
    wav = _wav(tmp_path, audio)
    other = Score.from_notes([(40, 0.0, 2.9, 30)])
    runs = []
    for ref in (score, other):
        env = gym.make("LMMByEar-v0", target=wav, reference=ref)
        runs.append(_rollout(env, 0, steps=30))
    assert all(_same(x, y) for x, y in zip(*runs))


def test_by_ear_bad_targets(tmp_path):
    score, audio = _rendered()
    with pytest.raises(ValueError, match="does not exist"):
        gym.make("LMMByEar-v0", target=str(tmp_path / "missing.wav"))
    (tmp_path / "notes.txt").write_text("not audio")
    with pytest.raises(ValueError, match="not audio"):
        gym.make("LMMByEar-v0", target=str(tmp_path / "notes.txt"))
    with pytest.raises(ValueError, match="empty"):
        gym.make("LMMByEar-v0", target=np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="silent"):
        gym.make("LMMByEar-v0", target=_wav(tmp_path, np.zeros(16000, np.float32), name="silence.wav"))
    with pytest.raises(ValueError, match="does not match the target audio"):
        gym.make("LMMByEar-v0", target=_wav(tmp_path, audio), reference=Score.from_notes([(60, 0.0, 30.0, 80)]))
    with pytest.raises(ValueError, match="target_synth"):
        gym.make("LMMByEar-v0", target_synth="harpsichord")
    with pytest.warns(UserWarning, match="resampled"):
        env = gym.make("LMMByEar-v0", target=_wav(tmp_path, audio[::2].copy(), sr=8000, name="low.wav"))
    assert env.reset(seed=0)[1]["n_steps"] >= 50


def test_pairs_are_nested_and_deterministic():
    p4, p16 = pairs.load(4), pairs.load(16)
    assert len(p4) == 4 and len(p16) == 16 and len(pairs.load(0)) == 0
    for a, b in zip(p4, p16[:4]):
        assert a.name == b.name and np.array_equal(a.audio, b.audio) and a.score == b.score
    again = pairs.load(16)
    assert [p.name for p in again] == [p.name for p in p16]
    assert {len(p.audio) for p in p16} == {int(pairs.CLIP_SECONDS * 16000)}
    assert [p.name for p in pairs.load(4, seed=1)] != [p.name for p in p4]
    with pytest.raises(ValueError, match="not allowed"):
        pairs.load(5)
    with pytest.raises(ValueError, match="pairs= or ear="):
        gym.make("LMMPiano-v0", pairs=0, ear="ear-analytic")
    env = gym.make("LMMPiano-v0", pairs=16, max_seconds=2)
    assert env.reset(seed=0)[1]["pairs"] == 16


def test_fit_ear_at_16_pairs_beats_the_analytic_ear_on_held_out_audio():
    from lmm_env import corpus
    from lmm_env.lm.ear import AnalyticEar, fit_ear
    from lmm_env.metrics import frame_f1
    from lmm_env.synth import PianoSynth

    ear = fit_ear(pairs.load(16), steps=500, progress=False)
    synth, analytic = PianoSynth(16000), AnalyticEar()
    scores = {"analytic": [], "fitted": []}
    for name in ("folk", "bach-chorales"):
        for i in range(2):
            piece = corpus.load(name, "test")[i].trim(0, 10)
            audio = synth.render(piece)
            target = piece.frames(20).held
            for label, e in (("analytic", analytic), ("fitted", ear)):
                held, _ = e.transcribe(audio)
                n = min(len(held), len(target))
                scores[label].append(frame_f1(held[:n], target[:n])["f1"])
    assert np.mean(scores["fitted"]) > np.mean(scores["analytic"]) + 0.02


def test_improvise_reward_makes_collapse_unprofitable():
    env = gym.make("LMMImprovise-v0", prompt=None, length_seconds=12)

    def ret(score):
        f = score.frames(20)
        env.reset(seed=0)
        total, t = 0.0, 0
        while True:
            a = np.full(88, -1.0, np.float32)
            if t < f.T:
                a[f.held[t]] = 0.6
            _, r, term, trunc, info = env.step(a)
            total, t = total + r, t + 1
            if term or trunc:
                return total, info["metrics"]

    from lmm_env import corpus

    tune, m = ret(corpus.load("folk", "test")[1].trim(0, 12))
    silence, _ = ret(Score.from_notes([]))
    one_note, _ = ret(Score.from_notes([(60, 0.25 * i, 0.25 * i + 0.2, 80) for i in range(48)]))
    loop, _ = ret(Score.from_notes([(p, 0.25 * i, 0.25 * i + 0.2, 80) for i, p in enumerate([60, 64, 67, 72] * 12)]))
    assert silence == 0.0 and tune > 4 * one_note and tune > 3 * loop
    assert {"judge_nll", "pitch_class_entropy", "note_density", "repetition", "in_key_share"} <= set(m)


def test_every_task_takes_the_common_arguments():
    for env_id in SHORT:
        # LMMImprovise-v0's 4 s prompt would fill 3 s with no free play (refused): a 1 s prompt
        extra = {"prompt_seconds": 1} if env_id == "LMMImprovise-v0" else {}
        env = gym.make(env_id, max_seconds=3, keys=(48, 84), frame_rate=20, synth="piano", **extra)
        obs, info = env.reset(seed=0)
        assert env.action_space.shape == (37,)
        assert info["n_steps"] <= 3 * 20 + 10  # the piece (or prompt + free play) capped, plus a 0.5 s tail
