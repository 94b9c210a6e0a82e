"""One BLAS thread for the LM rewards' many small numpy matrix products.

A closed-loop step mixes numpy (OpenBLAS) matrix products in the ear and the audio LM with
torch ops in the synth and features. On a small machine both libraries' thread pools then
spin at once and a step gets up to 10x slower (measured on 2 cores, 64 envs: 218 vs 26 us
per env-step). The LM rewards' products are small (at most a few hundred rows), where BLAS
threads gain nothing, so the first LM reward an env builds limits numpy's BLAS to one
thread for the process (through threadpoolctl). torch's own thread setting is untouched.
Set ``LMM_ENV_KEEP_BLAS_THREADS=1`` to opt out.
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
