"""Heartbeat activity: how many heartbeats each node sent in each minute.

The node record keeps only the latest heartbeat (``Node.last_heartbeat``), which says who is
online *now*; the coordinator's dashboard also shows who was online, and how many heartbeats
arrived, over the last hours. For that the store keeps one count per (minute, node), added to
by the heartbeat writer and pruned after :data:`KEEP_S`. Times are POSIX seconds passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue

MINUTE_S = 60
"""Width of one stored activity bucket."""
KEEP_S = 2 * 24 * 3600
"""How long activity counts are kept (the dashboard shows less)."""


def minute_of(at: int) -> int:
    """The start of the minute that holds ``at``."""
    return at - at % MINUTE_S


@attrs.frozen
class HeartbeatCount:
    """``count`` heartbeats of ``node_id`` admitted during the minute starting at ``minute``."""

    minute: int = attrs.field(validator=fields.timestamp())
    node_id: str = attrs.field(validator=fields.text(max_len=128))
    count: int = attrs.field(validator=fields.integer(minimum=1))

    def __attrs_post_init__(self) -> None:
        if self.minute % MINUTE_S:
            raise InvalidValue("minute", f"must start a minute, got {self.minute}")


def count_heartbeats(admitted: Iterable[tuple[str, int]]) -> dict[tuple[int, str], int]:
    """(node id, at) of admitted heartbeats → count per (minute, node id)."""
    return dict(Counter((minute_of(at), node_id) for node_id, at in admitted))


def merge_counts(
    into: Mapping[tuple[int, str], int], more: Mapping[tuple[int, str], int]
) -> dict[tuple[int, str], int]:
    """Two batches of counts as one (counts of the same minute and node add up)."""
    merged = dict(into)
    for key, n in more.items():
        merged[key] = merged.get(key, 0) + n
    return merged
