"""Opening signed envelopes as they arrive on the wire (SRS-SEC-03, SRS-PERF-04).

This module owns the one way the coordinator's use cases turn received bytes into a verified
:class:`~owm_core.identity.envelopes.Envelope`: :func:`open_envelope` parses, checks the kind
and verifies the signature, naming the request field on error; :func:`verify_wire` verifies a
canonical envelope from its received bytes without re-encoding it (the heartbeat path checks
10,000 nodes a minute, SRS-PERF-04), with the same verdict as the full
:func:`~owm_core.identity.envelopes.verify`.
"""

from __future__ import annotations

from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.envelopes import Envelope, EnvelopeKind, from_bytes, signed_prefix, verify
from owm_core.identity.keys import verify_signature


def verify_wire(raw: bytes, envelope: Envelope, audience: str) -> None:
    """Verify ``envelope``, parsed from ``raw``, as signed for the coordinator whose public key
    is ``audience`` (strictly: SRS-SEC-03), without re-encoding it when ``raw`` is canonical.

    Why: re-encoding costs as much as a third of an Ed25519 verification, and the coordinator
    checks every heartbeat (SRS-PERF-04). With keys sorted, a canonical envelope ends in
    ``,"signature":"<sig>","signer":"<key>"}``; cutting the signature member out leaves exactly
    the canonical unsigned fields that :func:`owm_core.identity.envelopes.verify` signs over. If
    ``raw``
    has another shape, or that check fails, the full :func:`~owm_core.identity.envelopes.verify`
    decides,
    so the answer is always the same as ``verify(envelope, audience=audience)``'s.
    """
    tail = b'","signer":"' + envelope.signer.encode("ascii") + b'"}'
    suffix = b',"signature":"' + envelope.signature.encode("ascii") + tail
    if raw.endswith(suffix):
        message = (
            signed_prefix(envelope.kind, audience)
            + raw[: -len(suffix)]
            + b',"signer":"'
            + envelope.signer.encode("ascii")
            + b'"}'
        )
        try:
            verify_signature(envelope.signer, message, bytes.fromhex(envelope.signature))
        except SignatureInvalid:
            pass
        else:
            return
    verify(envelope, audience=audience)


def open_envelope(raw: bytes, kind: EnvelopeKind, field: str, audience: str) -> Envelope:
    """Parse and verify a signed envelope of ``kind`` addressed to the coordinator whose public
    key is ``audience`` (InvalidValue naming ``field``, or SignatureInvalid)."""
    if not isinstance(raw, bytes) or not raw:
        raise InvalidValue(field, "is missing")
    envelope = from_bytes(raw)
    if envelope.kind is not kind:
        raise InvalidValue(field, f"must be a {kind.value} envelope, got {envelope.kind.value}")
    verify_wire(raw, envelope, audience)
    return envelope
