"""The market's door: refuse at submission what no registered node could run (SRS-COORD-02),
and plan how many replicas the rest runs on (SRS-PERF-07).

The rules are :func:`owm_core.market.admission.check_admissible` and
:func:`owm_core.market.redundancy.plan_replicas` over the registered nodes that are online now
(a slashed node is suspended, so it no longer counts). A plan made on records up to
:data:`FLEET_TTL_S` old may count a node that left since: its extra replica is dropped once no
node can take it (:func:`owm_core.coordination.degradation.shed_unplaceable`).

Reading every node record at every submission would make submission cost grow with the
network, so :class:`Admission` keeps the records it read for :data:`FLEET_TTL_S`
seconds and trusts them to let a task in; it refuses only on records at most
:data:`REFUSAL_FRESH_S` old (re-reading them at most that often, so a flood of unservable
submissions costs one read a second), and forgets them whenever a node registers.
"""

from __future__ import annotations

import threading

import attrs

from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_core.errors import NoMatch
from owm_core.market.admission import check_admissible, eligible_nodes, online_fleet
from owm_core.market.redundancy import ReplicaPlan, plan_replicas
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

    def check(self, request: TaskRequest) -> ReplicaPlan:
        """Refuse (``NoMatch`` with the reason) a task no registered online node could run;
        else its replica plan: as many replicas as the nodes that fit allow, within
        ``[tasks] redundancy`` and ``redundancy_floor`` (SRS-PERF-07)."""
        policy = self.config.verification
        fleet = self._online(FLEET_TTL_S)
        try:
            check_admissible(request, 1, fleet)
        except NoMatch:
            fleet = self._online(REFUSAL_FRESH_S)
            check_admissible(request, 1, fleet)
        return plan_replicas(policy, len(eligible_nodes(request, fleet)))

    def fleet(self) -> list[Node]:
        """The registered online nodes, from records at most :data:`FLEET_TTL_S` old."""
        return self._online(FLEET_TTL_S)

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
