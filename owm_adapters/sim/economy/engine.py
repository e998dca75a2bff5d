"""Running an economy: days in order, invariants checked, figures summarised, and on a
violation the smallest configuration found that still breaks the same invariant."""

from __future__ import annotations

import gc
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from owm_adapters.sim.economy.config import Behaviour, EconomyConfig
from owm_adapters.sim.economy.invariants import InvariantViolated
from owm_adapters.sim.economy.world import World
from owm_core.nodes.tiers import Tier

Progress = Callable[[int, int], None]
#: At most this many smaller runs are tried when shrinking a violation.
SHRINK_TRIES = 6
#: The cyclic collector's thresholds during a run (CPython's default is 700, 10, 10).
RUN_GC_THRESHOLD = (50_000, 20, 100)
SLASHING_LOGGER = "owm_adapters.services.slashing"


def gini(values: list[int]) -> float:
    """The Gini coefficient of ``values`` (0: all equal; towards 1: one holds everything)."""
    ordered = sorted(v for v in values if v >= 0)
    total = sum(ordered)
    if not ordered or total == 0:
        return 0.0
    weighted = sum((i + 1) * v for i, v in enumerate(ordered))
    return (2 * weighted) / (len(ordered) * total) - (len(ordered) + 1) / len(ordered)


def simulate(config: EconomyConfig, progress: Progress | None = None, *,
             check: bool = True) -> World:
    """Run ``config`` to its last day; raises InvariantViolated (with a reproduction)."""
    world = World.create(config, check=check)
    # The slashing service logs each slash as a warning; a run reports them in its figures.
    logging.getLogger(SLASHING_LOGGER).setLevel(logging.ERROR)
    try:
        run_days(world, config.days, progress)
    except InvariantViolated as violated:
        violated.reproduction = reproduction(shrink(config, violated))
        raise
    return world


def run_days(world: World, days: int, progress: Progress | None = None) -> None:
    """Step ``world`` through ``days`` days (the collector tuned for a run, see below)."""
    with collector_for_runs() as freeze:
        for day in range(days):
            world.step()
            if freeze:
                gc.freeze()
            if progress is not None:
                progress(day + 1, days)


@contextmanager
def collector_for_runs() -> Iterator[bool]:
    """Python's cyclic garbage collector tuned for a run, as it was after it.

    A run keeps a growing store of small frozen values alive (a year of 1,000 nodes: about
    60,000 payment records) and builds and drops millions more. With CPython's default
    thresholds the collector scans the young values every 700 allocations and the whole
    store again and again, about a tenth of a run's time. During a run it scans less often,
    and each day's survivors, the world's state, are frozen (``gc.freeze``: left out of later
    scans; reference counting still frees them). Nothing a run computes depends on the
    collector; afterwards the thresholds are restored and everything is unfrozen, so the
    cycles of a finished world (its services refer to each other) are collected as before.
    Yields whether to freeze: not when something else had frozen objects already (a run
    must not unfreeze them) or a run is already under way (the outer one unfreezes).
    """
    threshold = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    gc.set_threshold(*RUN_GC_THRESHOLD)
    try:
        yield freeze
    finally:
        gc.set_threshold(*threshold)
        if freeze:
            gc.unfreeze()


