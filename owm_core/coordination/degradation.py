"""Graceful degradation on the coordinator: each stored task is judged as it was planned, and
replicas that no node can take any more are dropped (SRS-PERF-07, data flow 3).

The rules are :mod:`owm_core.market.redundancy`'s; this module applies them to the store:

* :func:`task_policy`: the verification policy a stored task was planned under, read from the
  number of its numbered replicas (``<task>:0`` … ``<task>:k-1``), so a coordinator restart,
  or another coordinator, judges it the same way without a stored plan.
* :func:`held`: whether some node ever took a replica; a replica nobody held and that ended
  (dropped, or abandoned when its round's commit window closed) does not vote.
* :func:`shed_unplaceable`: a waiting replica of a task whose siblings already run, which no
  node can take (each fitting node, connected or registered and online, holds a sibling or
  timed out on it; a suspended — slashed — or offline node is no taker), is dropped
  (:func:`~owm_core.market.tasks.abandon`: no settlement, nobody paid or penalised) as long as
  the task keeps at least ``redundancy_floor`` replicas; so a network that lost a node judges
  the round over the nodes it still has instead of waiting out the commit window.
"""

from __future__ import annotations

from collections.abc import Sequence

from owm_core.coordination.tasks import siblings, task_id_of
from owm_core.errors import NoMatch
from owm_core.market.admission import eligible_nodes
from owm_core.market.redundancy import planned_policy, sheddable
from owm_core.market.tasks import (
    ASSIGNABLE_STATES,
    NodeOffer,
    Task,
    TaskState,
    VerificationPolicy,
    abandon,
    match,
)
from owm_core.nodes.registry import Node
from owm_core.ports.stores import TaskStore

CHECK_SUFFIX = ":check"
"""The id suffix of a spot check's re-execution (not one of the task's planned replicas)."""


def numbered(replicas: Sequence[Task]) -> list[Task]:
    """The task's planned replicas: every replica but a spot check's re-execution."""
    return [r for r in replicas if not r.task_id.endswith(CHECK_SUFFIX)]


def task_policy(repositories: TaskStore, replica: str, policy: VerificationPolicy) -> (
    VerificationPolicy
):
    """The policy the task of ``replica`` was planned under (its number of replicas)."""
    planned = numbered(siblings(repositories, task_id_of(replica)))
    return planned_policy(policy, max(1, len(planned)))


def held(replica: Task) -> bool:
    """Whether some node holds or once held ``replica`` (a dropped replica never was)."""
    return bool(replica.node_id or replica.tried_node_ids) or replica.state not in {
        TaskState.SUBMITTED, TaskState.FORFEITED, TaskState.EXPIRED,
    }


_GONE = frozenset({TaskState.FORFEITED, TaskState.EXPIRED})


def _placeable(
    replica: Task, offers: Sequence[NodeOffer], standby: Sequence[Node], busy: set[str]
) -> bool:
    """Whether a connected node (its offer) or a registered online node that is not streaming
    right now (``standby``: it may reconnect) could still take ``replica``."""
    unavailable = busy | set(replica.tried_node_ids)
    if any(n.node_id not in unavailable for n in eligible_nodes(replica.request, standby)):
        return True
    try:
        ranked = match(replica.request, offers, exclude=replica.tried_node_ids)
    except NoMatch:
        return False
    return any(m.node_id not in busy for m in ranked)


def shed_unplaceable(
    repositories: TaskStore,
    waiting: Sequence[Task],
    offers: Sequence[NodeOffer],
    policy: VerificationPolicy,
    standby: Sequence[Node] = (),
) -> list[Task]:
    """Drop the waiting replicas no connected node (``offers``) nor registered online node
    (``standby``, :func:`~owm_core.market.admission.online_fleet`) can take, of tasks whose
    other replicas already run, keeping at least the floor (module docstring); the dropped.

    Each drop is stored (expected state checked) before it is returned.
    """
    groups: dict[str, None] = {}
    for task in waiting:
        if task.state in ASSIGNABLE_STATES and not task.task_id.endswith(CHECK_SUFFIX):
            groups.setdefault(task_id_of(task.task_id))
    dropped: list[Task] = []
    for group in groups:
        replicas = numbered(siblings(repositories, group))
        effective = planned_policy(policy, max(1, len(replicas)))
        running = [r for r in replicas if r.state not in ASSIGNABLE_STATES and r.node_id]
        if len(replicas) < 2 or not running:
            continue
        busy = {r.node_id for r in replicas if r.node_id}
        stuck = [
            r for r in replicas
            if r.state in ASSIGNABLE_STATES and not _placeable(r, offers, standby, busy)
        ]
        alive = sum(1 for r in replicas if r.state not in _GONE)
        for replica in stuck[: sheddable(effective, alive, len(stuck))]:
            after = abandon(replica)
            repositories.tasks.save(after, expected_state=replica.state)
            dropped.append(after)
    return dropped
