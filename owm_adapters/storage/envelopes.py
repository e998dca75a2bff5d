"""Decoding the envelopes the stores keep: the manifest or proof a stored envelope carries.

Both the SQL adapter and its in-memory twin index envelopes by what they carry (a manifest's
tier and resources, a proof's task id); these are the one place that decodes them.
"""

from __future__ import annotations

from owm_core.errors import InvalidValue
from owm_core.identity.envelopes import CapabilityManifest, Envelope, EnvelopeKind, TaskProof


def manifest_of(envelope: Envelope) -> CapabilityManifest:
    """The decoded manifest of a capability-manifest envelope; InvalidValue for other kinds."""
    if envelope.kind is not EnvelopeKind.CAPABILITY_MANIFEST:
        raise InvalidValue("envelope", "is not a capability manifest")
    return CapabilityManifest.from_body(envelope.body)


def proof_of(envelope: Envelope) -> TaskProof:
    """The decoded proof of a task-proof envelope; InvalidValue for other kinds."""
    if envelope.kind is not EnvelopeKind.TASK_PROOF:
        raise InvalidValue("envelope", "is not a task proof")
    return TaskProof.from_body(envelope.body)
