"""How the registered nodes' stakes stand, as the stake manager reports it (SRS-STAKE-09).

:func:`tally_stakes` is the rule; the stores answer :class:`StakeTally` for their registered
nodes (``StakeRepository.tally``), the SQL store with one aggregate query instead of a read per
node, so a metrics scrape costs the same at ten thousand nodes as at ten.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.stake.channel import Stake, StakeStatus


@attrs.frozen
class StakeTally:
    """``active_channels``: the active stakes (each has its confirmed channel);
    ``staked_sat``: the capacity of the active and degraded stakes; ``degraded_nodes``: the
    degraded stakes."""

    active_channels: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    staked_sat: int = attrs.field(default=0, validator=fields.integer(minimum=0))
    degraded_nodes: int = attrs.field(default=0, validator=fields.integer(minimum=0))


def tally_stakes(stakes: Iterable[Stake]) -> StakeTally:
    """The tally of ``stakes`` (one per registered node)."""
    active = staked = degraded = 0
    for stake in stakes:
        if stake.status is StakeStatus.ACTIVE:
            active += 1
        elif stake.status is StakeStatus.DEGRADED:
            degraded += 1
        else:
            continue
        staked += stake.capacity_sat
    return StakeTally(active, staked, degraded)
