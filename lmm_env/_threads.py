"""Keep the env's small torch ops on one thread.

The env mixes numpy (OpenBLAS) and torch ops within one step. On a small machine both
libraries' thread pools spin at once and a step can get 10x slower (measured: 218 vs 23 us
per env-step at 64 envs on 2 cores). The env's torch ops are small and gain nothing from
threads, so they run on one; the caller's setting is restored afterwards.
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def torch_one_thread():
    import torch

    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
