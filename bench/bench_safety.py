"""What a hostile or careless file costs before it is refused: time, peak memory, and whether code ran.

    .venv/bin/python bench/bench_safety.py                      # this checkout
    .venv/bin/python bench/bench_safety.py --pythonpath /tmp/old   # another checkout (see below)

Each case runs in a fresh child process (``python -c``) under an 8 GB address-space limit,
so a case that would allocate tens of GB fails there instead of taking the machine down.
Reported per case: wall seconds of the child, its peak RSS (``ru_maxrss``), and how it
ended (the first line of the error, or what loaded).

Cases (issue 21):

* ``module-env-id``: ppo-closed-loop's checkpoint with ``env_id="lmm_bench_evil:LMMPiano-v0"``
  and a module of that name importable (it writes a marker file when imported): loaded
  with ``load_agent``. "code ran" says whether the marker appeared.
* ``wide-policy``: the same checkpoint whose config asks for ``actor_channels=[4000000, 32]``
  (the file is 86 KB), loaded with ``load_agent``.
* ``wide-ear``: the shipped learned ear whose config asks for ``hidden=200000, channels=4096``,
  loaded with ``lmm_env.lm.load_checkpoint``.
* ``long-wav``: a 2-hour 16 kHz mono 16-bit WAV (230 MB, written once to ``--workdir``) as
  LMMByEar-v0's target with ``max_seconds=10``: ``gym.make`` and one ``reset``.
* ``long-midi``: a 44-byte MIDI file whose one note ends at 335,544 s (93 hours: a slow tempo
  and a long tick count) as LMMPiano-v0's score with ``reward="key_match"``: ``gym.make`` and
  one ``reset``.
* ``wav-1hz``: a 200 KB WAV whose header says 1 Hz (100,000 samples) as LMMByEar-v0's
  target: ``gym.make`` (it would be resampled to 16 kHz).

An older checkout (e.g. the commit before issue 21) can be measured with the same venv:
``git worktree add /tmp/old <commit>; ln -s ../envs /tmp/old/lmm_env/envs; ln -s ../agents
/tmp/old/lmm_env/agents`` then ``--pythonpath /tmp/old`` (its lmm_env comes first on the path).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CASES = ("module-env-id", "wide-policy", "wide-ear", "long-wav", "long-midi", "wav-1hz")

PRELUDE = """
import json, resource, sys, warnings
warnings.filterwarnings("ignore")
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
from safetensors import safe_open
from safetensors.torch import load_file, save_file
def rewrite(src, dst, edit):
    with safe_open(src, "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"]); edit(config); meta["config"] = json.dumps(config)
    save_file(load_file(src), dst, metadata=meta)
"""

BODIES = {
    "module-env-id": """
import lmm_env, lmm_env.agents as A, os
src = os.path.join(os.path.dirname(A.__file__), "weights", "ppo-closed-loop.safetensors")
open(os.path.join(WORK, "lmm_bench_evil.py"), "w").write(f"open({MARKER!r}, 'w').write('ran')\\n")
sys.path.insert(0, WORK)
rewrite(src, os.path.join(WORK, "evil.safetensors"), lambda c: c.update(env_id="lmm_bench_evil:LMMPiano-v0"))
A.load_agent(os.path.join(WORK, "evil.safetensors"))
print("OUTCOME loaded")
""",
    "wide-policy": """
import lmm_env, lmm_env.agents as A, os
src = os.path.join(os.path.dirname(A.__file__), "weights", "ppo-closed-loop.safetensors")
def widen(c):
    c["hyperparams"].setdefault("policy_kwargs", {})["actor_channels"] = [4000000, 32]
rewrite(src, os.path.join(WORK, "wide.safetensors"), widen)
A.load_agent(os.path.join(WORK, "wide.safetensors"))
print("OUTCOME loaded")
""",
    "wide-ear": """
import os
from lmm_env.lm.checkpoint import WEIGHTS_DIR, load_checkpoint
rewrite(str(WEIGHTS_DIR / "ear.safetensors"), os.path.join(WORK, "ear.safetensors"),
        lambda c: c.update(hidden=200000, channels=4096))
