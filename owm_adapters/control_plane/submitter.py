"""A task submitter's side of the control plane: signed ``SubmitTask``, ``FundBalance`` and
``GetTaskOutput``.

Funded work only: the coordinator takes a task only with its submitter's signature over that
very task (a ``task_submission`` envelope over
:func:`~owm_core.market.funding.submission_digest`), and charges its escrow to the signer's
prepaid balance, or to the network budget for an operator key it lists. This module builds
those requests from a submitter :class:`~owm_core.identity.keys.Identity`; the nonce is drawn
here and ``issued_at`` is the caller's clock. Once verified, the task's output is read back
with :func:`signed_output_request` and opened with :func:`open_task_output`: it comes sealed
by the coordinator's key to the submitter's (SRS-SEC-02).
"""

from __future__ import annotations

import os
import time

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_core.identity.envelopes import (
    NONCE_BYTES,
    BalanceRequest,
    OutputRequest,
    TaskSubmission,
    TypedBody,
    seal,
    to_bytes,
)
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import open_sealed, result_context
from owm_core.market.funding import submission_digest
from owm_core.market.tasks import TaskRequest


def _signed(
    submitter: Identity, body: TypedBody, issued_at: int | None, coordinator_key: str
) -> bytes:
    """``body`` sealed by ``submitter`` for the coordinator ``coordinator_key``, as wire bytes:
    a fresh nonce, issued at ``issued_at`` or now."""
    envelope = seal(
        submitter, body.KIND, body, os.urandom(NONCE_BYTES),
        int(time.time()) if issued_at is None else issued_at, audience=coordinator_key,
    )
    return to_bytes(envelope)


def signed_submit_request(
    submitter: Identity, request: TaskRequest, input_data: bytes = b"",
    issued_at: int | None = None, *, coordinator_key: str,
) -> pb.SubmitTaskRequest:
    """``SubmitTask``'s request for ``request`` and its input, signed by ``submitter`` for the
    coordinator whose public key is ``coordinator_key`` (``[coordinator] public_key``)."""
    body = TaskSubmission(
        request.task_id, submission_digest(request, input_data, coordinator_key)
    )
    return pb.SubmitTaskRequest(
        task_id=request.task_id,
        task_type=request.task_type,
        input_schema_id=request.input_schema_id,
        input_schema_version=request.input_schema_version,
        min_tier=request.min_tier.value,
        min_vram_mb=request.min_vram_mb,
        min_ram_mb=request.min_ram_mb,
        gpu_required=request.gpu_required,
        max_price_msat=request.max_price_msat,
        input=input_data,
        submitter_envelope=_signed(submitter, body, issued_at, coordinator_key),
    )


def signed_balance_request(
    submitter: Identity, amount_msat: int = 0, issued_at: int | None = None, *,
    coordinator_key: str,
) -> pb.FundBalanceRequest:
    """``FundBalance``'s request: read the balance, and with ``amount_msat > 0`` ask for a
    top-up invoice of that amount; signed for the coordinator whose public key is
    ``coordinator_key``."""
    body = BalanceRequest(amount_msat)
    return pb.FundBalanceRequest(
        request_envelope=_signed(submitter, body, issued_at, coordinator_key)
    )


def signed_output_request(
    submitter: Identity, task_id: str, issued_at: int | None = None, *, coordinator_key: str
) -> pb.GetTaskOutputRequest:
    """``GetTaskOutput``'s request for the task ``task_id`` that ``submitter`` paid for, signed
    for the coordinator whose public key is ``coordinator_key``."""
    body = OutputRequest(task_id)
    return pb.GetTaskOutputRequest(
        request_envelope=_signed(submitter, body, issued_at, coordinator_key)
    )


def open_task_output(
    submitter: Identity, coordinator_public_key: str, reply: pb.TaskOutput
) -> bytes:
    """The plaintext of a ``GetTaskOutput`` reply: checked to come from the coordinator's key
    (``[coordinator] public_key``) for this task; ``InvalidValue`` naming ``sealed_output`` when
    it does not open."""
    return open_sealed(
        reply.sealed_output, recipient=submitter, sender_public_key=coordinator_public_key,
        context=result_context(reply.task_id), field="sealed_output",
    )
