"""LMMPiano-v0 and its batched twin: API checks, determinism, perfect play, bad input."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pretty_midi
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import lmm_env  # noqa: F401  (registers the ids)
from lmm_env import corpus, rewards
from lmm_env.agents import RandomAgent, ScoreReaderAgent
from lmm_env.envs import SB3VecEnv
from lmm_env.rewards import RewardError, RewardModel
from lmm_env.score import Score

SHORT = dict(max_seconds=4.0)


def play(env, agent, seed=0):
    obs, _ = env.reset(seed=seed)
    observations, rews, infos = [obs], [], []
    done = False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, r, term, trunc, info = env.step(action)
        observations.append(obs)
        rews.append(r)
        infos.append(info)
        done = term or trunc
    return observations, rews, infos


def test_registered_ids_pass_gymnasium_and_sb3_checkers():
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    ids = [i for i in gym.registry if i.startswith("LMM")]
    assert "LMMPiano-v0" in ids
    assert {"LMMDecipher-v0", "LMMByEar-v0", "LMMImprovise-v0"} <= set(ids)
    for env_id in ids:
        kw = dict(prompt_seconds=1, length_seconds=2) if env_id == "LMMImprovise-v0" else SHORT
        env = gym.make(env_id, **kw)
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(gym.make(env_id, **kw).unwrapped, warn=False)


def test_default_make_draws_a_corpus_piece_and_steps():
    env = gym.make("LMMPiano-v0")
    obs, info = env.reset(seed=3)
    assert obs["score"].shape == (3, 11, 88) and obs["audio"].shape == (64,) and obs["key_state"].shape == (88,)
    assert env.observation_space.contains(obs)
    assert info["score_name"] in corpus.load("folk", "train").ids
    obs, r, term, trunc, info = env.step(env.action_space.sample())
    assert {"closed_loop", "ear_match", "score_lm", "audio_lm"} <= set(info["reward_terms"]) and np.isfinite(r)


def test_same_seed_gives_bit_identical_episodes():
    a = play(gym.make("LMMPiano-v0", score="bach-chorales", **SHORT), RandomAgent(gym.make("LMMPiano-v0"), seed=5), seed=11)
    b = play(gym.make("LMMPiano-v0", score="bach-chorales", **SHORT), RandomAgent(gym.make("LMMPiano-v0"), seed=5), seed=11)
    assert len(a[0]) == len(b[0]) > 10
    for oa, ob in zip(a[0], b[0]):
        for k in oa:
            assert np.array_equal(oa[k], ob[k]), k
    assert a[1] == b[1]


@pytest.mark.parametrize("name", ["folk", "bach-chorales"])
def test_score_reader_plays_corpus_pieces_perfectly(name):
    env = gym.make("LMMPiano-v0", score=name, split="test", max_seconds=8.0, reward="audio_match")
    agent = ScoreReaderAgent(env)
    for seed in range(3):
        _, rews, infos = play(env, agent, seed)
        m = infos[-1]["metrics"]
        assert m["note_f1"] == 1.0 and m["frame_f1"] == 1.0 and m["velocity_error"] == 0.0, m
        assert min(rews) > 0.999  # the heard audio is the target's audio


def test_score_reader_with_shuffled_layout_and_small_keyboard():
    env = gym.make("LMMPiano-v0", score="exercises-chords", keys=(48, 72), layout="shuffled", layout_seed=3)
    kb = env.unwrapped.keyboard
    assert env.action_space.shape == (25,) and not np.array_equal(kb.pitch_of_action, np.arange(48, 73))
    _, _, infos = play(env, ScoreReaderAgent(env), seed=1)
    assert infos[-1]["metrics"]["note_f1"] == 1.0


def test_wrong_play_is_rewarded_less_than_right_play():
    env = gym.make("LMMPiano-v0", score="folk", split="test", reward={"audio_match": 1.0, "key_match": 1.0}, **SHORT)
    reader = ScoreReaderAgent(env)

    class SemitoneOff:
        def predict(self, obs, deterministic=True):
            a, s = reader.predict(obs)
            return np.roll(a, 1), s

    _, right, _ = play(env, reader, seed=2)
    _, wrong, infos = play(env, SemitoneOff(), seed=2)
    _, rand, _ = play(env, RandomAgent(env, seed=0), seed=2)
    assert sum(right) > sum(wrong) > sum(rand)
    assert infos[-1]["metrics"]["note_f1"] == 0.0


def test_reward_terms_every_step_and_metrics_at_the_end():
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward={"audio_match": 1.0, "key_match": 0.5})
    _, rews, infos = play(env, ScoreReaderAgent(env))
    for r, info in zip(rews, infos):
        assert set(info["reward_terms"]) == {"audio_match", "key_match"}
        assert r == pytest.approx(info["reward_terms"]["audio_match"] + 0.5 * info["reward_terms"]["key_match"])
    assert "metrics" in infos[-1] and all("metrics" not in i for i in infos[:-1])


def test_performance_midi_round_trips_to_what_was_played(tmp_path):
    env = gym.make("LMMPiano-v0", score="exercises-random-walk")
    play(env, RandomAgent(env, seed=1), seed=4)
    played = env.unwrapped.performance_score()
    assert len(played) > 10
    path = tmp_path / "perf.mid"
    env.unwrapped.performance().write(str(path))
    assert Score.from_midi(path) == played
    audio = env.unwrapped.episode_audio()
    assert audio.shape == (env.unwrapped.sim.t[0] * 800,) and np.isfinite(audio).all()


def test_pedal_sustains_and_is_written_to_midi():
    env = gym.make("LMMPiano-v0", score="exercises-scale", pedal=True, tail=0.0)
    env.reset(seed=0)
    a = -np.ones(89, np.float32)
    a[39] = 0.8  # strike C4
    a[88] = 1.0  # pedal down
    env.step(a)
    a[39] = -1.0  # key up, pedal still down
    for _ in range(3):
        env.step(a)
    a[88] = -1.0
    for _ in range(4):
        env.step(a)
    audio = env.unwrapped.episode_audio()
    held_rms = np.sqrt(np.mean(audio[2400:3200] ** 2))  # 2 steps after key-up, pedal down
    after_rms = np.sqrt(np.mean(audio[-800:] ** 2))  # 4 steps after the pedal lifts
    assert held_rms > 1e-3 and after_rms < 1e-5
    cc = env.unwrapped.performance().instruments[0].control_changes
    assert [(c.number, c.value) for c in cc] == [(64, 127), (64, 0)]


def test_render_rgb_array_shows_pressed_keys():
    env = gym.make("LMMPiano-v0", score="exercises-scale", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    agent = ScoreReaderAgent(env)
    for _ in range(3):
        obs, *_ = env.step(agent.predict(obs)[0])
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    assert (frame == np.array([230, 120, 40], np.uint8)).all(axis=2).any()  # a lit key


def test_vector_env_matches_single_envs_with_the_same_seeds():
    n = 3
    kw = dict(score="exercises-mixed", reward={"audio_match": 1.0, "key_match": 1.0})
    venv = gym.make_vec("LMMPiano-v0", num_envs=n, **kw)
    singles = [gym.make("LMMPiano-v0", **kw) for _ in range(n)]
    vobs, _ = venv.reset(seed=7)
    sobs = [e.reset(seed=7 + i)[0] for i, e in enumerate(singles)]
    rng = np.random.default_rng(0)
    done = np.zeros(n, bool)
    steps = 0
    while not done.all():
        actions = rng.uniform(-1, 1, (n, 88)).astype(np.float32)
        vobs, vr, _, vtr, _ = venv.step(actions)
        for i, e in enumerate(singles):
            if done[i]:
                continue
            o, r, _, tr, _ = e.step(actions[i])
            assert r == pytest.approx(vr[i], abs=1e-5)
            assert tr == vtr[i]
            if not tr:
                for k in o:
                    np.testing.assert_allclose(vobs[k][i], o[k], atol=1e-4)
            done[i] |= tr
        steps += 1
    assert steps > 20


def test_sb3_adapter_trains_ppo_and_reports_terminal_observations():
    from stable_baselines3 import PPO

    venv = SB3VecEnv(gym.make_vec("LMMPiano-v0", num_envs=2, score="exercises-scale", keys=(60, 72)))
    obs = venv.reset()
    assert obs["score"].shape == (2, 3, 11, 13)
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(128)
    ended = []
    for _ in range(400):
        obs, r, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        ended += [i for i, d in zip(infos, dones) if d]
        if ended:
            break
    assert ended and "terminal_observation" in ended[0] and ended[0]["TimeLimit.truncated"]
    assert "note_f1" in ended[0]["metrics"]


class _Constant(RewardModel):
    name = "constant"

    def __init__(self, value):
        self.value = value

    def __call__(self, ctx):
        assert ctx.key_down is None  # LM-style rewards never see the keys
        return self.value


def test_plugin_reward_by_object_by_name_and_in_a_dict():
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=_Constant(0.25))
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[1] == 0.25
    rewards.register("test-constant", lambda: _Constant(2.0), overwrite=True)
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward={"test-constant": 0.5, "key_match": 1.0})
    env.reset(seed=0)
    _, r, _, _, info = env.step(-np.ones(88, np.float32))
    assert info["reward_terms"]["test-constant"] == 2.0 and r == pytest.approx(1.0 + info["reward_terms"]["key_match"])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "loud"])
def test_bad_reward_values_name_the_model_and_step(bad):
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=_Constant(bad))
    env.reset(seed=0)
    with pytest.raises(RewardError, match=r"constant.*step 0"):
        env.step(env.action_space.sample())


def test_raising_reward_is_wrapped_with_its_name():
    class Broken(RewardModel):
        name = "broken"

        def __call__(self, ctx):
            raise KeyError("oops")

    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=Broken())
    env.reset(seed=0)
    env_step = env.unwrapped.step
    with pytest.raises(RewardError, match="broken.*raised at step 0"):
        env_step(np.zeros(88, np.float32))


@pytest.mark.parametrize(
    "action, match",
    [
        (np.full(88, np.nan, np.float32), "non-finite"),
        (np.r_[np.zeros(87), np.inf].astype(np.float32), "non-finite"),
        (np.zeros(87, np.float32), "shape"),
        (np.zeros((1, 88), np.float32), "shape"),
        (np.zeros(88, np.int64), "dtype"),
    ],
)
def test_bad_actions_raise_clear_errors(action, match):
    env = gym.make("LMMPiano-v0", score="exercises-scale")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(action)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(reward="nope"), "unknown reward 'nope'"),
        (dict(synth="organ"), "unknown synth 'organ'"),
        (dict(layout="spiral"), "unknown layout 'spiral'"),
        (dict(score="jazz"), "unknown corpus 'jazz'"),
        (dict(split="dev"), "dev"),
        (dict(frame_rate=0), "frame_rate=0"),
        (dict(frame_rate=float("nan")), "frame_rate=nan"),
        (dict(frame_rate=30), "whole number"),
        (dict(sample_rate=100), "sample_rate=100"),
        (dict(lookahead=-1), "lookahead=-1"),
        (dict(lookahead=2.5), "lookahead=2.5"),
        (dict(keys=(10, 50)), "keys=\\(10, 50\\)"),
        (dict(keys=(60, 50)), "keys=\\(60, 50\\)"),
        (dict(keys="all"), "keys='all'"),
        (dict(render_mode="ansi"), "render_mode='ansi'"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    kwargs.setdefault("score", "exercises-scale") if "score" not in kwargs and "split" not in kwargs else None
    with pytest.raises(ValueError, match=match):
        gym.make("LMMPiano-v0", **kwargs)


def test_bad_midi_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mid"):
        gym.make("LMMPiano-v0", score=str(tmp_path / "missing.mid"))
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"this is not a MIDI file at all")
    with pytest.raises(ValueError, match="junk.mid"):
        gym.make("LMMPiano-v0", score=str(junk))
    empty = tmp_path / "empty.mid"
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.write(str(empty))
    with pytest.raises(ValueError, match="no .*notes"):
        gym.make("LMMPiano-v0", score=str(empty))
    high = Score.from_notes([(60, 0, 1, 80), (110, 1, 2, 80)], out_of_range="drop")
    assert len(high) == 1
    with pytest.raises(ValueError, match="pitch 103.*48..84"):
        gym.make("LMMPiano-v0", score=[Score.from_notes([(60, 0, 1, 80), (103, 1, 2, 80)])], keys=(48, 84),
                 out_of_range="reject")


def test_midi_path_and_pretty_midi_and_list_are_accepted(tmp_path):
    s = Score.from_notes([(60, 0.0, 0.5, 90), (64, 0.5, 1.0, 70), (67, 1.0, 1.5, 50)])
    path = tmp_path / "tune.mid"
    s.to_pretty_midi().write(str(path))
    for score in (str(path), s.to_pretty_midi(), [s, str(path)], s):
        env = gym.make("LMMPiano-v0", score=score)
        _, _, infos = play(env, ScoreReaderAgent(env))
        assert infos[-1]["metrics"]["note_f1"] == 1.0


class _Recorder(RewardModel):
    """Keeps what each step's context says was heard before (to check the history rings)."""

    name = "recorder"
    history_blocks = 3

    def __init__(self):
        self.seen = []

    def batch(self, ctx):
        self.seen.append((ctx.audio.copy(), ctx.audio_history.copy(), ctx.recent_audio(2).copy(),
                          ctx.features.copy(), ctx.feature_history.copy()))
        return np.zeros(len(ctx))


