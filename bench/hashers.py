"""owm-mine's header hashers side by side (SRS-NODE-13, SRS-POOL-03).

Usage:  PYTHONPATH=. .venv/bin/python bench/hashers.py [--seconds 3] [--hashers cpu,torch]

Each hasher searches a random 76-byte header prefix for ``--seconds`` with a target no hash
meets (so the rate is hashing, not share handling), one ``batch`` of nonces per call as
owm-mine does. ``torch`` runs on CUDA when torch sees a GPU, else on the CPU. The last lines
are machine-readable: ``hasher nonces_per_s batch`` and one row per hasher.
"""

from __future__ import annotations

import argparse
import os
import time

from owm_adapters.hashing.select import hasher_for


def rate(name: str, seconds: float) -> tuple[str, float, int]:
    hasher = hasher_for(name)
    prefix = os.urandom(76)
    hasher.search(prefix, 0, hasher.batch, 0)  # warm up (CUDA context, kernels)
    nonces, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        hasher.search(prefix, nonces, hasher.batch, 0)
        nonces += hasher.batch
    return hasher.name, nonces / (time.perf_counter() - start), hasher.batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--hashers", default="cpu,torch")
    args = parser.parse_args()
    rows = [rate(name, args.seconds) for name in args.hashers.split(",")]
    print("hasher nonces_per_s batch")
    for name, per_s, batch in rows:
        print(f"{name} {per_s:.0f} {batch}")


if __name__ == "__main__":
    main()
