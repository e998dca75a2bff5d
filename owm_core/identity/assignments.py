"""Task assignments signed by the coordinator (SRS-SEC-01, SRS-SEC-03).

An assignment makes a node spend compute on the input it carries, so a node runs only the
assignments its coordinator signed — not whatever arrives on a connection. The coordinator's
Ed25519 key (the one that signs the slashing log, ``[coordinator] public_key`` in the node's
config) signs::

    ASSIGNMENT_DOMAIN ‖ canonical JSON {task fields, SHA-256 of the input, recipient key}

The task fields include the pinned ``model_version`` whenever the task has one (only then, so
an assignment without a pin reads as before): a node cannot be steered to another sub-model
version than the one the coordinator chose for every replica of the task (SRS-SEC-11).

Naming the recipient's public key keeps an assignment for one node from being replayed to
another; the task id and ``assigned_at_ms`` make each one distinct.
"""

from __future__ import annotations

from owm_core.identity import coordinator_signed
from owm_core.identity.envelopes import sha256_hex
from owm_core.identity.keys import Identity
from owm_core.nodes.control_plane import AssignedTask

ASSIGNMENT_DOMAIN = b"owm/task-assignment/v1\x00"


def assignment_statement(task: AssignedTask, recipient_public_key_hex: str) -> bytes:
    """The bytes the coordinator signs for ``task`` sent to ``recipient_public_key_hex``."""
    fields = coordinator_signed.signed_fields(task, "input", "model_version")
    fields["input_sha256"] = sha256_hex(task.input)
    if task.model_version:  # absent when empty: statements signed before pinning still verify
        fields["model_version"] = task.model_version
    return coordinator_signed.statement(
        ASSIGNMENT_DOMAIN, fields, recipient_public_key_hex, "assignment"
    )


def sign_assignment(
    coordinator: Identity, task: AssignedTask, recipient_public_key_hex: str
) -> bytes:
    """The coordinator's 64-byte signature over ``task`` for its recipient."""
    return coordinator.sign(assignment_statement(task, recipient_public_key_hex))


def verify_assignment(
    coordinator_public_key_hex: str, task: AssignedTask, recipient_public_key_hex: str
) -> None:
    """Raise :class:`SignatureInvalid` unless the coordinator signed ``task`` for this node."""
    coordinator_signed.check(
        coordinator_public_key_hex,
        assignment_statement(task, recipient_public_key_hex),
        task.signature,
        "assignment",
    )
