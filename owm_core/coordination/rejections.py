"""Rejections: a node refusing a replica whose input fails validation (SRS-NODE-07).

This module owns :func:`open_rejection` and :func:`reject_task`: the assigned node refuses a
replica with a signed :class:`~owm_core.identity.envelopes.TaskRejection` naming the field;
the replica becomes assignable again at once, that node excluded, without waiting for the
assignment timeout.
"""

from __future__ import annotations

import attrs

from owm_core.coordination.wire import open_envelope
from owm_core.errors import InvalidTransition, NotFound
from owm_core.identity.envelopes import (
    Envelope,
    EnvelopeKind,
    ReplayGuard,
    TaskRejection,
    open_body,
)
from owm_core.market.tasks import Task, TaskState
from owm_core.ports.stores import TaskStore


@attrs.frozen
class Rejection:
    """A node's recorded refusal of a replica (SRS-NODE-07): who, which field, why, when."""

    replica_id: str
    node_id: str
    field: str
    reason: str
    rejected_at: int


@attrs.frozen
class RejectionOutcome:
    """A stored rejection: the replica, assignable again without the node, and the record."""

    task: Task
    rejection: Rejection


def open_rejection(raw: bytes, audience: str) -> tuple[Envelope, TaskRejection]:
    """Verify one task-rejection envelope's signature (for ``audience``, this coordinator's
    public key) and shape (no nonce is taken yet).

    Next, :func:`admit_rejection` with the key registered for its signer's node id.
    """
    envelope = open_envelope(raw, EnvelopeKind.TASK_REJECTION, "rejection_envelope", audience)
    body = open_body(envelope)
    assert isinstance(body, TaskRejection)
    return envelope, body


def admit_rejection(
    envelope: Envelope, registered_key: str | None, guard: ReplayGuard, now: int
) -> None:
    """Take a verified rejection's nonce, only from a registered key (SRS-SEC-03).

    In order: signature (:func:`open_rejection`), then the signer must be a registered node's
    key (SignatureInvalid otherwise), and only then is the nonce offered to ``guard``, so
    strangers' rejections can neither burn nonces nor fill the guard.
    """
    guard.accept_registered(envelope, registered_key, now)


def reject_task(
    repositories: TaskStore, envelope: Envelope, rejection: TaskRejection, now: int
) -> RejectionOutcome:
    """Release a replica its assigned node refused (SRS-NODE-07); InvalidTransition otherwise.

    Only the node the replica is assigned to may reject it. The replica goes back to the
    assignable timed-out state at once (the market has no separate "rejected" state), the
    rejecting node added to ``tried_node_ids`` exactly as a node that timed out, so the next
    dispatch hands it to another node without waiting for the assignment timeout.
    """
    node_id = envelope.signer_node_id
    task = repositories.tasks.get(rejection.task_id)
    if task is None:
        raise NotFound(f"no task {rejection.task_id}")
    if task.state is not TaskState.ASSIGNED or task.node_id != node_id:
        raise InvalidTransition(
            f"task {rejection.task_id} is not assigned to node {node_id}; only the node it is "
            "assigned to may reject it"
        )
    released = attrs.evolve(
        task,
        state=TaskState.TIMED_OUT,
        tried_node_ids=(*task.tried_node_ids, node_id),
        node_id=None,
        price_msat=None,
    )
    repositories.tasks.save(released, expected_state=TaskState.ASSIGNED)
    record = Rejection(task.task_id, node_id, rejection.field, rejection.reason, now)
    return RejectionOutcome(released, record)
