"""The network endpoints of v1: registry counts, the anonymised node list, the slashing log.

Public aggregates every client may read, served from the cached read models
(SRS-PERF-08): ``GET /v1/network/coordinator`` (the control plane's key, TLS fingerprint and
onion address: how ``owm-node`` learns them, SRS-COORD-07), ``GET /v1/network/stats``,
``GET /v1/network/nodes`` (no identities) and
``GET /v1/network/slashing-log`` (hash-chained, signed entries, SRS-STAKE-06). The slashing
acknowledgements, tagged ``network`` too, live in :mod:`owm_server.http.v1.slashing`.
No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from owm_core.coordination.network import AnonymousNode
from owm_core.nodes.registry import NodeStatus
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    INT,
    LIMIT,
    STR,
    array,
    nullable,
    obj,
    published,
    status_filter,
)

NETWORK_STATS: Schema = obj(
    {
        "nodes_total": INT,
        "by_status": {"type": "object"},
        "by_tier": {"type": "object"},
        "staked_sat": INT,
        "active_stakes": INT,
        "total_tasks_completed": INT,
        "total_sats_earned": INT,
        "at": INT,
    }
)
ANONYMOUS_NODE: Schema = obj(
    {
        "tier": STR,
        "status": STR,
        "vram_mb": INT,
        "ram_mb": INT,
        "bandwidth_mbps": INT,
        "reliability_ppm": INT,
        "registered_at": INT,
        "total_tasks_completed": INT,
    }
)


def node_json(n: AnonymousNode) -> dict[str, Any]:
    """A node without its identity."""
    return published(ANONYMOUS_NODE, n)


COORDINATOR_ENDPOINTS: Schema = obj(
    {
        "coordinator_key": STR,
        "tls_fingerprint": nullable(STR),
        "onion_address": nullable(STR),
    }
)


def coordinator_endpoints(call: Call) -> Response:
    config = call.services.config
    return json({
        "coordinator_key": call.services.coordinator.sealing.public_key_hex,
        "tls_fingerprint": config.tls_fingerprint or None,
        "onion_address": config.onion_address or None,
    })


def network_stats(call: Call) -> Response:
    s = call.services.views.network_stats()
    return json(
        {
            "nodes_total": s.nodes_total,
            "by_status": s.by_status,
            "by_tier": s.by_tier,
            "staked_sat": s.staked_sat,
            "active_stakes": s.active_stakes,
            "total_tasks_completed": s.total_tasks_completed,
            "total_sats_earned": s.total_sats_earned,
            "at": s.at,
        }
    )


def network_nodes(call: Call) -> Response:
    status = call.query.get("status")
    nodes = call.services.views.anonymous_nodes(None if status is None else NodeStatus(status))
    return json({"nodes": [node_json(n) for n in nodes[: call.query.get("limit", 100)]]})


def slashing_log(call: Call) -> Response:
    start, limit = call.query.get("start", 0), call.query.get("limit", 100)
    entries = call.services.views.slashing_log(start, limit)
    return json({"entries": [e.to_dict() for e in entries]})


def operations() -> list[Operation]:
    """Network statistics, the anonymised node list and the public slashing log."""
    network = Tag("network")
    return [
        network(
            "GET", "/network/coordinator", "coordinatorEndpoints",
            "How nodes reach the coordinator's control plane (SRS-COORD-07)", Access.PUBLIC,
            coordinator_endpoints,
            {200: Reply("The coordinator key nodes pin, its TLS certificate's SHA-256 "
                        "fingerprint, and its Tor v3 onion address (`<56 chars>.onion:<port>`; "
                        "null without an onion service).", COORDINATOR_ENDPOINTS)},
            inline=True,
        ),
        network(
            "GET", "/network/stats", "networkStats", "Network-wide statistics", Access.CLIENT,
            network_stats, {200: Reply("Counts and stake.", NETWORK_STATS)}, inline=True,
        ),
        network(
            "GET", "/network/nodes", "networkNodes", "List active nodes (anonymised)",
            Access.CLIENT, network_nodes,
            {200: Reply("Nodes without identities.", obj({"nodes": array(ANONYMOUS_NODE)}))},
            params=(
                status_filter([s.value for s in NodeStatus], "Only nodes of this status."),
                LIMIT,
            ),
            inline=True,
        ),
        network(
            "GET", "/network/slashing-log", "slashingLog",
            "Public immutable slashing event log (SRS-STAKE-06)", Access.CLIENT, slashing_log,
            {
                200: Reply(
                    "Entries in index order, hash-chained and signed.",
                    obj({"entries": array({"type": "object"})}),
                )
            },
            params=(
                Param(
                    "start",
                    "query",
                    {"type": "integer", "minimum": 0, "maximum": 2**31},
                    "First index.",
                ),
                LIMIT,
            ),
            inline=True,
        ),
    ]