def shrink(config: EconomyConfig, violated: InvariantViolated) -> EconomyConfig:
    """The smallest config tried that still breaks ``violated``'s invariant: days cut to the
    failing day, then the population halved while the violation persists."""
    name = violated.violation.invariant
    best = attrs.evolve(config, days=violated.violation.day + 1)
    for _ in range(SHRINK_TRIES):
        if best.nodes < 20:
            break
        smaller = attrs.evolve(best, nodes=best.nodes // 2)
        try:
            run_days(World.create(smaller), smaller.days)
        except InvariantViolated as again:
            if again.violation.invariant != name:
                break
            best = attrs.evolve(smaller, days=again.violation.day + 1)
            continue
        break
    return best


def reproduction(config: EconomyConfig) -> str:
    """The command line that replays ``config``."""
    default = EconomyConfig()
    options = []
    for name, value in config.as_dict().items():
        if value == getattr(default, name) and name not in ("nodes", "days", "seed"):
            continue
        flag = "--" + name.replace("_", "-")
        options.append(flag if value is True else f"{flag} {value}")
    return "owm sim economy " + " ".join(options)


def _earnings(world: World) -> dict[str, Any]:
    by_behaviour: dict[str, list[int]] = {}
    by_tier: dict[str, list[int]] = {}
    for agent in world.agents:
        by_behaviour.setdefault(agent.behaviour.value, []).append(agent.earned_msat // 1000)
        by_tier.setdefault(agent.tier.value, []).append(agent.earned_msat // 1000)

    def stats(values: list[int]) -> dict[str, float]:
        return {"nodes": len(values), "mean_sat": round(statistics.fmean(values), 1),
                "median_sat": float(statistics.median(values)), "max_sat": float(max(values))}

    return {
        "by_behaviour": {k: stats(v) for k, v in sorted(by_behaviour.items())},
        "by_tier": {k: stats(v) for k, v in sorted(by_tier.items())},
        "gini": round(gini([a.earned_msat for a in world.agents]), 4),
    }


def payback_days(world: World) -> dict[str, float | None]:
    """Days an honest node of each tier needs to earn back its stake minimum at its mean
    daily earnings over the run (None: it earned nothing)."""
    found: dict[str, float | None] = {}
    for tier in Tier:
        earned = [a.earned_msat for a in world.agents
                  if a.tier is tier and a.behaviour is Behaviour.HONEST]
        stake = world.config.stake_requirements.for_tier(tier).min_sats * 1000
        daily = statistics.fmean(earned) / world.config.days if earned else 0
        found[tier.value] = round(stake / daily, 1) if daily else None
    return found


def summary(world: World, seconds: float) -> dict[str, Any]:
    """The figures of a finished run (what ``--json`` prints)."""
    config = world.config
    books = world.books
    return {
        "config": config.as_dict(),
        "node_days": config.nodes * config.days,
        "seconds": round(seconds, 3),
        "node_days_per_s": round(config.nodes * config.days / seconds) if seconds else None,
        "tasks": dict(sorted(world.market.counts.items())),
        "registrations": world.registry.registrations,
        "refused_registrations": world.registry.refused_registrations,
        "channel_closures": world.registry.channel_closures,
        "slashings": len(world.slashes),
        "slashed_by_behaviour": _count(s.behaviour for s in world.slashes),
        "fl_rounds": world.fl.rounds, "fl_flagged": world.fl.flagged,
        "pool_blocks": world.pool.blocks,
        "grants_executed": world.governance.executed,
        "grants_rejected": world.governance.rejected,
        "earnings": _earnings(world),
        "stake_payback_days": payback_days(world),
        "money_msat": {
            "collected": books.collected_msat, "budget_drawn": books.budget_drawn_msat,
            "paid_to_nodes": world.book.paid_msat - books.miner_payouts_msat,
            "task_shares": books.task_shares_msat, "withheld": books.withheld_msat,
            "forfeited": books.forfeited_msat, "pool_income": books.pool_income_msat,
            "miner_payouts": books.miner_payouts_msat, "grants": books.grants_msat,
            "treasury_end": books.treasury_msat, "owed_rewards": world.outbox.pending_msat(),
            "treasury_min": min(world.series.get("treasury_msat", []), default=books.treasury_msat),
            "pool_owed": 1000 * sum(a.balance_sat for a in world.pool.accounts.values()),
        },
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def run_economy(config: EconomyConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Simulate ``config`` and return its summary; raises InvariantViolated."""
    started = time.perf_counter()
    world = simulate(config, progress)
    return summary(world, time.perf_counter() - started)
