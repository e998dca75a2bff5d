"""``owm sim``: simulations a tester runs on one machine (SRS-SEC-05, SRS-PERF-05).

``owm sim fl`` runs federated learning in-process on Flower's message API with OWM's strategy,
a share of Byzantine clients and one robust rule, and prints the global model's accuracy after
each round (progress on stderr, results on stdout). Example::

    owm sim fl --clients 100 --byzantine 20 --attack signflip --rule krum --rounds 5
"""

from __future__ import annotations

import sys

import click

from owm_adapters.flower.simulation import SimConfig, run_simulation
from owm_cli.errors import OwmGroup
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack

_RULES = ["fedavg", "krum", "multikrum", "trimmed", "median", "bulyan"]
_ATTACKS = [a.value for a in Attack] + ["none"]


@click.group(cls=OwmGroup)
def sim() -> None:
    """Simulations on this machine."""


@sim.command("fl")
@click.option("--clients", default=100, show_default=True, type=click.IntRange(1))
@click.option("--byzantine", default=20, show_default=True, type=click.IntRange(0))
@click.option("--attack", type=click.Choice(_ATTACKS), default="signflip", show_default=True)
@click.option("--rule", type=click.Choice(_RULES), default="krum", show_default=True)
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--f",
    "assumed_f",
    type=click.IntRange(0),
    default=None,
    help="Byzantine clients the rule must tolerate [default: --byzantine; 0 for fedavg]",
)
def fl(
    clients: int,
    byzantine: int,
    attack: str,
    rule: str,
    rounds: int,
    seed: int,
    assumed_f: int | None,
) -> None:
    """Federated learning with Byzantine clients; prints accuracy per round."""
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
    click.echo(
        f"fl: {clients} clients, {byzantine} byzantine ({attack}), rule {rule} "
        f"(f={config.assumed_f}), {rounds} rounds"
    )
    with click.progressbar(length=rounds + 1, label="rounds", file=sys.stderr) as bar:
        lines: list[str] = []

        def on_round(server_round: int, accuracy: float) -> None:
            lines.append(f"round {server_round}: accuracy {accuracy:.4f}")
            bar.update(1)

        result = run_simulation(config, on_round)
    for line in lines:
        click.echo(line)
    flagged = sum(len(r.signals) for r in result.reports)
    rejected = sum(len(r.rejected) for r in result.reports)
    click.echo(
        f"final accuracy {result.accuracies[-1]:.4f}; slashing signals {flagged}; "
        f"rejected updates {rejected}; {result.seconds:.1f} s"
    )
