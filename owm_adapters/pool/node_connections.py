"""How many logged-in connections each registered node holds on the pool, and the cap on them
(SRS-SEC-16, SRS-POOL-02).

The listener's caps bound one address (``max_connections_per_ip``) and the whole pool
(``max_connections``), not one identity: a node mining from many addresses could hold the
per-address cap at each and take a large share of the pool's slots, and, being logged in, keep
them for as long as it keeps sending. :class:`NodeConnections` counts, per node, the
connections holding a channel opened with that node's verified login — a connection with
channels of two nodes counts once for each, however many channels — and refuses the login that
would take a node past ``max_per_node``: the miner is answered ``OpenMiningChannel.Error``
:data:`TOO_MANY_FOR_NODE` (the specification has no code for it), the refusal is counted per
node in :attr:`NodeConnections.refused` and logged through a :class:`LogThrottle` (the first
line of a node at once, then at most one per 10 s with the count). A connection counts for its
nodes until it closes: closing its channels does not release it, since it stays logged in and
keeps its slot. Thread-safe: every connection's thread logs in and closes through one instance.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Hashable

import attrs

from owm_adapters.pool.log_limits import LogThrottle

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS_PER_NODE = 16
"""One owm-mine holds one connection; a farm mining as one node through a Stratum V2 proxy
carries up to 64 channels on each connection, so 16 connections are room for 1,024 rigs, and
filling the default 4,096 slots with logged-in connections takes 256 staked identities."""
TOO_MANY_FOR_NODE = "too-many-connections-for-node"
"""The ``OpenMiningChannel.Error`` code of a login refused by the per-node cap."""


@attrs.define(eq=False)
class NodeConnections:
    """The logged-in connections per node and their cap (module docstring)."""

    max_per_node: int = attrs.field(
        default=DEFAULT_MAX_CONNECTIONS_PER_NODE, validator=attrs.validators.ge(1)
    )
    throttle: LogThrottle = attrs.field(factory=LogThrottle, kw_only=True)
    refused: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    """Logins refused by the cap, per node."""
    _counts: collections.Counter[str] = attrs.field(init=False, factory=collections.Counter)
    _held: dict[Hashable, set[str]] = attrs.field(init=False, factory=dict)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def admit(self, connection: Hashable, node_id: str, peer: str = "") -> bool:
        """Whether ``connection`` may hold a channel of ``node_id``: yes if it already counts for
        the node, or if the node holds fewer than ``max_per_node`` connections (then it counts
        from now on); else no, counted in :attr:`refused` and logged (``peer``: its address)."""
        with self._lock:
            held = self._held.get(connection)
            if held is not None and node_id in held:
                return True
            count = self._counts[node_id]
            if count < self.max_per_node:
                self._counts[node_id] = count + 1
                self._held.setdefault(connection, set()).add(node_id)
                return True
            self.refused[node_id] += 1
        self.throttle.info(
            log, (TOO_MANY_FOR_NODE, node_id),
            "mining channel for %s from %s refused: %s (%d connections logged in, the most "
            "allowed)", node_id, peer or "(unknown)", TOO_MANY_FOR_NODE, count,
        )  # fmt: skip
        return False

    def release(self, connection: Hashable) -> None:
        """``connection`` closed: it no longer counts for any node (nothing if it never did)."""
        with self._lock:
            for node_id in self._held.pop(connection, ()):
                self._counts[node_id] -= 1
                if not self._counts[node_id]:
                    del self._counts[node_id]

    def count(self, node_id: str) -> int:
        """How many open connections count for ``node_id`` now."""
        with self._lock:
            return self._counts.get(node_id, 0)


__all__ = ["DEFAULT_MAX_CONNECTIONS_PER_NODE", "TOO_MANY_FOR_NODE", "NodeConnections"]
