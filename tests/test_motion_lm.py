"""The motion LM (LM^M) and the ``motion-lm`` improviser: tokens, sampling, checkpoints, and play that answers its prompt."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pretty_midi
import pytest
import torch

import lmm_env  # noqa: F401
from lmm_env import corpus
from lmm_env.lm.checkpoint import load_checkpoint, load_pretrained, save_checkpoint
from lmm_env.lm.motion_lm import N_DT, MotionLM, decode, encode, evaluate_nll
from lmm_env.score import Score

KW = dict(prompt_seconds=4.0, length_seconds=6.0, reward="key_match")


def test_encode_decode_keeps_pitch_onset_velocity_and_hold():
    s = Score(np.array([60, 64, 67, 72]), np.array([0.0, 0.0, 0.5, 3.0]), np.array([0.4, 0.4, 1.0, 3.3]),
              np.array([80, 81, 100, 40]))
    tok = encode(s)
    assert tok.shape == (4, 4) and tok[:, 0].tolist() == [0, 0, 10, N_DT - 1]  # 2.5 s gap read as the 2 s cap
    notes = decode(tok)
    assert [n[0] for n in notes] == [60, 64, 67, 72]
    assert [n[1] for n in notes][:3] == [0, 0, 10]
    assert [n[3] for n in notes] == [84, 84, 100, 44]  # velocity bins of 8, at their middle
    assert [n[2] for n in notes][:3] == [8, 8, 10]  # holds in steps of STEP_SECONDS
    # transposition drops notes that leave the keyboard; tempo scales the gaps
    assert len(encode(s, transpose=45)) == 1 and encode(s, tempo=0.5)[2, 0] == 20


def test_sampler_keeps_to_its_keys_gaps_and_seed():
    torch.manual_seed(0)
    model = MotionLM(hidden=32, embed=8).eval()
    prompt = encode(corpus.load("folk", "validation")[0])[:12]

    def run(seed, keys=(21, 108)):
        sm = model.sampler(seed=seed, keys=keys)
        sm.push(prompt)
        return np.array([sm.sample(min_dt=3 if i == 0 else 0) for i in range(40)])

    a, b = run(1), run(1)
    assert np.array_equal(a, b) and not np.array_equal(a, run(2))
    assert a[0, 0] >= 3  # the first note starts no earlier than asked
    narrow = run(3, keys=(60, 64))
    assert narrow[:, 1].min() >= 60 - 21 and narrow[:, 1].max() <= 64 - 21
    with pytest.raises(ValueError, match="temperature"):
        model.sampler(temperature=0)
    with pytest.raises(ValueError, match="keys"):
        model.sampler(keys=(70, 60))


def test_checkpoint_round_trip_gives_the_same_nll(tmp_path):
    torch.manual_seed(0)
    model = MotionLM(hidden=24, embed=8).eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"note": "test"})
    back = load_checkpoint(path, expect="MotionLM")
    x = torch.from_numpy(encode(corpus.load("folk", "validation")[1])[:50]).unsqueeze(0)
    with torch.no_grad():
        assert float(model.nll(x)) == pytest.approx(float(back.nll(x)), abs=1e-6)


def test_the_shipped_motion_lm_has_learned_the_corpus():
    """Far below an untrained net of the same shape on held-out pieces of every corpus it was trained on."""
    lm = load_pretrained("motion")
    assert isinstance(lm, MotionLM) and "command" in lm.checkpoint_extra
    torch.manual_seed(0)
    untrained = MotionLM(**lm.config).eval()
    for name in ("folk", "piano", "bach-chorales"):
        pieces = [encode(s) for s in corpus.load(name, "validation")[:4]]
        assert evaluate_nll(lm, pieces) < evaluate_nll(untrained, pieces) - 3.0, name


def _play(env, agent, seed=0, options=None):
    obs, info = env.reset(seed=seed, options=options)
    while True:
        action, _ = agent.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            return env.unwrapped.sim, info


def _free(sim):
    perf = sim.performance_score(0)
    start = sim.frames[0].T / sim.frame_rate
    keep = perf.onsets >= start - 1e-9
    return perf.pitches[keep], perf.onsets[keep], perf.velocities[keep]


def test_motion_lm_plays_after_the_prompt_reproducibly_inside_the_keyboard():
    from lmm_env.agents import load_agent

    env = gym.make("LMMImprovise-v0", keys=(48, 84), **KW)
    agent = load_agent("motion-lm", env, seed=3)
    sim, info = _play(env, agent)
    p, on, v = _free(sim)
    assert len(p) >= 6 and p.min() >= 48 and p.max() <= 84
    assert len(np.unique(v)) > 1  # it plays with dynamics, not one velocity
    assert np.isfinite(info["metrics"]["judge_nll"])
    # what it read is the prompt the world played
    prompt = agent.prompt_score()
    world = sim.frames[0].to_score()
    assert sorted(prompt.pitches.tolist()) == sorted(world.pitches.tolist())
    first = (p.copy(), on.copy())
    sim, _ = _play(env, load_agent("motion-lm", env, seed=3))
    assert np.array_equal(_free(sim)[0], first[0]) and np.allclose(_free(sim)[1], first[1])
    sim, _ = _play(env, load_agent("motion-lm", env, seed=4))
    assert not np.array_equal(_free(sim)[0], first[0])


def _tune(path, pitches):
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate(pitches * 2):
        inst.notes.append(pretty_midi.Note(80, p, 0.25 * i, 0.25 * i + 0.22))
    pm.instruments.append(inst)
    pm.write(str(path))
    return str(path)


def test_motion_lm_answers_in_the_key_of_its_prompt(tmp_path):
    """The same tune in C and in F#: the improvisations' pitch classes follow the prompt's key."""
    from lmm_env import improv
    from lmm_env.agents import load_agent

    c_major = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60, 62, 64, 60, 67, 60]
    shares = {}
    for shift in (0, 6):
        midi = _tune(tmp_path / f"t{shift}.mid", [p + shift for p in c_major])
        env = gym.make("LMMImprovise-v0", prompt=midi, **KW)
        ps = []
        for seed in range(2):
            sim, _ = _play(env, load_agent("motion-lm", env, seed=seed))
            ps.append(_free(sim)[0])
        played = Score(np.concatenate(ps), np.zeros(sum(map(len, ps))), np.full(sum(map(len, ps)), 0.1),
                       np.full(sum(map(len, ps)), 80))
        shares[shift] = (improv.in_key_share(played, (shift, "major")), improv.in_key_share(played, ((shift + 6) % 12,
                                                                                                      "major")))
    for shift, (own, tritone_away) in shares.items():
        assert own >= 0.8 and own > tritone_away + 0.3, shares


