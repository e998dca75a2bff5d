"""Which waiting replicas the market offers to its open streams, and when (SRS-COORD-02).

Dispatch must never stop behind work nobody can take. So :class:`Dispatcher` never scans "the
oldest N waiting replicas" (N unassignable ones would hide every later task for good, across
restarts too). It plans over exactly the replicas an event made assignable:

* a submitted task's replicas, at submission (a new task is matched at once, however many
  others wait);
* a replica its node rejected or timed out on, and a spot check's new ``:check`` replica;
* on every tick and every newly opened stream, the next page of the **sweep**: waiting
  replicas in storage order after a cursor that moves on with each page and wraps around, so
  each waiting replica is looked at again within (waiting / :data:`SWEEP_PAGE`) ticks, whatever
  lies before it (a node that came online, a price that now fits).

A waiting replica of a task whose other replicas already run, that no node can take (each
fitting node, connected or registered and online, holds a sibling or timed out on it: a node
was slashed or went away; suspensions are seen within the admission's record TTL), is
dropped down to ``[tasks] redundancy_floor`` (:func:`shed_unplaceable`, SRS-PERF-07), so the
round is judged over the nodes the network still has instead of waiting out its commit window.

Replicas that wait past their queue time expire with their task or are dropped
(:mod:`owm_core.coordination.endings`, run by the market's tick, which tells
:meth:`Dispatcher.forget`), so the sweep's length stays bounded by the submission rate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

import attrs

from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_adapters.services.sweep_cursor import SweepCursor, position
from owm_core.coordination.degradation import shed_unplaceable
from owm_core.coordination.endings import Ended
from owm_core.coordination.registration import node_status
from owm_core.coordination.tasks import Assignment, plan_dispatch
from owm_core.market.tasks import ASSIGNABLE_STATES, NodeOffer, Task
from owm_core.nodes.registry import Node, NodeStatus
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

SWEEP_PAGE = 200
"""Waiting replicas the sweep looks at per tick (and per newly opened stream)."""
MAX_TRACKED_READY = 100_000
"""Replicas whose "assignable since" time is kept for the dispatch-latency metric."""


@attrs.define
class Dispatcher:
    """Plans assignments for the market (see the module docstring); the caller holds its lock.

    Also remembers since when each replica has been assignable (monotonic ms), for the
    dispatch-latency metric, bounded by :data:`MAX_TRACKED_READY`.
    """

    repositories: Repositories
    clock: Clock
    config: ServiceConfig
    #: The registered online nodes (the admission's records, at most its TTL old): a node
    #: among them that is not streaming now may still take a replica, which is then kept.
    fleet: Callable[[], Sequence[Node]] = list
    _sweep: SweepCursor[int] = attrs.field(init=False, factory=lambda: SweepCursor(0))
    _ready_ms: dict[str, int] = attrs.field(factory=dict)

    def became_ready(self, tasks: Iterable[Task]) -> None:
        """Note that ``tasks`` are assignable from now on (submitted, rejected, timed out)."""
        now_ms = self.clock.monotonic_ms()
        for task in tasks:
            if len(self._ready_ms) < MAX_TRACKED_READY:
                self._ready_ms[task.task_id] = now_ms

    def waited_s(self, task: Task) -> float | None:
        """Seconds ``task`` waited since it became assignable (None if not tracked); forgets it."""
        ready = self._ready_ms.pop(task.task_id, None)
        if ready is None:
            return None
        return max(0, self.clock.monotonic_ms() - ready) / 1000

    def plan(
        self, offers: Iterable[NodeOffer], candidates: Sequence[Task] | None = None
    ) -> list[Assignment]:
        """Assign ``candidates`` (or the sweep's next page) to the online ``offers``; stored."""
        listed = list(offers)
        if not listed:
            return []
        waiting = self._next_page() if candidates is None else self._current(candidates)
        if not waiting:
            return []
        online = self.online(listed)
        if not online:
            return []
        assignments = plan_dispatch(
            self.repositories, waiting, online, self.clock.now(), self.config.assignment_timeout_s
        )
        placed = {a.task.task_id for a in assignments}
        left = [t for t in waiting if t.task_id not in placed]
        policy = self.config.verification
        streaming = {o.node_id for o in listed}  # their offers say what they take
        standby = [n for n in self.fleet() if n.node_id not in streaming] if left else []
        for dropped in shed_unplaceable(self.repositories, left, online, policy, standby):
            self._ready_ms.pop(dropped.task_id, None)
            log.info("replica %s dropped: no node can take it", dropped.task_id)
        return assignments

    def forget(self, ended: Iterable[Ended]) -> None:
        """Stop timing the replicas that left the market (expired or dropped)."""
        for done in ended:
            for task in (*done.expired, *done.dropped):
                self._ready_ms.pop(task.task_id, None)

    def _current(self, candidates: Sequence[Task]) -> list[Task]:
        """The candidates as stored now, still assignable (the sweep may have placed one
        between the caller's read and the lock)."""
        found = (self.repositories.tasks.get(c.task_id) for c in candidates)
        return [t for t in found if t is not None and t.state in ASSIGNABLE_STATES]

    def _next_page(self) -> list[Task]:
        page = self._sweep.page(self.repositories.tasks.waiting, position, SWEEP_PAGE)
        return [task for _, task in page]

    def online(self, offers: Sequence[NodeOffer]) -> list[NodeOffer]:
        """The offers of nodes online now, each with the node's current reliability: their
        nodes and stakes read together (a query per 500, not two per node: dispatch runs on
        every submission and stream opened, over every open stream)."""
        now = self.clock.now()
        nodes = self.repositories.nodes.get_many([o.node_id for o in offers])
        stakes = self.repositories.stakes.get_many([n.public_key for n in nodes.values()])
        online = []
        for offer in offers:
            node = nodes.get(offer.node_id)
            if node is None:
                continue
            stake = stakes.get(node.public_key)
            if node_status(node, stake, now, self.config.liveness) is NodeStatus.ONLINE:
                online.append(attrs.evolve(offer, reliability_ppm=node.reliability_ppm))
        return online
