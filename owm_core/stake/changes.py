"""Stake status changes: the history of each stake's lifecycle, for the operator's charts.

The stakes repository keeps the latest record of each key; a :class:`StakeChange` is written
beside it whenever a save gives a key a status it did not have (a first registration included),
so the dashboard can show when stakes became active, degraded, suspended or slashed
(spec 4.12, SRS-STAKE-03..05). Times are the stake's own ``changed_at``.
"""

from __future__ import annotations

import attrs

from owm_core import fields
from owm_core.stake.channel import Stake, StakeStatus


@attrs.frozen
class StakeChange:
    """The stake of ``public_key`` entered ``status`` at ``at``."""

    public_key: str = attrs.field(validator=fields.hex_digest(32))
    status: StakeStatus = attrs.field(validator=fields.instance_of(StakeStatus))
    at: int = attrs.field(validator=fields.timestamp())


def change_of(before: Stake | None, after: Stake) -> StakeChange | None:
    """The change saving ``after`` over ``before`` makes, or None when the status is the same."""
    if before is not None and before.status is after.status:
        return None
    return StakeChange(after.public_key, after.status, after.changed_at)