def test_motion_lm_plays_the_prompt_itself_when_asked_and_without_a_prompt():
    from lmm_env.agents import load_agent

    env = gym.make("LMMImprovise-v0", prompt_player="agent", **KW)
    agent = load_agent("motion-lm", env, seed=0)
    sim, info = _play(env, agent)
    assert info["metrics"]["n_notes"] > 0
    perf = sim.performance_score(0)
    assert (perf.onsets < 4.0).sum() >= 0.8 * len(sim.frames[0].to_score())  # it played the prompt as shown
    env = gym.make("LMMImprovise-v0", prompt=None, length_seconds=4.0, reward="key_match")
    sim, info = _play(env, load_agent("motion-lm", env, seed=0))
    assert info["metrics"]["n_notes"] > 0


def test_motion_lm_refuses_what_it_cannot_play():
    from lmm_env.agents.learned.improviser import MotionLMAgent

    with pytest.raises(TypeError, match="LMMImprovise-v0"):
        MotionLMAgent(gym.make("LMMPiano-v0"))
    env = gym.make("LMMImprovise-v0", **KW)
    with pytest.raises(ValueError, match="seed=None"):
        MotionLMAgent(env, seed=None)
    with pytest.raises(ValueError, match="top_p"):
        MotionLMAgent(env, top_p=0.0)
    with pytest.raises(ValueError, match="MotionLM"):
        MotionLMAgent(env, model=object())
    with pytest.raises(ValueError, match="MotionLM"):
        MotionLMAgent(env, model=load_pretrained("score"))


def test_play_cli_writes_the_answer_to_a_prompt(tmp_path):
    import subprocess
    import sys

    midi = _tune(tmp_path / "tune.mid", [60, 62, 64, 65, 67, 65, 64, 62])
    out = subprocess.run([sys.executable, "-m", "lmm_env.agents.cli", "play", "--agent", "motion-lm", "--prompt", midi,
                          "--out", str(tmp_path / "o"), "--no-progress", "--env-kwargs",
                          '{"prompt_seconds": 2.0, "length_seconds": 3.0, "reward": "key_match"}'],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "judge NLL" in out.stdout
    played = pretty_midi.PrettyMIDI(str(tmp_path / "o" / "tune_performance.mid"))
    notes = sorted(played.instruments[0].notes, key=lambda n: n.start)
    assert [n.pitch for n in notes][:3] == [60, 62, 64] and notes[-1].start >= 2.0  # the prompt, then its answer
    assert (tmp_path / "o" / "tune_performance.wav").stat().st_size > 1000


def test_rerank_plays_what_the_score_lm_prefers():
    """With LM^V choosing among 8 plans, the free play is likelier under LM^V than plain sampling's."""
    from lmm_env.agents.learned.improviser import MotionLMAgent

    env = gym.make("LMMImprovise-v0", **KW)
    lm = load_pretrained("score")
    nll = {}
    for rerank in (1, 8):
        total = 0.0
        for seed in range(2):
            sim, _ = _play(env, MotionLMAgent(env, seed=seed, rerank=rerank), seed=seed)
            fs = sim.performance_score(0).frames(20)
            total += lm.piece_nll(fs.held, fs.onset) / fs.T
        nll[rerank] = total / 2
    assert nll[8] < nll[1] - 0.1, nll


def test_motion_lm_can_read_the_prompt_by_ear():
    """listen=True: the prompt the LM reads is the transcription of what was heard, and it matches the world's prompt."""
    from lmm_env.agents.learned.improviser import MotionLMAgent

    env = gym.make("LMMImprovise-v0", **KW)
    agent = MotionLMAgent(env, seed=0, listen=True)
    sim, info = _play(env, agent)
    heard, world = agent.prompt_read, sim.frames[0].to_score()
    assert len(world) >= 8 and abs(len(heard) - len(world)) <= 2
    assert np.mean(np.isin(world.pitches, heard.pitches)) >= 0.9
    assert info["metrics"]["n_notes"] > 0
    with pytest.raises(ValueError, match="listen="):
        MotionLMAgent(env, listen="yes")
    with pytest.raises(ValueError, match="record_audio"):
        MotionLMAgent(gym.make("LMMImprovise-v0", record_audio=False, **KW), listen=True)
