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


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``value`` as an ``application/json`` response."""
    return JSONResponse(value, status_code=status, headers=headers)


def stake_json(node_id: str, s: Stake) -> dict[str, Any]:
    """A node's stake record."""
    return {
        "node_id": node_id,
        "status": s.status.value,
        "tier": s.tier.value,
        "required_sats": s.required_sats,
        "capacity_sat": s.capacity_sat,
        "bonus_bps": s.bonus_bps,
        "changed_at": s.changed_at,
        "channel_id": None if s.channel is None else s.channel.channel_id,
        "channel_point": None if s.channel is None else s.channel.channel_point,
        "channel_confirmations": None if s.channel is None else s.channel.confirmations,
        "next_verification_at": s.next_verification_at,
        "grace_until": s.grace_until,
        "cooldown_until": s.cooldown_until,
    }


def payment_json(p: RewardPayment) -> dict[str, Any]:
    """A reward payment to a node."""
    return {
        "payment_hash": p.payment_hash,
        "task_id": p.task_id,
        "amount_msat": p.amount_msat,
        "state": p.state.value,
        "attempts": p.attempts,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def earnings_json(node: Node, payments: Sequence[RewardPayment]) -> dict[str, Any]:
    """A node's total earned and its reward payments, newest first (SRS-LN-10)."""
    return {
        "node_id": node.node_id,
        "total_sats_earned": node.total_sats_earned,
        "payments": [payment_json(p) for p in payments],
    }


def earnings(call: Call, node_id: str) -> Response:
    """The reply with ``node_id``'s earnings, up to the call's ``limit`` payments (SRS-LN-10):
    the same whether the node asks by its id (nodes) or by its signature (payments)."""
    node, payments = call.services.nodes.earnings(node_id, call.query.get("limit", 100))
    return json(earnings_json(node, payments))
