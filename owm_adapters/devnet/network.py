"""Bringing a whole devnet up and down.

:func:`up` provisions a devnet in the data directory (or reuses the one there: same identities,
same ledger and store, fresh free ports), starts the coordinator and waits for its API, starts
the node daemons and waits until each has registered with its stake verified and opened its
task stream, then starts the traffic loop. A process that fails to come up stops the whole
devnet again and the error carries the end of its log. :func:`down` stops everything.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import attrs

from owm_adapters.bootstrap.settings import ConfigError
from owm_adapters.devnet import processes, provision
from owm_adapters.devnet.layout import DevnetLayout, DevnetState
from owm_adapters.devnet.processes import (
    COORDINATOR,
    TRAFFIC,
    DevnetNotReady,
    http_json,
    wait_until,
)

COORDINATOR_READY_S = 90.0
NODES_READY_S = 150.0


class DevnetRunning(ConfigError):
    """``up`` was asked for while the devnet in this data directory is already running."""

    code = "devnet-running"


def up(
    layout: DevnetLayout,
    nodes: int,
    *,
    reset: bool = False,
    traffic_interval_s: int = 15,
    query_interval_s: int = 60,
    fl_interval_s: int = 45,
    say: Callable[[str], None] = lambda _line: None,
    now: Callable[[], float] = time.time,
) -> DevnetState:
    """Start the devnet in ``layout`` with ``nodes`` nodes and return its state once all run.

    Raises DevnetRunning when any of its processes already runs (stop it, or use ``down``
    first), ConfigError when the directory holds a devnet of another size (use ``reset``).
    """
    alive = processes.running(layout)
    if alive:
        names = ", ".join(p.name for p in alive)
        raise DevnetRunning(
            f"the devnet in {layout.root} is already up ({names}); "
            "`owm devnet status` shows it, `owm devnet up --restart` restarts it"
        )
    if reset:
        provision.reset(layout)
    state = layout.load()
    if state is None:
        say(f"provisioning a new devnet of {nodes} node(s) in {layout.root}")
        state = provision.provision(
            layout, nodes, now=int(now()), traffic_interval_s=traffic_interval_s,
            query_interval_s=query_interval_s, fl_interval_s=fl_interval_s,
        )
        _describe_new(state, say)
    else:
        if len(state.nodes) != nodes:
            raise ConfigError(
                f"{layout.root} holds a devnet of {len(state.nodes)} node(s), not {nodes}; "
                f"use --nodes {len(state.nodes)}, or --reset for a new one"
            )
        say(f"restarting the devnet in {layout.root} (same identities, ledger and store)")
        state = attrs.evolve(
            provision.assign_ports(state), traffic_interval_s=traffic_interval_s,
            query_interval_s=query_interval_s, fl_interval_s=fl_interval_s,
        )
        provision.write_configs(layout, state)
        layout.save(state)
    layout.traffic_file.unlink(missing_ok=True)
    try:
        _start_all(layout, state, say)
    except BaseException:
        say("stopping what was started")
        processes.stop(layout, grace_s=5)
        raise
    return state


def _describe_new(state: DevnetState, say: Callable[[str], None]) -> None:
    first = state.nodes[0]
    say(f"  coordinator key   {state.coordinator.public_key}")
    say(f"  treasury (LN)     {state.coordinator.treasury_pubkey}")
    for node in state.nodes:
        say(f"  {node.name:<7} id {node.node_id}  LN {node.ln_pubkey[:16]}…")
    say(f"  stake channels    {first.stake_sat:,} sat each (tier {first.tier} minimum), "
        f"node → treasury, in the embedded ledger")
    say(f"  payout channels   {first.payout_channel_sat:,} sat each, treasury → node")


def _start_all(layout: DevnetLayout, state: DevnetState, say: Callable[[str], None]) -> None:
    env = processes.child_environment()
    argv = processes.commands(layout, state)
    started = time.monotonic()

    say(f"starting coordinator (log {layout.log_file(COORDINATOR)})")
    pid = processes.spawn(layout, COORDINATOR, argv[COORDINATOR], env)
    api = state.api_url
    wait_until(
        layout, COORDINATOR, pid,
        lambda: http_json(f"{api}/v1/openapi.json")[0] == 200,
        COORDINATOR_READY_S, "its HTTP API",
    )
    say(f"  coordinator ready ({time.monotonic() - started:.1f} s): gRPC {state.grpc_target}, "
        f"API {api}/v1")
    pids = {}
    for node in state.nodes:
        pids[node.name] = processes.spawn(layout, node.name, argv[node.name], env)
    say(f"starting {len(state.nodes)} node daemon(s); waiting for each to register, "
        "have its stake verified and open its task stream")
    for node in state.nodes:
        health_url = f"http://127.0.0.1:{node.health_port}/health"
        doc = wait_until(
            layout, node.name, pids[node.name], functools.partial(_serving, health_url),
            NODES_READY_S, "registration (health state 'serving')",
        )
        stake = doc.get("stake") or {}
        capacity = stake.get("capacity_sat")
        stake_text = (f"stake {stake.get('status')} {capacity:,} sat" if capacity is not None
                      else "stake verified")
        say(f"  {node.name} registered ({time.monotonic() - started:.1f} s): tier "
            f"{doc.get('tier')}, {stake_text}")

    pid = processes.spawn(layout, TRAFFIC, argv[TRAFFIC], env)
    wait_until(
        layout, TRAFFIC, pid, lambda: layout.traffic_file.exists(), 30.0, "its first round",
    )
    say(f"  traffic running: a sample inference task every {state.traffic_interval_s} s, "
        f"a sample query every {state.query_interval_s} s; an FL round every "
        f"{state.fl_interval_s} s")


def _serving(url: str) -> dict[str, Any] | None:
    """The node's /health document once it serves with an open task stream."""
    _code, doc = http_json(url, timeout_s=2)
    if not isinstance(doc, dict) or doc.get("state") != "serving":
        return None
    if not (doc.get("coordinator") or {}).get("task_stream_open"):
        return None
    return doc


def down(layout: DevnetLayout, say: Callable[[str], None] = lambda _line: None) -> list[str]:
    """Stop every process of the devnet (traffic, nodes, coordinator); return their names."""
    return processes.stop(layout, say=say)


def require_state(layout: DevnetLayout) -> DevnetState:
    """The devnet in ``layout``; ConfigError saying how to make one when there is none."""
    state = layout.load()
    if state is None:
        raise DevnetNotReady(f"no devnet in {layout.root}; start one with `owm devnet up`")
    return state
