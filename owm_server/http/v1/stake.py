"""The stake endpoints of v1 (SRS-STAKE-01, spec 4.12): tier minimums and a node's stake.

No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from starlette.responses import Response

from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Reply, Tag
from owm_server.http.v1.render import json, stake_json
from owm_server.http.v1.schemas import INT, NODE_PARAM, NOT_FOUND, STAKE, STR, obj


def stake_requirements(call: Call) -> Response:
    r = call.services.nodes.stake_requirements()
    return json({"currency": "sat", "tiers": {"t1": r.t1_sats, "t2": r.t2_sats, "t3": r.t3_sats}})


def stake_node(call: Call) -> Response:
    node_id = call.path["node_id"]
    return json(stake_json(node_id, call.services.nodes.stake(node_id)))


def operations() -> list[Operation]:
    """The stake minimum of every tier and one node's stake record."""
    stake = Tag("stake")
    return [
        stake(
            "GET", "/stake/requirements", "stakeRequirements", "Tier stake minimums", Access.CLIENT,
            stake_requirements,
            {
                200: Reply(
                    "Minimum channel capacity per tier.",
                    obj({"currency": STR, "tiers": obj({"t1": INT, "t2": INT, "t3": INT})}),
                )
            },
            inline=True,
        ),
        stake(
            "GET", "/stake/nodes/{node_id}", "stakeNode", "Node stake status and channel info",
            Access.NODE_MANAGEMENT, stake_node,
            {200: Reply("The stake record.", STAKE), 404: NOT_FOUND}, params=(NODE_PARAM,),
        ),
    ]
