"""Any MIDI file in, a performance by a chosen agent out (MIDI, WAV, piano-roll PNG).

    python examples/play_midi.py tune.mid --agent score-reader --out out/
    python examples/play_midi.py tune.mid --agent runs/ppo/checkpoints/last.safetensors
    python examples/play_midi.py --demo            # writes a short C-major tune first, then plays it

The env plays the whole file (notes outside the keyboard are folded in by octaves) through
the built-in piano, or `--synth soundfont`; the agent is a baseline name or a checkpoint.
"""
from __future__ import annotations

import argparse
import os

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pretty_midi  # noqa: E402
import soundfile as sf  # noqa: E402
from tqdm import tqdm  # noqa: E402

import lmm_env  # noqa: E402,F401  (registers LMMPiano-v0)
from lmm_env.agents import load_agent  # noqa: E402
from lmm_env.agents.benchmark.evaluate import episode_rolls  # noqa: E402
from lmm_env.agents.training.sb3 import roll_image  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("midi", nargs="?", help="the MIDI file to play")
p.add_argument("--agent", default="score-reader", help="random, score-reader, or a .safetensors checkpoint")
p.add_argument("--synth", default="piano", help="piano (built-in), grand (sampled), soundfont, or a .sf2/.sf3 path")
p.add_argument("--out", default="out")
p.add_argument("--demo", action="store_true", help="write a short tune to --out/demo.mid and play that")
args = p.parse_args()
os.makedirs(args.out, exist_ok=True)

if args.demo:  # a C-major tune, so the example runs with no file at hand
    pm = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    start = 0.0
    for i, (pitch, beats) in enumerate([(60, 1), (62, 1), (64, 1), (65, 1), (67, 2), (67, 2), (69, 1), (67, 3)]):
        piano.notes.append(pretty_midi.Note(70 + 5 * (i % 3), pitch, start, start + beats * 0.25 - 0.05))
        start += beats * 0.25
    pm.instruments.append(piano)
    args.midi = os.path.join(args.out, "demo.mid")
    pm.write(args.midi)
if not args.midi:
    p.error("give a MIDI file, or --demo")

env = gym.make("LMMPiano-v0", score=args.midi, synth=args.synth, reward="audio_match")
agent = load_agent(args.agent, env)
obs, info = env.reset(seed=0)
with tqdm(total=info["n_steps"], desc="play", unit="step") as bar:
    while True:
        action, _ = agent.predict(obs, deterministic=True)
        if np.ndim(action) == 2:  # a model trained on a vector env answers in batches
            action = action[0]
        obs, _, terminated, truncated, info = env.step(action)
        bar.update()
        if terminated or truncated:
            break

u = env.unwrapped
stem = os.path.splitext(os.path.basename(args.midi))[0]
u.performance().write(os.path.join(args.out, f"{stem}_performance.mid"))
audio = u.episode_audio()
sf.write(os.path.join(args.out, f"{stem}_performance.wav"), audio / max(1.0, float(np.abs(audio).max())),
         u.sim.sample_rate)
plt.imsave(os.path.join(args.out, f"{stem}_piano_roll.png"), roll_image(*episode_rolls(env)))
m = info["metrics"]
print(f"{stem} played by {args.agent}: note F1 {m['note_f1']:.3f}, frame F1 {m['frame_f1']:.3f}, "
      f"velocity error {m['velocity_error']:.2f}")
print(f"wrote {args.out}/{stem}_performance.mid, {stem}_performance.wav, {stem}_piano_roll.png")
