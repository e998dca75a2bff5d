"""The records, in the shared store, of the task streams this coordinator holds
(:mod:`owm_core.market.streams`, SRS-COORD-05).

With several coordinators on one PostgreSQL database (``shared_state``) each node's stream
lives on one of them, so each coordinator writes the offer of every stream it opens, confirms
its streams every ``stream_refresh_s`` seconds (from the market thread) and removes a stream's
record when the stream closes; :meth:`StreamRecords.offers` then lists the streams open at
*every* coordinator, fresh within ``stream_fresh_s`` seconds (a coordinator that died stops
confirming its streams, and its nodes reconnect elsewhere, which writes new records). Alone on
its store (SQLite, memory) a coordinator writes nothing and lists its own streams.

A store that cannot be written only costs the records: the stream itself stays open, its
record is written by the next refresh that succeeds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import attrs

from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_core.market.streams import OpenStream, fresh_offers
from owm_core.market.tasks import NodeOffer
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import TaskStreamRepository

log = logging.getLogger(__name__)


class Held(Protocol):
    """An open stream of this coordinator, as the market holds it."""

    record: OpenStream


def coordinator_name() -> str:
    """This coordinator process, as its stream records name it (``<host>/<pid>``)."""
    return f"{socket.gethostname()}/{os.getpid()}"


@attrs.define(eq=False)
class StreamRecords:
    """Writes and reads the stream records (see the module docstring)."""

    streams: TaskStreamRepository
    clock: Clock
    config: ServiceConfig
    _entropy: Callable[[int], bytes] = os.urandom
    #: This process, as the records it writes name it.
    coordinator: str = attrs.field(init=False, factory=coordinator_name)
    _next_refresh: float = attrs.field(init=False, default=0.0)

    def new_id(self) -> str:
        """A fresh id for a stream opened now (one per connection)."""
        return self._entropy(8).hex()

    def record(self, offer: NodeOffer, stream_id: str) -> OpenStream:
        """The record of a stream opened now by this coordinator."""
        now = self.clock.now()
        return OpenStream(offer, stream_id, self.coordinator, opened_at=now, seen_at=now)

    def opened(self, record: OpenStream) -> None:
        """Store the record of a stream just opened here (shared mode)."""
        if self.config.shared_state:
            self._try("record", lambda: self.streams.put(record))

    def closed(self, record: OpenStream) -> None:
        """Remove the record of a stream that closed here, unless the node opened a newer one."""
        if self.config.shared_state:
            self._try("remove", lambda: self.streams.remove(record.node_id, record.stream_id))

    def refresh(self, streams: Mapping[str, Held], lock: AbstractContextManager[object]) -> None:
        """Confirm the streams open here (``streams``, read under ``lock``), once every
        ``refresh_s`` seconds (shared mode)."""
        if not self.config.shared_state or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + self.config.stream_refresh_s
        with lock:
            held = [s.record for s in streams.values()]
        if held:
            self._try("refresh", lambda: self.streams.refresh(held, self.clock.now()))

    def offers(self, local: Sequence[NodeOffer]) -> list[NodeOffer]:
        """The offers of the streams open now: at every coordinator sharing the store (their
        fresh records), or ``local`` (this process's) when the store is not shared."""
        if not self.config.shared_state:
            return list(local)
        fresh_s = self.config.stream_fresh_s
        since = self.clock.now() - fresh_s
        return fresh_offers(self.streams.seen_since(since), self.clock.now(), fresh_s)

    def _try(self, what: str, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as exc:  # the stream stays open; the next refresh writes it
            log.warning("task stream records: %s failed (%s); retrying at the next refresh",
                        what, type(exc).__name__)
            self._next_refresh = 0.0
