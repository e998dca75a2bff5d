"""Benchmark: OWM's aggregation rules vs Flower 1.41's own functions, same inputs, one process.

    .venv/bin/python bench/fl_aggregation.py            # n = 50 and 100, d = 1M float32
    .venv/bin/python bench/fl_aggregation.py --quick    # n = 50 only, d = 1M

Compares ``owm_core.fl.aggregation`` with Flower's legacy ``flwr.server.strategy.aggregate``
functions (``aggregate_krum``, ``aggregate_trimmed_avg``, ``aggregate_median``; they take lists
of ``(ndarrays, num_examples)``) on the same stacked updates, checks that results agree, and
measures the distance accuracy of the "nearby models" case (10 × 1M, shared base + noise 1e-3)
for OWM and for Flower's message-API ``compute_distances`` (‖a‖²+‖b‖²−2ab in float32).

Timing: wall clock (``time.perf_counter``). Each comparison makes two interleaved passes (one
for Krum at n = 100, where Flower takes 12+ s); a pass runs Flower once and OWM ``--repeat``
(5) times; the best time of each side is kept. Best-of filters out the noise of a shared
machine, and interleaving makes both sides sample the same load.

CPU time (``time.process_time``, all threads of the process) is printed too: it is less
sensitive to other jobs on the machine, and it charges OWM for both of torch's threads
(including OpenMP spin-waits), so its ratio is the conservative one.

Peak memory: growth of the process's resident set size during the call, sampled every 1 ms
from ``/proc/self/statm`` by a background thread, after ``malloc_trim(0)`` returned freed heap
to the OS; it covers numpy and torch allocations alike (tracemalloc would miss torch's). Inputs
are generated once and are not counted.

The last line is machine-readable:
``krum_speedup=<x> trimmed_speedup=<x> median_speedup=<x> max_rel_dist_err=<x>``, where each
speedup is the smallest over the measured ``n`` and ``max_rel_dist_err`` is OWM's largest
relative squared-distance error in the nearby-models case.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg
from flwr.serverapp.strategy.multikrum import compute_distances

from owm_core.fl import aggregation as agg

PAGE = os.sysconf("SC_PAGE_SIZE")
_libc = ctypes.CDLL("libc.so.6")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Samples RSS in a thread while the block runs; ``extra`` is the peak growth in bytes."""

    def __enter__(self) -> PeakRss:
        _libc.malloc_trim(0)
        self.base = rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())
        self.extra = self.peak - self.base


def measure(fn: Callable[[], Any], repeat: int) -> tuple[float, float, int, Any]:
    """Best wall time, best CPU time (all threads), peak RSS growth, last result."""
    best = float("inf")
    best_cpu = float("inf")
    extra = 0
    out = None
    for _ in range(repeat):
        with PeakRss() as mem:
            c = time.process_time()
            t = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, time.process_time() - c)
        extra = max(extra, mem.extra)
        del mem
    return best, best_cpu, extra, out


def mb(x: int) -> str:
    return f"{x / 2**20:7.1f} MiB"


def exact_sq_distances(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    out = torch.zeros((n, n), dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            diff = x[i].to(torch.float64) - x[j].to(torch.float64)
            out[i, j] = out[j, i] = float(diff @ diff)
    return out


def distance_accuracy() -> tuple[float, float, float]:
    g = torch.Generator().manual_seed(3)
    base = torch.randn(1_000_000, generator=g)
    x = base + 1e-3 * torch.randn(10, 1_000_000, generator=g)
    want = exact_sq_distances(x)
    mask = ~torch.eye(10, dtype=torch.bool)
    ours = agg.pairwise_sq_distances(x)
    our_err = float(((ours - want).abs()[mask] / want[mask]).max())
    from flwr.app import ArrayRecord

    theirs = torch.from_numpy(compute_distances([ArrayRecord([r.numpy()]) for r in x]))
    their_err = float(((theirs.double() - want).abs()[mask] / want[mask]).max())
    return our_err, their_err, float(theirs.min())


Case = tuple[str, Callable[[], Any], Callable[[], Any], Callable[[Any, Any], bool]]


def comparisons(x: torch.Tensor, results: list[Any], n: int, f: int) -> list[Case]:
    """(name, Flower's call, OWM's call, equality check) for one input."""
    return [
        (
            "krum",
            lambda: aggregate_krum(results, f, 0)[0],
            lambda: agg.krum(x, f).update,
            lambda a, b: bool(np.array_equal(a, b.numpy())),
        ),
        (
            "trimmed",
            lambda: aggregate_trimmed_avg(results, 0.2)[0],
            lambda: agg.trimmed_mean(x, int(0.2 * n)).update,
            lambda a, b: bool(np.allclose(a, b.numpy(), rtol=1e-5, atol=1e-5)),
        ),
        (
            "median",
            lambda: aggregate_median(results)[0],
            lambda: agg.coordinate_median(x),
            lambda a, b: bool(np.allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 50 only")
    parser.add_argument("--d", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="OWM runs (best is kept)")
    args = parser.parse_args()
    sizes = [50] if args.quick else [50, 100]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}")
    speedups: dict[str, list[float]] = {"krum": [], "trimmed": [], "median": []}
    for n in sizes:
        d = args.d
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, d, generator=g)
        f = n // 5
        x[:f] = 10 * torch.randn(f, d, generator=g)
        results = [([row.numpy()], 1) for row in x]
        print(f"\nn={n} d={d} float32 ({mb(x.numel() * 4).strip()} stacked), f={f}")
        cases = comparisons(x, results, n, f)
        for name, flower, ours, same in cases:
            # Interleaved: each side is measured in every pass, so both see the same load.
            passes = 1 if (name == "krum" and n > 50) else 2
            t_f, m_f, t_o, m_o = float("inf"), 0, float("inf"), 0
            c_f, c_o = float("inf"), float("inf")
            for _ in range(passes):
                tf, cf, mf, r_f = measure(flower, 1)
                to, co, mo, r_o = measure(ours, args.repeat)
                t_f, m_f, t_o, m_o = min(t_f, tf), max(m_f, mf), min(t_o, to), max(m_o, mo)
                c_f, c_o = min(c_f, cf), min(c_o, co)
            ok = same(r_f, r_o)
            speedups[name].append(t_f / t_o)
            print(
                f"  {name:8s} flower {t_f:7.3f} s peak +{mb(m_f)} | owm {t_o:7.3f} s peak "
                f"+{mb(m_o)} | speedup {t_f / t_o:6.1f}x | equal: {ok} | cpu time: flower "
                f"{c_f:.3f} s, owm {c_o:.3f} s ({c_f / c_o:.1f}x)"
            )
            del r_f, r_o
        del x, results, cases
    our_err, their_err, their_min = distance_accuracy()
    print(
        f"\nnearby models (10 x 1M, base + 1e-3 noise): owm max rel. error {our_err:.2e}; "
        f"flower message-API compute_distances max rel. error {their_err:.2e}, "
        f"min entry {their_min:.3g}"
    )
    print(
        f"krum_speedup={min(speedups['krum']):.1f} trimmed_speedup={min(speedups['trimmed']):.1f}"
        f" median_speedup={min(speedups['median']):.1f} max_rel_dist_err={our_err:.2e}"
    )


if __name__ == "__main__":
    main()
