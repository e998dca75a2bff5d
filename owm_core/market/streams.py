"""Task streams as every coordinator sharing one store sees them (SRS-COORD-05).

A node's task stream lives on the coordinator it connected to; with several coordinators
behind a balancer (one PostgreSQL database) the streams are spread over them, so no one
process's memory knows how many nodes may take work now. Each coordinator therefore records
the offer of every stream it holds (:class:`OpenStream`), refreshes the record every
:data:`STREAM_REFRESH_S` seconds while the stream lives and removes it when the stream closes;
a record not refreshed for :data:`STREAM_FRESH_S` seconds (its coordinator died or lost the
database) no longer counts (:func:`fresh_offers`). Work that depends on who is streaming — the
FL round scheduler waiting for ``min_participants`` trainers (SRS-COORD-03) — reads the fresh
records wherever it runs.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.market.tasks import NodeOffer

STREAM_REFRESH_S = 5
"""How often a coordinator refreshes the records of the streams it holds."""
STREAM_FRESH_S = 15
"""A record seen longer ago than this no longer counts (three refreshes missed)."""


@attrs.frozen
class OpenStream:
    """A node's open task stream: its offer, which stream (one per connection), the
    coordinator process holding it, when it opened and when its holder last confirmed it."""

    offer: NodeOffer
    stream_id: str = attrs.field(validator=fields.text(max_len=64))
    coordinator: str = attrs.field(validator=fields.text(max_len=255))
    opened_at: int = attrs.field(validator=fields.integer(minimum=0))
    seen_at: int = attrs.field(validator=fields.integer(minimum=0))

    @property
    def node_id(self) -> str:
        """The streaming node."""
        return self.offer.node_id


def fresh_offers(
    streams: Iterable[OpenStream], now: int, fresh_s: int = STREAM_FRESH_S
) -> list[NodeOffer]:
    """The offers of the streams confirmed within ``fresh_s`` seconds of ``now``."""
    return [s.offer for s in streams if now - s.seen_at <= fresh_s]


__all__ = ["STREAM_FRESH_S", "STREAM_REFRESH_S", "OpenStream", "fresh_offers"]
