"""Test helpers for commit–reveal: a replica's signed commitment and its reveal (SRS-SEC-11)."""

from __future__ import annotations

import hashlib
import os

from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment, TaskProof
from owm_core.identity.keys import Identity
from owm_core.market.commit_reveal import commitment_digest

#: The coordinator the envelopes are signed for by default: tests/server/harness.py's
#: ``COORDINATOR_KEY`` and tests/services/market_world.py's ``COORDINATOR``.
COORDINATOR_KEY_HEX = Identity.from_seed(b"\x0c" * 32).public_key_hex


def salt_of(node_id: str, task_id: str) -> bytes:
    """A fixed 32-byte salt per node and replica (a real node derives it from its key)."""
    return hashlib.sha256(f"salt/{node_id}/{task_id}".encode()).digest()


def commitment_envelope(
    who: Identity, task_id: str, output: bytes, now: int, salt: bytes | None = None,
    *, audience: str = COORDINATOR_KEY_HEX,
) -> bytes:
    """``who``'s signed commitment to ``output`` for replica ``task_id``, for the coordinator
    whose key is ``audience``."""
    digest = commitment_digest(
        task_id, who.node_id, hashlib.sha256(output).hexdigest(),
        salt if salt is not None else salt_of(who.node_id, task_id),
    )
    body = TaskCommitment(task_id=task_id, commitment=digest)
    return envelopes.to_bytes(
        envelopes.seal(
            who, EnvelopeKind.TASK_COMMITMENT, body, os.urandom(16), now, audience=audience
        )
    )


def proof_envelope(
    who: Identity, task_id: str, output: bytes, now: int, *, audience: str = COORDINATOR_KEY_HEX
) -> bytes:
    """``who``'s signed proof that replica ``task_id`` produced ``output``, for the coordinator
    whose key is ``audience``."""
    body = TaskProof(
        task_id=task_id, output_hash=hashlib.sha256(output).hexdigest(), execution_ms=5
    )
    return envelopes.to_bytes(
        envelopes.seal(
            who, EnvelopeKind.TASK_PROOF, body, os.urandom(16), now, audience=audience
        )
    )
