"""Benchmark: wall-clock time of one 100-node FL round (SRS-PERF-05 allows 30 minutes).

    .venv/bin/python bench/fl_round.py [--clients 100] [--byzantine 20] [--rounds 1]

Runs OWM's Flower strategy on the in-process grid (the same code path as ``owm sim fl``):
participant selection, local training of the small model (TinyNet, ≈2.8 k parameters, 64
examples a client) on every client, Ed25519 signing and verification of every update, robust
aggregation, anomaly scoring and central evaluation — once per rule, with 20 % of the clients
sign-flipping. Prints seconds per round for each rule; the last line is machine-readable:
``round_seconds_max=<x>`` (the slowest rule's mean seconds per round).
"""

from __future__ import annotations

import argparse
import time

from owm_adapters.flower.simulation import SimConfig, run_simulation
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--byzantine", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    warm = time.perf_counter()
    run_simulation(SimConfig(clients=4, byzantine=0, attack=None, rule=Rule.FEDAVG, rounds=1))
    print(f"warm-up (imports, first round of 4 clients): {time.perf_counter() - warm:.2f} s")
    worst = 0.0
    rules = [Rule.FEDAVG, Rule.KRUM, Rule.MULTIKRUM, Rule.TRIMMED_MEAN, Rule.MEDIAN]
    for rule in rules:
        config = SimConfig(
            clients=args.clients,
            byzantine=args.byzantine,
            attack=Attack.SIGNFLIP,
            rule=rule,
            rounds=args.rounds,
        )
        result = run_simulation(config)
        per_round = result.seconds / args.rounds
        worst = max(worst, per_round)
        signals = sum(len(r.signals) for r in result.reports)
        print(
            f"{rule.value:9s} {args.clients} clients, {args.rounds} round(s): "
            f"{per_round:6.2f} s/round (incl. evaluation), accuracy {result.accuracies[-1]:.3f}, "
            f"signals {signals}"
        )
    print(f"round_seconds_max={worst:.2f}")


if __name__ == "__main__":
    main()
