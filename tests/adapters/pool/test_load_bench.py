"""``bench/pool.py`` (SRS-PERF-11) measures the pool as configured for it: all its miners dial
from one address, so the bench must lift the per-address cap a real pool keeps at 64."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_load_bench_admits_more_miners_than_one_address_may_hold_without_errors() -> None:
    done = subprocess.run(
        [sys.executable, "bench/pool.py", "--concurrency", "70", "--duration", "1",
         "--processes", "1"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    names, values = done.stdout.strip().splitlines()[-2:]
    figures = dict(zip(names.split(), values.split(), strict=True))
    assert figures["concurrency"] == "70"
    assert figures["errors"] == "0", done.stdout
    assert float(figures["shares_per_s"]) > 0


def test_the_share_path_bench_states_the_pool_and_the_interpreter_floor_as_figures() -> None:
    done = subprocess.run(
        [sys.executable, "bench/pool_share_path.py", "--shares", "256", "--batch", "64"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    figures = dict(pair.split("=") for pair in done.stdout.strip().splitlines()[-1].split())
    assert figures["shares"] == figures["accepted"] == "256", done.stdout
    pool, floor = float(figures["pool_us_per_share"]), float(figures["floor_us_per_share"])
    assert 0 < floor < pool  # the floor is a part of the pool's work, not more than all of it
    assert float(figures["floor_ratio"]) > float(figures["pool_ratio"]) > 0
    assert float(figures["raw_sha256d_per_s"]) > 0
