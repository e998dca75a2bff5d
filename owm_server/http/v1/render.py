"""Rendering shared by the v1 modules: the JSON response and the records several contexts publish.

A context's own renderers (a proposal, a bounty, a pool) live in its module; the ones here
answer for more than one tag — a stake (nodes, stake) and a node's earnings (nodes, payments).
Their shapes are :data:`~owm_server.http.v1.schemas.STAKE` and
:data:`~owm_server.http.v1.schemas.EARNINGS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse, Response

from owm_core.nodes.registry import Node
from owm_core.payments.records import RewardPayment
from owm_core.stake.channel import Stake
from owm_server.http.call import Call
from owm_server.http.v1.schemas import EARNINGS, PAYMENT, STAKE, published


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as an ``application/json`` response."""
    return JSONResponse(value, status_code=status, headers=headers)


def stake_json(node_id: str, s: Stake) -> dict[str, Any]:
    """A node's stake record."""
    channel = s.channel
    return published(
        STAKE,
        s,
        node_id=node_id,
        channel_id=None if channel is None else channel.channel_id,
        channel_point=None if channel is None else channel.channel_point,
        channel_confirmations=None if channel is None else channel.confirmations,
    )


def payment_json(p: RewardPayment) -> dict[str, Any]:
    """A reward payment to a node."""
    return published(PAYMENT, p)


def earnings_json(node: Node, payments: Sequence[RewardPayment]) -> dict[str, Any]:
    """A node's total earned and its reward payments, newest first (SRS-LN-10)."""
    return published(EARNINGS, node, payments=[payment_json(p) for p in payments])


def earnings(call: Call, node_id: str) -> Response:
    """The reply with ``node_id``'s earnings, up to the call's ``limit`` payments (SRS-LN-10):
    the same whether the node asks by its id (nodes) or by its signature (payments)."""
    node, payments = call.services.nodes.earnings(node_id, call.query.get("limit", 100))
    return json(earnings_json(node, payments))
