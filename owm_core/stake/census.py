"""How many registered nodes are online, offline and suspended (SRS-COORD-01), from groups the
store counts instead of every node and its stake read one by one.

A node's public status (:func:`presence_status`) depends on three things only: its stake's
status, its own suspended mark and whether it has been silent past the liveness limit. The
stores count the registered nodes alike in those three (``NodeRepository.presence``); the
rule is applied here, once per group.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.nodes.registry import NodeStatus, liveness_status
from owm_core.stake.channel import StakeStatus

_STAKE_SUSPENDED = frozenset({StakeStatus.SUSPENDED, StakeStatus.SLASHED})


@attrs.frozen
class Presence:
    """``nodes`` registered nodes whose stake is ``stake_status`` (None: no stake record),
    marked ``suspended`` or not, and ``silent`` (heard from longer ago than the liveness
    limit) or not."""

    stake_status: StakeStatus | None
    suspended: bool
    silent: bool
    nodes: int = attrs.field(validator=fields.integer(minimum=0))


def presence_status(stake_status: StakeStatus | None, suspended: bool, silent: bool) -> NodeStatus:
    """Public status (spec §5.1): suspended with the stake; a node that left is offline;
    otherwise as its own mark and silence say."""
    if stake_status in _STAKE_SUSPENDED:
        return NodeStatus.SUSPENDED
    if stake_status is StakeStatus.DEREGISTERED:
        return NodeStatus.OFFLINE
    return liveness_status(suspended, silent)


def census(groups: Iterable[Presence]) -> dict[NodeStatus, int]:
    """How many nodes have each public status (every status present, 0 when none)."""
    counts = dict.fromkeys(NodeStatus, 0)
    for group in groups:
        counts[presence_status(group.stake_status, group.suspended, group.silent)] += group.nodes
    return counts
