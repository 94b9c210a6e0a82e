"""One BLAS thread for the env's many small numpy matrix products.

A step mixes numpy (OpenBLAS) matrix products (the log-mel features, the ear, the audio LM)
with torch ops (the policy, the score LM). On a small machine both libraries' thread pools
then spin at once and a step gets up to 25x slower (measured on 2 cores, 64 envs: 208 vs 8
us per env-step for the log-mel alone). The env's products are small (at most a few hundred
rows), where BLAS threads gain nothing, so the first env built (`PianoSim`, before its
reward) limits numpy's BLAS to one thread for the process (through threadpoolctl). torch's own thread setting is
untouched. Set ``LMM_ENV_KEEP_BLAS_THREADS=1`` to opt out.
"""
from __future__ import annotations

import os

_done = False


def limit_blas_threads() -> None:
    global _done
    if _done or os.environ.get("LMM_ENV_KEEP_BLAS_THREADS"):
        return
    _done = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the rewards are only slower under contention
        return
    threadpool_limits(1, user_api="blas")
