"""Keys deciphered on LMMDecipher-v0 (88 keys) by the oracle, babble and random, for both relayouts.

    python bench/probe_decipher.py [--pairs 0] [--layout-seed 0]

Each agent plays `lmm_env.tasks.probe_keyboard` on a fresh env; babble's babbling steps are
printed beside (results in BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import time

import gymnasium as gym

import lmm_env  # noqa: F401
from lmm_env.agents.zoo import make_agent
from lmm_env.tasks import probe_keyboard


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default="0", help="K of babble's ear (0, 4, 16, 64)")
    ap.add_argument("--layout-seed", type=int, default=0)
    args = ap.parse_args(argv)
    K = int(args.pairs)
    print("| agent | relayout | keys_deciphered | alone | in context | babbling steps | probe steps | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for relayout in ("never", "episode"):
        for name in ("score-reader", "babble", "random"):
            env = gym.make("LMMDecipher-v0", relayout=relayout, layout_seed=args.layout_seed)
            agent = make_agent(name, env, pairs=K)
            t = time.perf_counter()
            r = probe_keyboard(agent, env)
            print(f"| {name} | {relayout} | {r['keys_deciphered']:.3f} | {r['alone']:.3f} | {r['in_context']:.3f} | "
                  f"{getattr(agent, 'babble_steps', 0)} | {r['probe_steps']} | {time.perf_counter() - t:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
