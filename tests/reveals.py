"""Test helpers for commit–reveal: a replica's signed commitment and its reveal (SRS-SEC-11)."""

from __future__ import annotations

import hashlib
import os

from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment, TaskProof
from owm_core.identity.keys import Identity
from owm_core.market.commit_reveal import commitment_digest


def salt_of(node_id: str, task_id: str) -> bytes:
    """A fixed 32-byte salt per node and replica (a real node derives it from its key)."""
    return hashlib.sha256(f"salt/{node_id}/{task_id}".encode()).digest()


def commitment_envelope(
    who: Identity, task_id: str, output: bytes, now: int, salt: bytes | None = None
) -> bytes:
    """``who``'s signed commitment to ``output`` for replica ``task_id``."""
    digest = commitment_digest(
        task_id, who.node_id, hashlib.sha256(output).hexdigest(),
        salt if salt is not None else salt_of(who.node_id, task_id),
    )
    body = TaskCommitment(task_id=task_id, commitment=digest)
    return envelopes.to_bytes(
        envelopes.seal(who, EnvelopeKind.TASK_COMMITMENT, body, os.urandom(16), now)
    )


def proof_envelope(who: Identity, task_id: str, output: bytes, now: int) -> bytes:
    """``who``'s signed proof that replica ``task_id`` produced ``output``."""
    body = TaskProof(
        task_id=task_id, output_hash=hashlib.sha256(output).hexdigest(), execution_ms=5
    )
    return envelopes.to_bytes(
        envelopes.seal(who, EnvelopeKind.TASK_PROOF, body, os.urandom(16), now)
    )
