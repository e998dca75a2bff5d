"""Parameter sweeps: many independent runs, sequentially or on Ray, with the same results.

A sweep is a grid of :class:`EconomyConfig` values (every combination of the varied settings,
for each seed); each run is a pure function of its config, so where it runs does not change
what it finds: :func:`run_sweep` returns the same rows, in the grid's order, sequentially or
on Ray (a local Ray started on demand, or a cluster by address). A run that breaks an
invariant is a finding, not a failure: its row holds the violation and its reproduction.
Ray is the ``[sim]`` extra; it is imported only when asked for.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from owm_adapters.sim.economy.config import EconomyConfig
from owm_adapters.sim.economy.engine import run_economy
from owm_adapters.sim.economy.invariants import InvariantViolated
from owm_core.errors import InvalidValue

#: Figures of a run that depend on the machine, left out of sweep rows.
TIMING = ("seconds", "node_days_per_s")


def grid(base: EconomyConfig, vary: Mapping[str, Sequence[Any]],
         seeds: Sequence[int]) -> list[EconomyConfig]:
    """Every combination of ``vary``'s values over ``base``, once per seed, in a fixed order."""
    names = list(vary)
    known = {f.name for f in attrs.fields(EconomyConfig)}
    for name in names:
        if name not in known:
            raise InvalidValue("vary", f"{name} is not a setting of the economy simulator")
    return [attrs.evolve(base, seed=seed, **dict(zip(names, values, strict=True)))
            for values in itertools.product(*(vary[n] for n in names)) for seed in seeds]


def run_one(config: EconomyConfig) -> dict[str, Any]:
    """One run's row: its summary without timings, or the invariant it broke."""
    try:
        summary = run_economy(config)
    except InvariantViolated as violated:
        v = violated.violation
        return {"config": config.as_dict(), "violation": {
            "invariant": v.invariant, "day": v.day, "actors": list(v.actors),
            "detail": v.detail, "reproduction": violated.reproduction}}
    for name in TIMING:
        summary.pop(name, None)
    return summary


def run_sweep(configs: Sequence[EconomyConfig], *, ray_address: str | None = None,
              use_ray: bool = False,
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Run every config; on Ray when ``use_ray`` (``ray_address`` None: a local Ray, else the
    cluster at that address), else one after the other. Rows come back in ``configs``' order."""
    if not use_ray:
        rows = []
        for done, config in enumerate(configs, 1):
            rows.append(run_one(config))
            if progress is not None:
                progress(done, len(configs))
        return rows
    return _on_ray(configs, ray_address, progress)


def _on_ray(configs: Sequence[EconomyConfig], address: str | None,
            progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    try:
        import ray
    except ImportError:
        raise InvalidValue("ray", "needs Ray: pip install 'owm-network[sim]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    try:
        remote = ray.remote(run_one)
        pending = [remote.remote(config) for config in configs]
        order = {ref: i for i, ref in enumerate(pending)}
        rows: list[dict[str, Any] | None] = [None] * len(pending)
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            rows[order[ready[0]]] = ray.get(ready[0])
            if progress is not None:
                progress(len(pending) - len(waiting), len(pending))
        return [row for row in rows if row is not None]
    finally:
        if started_here:
            ray.shutdown()
