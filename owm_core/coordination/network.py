"""Network-wide statistics and the anonymised node list of the public API.

This module owns what ``GET /v1/network/stats`` and ``GET /v1/network/nodes`` publish about the
registry (SRS-COORD-01, spec §5.1): counts by status and tier, total stake, and per node only
what says nothing about who runs it — no node id, key, Lightning URI or onion address.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from owm_core import fields
from owm_core.coordination.registration import node_status
from owm_core.nodes.registry import Liveness, Node, NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import Stake, StakeStatus

_STAKED = frozenset({StakeStatus.ACTIVE, StakeStatus.DEGRADED, StakeStatus.PENDING})


@attrs.frozen
class NetworkStats:
    """The registry in numbers at one instant."""

    nodes_total: int
    by_status: dict[str, int]
    by_tier: dict[str, int]
    staked_sat: int
    active_stakes: int
    total_tasks_completed: int
    total_sats_earned: int
    at: int


@attrs.frozen
class AnonymousNode:
    """One registered node, described without anything that identifies its operator."""

    tier: Tier
    status: NodeStatus
    vram_mb: int
    ram_mb: int
    bandwidth_mbps: int
    reliability_ppm: int
    registered_at: int
    total_tasks_completed: int


def network_stats(
    nodes: Iterable[Node], stakes: Mapping[str, Stake], now: int, liveness: Liveness
) -> NetworkStats:
    """Counts by status (online/offline/suspended, as the registry shows them) and tier, and
    the stake locked by nodes whose stake is live (``stakes`` is keyed by public key)."""
    by_status = {status.value: 0 for status in NodeStatus}
    by_tier = {tier.value: 0 for tier in Tier}
    staked = active = tasks = earned = total = 0
    for node in nodes:
        stake = stakes.get(node.public_key)
        total += 1
        by_status[node_status(node, stake, now, liveness).value] += 1
        by_tier[node.tier.value] += 1
        tasks += node.total_tasks_completed
        earned += node.total_sats_earned
        if stake is not None and stake.status in _STAKED:
            staked += stake.capacity_sat
            active += stake.status is StakeStatus.ACTIVE
    return NetworkStats(total, by_status, by_tier, staked, active, tasks, earned, now)


def anonymised(node: Node, stake: Stake | None, now: int, liveness: Liveness) -> AnonymousNode:
    """The public view of one node (``GET /v1/network/nodes``): the node's own values of the
    fields :class:`AnonymousNode` lists, which is all that is published, and its status."""
    return fields.copied(AnonymousNode, node, status=node_status(node, stake, now, liveness))
