"""Frame F1 and note onset F1 of the ears on held-out audio from both synths, and their speed.

    python bench/bench_ears.py            # markdown table (BENCHMARKS.md, "Ears")

Ears: the shipped analytic ear (the closed-loop reward's default), the previous analytic
default (a 200 ms window, 3 log bins a semitone) for comparison, and the learned ear.
Pieces: the test split, 10 evenly spaced pieces per corpus trimmed to 30 s, rendered by the
built-in piano and the SoundFont piano (`lmm_env.lm.ear.evaluate`).
"""
from __future__ import annotations

import argparse
import time

from lmm_env._threads import limit_blas_threads
from lmm_env.lm import load_pretrained
from lmm_env.lm.ear import AnalyticEar, evaluate, table, time_activations


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pieces", type=int, default=10, help="test pieces per corpus")
    args = p.parse_args()
    limit_blas_threads()
    ears = {
        "analytic (shipped)": AnalyticEar(),
        "analytic, previous default": AnalyticEar(history_blocks=3, bins_per_semitone=3, n_fft=None),
        "learned (K = 16)": load_pretrained("ear"),
    }
    for name, ear in ears.items():
        print(f"{name}: activations {time_activations(ear, 1, 1000) * 1e6:.1f} us at B = 1, "
              f"{time_activations(ear, 64, 200) * 1e6 / 64:.2f} us per env at B = 64", flush=True)
    t = time.perf_counter()
    print(table(evaluate(ears, n_each=args.pieces)))
    print(f"evaluated in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