def test_reward_context_history_is_the_previous_blocks_oldest_first():
    rec = _Recorder()
    env = gym.make("LMMPiano-v0", score="exercises-scale", reward=rec)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(7):
        env.step(rng.uniform(-1, 1, 88).astype(np.float32))
    block = env.unwrapped.sim.block_size
    silence = env.unwrapped.sim.features.silence
    for t, (audio, hist, recent, feats, fhist) in enumerate(rec.seen):
        assert hist.shape == (1, 3 * block) and fhist.shape == (1, 3, feats.shape[1])
        for j in range(3):  # history slot j holds step t - 3 + j (silence before the episode)
            s = t - 3 + j
            want = rec.seen[s][0] if s >= 0 else np.zeros_like(audio)
            np.testing.assert_array_equal(hist[:, j * block:(j + 1) * block], want)
            want_f = rec.seen[s][3] if s >= 0 else np.full_like(feats, silence)
            np.testing.assert_array_equal(fhist[:, j], want_f)
        np.testing.assert_array_equal(recent, np.concatenate([hist[:, 2 * block:], audio], axis=1))
    assert np.abs(rec.seen[5][0]).max() > 0  # the random keys made sound
    # a new episode starts from silence again
    env.reset(seed=1)
    env.step(-np.ones(88, np.float32))
    assert not rec.seen[-1][1].any() and (rec.seen[-1][4] == silence).all()


