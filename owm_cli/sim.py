"""``owm sim``: simulations a tester runs on one machine (SRS-SEC-05, SRS-PERF-05).

``owm sim fl`` runs federated learning in-process on Flower's message API with OWM's strategy,
a share of Byzantine clients and one robust rule, and prints the global model's accuracy after
each round (progress on stderr, results on stdout). Example::

    owm sim fl --clients 100 --byzantine 20 --attack signflip --rule krum --rounds 5
"""

from __future__ import annotations

import sys
from typing import Any

import click

from owm_adapters.flower.simulation import SimConfig, run_simulation
from owm_cli.errors import OwmGroup
from owm_cli.options import json_option, render
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack

_RULES = ["fedavg", "krum", "multikrum", "trimmed", "median", "bulyan"]
_ATTACKS = [a.value for a in Attack] + ["none"]


@click.group(cls=OwmGroup)
def sim() -> None:
    """Simulations on this machine."""


@sim.command("fl")
@click.option("--clients", default=100, show_default=True, type=click.IntRange(1),
              help="How many simulated clients train each round.")
@click.option("--byzantine", default=20, show_default=True, type=click.IntRange(0),
              help="How many of them are Byzantine (at most --clients).")
@click.option("--attack", type=click.Choice(_ATTACKS), default="signflip", show_default=True,
              help="What the Byzantine clients send (none: they behave honestly).")
@click.option("--rule", type=click.Choice(_RULES), default="krum", show_default=True,
              help="The aggregation rule the server uses (fedavg is not robust).")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1),
              help="Federated-learning rounds to run.")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the data split, the model and the attack (same seed, same run).")
@click.option(
    "--f",
    "assumed_f",
    type=click.IntRange(0),
    default=None,
    help="Byzantine clients the rule must tolerate [default: --byzantine; 0 for fedavg]",
)
@json_option("the configuration, the accuracy of every round and the totals")
def fl(
    clients: int,
    byzantine: int,
    attack: str,
    rule: str,
    rounds: int,
    seed: int,
    assumed_f: int | None,
    as_json: bool,
) -> None:
    """Federated learning with Byzantine clients; prints accuracy per round (progress on
    stderr)."""
    if byzantine > clients:
        raise click.BadParameter("cannot exceed --clients", param_hint="--byzantine")
    config = SimConfig(
        clients=clients,
        byzantine=byzantine,
        attack=None if attack == "none" else Attack(attack),
        rule=Rule(rule),
        rounds=rounds,
        seed=seed,
        f=assumed_f,
    )
    accuracies: list[dict[str, Any]] = []
    with click.progressbar(length=rounds + 1, label="rounds", file=sys.stderr) as bar:

        def on_round(server_round: int, accuracy: float) -> None:
            accuracies.append({"round": server_round, "accuracy": accuracy})
            bar.update(1)

        result = run_simulation(config, on_round)
    report = {
        "clients": clients, "byzantine": byzantine, "attack": attack, "rule": rule,
        "f": config.assumed_f, "rounds": accuracies,
        "final_accuracy": result.accuracies[-1],
        "slashing_signals": sum(len(r.signals) for r in result.reports),
        "rejected_updates": sum(len(r.rejected) for r in result.reports),
        "seconds": round(result.seconds, 3),
    }
    render(report, as_json, lambda: _fl_lines(report))


def _fl_lines(report: dict[str, Any]) -> list[str]:
    """The text of ``owm sim fl`` from its report."""
    return [
        f"fl: {report['clients']} clients, {report['byzantine']} byzantine ({report['attack']}), "
        f"rule {report['rule']} (f={report['f']}), {len(report['rounds']) - 1} rounds",
        *(f"round {r['round']}: accuracy {r['accuracy']:.4f}" for r in report["rounds"]),
        f"final accuracy {report['final_accuracy']:.4f}; slashing signals "
        f"{report['slashing_signals']}; rejected updates {report['rejected_updates']}; "
        f"{report['seconds']:.1f} s",
    ]
