"""Economy simulator throughput: simulated node-days per second on one core.

Runs ``owm sim economy``'s engine (the real core rules, invariants checked every day) and
ends with one line ``nodes=N days=D node_days_per_s=R`` where R is computed from the process's
CPU time (one core: the engine is single-threaded), so that other load on the machine does
not count against it; the wall-clock figure is printed above it.

    python bench/sim_economy.py [--nodes 1000] [--days 365] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

from owm_adapters.sim.economy.config import EconomyConfig
from owm_adapters.sim.economy.engine import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = EconomyConfig(nodes=args.nodes, days=args.days, seed=args.seed)
    cpu, wall = time.process_time(), time.perf_counter()
    world = simulate(config)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    node_days = args.nodes * args.days
    print(f"tasks={world.market.counts.get('tasks', 0)} slashings={len(world.slashes)} "
          f"cpu_s={cpu:.1f} wall_s={wall:.1f} wall_node_days_per_s={node_days / wall:.0f}")
    print(f"nodes={args.nodes} days={args.days} node_days_per_s={node_days / cpu:.0f}")


if __name__ == "__main__":
    main()
