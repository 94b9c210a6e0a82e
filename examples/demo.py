"""Play a held-out corpus piece on LMMPiano-v0 and write what was played; then let the learned
agents of the LMM challenge play one held-out piece on each task.

    python examples/demo.py --out out

The ScoreReaderAgent reads the score and plays it; the shipped "ppo-closed-loop" policy (PPO
trained only on the closed-loop reward) and a RandomAgent play the same piece. Both are judged by the default closed-loop reward (an ear, a score LM and an audio
LM listening to what was played). Prints a metrics table with each reward term's episode
return and writes to --out:
    performance.mid            what the score reader played
    performance.wav            the audio the env heard (built-in piano synth)
    performance_soundfont.wav  the same performance through the SoundFont piano (TimGM6mb)
    piano_roll.png             target vs the score reader's and the learned policy's piano rolls
    performance.mp4            the learned policy (ppo-closed-loop) playing: keyboard, roll and its sound

Then one metrics row per task of the LMM challenge, each played by its learned agent (shipped
weights): diff-g on LMMPiano-v0 (g learned through the differentiable piano), decipher-closed-loop
on LMMDecipher-v0 (37 hidden keys, learned by ear inside the episode), diff-h on LMMByEar-v0
(h: plays a SoundFont recording it hears) and ppo-improvise on LMMImprovise-v0 (LM^M); then the
realistic tier: diff-g on two-hand music with the grand in a living room, listening-g on two-hand
music whose velocities mean the grand's loudness (on the grand, then on the softer built-in piano,
where it strikes harder: it learns that by ear while it plays), world-transcriber
(h pretrained on the world's pianos, adapted on 16 pairs of TimGM6mb) writing down a two-hand
piece heard from TimGM6mb, and motion-lm (the motion LM, LM^M) answering a two-hand prompt played
by the grand.
"""
from __future__ import annotations

import argparse
import os

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import lmm_env  # noqa: E402,F401  (registers LMMPiano-v0)
from lmm_env.agents import RandomAgent, ScoreReaderAgent, load_agent  # noqa: E402
from lmm_env.envs.render import render_frame  # noqa: E402
from lmm_env.envs.video import write_video  # noqa: E402
from lmm_env.synth import SoundFontSynth  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--out", default="out", help="output folder")
parser.add_argument("--corpus", default="folk", help="corpus to draw the piece from")
parser.add_argument("--seed", type=int, default=0, help="which test piece (the env's RNG seed)")
parser.add_argument("--max-seconds", type=float, default=30.0, help="trim the piece to this length")
args = parser.parse_args()
try:  # before any work: a bad --out fails now, in one line
    os.makedirs(args.out, exist_ok=True)
except OSError as exc:
    parser.error(f"--out {args.out!r} cannot be used as the output folder: {exc.strerror or exc}")

env = gym.make("LMMPiano-v0", score=args.corpus, split="test", max_seconds=args.max_seconds)


def run_episode(agent, label, frames=None):
    obs, info = env.reset(seed=args.seed)
    total, terms, done = 0.0, {}, False
    if frames is not None:
        frames.append(render_frame(env.unwrapped.sim, 0))
    with tqdm(total=info["n_steps"], desc=f"{label:>12}", unit="step", leave=False) as bar:
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            if frames is not None:
                frames.append(render_frame(env.unwrapped.sim, 0))
            total += reward
            for k, v in info["reward_terms"].items():
                terms[k] = terms.get(k, 0.0) + v
            done = terminated or truncated
            bar.update()
    return info["metrics"], total, terms


rows = {}
# ppo-closed-loop: the shipped PPO policy, trained on the closed-loop reward alone (it never saw key_match).
agents = [("random", RandomAgent(env, seed=args.seed)), ("ppo-closed-loop", load_agent("ppo-closed-loop")),
          ("score-reader", ScoreReaderAgent(env))]
learned_frames = []
for label, agent in agents:
    learned = label == "ppo-closed-loop"
    metrics, ret, terms = run_episode(agent, label, learned_frames if learned else None)
    rows[label] = dict(metrics, episode_return=ret, **{k: terms[k] for k in ("ear_match", "score_lm", "audio_lm")})
    if learned:  # the learned policy's episode: a video with the sound it made, and its roll
        write_video(learned_frames, env.unwrapped.episode_audio(), env.unwrapped.sim.sample_rate,
                    env.unwrapped.sim.frame_rate, os.path.join(args.out, "performance.mp4"))
        learned_played = env.unwrapped.performance_score()

piece = env.unwrapped.target_score()
print(f"piece: {piece.name} ({len(piece)} notes, {piece.duration:.1f} s, test split of {args.corpus!r})")
cols = ["frame_f1", "note_f1", "velocity_error", "pitch_class_entropy", "note_density", "episode_return",
        "ear_match", "score_lm", "audio_lm"]
