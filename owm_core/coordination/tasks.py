"""The task market's use cases: ids, submission, dispatch, proofs, time-outs, settlement.

This module owns what happens to a submitted task on the coordinator (SRS-COORD-02, data
flow 3), as pure functions over the narrow stores of :mod:`owm_core.ports.stores`, with time
(``now``) and the verification ``seed`` passed in:

* **Ids** (:func:`parse_task_id`, :func:`replica_id`, :func:`task_id_of`): a submitted task
  becomes ``k`` replicas (redundant verification) or one replica (spot checks), ids
  ``<task_id>:<i>`` (``<task_id>:check`` for a spot check's re-execution).
* **Submission** (:func:`submit_task`): the replicas are stored durably, all or none.
* **Dispatch** (:func:`plan_dispatch`, :func:`offer_of`): replicas are matched to offers of
  connected nodes (capability, tier, resources, price; never two replicas of one task on one
  node).
* **Results** come in two phases, commit then reveal (:mod:`owm_core.coordination.reveals`);
  once a round is complete the verdict is recorded and the replicas settled
  (:class:`~owm_core.market.tasks.Settlement` events for payments), and each node's
  reliability and earnings are credited (:func:`credit`, :func:`reliability_after`).
* **Time-outs** (:func:`time_out_overdue`): overdue replicas time out and become assignable to
  another node.
* **Endings** (:mod:`owm_core.coordination.endings`): a replica no node takes by its
  ``expires_at`` expires with its task, or is dropped while a sibling runs, so work no node
  takes leaves the market instead of piling up and every escrow closes.
* **Outcomes** (:func:`task_outcome`, :func:`verified_output`): what a submitter may read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from owm_core import fields
from owm_core.errors import Conflict, InvalidValue, NoMatch
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.market.tasks import (
    PPM,
    TERMINAL_STATES,
    Match,
    NodeOffer,
    Settlement,
    SettlementKind,
    Task,
    TaskRequest,
    TaskState,
    Verdict,
    VerificationMode,
    VerificationPolicy,
    assign,
    match,
    submit,
    time_out,
)
from owm_core.nodes.registry import Node
from owm_core.ports.stores import MarketStore, TaskOutputStore, TaskStore, TaskSubmissionStore

RELIABILITY_STEP_DIVISOR = 10
"""Each settlement moves reliability a tenth of the way to 1.0 (paid) or 0.0 (forfeited)."""

_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
_REPLICA_SEP = ":"
_CHECK_REPLICA = "check"


def parse_task_id(value: object) -> str:
    """A submitted task id: 1–120 of ``[A-Za-z0-9._-]``, first alphanumeric (no ``:``)."""
    if not isinstance(value, str) or not _TASK_ID_RE.fullmatch(value):
        raise InvalidValue("task_id", "must be 1-120 characters of [A-Za-z0-9._-], no ':'")
    return value


def replica_id(task_id: str, index: int | str) -> str:
    """The id of one replica of a task: ``<task_id>:<index>`` (or ``:check`` for a spot check)."""
    return f"{task_id}{_REPLICA_SEP}{index}"


def task_id_of(replica: str) -> str:
    """The submitted task a replica id belongs to."""
    task_id, sep, _ = replica.rpartition(_REPLICA_SEP)
    if not sep:
        raise InvalidValue("task_id", "is not a replica id (<task_id>:<index>)")
    return task_id


def replica_ids(task_id: str, policy: VerificationPolicy, count: int | None = None) -> list[str]:
    """The replicas a submitted task starts with: ``count`` of them (its replica plan,
    :func:`owm_core.market.redundancy.plan_replicas`), by default ``redundancy`` of them, or
    one under spot checks."""
    if count is None:
        count = policy.redundancy if policy.mode is VerificationMode.REDUNDANT else 1
    return [replica_id(task_id, i) for i in range(count)]


def replicas_funded(policy: VerificationPolicy) -> int:
    """The most replicas of one task that can be paid: ``redundancy``, or two under spot
    checks (the replica and a possible re-execution); what a task's escrow is funded for."""
    return policy.redundancy if policy.mode is VerificationMode.REDUNDANT else 2


def submit_task(
    repositories: TaskSubmissionStore,
    request: TaskRequest,
    policy: VerificationPolicy,
    expires_at: int | None = None,
    replicas_planned: int | None = None,
) -> list[Task]:
    """Store the replicas of a submitted task durably (all or none) before it is acknowledged.

    ``expires_at`` is when the task expires unless a node took one of its replicas by then;
    ``replicas_planned`` how many replicas it runs on (by default the policy's full count).
    """
    parse_task_id(request.task_id)
    replicas = [
        submit(attrs.evolve(request, task_id=rid), expires_at)
        for rid in replica_ids(request.task_id, policy, replicas_planned)
    ]
    with repositories.atomic():
        for replica in replicas:
            if repositories.tasks.get(replica.task_id) is not None:
                raise Conflict(f"task {request.task_id} was already submitted")
            repositories.tasks.add(replica)
    return replicas


def siblings(repositories: TaskStore, task_id: str) -> list[Task]:
    """Every stored replica of a submitted task (including a spot-check replica), by id."""
    found: list[Task] = []
    index = 0
    while (task := repositories.tasks.get(replica_id(task_id, index))) is not None:
        found.append(task)
        index += 1
    check = repositories.tasks.get(replica_id(task_id, _CHECK_REPLICA))
    if check is not None:
        found.append(check)
    return found


