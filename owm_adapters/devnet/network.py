"""Starting and stopping a devnet's processes.

:func:`start` runs what :func:`owm_adapters.bootstrap.devnet.build_devnet` built: it starts the
coordinator and waits for its API, starts the node daemons and waits until each has registered
with its stake verified and opened its task stream, then starts the traffic loop. A process that
fails to come up stops the whole devnet again and the error carries the end of its log.
:func:`down` stops everything.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from owm_adapters.devnet import processes
from owm_adapters.devnet.layout import DevnetLayout, DevnetState
from owm_adapters.devnet.processes import (
    COORDINATOR,
    TRAFFIC,
    DevnetNotReady,
    DevnetProcess,
    http_json,
    wait_until,
)

COORDINATOR_READY_S = 90.0
NODES_READY_S = 150.0


def start(
    layout: DevnetLayout,
    state: DevnetState,
    programs: Sequence[DevnetProcess],
    env: Mapping[str, str],
    say: Callable[[str], None] = lambda _line: None,
) -> None:
    """Start ``programs`` in the background, each once the one before is ready; on any failure
    stop what was started and re-raise."""
    layout.traffic_file.unlink(missing_ok=True)
    try:
        _start_all(layout, state, {p.name: list(p.argv) for p in programs}, env, say)
    except BaseException:
        say("stopping what was started")
        processes.stop(layout, grace_s=5)
        raise


def _start_all(
    layout: DevnetLayout,
    state: DevnetState,
    argv: Mapping[str, list[str]],
    env: Mapping[str, str],
    say: Callable[[str], None],
) -> None:
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
    """The devnet in ``layout``; DevnetNotReady saying how to make one when there is none."""
    state = layout.load()
    if state is None:
        raise DevnetNotReady(f"no devnet in {layout.root}; start one with `owm devnet up`")
    return state