print("| agent | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for label, m in rows.items():
    print(f"| {label} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")

# The score reader's episode is the env's current one: write it out.
unwrapped = env.unwrapped
midi_path = os.path.join(args.out, "performance.mid")
unwrapped.performance().write(midi_path)
sr = unwrapped.sim.sample_rate
audio = unwrapped.episode_audio()
sf.write(os.path.join(args.out, "performance.wav"), np.clip(audio / max(1.0, np.abs(audio).max()), -1, 1), sr)
sf_audio = SoundFontSynth(sr).render(unwrapped.performance_score())
sf.write(os.path.join(args.out, "performance_soundfont.wav"),
         np.clip(sf_audio / max(1e-9, np.abs(sf_audio).max()) * 0.9, -1, 1), sr)

fr = unwrapped.sim.frame_rate
target = piece.frames(fr)
played = unwrapped.performance_score().frames(fr)
n = max(target.T, played.T)
pitches = np.flatnonzero(target.held.any(0) | (played.held.any(0) if played.T else False))
lo, hi = (pitches.min() - 2, pitches.max() + 3) if len(pitches) else (30, 60)
learned = learned_played.frames(fr)
n = max(n, learned.T)
fig, axes = plt.subplots(3, 1, figsize=(12, 8), sharex=True)
for ax, fs, title in [(axes[0], target, "target (score)"), (axes[1], played, "played (score-reader)"),
                      (axes[2], learned, "played (ppo-closed-loop, learned from the closed-loop reward)")]:
    roll = np.zeros((n, 88))
    roll[: fs.T] = fs.velocity
    ax.imshow(roll[:, lo:hi].T, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=127,
              extent=(0, n / fr, lo + 21 - 0.5, hi + 21 - 0.5))
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title)
axes[-1].set_xlabel("time (s)")
fig.suptitle(f"{piece.name}: note F1 {rows['score-reader']['note_f1']:.3f}")
fig.tight_layout()
fig.savefig(os.path.join(args.out, "piano_roll.png"), dpi=100)
print(f"wrote {args.out}/performance.mid, performance.wav, performance_soundfont.wav, piano_roll.png, "
      "performance.mp4")


# ---------------------------------------------------------------------------------------------
# The LMM challenge: one held-out piece per task, each played by its learned agent.
from lmm_env.agents.registry import make_agent  # noqa: E402

# (task, agent, env kwargs, pieces played: the row shows the last; the decipherer learns the hidden
# keyboard by ear during its first piece and plays the second through what it learned)
challenge = [
    ("LMMPiano-v0", "diff-g", {"max_seconds": 12.0}, 1),
    ("LMMDecipher-v0", "decipher-closed-loop", {"max_seconds": 12.0, "keys": (48, 84)}, 2),
    ("LMMByEar-v0", "diff-h", {"max_seconds": 12.0, "target_synth": "soundfont"}, 1),
    ("LMMImprovise-v0", "ppo-improvise", {"prompt_seconds": 4.0, "length_seconds": 12.0}, 1),
    # the realistic tier: two-hand performed piano music; the world is the sampled grand, in a room
    ("LMMPiano-v0", "diff-g", {"max_seconds": 12.0, "score": "piano", "synth": "grand", "room": "living-room"}, 1),
    # g that listens: two-hand music whose velocities mean the grand's loudness, played on the grand and on the
    # built-in piano (softer: it strikes harder there, by ear; matched_velocity_error is against what each needs)
    ("LMMPiano-v0", "listening-g", {"max_seconds": 12.0, "score": "piano", "synth": "grand",
                                    "loudness_reference": "grand"}, 1),
    ("LMMPiano-v0", "listening-g", {"max_seconds": 12.0, "score": "piano", "synth": "piano",
                                    "loudness_reference": "grand"}, 1),
    # h on the realistic tier: a two-hand piece heard from TimGM6mb, an instrument the transcriber was
    # not pretrained on, written down by it after adapting to 16 pairs of that instrument (its default K; shipped)
    ("LMMByEar-v0", "world-transcriber", {"max_seconds": 12.0, "score": "piano", "target_synth": "soundfont"}, 1),
    # LM^M on the realistic tier: the grand plays 4 s of a two-hand piece; the motion LM reads it and answers
    ("LMMImprovise-v0", "motion-lm", {"prompt_seconds": 4.0, "length_seconds": 12.0, "prompt": "piano",
                                      "synth": "grand"}, 1),
]
print("\nThe LMM challenge: learned agents, one held-out piece each")
cols = ["note_f1", "onset_offset_f1", "onset_velocity_f1", "onset_lag_ms", "frame_f1", "velocity_error",
        "matched_velocity_error", "judge_nll",
        "pitch_class_entropy", "note_density", "in_key_share"]
print("| task | agent | world | " + " | ".join(cols) + " | wall s |")
print("|---" * (len(cols) + 4) + "|")
for task, name, kwargs, pieces in challenge:
    import time

    t0 = time.perf_counter()
    task_env = gym.make(task, split="test", **kwargs)
    agent = make_agent(name, task_env)
    for piece_i in range(pieces):
        obs, info = task_env.reset(seed=args.seed + piece_i)
        done = False
        while not done:
            obs, _, terminated, truncated, info = task_env.step(agent.predict(obs, deterministic=True)[0])
            done = terminated or truncated
    m = info["metrics"]
    cells = [f"{m[c]:.3f}" if c in m and m[c] == m[c] else "–" for c in cols]
    label = name + (f" (piece {pieces})" if pieces > 1 else "")
    corpus_name = kwargs.get("score", kwargs.get("prompt"))
    world = task_env.unwrapped.sim.synth.name + (f", {corpus_name} corpus" if corpus_name else "")
    if "target_synth" in kwargs:
        world += f", heard from {kwargs['target_synth']}"
    if "loudness_reference" in kwargs:
        world += f", as loud as the {kwargs['loudness_reference']}"
    print(f"| {task} | {label} | {world} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.1f} |")
    task_env.close()
