"""``owm sim``: simulations a tester runs on one machine (SRS-SEC-05, SRS-PERF-05).

``owm sim fl`` runs federated learning in-process on Flower's message API with OWM's strategy,
a share of Byzantine clients and one robust rule, and prints the global model's accuracy after
each round (progress on stderr, results on stdout). Example::

    owm sim fl --clients 100 --byzantine 20 --attack signflip --rule krum --rounds 5
    owm sim fl --model minilm-lora --clients 10 --byzantine 2 --rule median --rounds 2

``--model minilm-lora`` trains a sub-model's reader adapter, each client on its own shard of
training pairs from the sub-model's dataset: the model the coordinator's rounds train.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from owm_adapters.flower.simulation import SimConfig, run_simulation
from owm_cli.errors import OwmGroup
from owm_cli.options import json_option, render
from owm_cli.options import progress as progress_line
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack
from owm_core.market.task_types import FL_MODELS

READER_LR = 0.005
"""AdamW's step size for the reader adapter (TinyNet's plain SGD takes 0.1)."""
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
@click.option("--model", type=click.Choice(list(FL_MODELS)), default="tinynet",
              show_default=True,
              help="What the clients train: TinyNet on synthetic blobs, or a sub-model's "
                   "LoRA reader adapter on training pairs from its documents.")
@click.option("--sub-model", default="owm-geo", show_default=True,
              help="minilm-lora: whose adapter is trained.")
@click.option("--documents", "documents", type=click.Path(exists=True, dir_okay=False),
              default=None,
              help="minilm-lora: the dataset file the clients' training pairs come from "
                   "(default: the shipped dataset of --sub-model; format owm-dataset/1).")
@json_option("the configuration, the accuracy of every round and the totals")
def fl(
    clients: int,
    byzantine: int,
    attack: str,
    rule: str,
    rounds: int,
    seed: int,
    assumed_f: int | None,
    model: str,
    sub_model: str,
    documents: str | None,
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
        model=model,
        sub_model=sub_model,
        documents_path=documents or _shipped_dataset(sub_model, model),
        lr=0.1 if model == "tinynet" else READER_LR,
    )
    accuracies: list[dict[str, Any]] = []
    if model != "tinynet":
        progress_line(f"loading the MiniLM encoder and {sub_model}'s training pairs from "
                      f"{config.documents_path} (round 0 follows)")
    with click.progressbar(length=rounds + 1, label="rounds", file=sys.stderr) as bar:

        def on_round(server_round: int, accuracy: float) -> None:
            accuracies.append({"round": server_round, "accuracy": accuracy})
            bar.update(1)

        result = run_simulation(config, on_round)
    report = {
        "model": model, "clients": clients, "byzantine": byzantine, "attack": attack, "rule": rule,
        "f": config.assumed_f, "rounds": accuracies,
        "final_accuracy": result.accuracies[-1],
        "slashing_signals": sum(len(r.signals) for r in result.reports),
        "rejected_updates": sum(len(r.rejected) for r in result.reports),
        "seconds": round(result.seconds, 3),
    }
    render(report, as_json, lambda: _fl_lines(report))


def _shipped_dataset(sub_model: str, model: str) -> str:
    """The shipped demo dataset of ``sub_model`` (for the reader adapter; TinyNet reads none)."""
    if model == "tinynet":
        return ""
    from pathlib import Path

    from owm_adapters.knowledge import demo_data

    path = Path(demo_data.__file__).parent / f"{sub_model}.json"
    if not path.is_file():
        raise click.BadParameter(f"no shipped dataset for {sub_model}; pass --documents",
                                 param_hint="--sub-model")
    return str(path)


def _fl_lines(report: dict[str, Any]) -> list[str]:
    """The text of ``owm sim fl`` from its report."""
    return [
        f"fl ({report['model']}): {report['clients']} clients, {report['byzantine']} byzantine "
        f"({report['attack']}), rule {report['rule']} (f={report['f']}), "
        f"{len(report['rounds']) - 1} rounds",
        *(f"round {r['round']}: accuracy {r['accuracy']:.4f}" for r in report["rounds"]),
        f"final accuracy {report['final_accuracy']:.4f}; slashing signals "
        f"{report['slashing_signals']}; rejected updates {report['rejected_updates']}; "
        f"{report['seconds']:.1f} s",
    ]


def _economy_options(command: Any) -> Any:
    """One option per setting of ``EconomyConfig`` (its help text and default from the
    field), so any run, and any reproduction the engine prints, can be given here."""
    import attrs

    from owm_adapters.sim.economy.config import EconomyConfig

    for field in reversed(attrs.fields(EconomyConfig)):
        flag = "--" + field.name.replace("_", "-")
        text = f"{field.metadata['help']} [default: {field.default}]"
        if field.type in (bool, "bool"):
            option = click.option(flag, field.name, is_flag=True, default=None, help=text)
        else:
            kind = float if field.type in (float, "float") else int
            option = click.option(flag, field.name, type=kind, default=None, help=text)
        command = option(command)
    return command


@sim.command("economy")
@_economy_options
@click.option("--report", "report_dir", type=click.Path(file_okay=False),
              help="Also write report.md with PNG plots (earnings by tier and behaviour, "
                   "treasury, slashing, Gini, stake payback) into this directory; needs "
                   "matplotlib (pip install 'owm-network[sim]').")
@json_option("the configuration and every figure of the run")
def economy(report_dir: str | None, as_json: bool, **settings: Any) -> None:
    """The whole incentive system over simulated days, with adversaries; stops at the first
    broken invariant with a reproduction (progress on stderr). See docs/simulation.md."""
    from owm_adapters.sim.economy.config import EconomyConfig
    from owm_adapters.sim.economy.engine import simulate, summary
    from owm_adapters.sim.economy.invariants import InvariantViolated

    config = EconomyConfig(**{k: v for k, v in settings.items() if v is not None})
    step = max(1, config.days // 20)

    def progress(day: int, days: int) -> None:
        if day % step == 0 or day == days:
            progress_line(f"day {day}/{days}")

    started = time.perf_counter()
    try:
        world = simulate(config, progress)
    except InvariantViolated as violated:
        v = violated.violation
        raise click.ClickException(
            f"invariant {v.invariant} broken on day {v.day} (actors: "
            f"{', '.join(v.actors) or 'none'}): {v.detail}; reproduce with: "
            f"{violated.reproduction}") from None
    report = summary(world, time.perf_counter() - started)
    if report_dir is not None:
        from owm_adapters.sim.economy.report import write_report

        report["report"] = str(write_report(world, report, report_dir))
    render(report, as_json, lambda: _economy_lines(report))


def _parse_vary(values: tuple[str, ...]) -> dict[str, list[Any]]:
    """``NAME=V1,V2`` options as setting → values, typed like the setting."""
    import attrs

    from owm_adapters.sim.economy.config import EconomyConfig

    types = {f.name: f.type for f in attrs.fields(EconomyConfig)}
    vary: dict[str, list[Any]] = {}
    for item in values:
        name, _, listed = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if name not in types or not listed:
            raise click.BadParameter(f"{item!r}: give SETTING=V1,V2 with a setting of "
                                     "owm sim economy", param_hint="--vary")
        kind = types[name]
        convert: Any = float if kind in (float, "float") else int
        if kind in (bool, "bool"):
            convert = lambda text: text.strip().lower() in ("1", "true", "yes")  # noqa: E731
        try:
            vary[name] = [convert(v) for v in listed.split(",")]
        except ValueError:
            raise click.BadParameter(f"{item!r}: not a list of numbers",
                                     param_hint="--vary") from None
    return vary


@sim.command("sweep")
@click.option("--vary", "vary_items", multiple=True, metavar="SETTING=V1,V2",
              help="A setting of the economy simulator and the values to try (repeatable; every "
                   "combination runs), e.g. --vary redundancy=1,3,5.")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(1),
              help="Seeds per combination (0 to N-1).")
@click.option("--nodes", default=300, show_default=True, type=click.IntRange(1),
              help="Nodes of every run.")
@click.option("--days", default=90, show_default=True, type=click.IntRange(1),
              help="Days of every run.")
@click.option("--ray", "use_ray", is_flag=True,
              help="Run on Ray (a local Ray unless --ray-address); needs "
                   "pip install 'owm-network[sim]'. Same rows as without.")
@click.option("--ray-address", metavar="ADDRESS",
              help="A Ray cluster to run on (implies --ray), e.g. ray://head:10001.")
@json_option("one row per run: its settings and figures, or the invariant it broke")
def sweep(vary_items: tuple[str, ...], seeds: int, nodes: int, days: int, use_ray: bool,
          ray_address: str | None, as_json: bool) -> None:
    """Independent economy runs over a grid of settings and seeds (progress on stderr); a run
    that breaks an invariant is reported as a finding with its reproduction."""
    from owm_adapters.sim.economy.config import EconomyConfig
    from owm_adapters.sim.economy.sweep import grid, run_sweep

    vary = _parse_vary(vary_items)
    configs = grid(EconomyConfig(nodes=nodes, days=days), vary, list(range(seeds)))
    rows = run_sweep(configs, use_ray=use_ray or ray_address is not None,
                     ray_address=ray_address,
                     progress=lambda done, total: progress_line(f"run {done}/{total}"))
    render({"vary": vary, "rows": rows}, as_json, lambda: _sweep_lines(vary, rows))


def _sweep_lines(vary: dict[str, list[Any]], rows: list[dict[str, Any]]) -> list[str]:
    """One line per run of ``owm sim sweep``."""
    lines = []
    for row in rows:
        config = row["config"]
        settings = " ".join(f"{n}={config[n]}" for n in vary)
        head = f"{settings} seed={config['seed']}".strip()
        if "violation" in row:
            v = row["violation"]
            lines.append(f"{head}: BROKEN {v['invariant']} on day {v['day']}: "
                         f"{v['reproduction']}")
            continue
        honest = row["earnings"]["by_behaviour"].get("honest", {}).get("mean_sat")
        lines.append(
            f"{head}: tasks {row['tasks'].get('tasks', 0)}, slashings {row['slashings']} "
            f"{row['slashed_by_behaviour']}, honest mean {honest} sat, Gini "
            f"{row['earnings']['gini']}, treasury {row['money_msat']['treasury_end'] // 1000} "
            "sat")
    return lines


def _economy_lines(report: dict[str, Any]) -> list[str]:
    """The text of ``owm sim economy`` from its report."""
    config, money = report["config"], report["money_msat"]
    lines = [
        f"economy: {config['nodes']} nodes, {config['days']} days, seed {config['seed']}: "
        f"{report['node_days_per_s']} node-days/s",
        f"tasks {report['tasks'].get('tasks', 0)}; refused unfunded "
        f"{report['tasks'].get('refused_unfunded', 0)}, no match "
        f"{report['tasks'].get('refused_no_match', 0)}; slashings {report['slashings']} "
        f"{report['slashed_by_behaviour']}",
        f"paid to nodes {money['paid_to_nodes'] // 1000} sat; treasury "
        f"{money['treasury_end'] // 1000} sat; Gini {report['earnings']['gini']}",
    ]
    for behaviour, stats in report["earnings"]["by_behaviour"].items():
        lines.append(f"  {behaviour}: {stats['nodes']} nodes, mean {stats['mean_sat']} sat")
    lines.append(f"stake payback (days): {report['stake_payback_days']}")
    if "report" in report:
        lines.append(f"report: {report['report']}")
    return lines
