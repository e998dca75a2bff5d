"""The market's door: refuse at submission what no registered node could run (SRS-COORD-02).

The rule is :func:`owm_core.market.admission.check_admissible` over the registered nodes that
are online now. Reading every node record at every submission would make submission cost grow
with the network, so :class:`Admission` keeps the records it read for :data:`FLEET_TTL_S`
seconds and trusts them to let a task in; it refuses only on records at most
:data:`REFUSAL_FRESH_S` old (re-reading them at most that often, so a flood of unservable
submissions costs one read a second), and forgets them whenever a node registers.
"""

from __future__ import annotations

import threading

import attrs

from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_core.coordination.tasks import replica_ids
from owm_core.errors import NoMatch
from owm_core.market.admission import check_admissible, online_fleet
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.registry import Node
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import NodeRepository

FLEET_TTL_S = 10
"""How long registry records read for admission are trusted to admit a task."""
REFUSAL_FRESH_S = 1
"""How old, at most, the records that refuse a task may be."""


@attrs.define
class Admission:
    """Checks each submitted task against the online registered nodes (see module docstring)."""

    nodes: NodeRepository
    clock: Clock
    config: ServiceConfig
    _fleet: list[Node] = attrs.field(factory=list)
    _read_at_ms: int | None = None
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def check(self, request: TaskRequest) -> None:
        """Refuse (``NoMatch`` with the reason) a task too few registered nodes could run."""
        replicas = len(replica_ids(request.task_id, self.config.verification))
        try:
            check_admissible(request, replicas, self._online(FLEET_TTL_S))
        except NoMatch:
            check_admissible(request, replicas, self._online(REFUSAL_FRESH_S))

    def forget(self) -> None:
        """Drop the records read so far (a node registered or left)."""
        with self._lock:
            self._read_at_ms = None

    def _online(self, max_age_s: int) -> list[Node]:
        now_ms = self.clock.monotonic_ms()
        with self._lock:
            if self._read_at_ms is None or now_ms - self._read_at_ms > max_age_s * 1000:
                self._fleet = list(self.nodes.list())
                self._read_at_ms = now_ms
            fleet = self._fleet
        return online_fleet(fleet, self.clock.now(), self.config.liveness)
