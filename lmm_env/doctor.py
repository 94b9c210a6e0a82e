"""What this installation of lmm_env can do, and what to do about what it cannot.

    python -m lmm_env.doctor        (or: lmm-env doctor)

Prints the versions of the packages lmm_env uses, whether each synth and each shipped model
loads, the torch and BLAS threads, and one line of advice for anything missing. Exit status:
0 when every default path works, 1 otherwise (optional parts, such as the SoundFont piano,
only warn).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import sys

REQUIRED = ("numpy", "scipy", "torch", "gymnasium", "stable-baselines3", "pretty_midi", "music21", "librosa",
            "soundfile", "mir_eval", "safetensors", "matplotlib", "tensorboard", "numba")
OPTIONAL = {"tinysoundfont": "the SoundFont piano (synth='soundfont'): `pip install --no-deps tinysoundfont` "
                             "(its wheel declares pyaudio, which needs the system PortAudio library; lmm_env never "
                             "plays live audio, so --no-deps is enough)",
            "ray": "Ray RLlib training (lmm_env.agents.training.rllib, examples/rllib_ppo.py): pip install 'lmm_env[rllib]'"}


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def checks() -> list[tuple[str, bool, str, bool]]:
    """[(what, ok, detail, required)] for every check the doctor makes."""
    out = []
    for dist in REQUIRED:
        v = _version(dist)
        out.append((f"package {dist}", v is not None, v or f"missing: pip install {dist}", True))
    for dist, why in OPTIONAL.items():
        v = _version(dist)
        out.append((f"package {dist}", v is not None, v or f"missing, needed for {why}", False))

    def attempt(what, fn, required=True, advice=""):
        try:
            detail = fn()
            out.append((what, True, detail or "ok", required))
        except Exception as exc:  # the doctor reports every failure, whatever its kind
            out.append((what, False, f"{type(exc).__name__}: {exc}" + (f" ({advice})" if advice else ""), required))

    def synth(name):
        def run():
            import numpy as np

            from lmm_env.score import Score
            from lmm_env.synth import make_synth

            audio = make_synth(name).render(Score.from_notes([(60, 0.0, 0.2, 80)]))
            if not np.isfinite(audio).all() or np.abs(audio).max() <= 0:
                raise RuntimeError("rendered silence or NaN")
            return f"{len(audio)} samples for one note"
        return run

    attempt("synth piano (built-in)", synth("piano"))
    attempt("synth grand (shipped samples)", synth("grand"),
            advice="reinstall lmm_env: the grand's samples are package data (lmm_env/synth/grand/)")
    attempt("synth soundfont", synth("soundfont"), required=False, advice=OPTIONAL["tinysoundfont"])
    for name in ("score", "audio", "ear", "ear-analytic", "judge"):
        def load(name=name):
            from lmm_env.lm import load_pretrained

            load_pretrained(name)
        attempt(f"model {name}", load, advice="reinstall lmm_env: the shipped weights are package data")

    def env():
        import gymnasium as gym

        import lmm_env  # noqa: F401

        e = gym.make("LMMPiano-v0", score="exercises-scale", max_seconds=1.0)
        e.reset(seed=0)
        e.step(e.action_space.sample())
        e.close()
    attempt("env LMMPiano-v0 (one step)", env)

    def corpus():
        from lmm_env import corpus as c

        return f"{len(c.load('folk', 'train'))} folk tunes, {len(c.load('bach-chorales', 'train'))} chorales (train)"
    attempt("corpus (music21's bundled scores)", corpus, advice="pip install music21")

    def threads():
        import torch
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('num_threads')}" for i in threadpool_info()) or "none"
        return f"torch {torch.get_num_threads()} threads; BLAS: {blas}"
    attempt("threads", threads, required=False)
    return out


def main(argv=None) -> int:
    rows = checks()
    width = max(len(r[0]) for r in rows)
    for what, ok, detail, required in rows:
        mark = "ok  " if ok else ("FAIL" if required else "warn")
        print(f"[{mark}] {what:<{width}}  {detail}")
    failed = [r for r in rows if not r[1] and r[3]]
    warned = [r for r in rows if not r[1] and not r[3]]
    print(f"\n{sum(r[1] for r in rows)} of {len(rows)} checks passed" +
          (f"; {len(warned)} optional part(s) missing (warn)" if warned else "") +
          (f"; fix the FAIL lines above ({len(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
