"""Who submits a task: opening a submitter's signed :class:`TaskSubmission` (SRS-SEC-03).

This module owns the check that a task submitted over the control plane carries the signature
of a submitter key over exactly that task (:func:`open_submission`), and the reading of a
submitter's :class:`BalanceRequest` (:func:`open_balance_request`) and :class:`OutputRequest`
(:func:`open_output_request`). Replay protection (the
freshness window and the nonce) is the caller's replay guard's, applied after these checks and
after the signer is known to be a funder, so strangers cannot fill the guard.
"""

from __future__ import annotations

from owm_core.coordination.wire import open_envelope
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.envelopes import (
    BalanceRequest,
    Envelope,
    EnvelopeKind,
    OutputRequest,
    TaskSubmission,
    open_body,
)
from owm_core.market.funding import submission_digest
from owm_core.market.tasks import TaskRequest


def open_submission(
    raw: bytes, request: TaskRequest, input_data: bytes, coordinator_key: str
) -> Envelope:
    """The verified submission envelope of ``request`` submitted to the coordinator whose
    public key is ``coordinator_key``; its signer is the paying submitter.

    Refused with ``SignatureInvalid`` when there is none (funded work only: an anonymous task
    has nobody to pay for it), when the signature is bad, or when it signs another task id,
    other request fields or input, or is for another coordinator (``submitter_envelope`` is
    the request field at fault).
    """
    if not raw:
        raise SignatureInvalid(
            "submitter_envelope is missing: a task needs a submitter's signed task_submission"
        )
    try:
        envelope = open_envelope(
            raw, EnvelopeKind.TASK_SUBMISSION, "submitter_envelope", coordinator_key
        )
    except SignatureInvalid:
        raise SignatureInvalid(
            "submitter_envelope does not verify: signed by another key or for another "
            f"coordinator (sign for this one: {coordinator_key})"
        ) from None
    body = open_body(envelope)
    assert isinstance(body, TaskSubmission)
    if body.task_id != request.task_id:
        raise SignatureInvalid("submitter_envelope signs another task id")
    if body.request_sha256 != submission_digest(request, input_data, coordinator_key):
        raise SignatureInvalid(
            "submitter_envelope signs other task fields, another input or another "
            f"coordinator (sign for this one: {coordinator_key})"
        )
    return envelope


def open_balance_request(raw: bytes, audience: str) -> tuple[Envelope, BalanceRequest]:
    """The verified balance request, signed for ``audience`` (this coordinator's public key),
    and its body (``InvalidValue`` if missing or malformed)."""
    if not raw:
        raise InvalidValue("request_envelope", "is missing")
    envelope = open_envelope(raw, EnvelopeKind.BALANCE_REQUEST, "request_envelope", audience)
    body = open_body(envelope)
    assert isinstance(body, BalanceRequest)
    return envelope, body


def open_output_request(raw: bytes, audience: str) -> tuple[Envelope, OutputRequest]:
    """The verified output request, signed for ``audience`` (this coordinator's public key),
    and its body: ``SignatureInvalid`` when it is missing (an
    unsigned request names nobody who may read) or its signature does not verify,
    ``InvalidValue`` when it is malformed."""
    if not raw:
        raise SignatureInvalid(
            "request_envelope is missing: an output is read with the submitter's signed "
            "output_request"
        )
    envelope = open_envelope(raw, EnvelopeKind.OUTPUT_REQUEST, "request_envelope", audience)
    body = open_body(envelope)
    assert isinstance(body, OutputRequest)
    return envelope, body