def offer_of(
    node: Node, manifest: CapabilityManifest, capabilities: Iterable[str], ask_msat: int
) -> NodeOffer:
    """A connected node's standing offer: its manifest, its served task types and its ask."""
    return NodeOffer(
        node_id=node.node_id,
        capabilities=frozenset(capabilities),
        tier=manifest.tier,
        has_gpu=manifest.gpu_count > 0,
        vram_mb=manifest.vram_mb if manifest.gpu_count > 0 else 0,
        ram_mb=manifest.ram_mb,
        ask_msat=ask_msat,
        reliability_ppm=node.reliability_ppm,
    )


@attrs.frozen
class Assignment:
    """A replica handed to a node: what to push down the node's task stream."""

    task: Task
    node_id: str


def plan_dispatch(
    repositories: TaskStore,
    waiting: Sequence[Task],
    offers: Sequence[NodeOffer],
    now: int,
    timeout_s: int,
) -> list[Assignment]:
    """Assign waiting replicas (submitted or timed out) to the best offers and store them.

    A node never holds two replicas of one task, nor one it timed out on; a replica nobody can
    take stays waiting. Every assignment is stored (expected state checked) before it is returned:
    the store's compare-and-set on the replica's state is what keeps several coordinators on
    one database from assigning one replica twice — the one whose write finds the state changed
    skips the replica (SRS-COORD-05).
    """
    assignments: list[Assignment] = []
    busy: dict[str, set[str]] = {}
    for task in waiting:
        if task.state not in {TaskState.SUBMITTED, TaskState.TIMED_OUT}:
            continue
        try:
            ranked = match(task.request, offers, exclude=task.tried_node_ids)
        except NoMatch:
            continue  # cheap to find out before looking up the task's other replicas
        group = task_id_of(task.task_id)
        if group not in busy:
            busy[group] = {t.node_id for t in siblings(repositories, group) if t.node_id}
        free = [m for m in ranked if m.node_id not in busy[group]]
        if not free:
            continue
        chosen: Match = free[0]
        assigned = assign(task, chosen, now, timeout_s)
        try:
            repositories.tasks.save(assigned, expected_state=task.state)
        except Conflict:
            continue  # another coordinator on the store took it first (SRS-COORD-05)
        busy[group].add(chosen.node_id)
        assignments.append(Assignment(assigned, chosen.node_id))
    return assignments


def time_out_overdue(
    repositories: TaskStore, now: int, limit: int = 100, wait_s: int | None = None
) -> list[Task]:
    """Move every overdue assignment to timed-out, so it can go to another node (data flow 3).

    With ``wait_s`` (``[tasks] queue_timeout_s``) the replica waits that long for its next
    node before it counts as stalled (``expires_at``; :mod:`owm_core.market.endings`).
    """
    timed_out = []
    for task in repositories.tasks.overdue(now, limit):
        late = time_out(task, now)
        if wait_s is not None:
            late = attrs.evolve(late, expires_at=now + wait_s)
        repositories.tasks.save(late, expected_state=TaskState.ASSIGNED)
        timed_out.append(late)
    return timed_out


@attrs.frozen
class ProofOutcome:
    """What a stored proof led to: the replica's new state, and settlements if verification ran."""

    task: Task
    settlements: tuple[Settlement, ...] = ()
    verdict: Verdict | None = None


def reliability_after(reliability_ppm: int, settlement: Settlement) -> int:
    """Move reliability a tenth of the way to 1.0 (paid) or 0.0 (forfeited), in ppm.

    Bounded in [0, 1 000 000]; a node that keeps delivering approaches 1.0, one that keeps
    failing approaches 0 (SRS-SEC-11 sets it to 0 outright on a slash).
    """
    target = 0 if settlement.kind is SettlementKind.FORFEIT else PPM
    return reliability_ppm + (target - reliability_ppm) // RELIABILITY_STEP_DIVISOR


def credit(repositories: MarketStore, settlement: Settlement) -> None:
    """Move the settled node's reliability and add to its completed tasks and earnings."""
    node = repositories.nodes.get(settlement.node_id)
    if node is None:
        return
    paid = settlement.kind is SettlementKind.SETTLE
    repositories.nodes.save(
        fields.evolve(
            node,
            reliability_ppm=reliability_after(node.reliability_ppm, settlement),
            total_tasks_completed=node.total_tasks_completed + (1 if paid else 0),
            total_sats_earned=node.total_sats_earned + settlement.amount_msat // 1000,
        )
    )


def task_outcome(replicas: Sequence[Task]) -> str:
    """``verified`` / ``failed`` / ``expired`` once every replica ended, else ``pending``."""
    if replicas and all(r.state in TERMINAL_STATES for r in replicas):
        if any(r.state is TaskState.SETTLED for r in replicas):
            return "verified"
        return "expired" if any(r.state is TaskState.EXPIRED for r in replicas) else "failed"
    return "pending"


def verified_output(repositories: TaskOutputStore, task_id: str) -> bytes | None:
    """The output a settled replica of ``task_id`` delivered with its proof, or None.

    Only settled replicas count: their output hash won verification, so any of them is the
    task's verified output (they are byte-identical, being canonical and equally hashed).
    """
    for replica in siblings(repositories, task_id):
        if replica.state is TaskState.SETTLED:
            data = repositories.task_outputs.get(replica.task_id)
            if data is not None:
                return data
    return None
