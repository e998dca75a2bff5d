"""``owm devnet``: a whole OWM network on this machine, in one command.

The shell over :mod:`owm_adapters.devnet`: ``up`` provisions and starts a coordinator and N
node daemons as real background processes plus a traffic loop, ``down`` stops them, ``status``
summarises the running network, ``attack`` makes a node Byzantine. ``traffic`` is the loop
itself (started by ``up``; it talks to the coordinator through its gRPC and HTTP APIs).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from owm_adapters.devnet.layout import DEFAULT_DATA_DIR, DevnetLayout
from owm_cli.errors import OwmGroup
from owm_cli.options import json_option, progress, render

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the devnet keeps its configs, identities, stores, logs and pid files.",
)


def _say(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@click.group(cls=OwmGroup)
def devnet() -> None:
    """A whole OWM network on this machine: coordinator, nodes, Lightning ledger, traffic.

    \b
    Start:    owm devnet up [--nodes 3]
    Watch:    owm devnet status   (or the dashboard URL that `up` prints)
    Attack:   owm devnet attack --node 2 --kind poison
    Govern:   owm gov … / owm treasury psbt … (keys in <data-dir>/governance; docs/devnet.md)
    Stop:     owm devnet down
    """


@devnet.command()
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 20),
              help="How many node daemons to run.")
@_DATA_DIR
@click.option("--restart", is_flag=True,
              help="Stop the devnet first if it is running, then start it again.")
@click.option("--reset", is_flag=True,
              help="Throw away the devnet kept in the data directory (identities, ledger, "
              "store, logs) and provision a new one.")
@click.option("--traffic-interval", default=15, show_default=True, type=click.IntRange(1),
              help="Seconds between the sample inference tasks the traffic loop submits.")
@click.option("--query-interval", default=60, show_default=True, type=click.IntRange(0),
              help="Seconds between sample queries to POST /v1/query (0: none).")
@click.option("--fl-interval", default=45, show_default=True, type=click.IntRange(1),
              help="Seconds between the starts of federated-learning rounds.")
@json_option("the endpoints and the API key (progress goes to stderr)")
def up(nodes: int, data_dir: Path, restart: bool, reset: bool, traffic_interval: int,
       query_interval: int, fl_interval: int, as_json: bool) -> None:
    """Start a coordinator and NODES node daemons as background processes on 127.0.0.1.

    The first start provisions fresh identities, configs and stake channels in the embedded
    Lightning ledger; later starts reuse them (--reset makes new ones). Returns once every node
    has registered with a verified stake; the network keeps running after this command ends.
    """
    from owm_adapters.bootstrap.devnet import build_devnet
    from owm_adapters.devnet import network

    layout = DevnetLayout.at(data_dir)
    say = progress if as_json else _say
    if restart:
        network.down(layout, say=say)
    started = time.monotonic()
    state = build_devnet(
        layout, nodes, reset=reset, traffic_interval_s=traffic_interval,
        query_interval_s=query_interval, fl_interval_s=fl_interval, say=say,
    ).start(say=say)
    report = {
        "nodes": len(state.nodes), "seconds": round(time.monotonic() - started),
        "api_url": f"{state.api_url}/v1", "dashboard_url": f"{state.api_url}/dashboard",
        "calendar_url": state.calendar_url, "api_key": state.api_key,
        "logs_dir": str(layout.logs_dir), "data_dir": str(data_dir),
    }
    render(report, as_json, lambda: [
        "",
        f"devnet up: coordinator + {report['nodes']} node(s) in {report['seconds']} s",
        f"  API        {report['api_url']}",
        f"  dashboard  {report['dashboard_url']}",
        f"  calendar   {state.calendar_url}  (OpenTimestamps calendar + chain JSON-RPC for "
        "the reference ots client)",
        f"  API key    {state.api_key}  (commercial; send 'Authorization: Bearer <key>')",
        f"  logs       {layout.logs_dir}/",
        f"  status     owm devnet status{_dir_flag(data_dir)}",
        f"  stop       owm devnet down{_dir_flag(data_dir)}",
    ])


def _dir_flag(data_dir: Path) -> str:
    return "" if str(data_dir) == DEFAULT_DATA_DIR else f" --data-dir {data_dir}"


@devnet.command()
@_DATA_DIR
def down(data_dir: Path) -> None:
    """Stop the devnet: traffic, then the nodes (they drain), then the coordinator.

    SIGTERM first, SIGKILL for whatever has not stopped after 30 s. Running it again is
    harmless. The devnet's data stays for the next `up`.
    """
    from owm_adapters.devnet import network

    layout = DevnetLayout.at(data_dir)
    stopped = network.down(layout, say=_say)
    if not stopped:
        _say(f"nothing is running in {layout.root}")
        return
    _say(f"devnet down: {len(stopped)} process(es) stopped; its data stays in {layout.root}")


@devnet.command()
@_DATA_DIR
@json_option("the whole report")
def status(data_dir: Path, as_json: bool) -> None:
    """Processes, nodes (state, tier, stake, earnings), payments, FL rounds, versions, query."""
    from owm_adapters.devnet import network, probe

    layout = DevnetLayout.at(data_dir)
    state = network.require_state(layout)
    report = probe.collect(layout, state)
    render(report, as_json, lambda: render_status(report))


def render_status(report: dict[str, Any]) -> list[str]:
    """The text of ``owm devnet status`` from the report of :func:`probe.collect`."""
    processes = report["processes"]
    up_count = sum(1 for p in processes.values() if p["alive"])
    lines = [
        f"devnet      {report['data_dir']}",
        "processes   " + ", ".join(
            f"{name} {'up' if p['alive'] else 'DOWN'}" for name, p in processes.items()
        ) + f"  ({up_count}/{len(processes)} running)",
        f"API         {report['api_url']}"
        + ("" if report["api_reachable"] else "  (not answering)"),
        f"dashboard   {report['dashboard_url']}",
    ]
    network = report.get("network")
    if network:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(network["by_status"].items()) if v)
        lines.append(
            f"network     {network['nodes_total']} node(s) ({by_status or 'none'}), "
            f"{network['staked_sat']:,} sat staked, {network['total_tasks_completed']} tasks "
            f"completed, {network['total_sats_earned']:,} sat earned"
        )
    lines.append("")
    lines.append(f"{'node':<8} {'node id':<14} {'state':<10} {'registry':<9} {'tier':<4} "
                 f"{'stake':<22} {'tasks':>5} {'earned':>10} {'paid over LN':>13}  attack")
    for n in report["nodes"]:
        stake = f"{n['stake_status'] or '?'} {n['stake_sat']:,} sat" if n["stake_sat"] else "-"
        earned = "-" if n["earned_sat"] is None else f"{n['earned_sat']:,} sat"
        paid = "-" if n["ln_received_sat"] is None else f"{n['ln_received_sat']:,} sat"
        tasks = n["tasks_completed"] if n["tasks_completed"] is not None else n["credited_tasks"]
        lines.append(
            f"{n['name']:<8} {n['node_id'][:13]:<14} {n['state'] or 'down':<10} "
            f"{n.get('coordinator_status') or '-':<9} {n['tier']:<4} {stake:<22} {tasks:>5} "
            f"{earned:>10} {paid:>13}  {n['attack']}"
        )
    payments = report["payments"]
    lines.append("")
    lines.append(
        f"payments    {payments['paid_over_lightning_sat']:,} sat paid to nodes over the "
        f"embedded Lightning ledger; {payments['credited_tasks']} task(s) credited, "
        f"{payments['pending_tasks']} awaiting verification"
    )
    rounds = report.get("fl_rounds")
    if rounds is None:
        lines.append("FL rounds   (this coordinator serves no /v1/fl/rounds)")
    else:
        states = ", ".join(
            f"{sum(1 for r in rounds if r.get('state') == s)} {s}"
            for s in sorted({str(r.get("state")) for r in rounds})
        )
        lines.append(f"FL rounds   {len(rounds)}" + (f" ({states})" if rounds else ""))
        closed = [r for r in rounds if r.get("state") == "closed"]
        if closed:
            lines.append(f"            latest closed: {_round_text(closed[0])}")
    versions = report.get("model_versions")
    if versions is not None:
        latest = ", ".join(
            f"{v.get('id') or v.get('version')} ({v.get('ots_status') or v.get('proof_status')})"
            for v in versions[:3]
        )
        lines.append(f"versions    {len(versions)}" + (f"; newest: {latest}" if latest else ""))
    slashing = report.get("slashing_log")
    if slashing is not None:
        lines.append(f"slashing    {len(slashing)} entr{'y' if len(slashing) == 1 else 'ies'} "
                     "in the public log")
    traffic = report.get("traffic") or {}
    if traffic:
        lines.append(
            f"traffic     {traffic.get('tasks_submitted', 0)} sample task(s) submitted, "
            f"{traffic.get('queries_answered', 0)}/{traffic.get('queries_asked', 0)} "
            "sample queries answered"
        )
        answer = traffic.get("last_answer")
        if answer:
            text = " ".join(str(answer.get("answer", "")).split())
            lines.append(f"query       {answer['query']!r} → {text[:100]!r}"
                         + (f" (confidence {answer['confidence']})"
                            if "confidence" in answer else ""))
        elif traffic.get("last_query"):
            last = traffic["last_query"]
            lines.append(f"query       not answered yet (HTTP {last.get('status')}: "
                         f"{last.get('detail')})")
    lines.extend(_github_lines(traffic.get("github") or {}))
    lines.extend(_mining_lines(report.get("mining")))
    return lines


def _mining_lines(mining: dict[str, Any] | None) -> list[str]:
    """The pool: shares, hashrate, blocks found on the regtest chain, FPPS payouts over the
    embedded ledger, then one line a node."""
    if not mining:
        return []
    pool = mining.get("pool")
    height = mining.get("chain_height")
    chain = f", regtest height {height}" if height is not None else ""
    if not pool:
        return [f"mining      (the pool's statistics are not answering){chain}"]
    lines = [
        f"mining      {pool['miners_24h']} miner(s), {pool['shares_24h']} share(s) in 24 h, "
        f"{_hps(pool['hashrate_1h_hps'])} (1 h), {pool['blocks_30d']} block(s) found{chain}; "
        f"{pool['paid_sat_total']:,} sat paid in {mining.get('fpps_payouts', 0)} FPPS "
        "payout(s) over the embedded ledger"
    ]
    for name, miner in sorted((mining.get("miners") or {}).items()):
        lines.append(
            f"            {name}: {miner['shares_24h']} share(s), "
            f"{_hps(miner['hashrate_1h_hps'])}, {miner['blocks_30d']} block(s), "
            f"{miner['paid_sat']:,} sat in {miner['payouts']} payout(s)"
        )
    return lines


def _hps(rate: int) -> str:
    """A hashrate with its unit (H/s, kH/s, MH/s, ...)."""
    value, unit = float(rate), "H/s"
    for bigger in ("kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.3g} {unit}" if unit != "H/s" else f"{rate} H/s"


def _github_lines(github: dict[str, Any]) -> list[str]:
    """The devnet GitHub stand-in's rounds and the App's latest comments (bounties paid,
    contribution rewards with payment hashes)."""
    if not github:
        return []
    lines = [f"github      {github.get('rounds', 0)} sample contribution(s) on "
             f"{github.get('repository')}, {github.get('deliveries_refused', 0)} refused"]
    lines += [f"github      {' '.join(str(c).split())[:160]}" for c in github.get("comments", [])]
    return lines


def _round_text(fl_round: dict[str, Any]) -> str:
    """One FL round as a line: number, sub-model, updates, rejections, flags, accuracy,
    version."""
    accuracy = fl_round.get("accuracy")
    rejected = fl_round.get("rejected") or []
    flagged = fl_round.get("flagged") or []
    return (
        f"round {fl_round.get('round')} of {fl_round.get('sub_model')}, "
        f"{fl_round.get('participants')} update(s), {len(rejected)} rejected, "
        f"{len(flagged)} flagged, "
        + (f"accuracy {accuracy * 100:.1f} %, " if isinstance(accuracy, int | float) else "")
        + f"version {fl_round.get('version')}"
    )


@devnet.command()
@click.option("--node", "number", required=True, type=int, help="Which node (1 … N).")
@click.option("--kind", type=click.Choice(["poison", "none"]), default="poison",
              show_default=True, help="poison: Byzantine FL updates; none: honest again.")
@_DATA_DIR
def attack(number: int, kind: str, data_dir: Path) -> None:
    """Make node K send poisoned FL updates (or stop it) to watch the defences work.

    Writes the node's `attack` file, which the node reads for every FL training task.
    """
    from owm_adapters.devnet import network
    from owm_adapters.node.fl_upload import ATTACK_FILE, HONEST, POISON

    layout = DevnetLayout.at(data_dir)
    state = network.require_state(layout)
    node = state.node(number)
    path = layout.node_dir(node.name) / ATTACK_FILE
    if kind == HONEST:
        path.unlink(missing_ok=True)
        _say(f"{node.name} ({node.node_id}) is honest again from its next FL training task on")
        return
    path.write_text(POISON + "\n", encoding="utf-8")
    _say(f"{node.name} ({node.node_id}) now sends poisoned FL updates: from its next FL "
         "training task on it uploads a sign-flipped, boosted step instead of its trained "
         "weights.")
    _say("expect: the robust aggregation leaves its update out of the round, the round records "
         "an anomaly signal against it, and after 3 signals this tier-"
         f"{node.tier.lstrip('t')} node is slashed: a signed entry in the public slashing log, "
         "its stake channel force-closed, the node suspended.")
    _say(f"watch:  owm devnet status{_dir_flag(data_dir)}, or the dashboard "
         f"{state.api_url}/dashboard; undo with --kind none")


@devnet.command("gov-time")
@click.option("--days", type=click.IntRange(0, 3650), required=True,
              help="Move the governance clock this many days ahead of now (0: back to now).")
@_DATA_DIR
def gov_time(days: int, data_dir: Path) -> None:
    """Move the devnet's governance clock ahead, past comment periods of 7 to 21 days.

    Only the time the governance rules see moves (comment deadlines, closing); statements are
    still signed and checked at the real time, and every other clock stays as it is.
    """
    from owm_adapters.bootstrap.devnet import governance_keys
    from owm_adapters.files import write_private_text

    keys = governance_keys(DevnetLayout.at(data_dir))
    write_private_text(keys.time_file, f"{days * 86_400}\n")
    _say(f"governance time is now {days} day(s) ahead of the real time")


@devnet.command(hidden=True)
@_DATA_DIR
def traffic(data_dir: Path) -> None:
    """Run the traffic loop in the foreground (`up` starts it in the background)."""
    import logging

    from owm_adapters.devnet.traffic import run_traffic
    from owm_cli.signals import stopped_by_signals

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with stopped_by_signals() as stop:
        run_traffic(DevnetLayout.at(data_dir), stop)