def test_recent_audio_without_enough_history_says_so():
    from lmm_env.rewards.base import BatchStepContext

    z = np.zeros((2, 800), np.float32)
    ctx = BatchStepContext(env_ids=np.arange(2), step=np.zeros(2, int), audio=z, audio_history=np.zeros((2, 1600), np.float32),
                           features=np.zeros((2, 64), np.float32), feature_history=np.zeros((2, 2, 64), np.float32),
                           target_held=np.zeros((2, 1, 88), bool), target_onset=np.zeros((2, 1, 88), bool),
                           target_velocity=np.zeros((2, 1, 88), np.uint8), score_context=0)
    assert ctx.recent_audio(3).shape == (2, 2400)
    with pytest.raises(ValueError, match=r"recent_audio\(4\) needs 3 blocks of history; the env keeps 2"):
        ctx.recent_audio(4)


@pytest.mark.parametrize("cfg", [dict(), dict(keys=(48, 72)), dict(layout="shuffled", layout_seed=3), dict(pedal=True),
                                 dict(keys=(30, 90), layout="shuffled", pedal=True)])
def test_keyboard_compiled_apply_equals_the_numpy_apply(cfg, monkeypatch):
    # few envs take a numba loop (faster than ~12 numpy calls); it must give the same key events
    import lmm_env.keyboard as keyboard

    rng = np.random.default_rng(0)
    for n in (1, 5):
        for dtype in (np.float32, np.float64):
            compiled, reference = keyboard.Keyboard(n, **cfg), keyboard.Keyboard(n, **cfg)
            for step in range(200):
                if step == 100:  # a new hidden layout per env mid-run, as LMMDecipher-v0's relayout does
                    for i in range(n):
                        compiled.relayout(i, np.random.default_rng(i))
                        reference.relayout(i, np.random.default_rng(i))
                act = rng.uniform(-1.2, 1.2, (n, compiled.n_actions))
                if step % 7 == 0:  # velocities exactly half-way between two integers
                    act[:, : compiled.n_keys] = (rng.integers(0, 127, (n, compiled.n_keys)) + 0.5) / 126.0
                act = act.astype(dtype)
                monkeypatch.setattr(keyboard, "COMPILED_APPLY_MAX_ENVS", 64)
                got = compiled.apply(act)
                monkeypatch.setattr(keyboard, "COMPILED_APPLY_MAX_ENVS", 0)
                want = reference.apply(act)
                for g, w in zip(got, want):
                    assert g.dtype == w.dtype and np.array_equal(g, w)
                assert np.array_equal(compiled.down, reference.down)
                assert np.array_equal(compiled.pedal_down, reference.pedal_down)