load_checkpoint(os.path.join(WORK, "ear.safetensors"))
print("OUTCOME loaded")
""",
    "long-wav": """
import gymnasium as gym, lmm_env
env = gym.make("LMMByEar-v0", target=LONG_WAV, max_seconds=10)
obs, info = env.reset(seed=0)
print("OUTCOME reset: %d steps" % info["n_steps"])
""",
    "long-midi": """
import os, mido, gymnasium as gym, lmm_env
mf = mido.MidiFile(ticks_per_beat=1); tr = mido.MidiTrack(); mf.tracks.append(tr)
tr.append(mido.MetaMessage("set_tempo", tempo=0xFFFFFF, time=0))
tr.append(mido.Message("note_on", note=60, velocity=80, time=0))
tr.append(mido.Message("note_off", note=60, velocity=0, time=20000))
path = os.path.join(WORK, "long.mid"); mf.save(path)
env = gym.make("LMMPiano-v0", score=path, reward="key_match")
obs, info = env.reset(seed=0)
print("OUTCOME reset: %d steps" % info["n_steps"])
""",
    "wav-1hz": """
import os, numpy as np, soundfile as sf, gymnasium as gym, lmm_env
path = os.path.join(WORK, "sr1.wav")
sf.write(path, (0.3 * np.sin(np.arange(100000) * 0.3)).astype(np.float32), 1)
env = gym.make("LMMByEar-v0", target=path, reward="key_match")
print("OUTCOME made")
""",
}


def long_wav(workdir: Path) -> Path:
    """A 2-hour 16 kHz mono PCM-16 WAV of a quiet, slowly gliding tone, written in 60 s chunks."""
    import numpy as np
    import soundfile as sf

    path = workdir / "two_hours.wav"
    if path.is_file():
        return path
    sr, t0 = 16000, 0
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        for _ in range(120):
            t = (t0 + np.arange(60 * sr)) / sr
            f.write((0.2 * np.sin(2 * np.pi * (220 + 0.01 * t) * t)).astype(np.float32))
            t0 += 60 * sr
    return path


def run_case(case: str, python: str, pythonpath: str | None, workdir: Path, wav: Path | None) -> dict:
    marker = workdir / f"marker-{case}"
    marker.unlink(missing_ok=True)
    code = PRELUDE + f"WORK = {str(workdir)!r}\nMARKER = {str(marker)!r}\nLONG_WAV = {str(wav)!r}\n" + \
        textwrap.dedent(BODIES[case]) + \
        "\nprint('PEAK_MB %.0f' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    wrapped = ("import resource, sys, traceback\ntry:\n" + textwrap.indent(code, "    ")
               + "\nexcept BaseException as e:\n    print('OUTCOME %s: %s' % (type(e).__name__, str(e).splitlines()[0][:160] "
               "if str(e) else ''))\n    print('PEAK_MB %.0f' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t = time.perf_counter()
    done = subprocess.run([python, "-c", wrapped], capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - t
    lines = done.stdout.splitlines()
    outcome = next((ln[8:] for ln in lines if ln.startswith("OUTCOME ")), f"exit {done.returncode}: "
                   f"{(done.stderr.strip().splitlines() or [''])[-1][:160]}")
    peak = next((float(ln.split()[1]) for ln in lines if ln.startswith("PEAK_MB ")), float("nan"))
    return {"case": case, "wall_s": round(wall, 1), "peak_mb": peak, "code_ran": marker.exists(), "outcome": outcome}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--pythonpath", default=None, help="put this checkout's lmm_env first on the path")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lmm_env_bench_safety"))
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        p.error(f"unknown cases {unknown}; use {list(CASES)}")
    wav = long_wav(workdir) if "long-wav" in cases else None
    rows = [run_case(c, args.python, args.pythonpath, workdir, wav) for c in cases]
    print(f"| case | wall s | peak RSS MB | code ran | outcome |  (checkout: {args.pythonpath or 'this one'})")
    print("|---|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['wall_s']:.1f} | {r['peak_mb']:.0f} | {'yes' if r['code_ran'] else 'no'} | "
              f"{r['outcome'].replace('|', '/')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
