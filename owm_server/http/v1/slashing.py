"""The slashing endpoints of the public API v1: maintainer acknowledgements and pending cases.

``POST /v1/slashing/acknowledgements`` takes the signed ``maintainer_ack`` envelope that
``owm slashing ack`` writes (SRS-SEC-14) and hands it to the coordinator's
:class:`~owm_adapters.services.slashing.SlashingService`; the envelope itself is the credential
(its signer must be a configured maintainer key: else 403). ``GET /v1/slashing/pending`` lists
the nodes with open evidence and no decision yet, with what each still waits for (SRS-STAKE-04).
No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from owm_adapters.services.slashing import AckReceipt, Backing, PendingCase, SlashingService
from owm_core.errors import InvalidValue, NotAMaintainer, NotFound, SignatureInvalid
from owm_core.identity.envelopes import Envelope, EnvelopeKind, MaintainerAcknowledgement, open_body
from owm_core.stake.slashing import SlashingReason
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Reply, Schema, Tag, problem
from owm_server.http.problems import Problem
from owm_server.http.v1.schemas import (
    HEX32,
    INT,
    NODE_ID,
    STR,
    array,
    envelope_schema,
    limit,
    obj,
    published,
)

_REASONS = [r.value for r in SlashingReason]


ACK_ENVELOPE: Schema = envelope_schema(
    EnvelopeKind.MAINTAINER_ACK.value,
    "the maintainer's Ed25519 public key",
    obj(
        {
            "node_id": NODE_ID,
            "evidence_hash": HEX32,
            "reason": {"type": "string", "enum": _REASONS},
            "verdict": {"type": "string", "enum": ["slash", "dismiss"]},
        },
        additional=False,
    ),
    "The envelope `owm slashing ack` writes (canonical JSON).",
)

BACKING: Schema = obj(
    {"evidence_hash": STR, "reason": STR, "maintainers": array(STR), "count": INT}
)
LOG_ENTRY: Schema = {**obj({}), "description": "the slashing-log entry, as published"}
RECEIPT: Schema = obj(
    {
        "node_id": STR,
        "evidence_hash": STR,
        "reason": STR,
        "verdict": STR,
        "signer": STR,
        "recorded": {"type": "boolean", "description": "false: this envelope was known already"},
        "acknowledgements": {
            "type": "integer",
            "description": "distinct maintainers backing this evidence and reason with `slash`",
        },
        "quorum": INT,
        "slashed": {"type": "boolean"},
        "log_entry": {**LOG_ENTRY, "type": ["object", "null"]},
    }
)
SIGNAL: Schema = obj({"reporter": STR, "reason": STR, "evidence_hash": STR, "at": INT})
ACKNOWLEDGEMENT: Schema = obj(
    {"signer": STR, "evidence_hash": STR, "reason": STR, "verdict": STR, "issued_at": INT}
)
CASE: Schema = obj(
    {
        "node_id": STR,
        "tier": STR,
        "channel_id": STR,
        "waiting_for": {"type": "string", "enum": ["signals", "acknowledgements"]},
        "needed": {
            "type": "integer",
            "description": "distinct reporters (tier 1) or maintainers (tier 2/3) needed",
        },
        "signals": array(SIGNAL),
        "acknowledgements": array(ACKNOWLEDGEMENT),
        "backing": array(BACKING),
    }
)


def _service(call: Call) -> SlashingService:
    return running(
        call.services.slashing, "slashing-unavailable", "this coordinator runs no slashing service"
    )


def _backing_json(b: Backing) -> dict[str, Any]:
    return published(BACKING, b, count=len(b.maintainers))


def receipt_json(r: AckReceipt) -> dict[str, Any]:
    """The answer to one submitted acknowledgement."""
    ack = r.acknowledgement
    return published(
        RECEIPT,
        r,
        node_id=ack.node_id,
        evidence_hash=ack.evidence_hash,
        reason=ack.reason,
        verdict=ack.verdict.value,
        acknowledgements=len(r.backing.maintainers),
        log_entry=None if r.outcome is None else r.outcome.entry.to_dict(),
    )


def case_json(case: PendingCase) -> dict[str, Any]:
    """One pending slashing case."""
    acks = []
    for envelope in case.acknowledgements:
        body = open_body(envelope)
        assert isinstance(body, MaintainerAcknowledgement)
        acks.append(
            published(
                ACKNOWLEDGEMENT, body, signer=envelope.signer, issued_at=envelope.issued_at
            )
        )
    return published(
        CASE,
        case,
        signals=[published(SIGNAL, s) for s in case.signals],
        acknowledgements=acks,
        backing=[_backing_json(b) for b in case.backing],
    )


def submit_acknowledgement(call: Call) -> Response:
    """Record a maintainer's signed acknowledgement; 201 when new, 200 when known already."""
    slashing = _service(call)
    try:
        envelope = Envelope(**call.body)
        receipt = slashing.submit_acknowledgement(envelope)
    except NotAMaintainer as exc:
        raise Problem(403, "forbidden", exc.message, field="body.signer") from None
    except SignatureInvalid:
        raise InvalidValue("body.signature", "does not verify against body.signer") from None
    except InvalidValue as exc:  # fields of the envelope: prefix them with the request body
        raise InvalidValue(f"body.{exc.field}", exc.reason) from None
    except NotFound as exc:
        raise Problem(404, "not-found", exc.message, field="body.body.node_id") from None
    return JSONResponse(receipt_json(receipt), status_code=201 if receipt.recorded else 200)


def pending_cases(call: Call) -> Response:
    """The nodes with open evidence and no decision yet."""
    cases = _service(call).pending(call.query.get("limit", 100))
    return JSONResponse({"cases": [case_json(c) for c in cases]})


def operations() -> list[Operation]:
    """Submit a maintainer's acknowledgement; list the pending cases."""
    network = Tag("network")
    return [
        network(
            "POST", "/slashing/acknowledgements", "submitSlashingAcknowledgement",
            "Submit a maintainer's signed slashing acknowledgement (SRS-SEC-14)", Access.PUBLIC,
            submit_acknowledgement,
            {
                200: Reply("Known already; nothing changed.", RECEIPT),
                201: Reply(
                    "Recorded; `slashed` tells whether it completed the quorum (then "
                    "`log_entry` is the new slashing-log entry).",
                    RECEIPT,
                ),
                403: problem("The signer is not a configured maintainer key (`forbidden`)."),
                404: problem("No staked node with that id (`not-found`)."),
                409: problem("The node is tier 1: decided by signals (`policy-violation`)."),
                503: problem("No slashing service, or the Lightning node is unavailable."),
            },
            body=ACK_ENVELOPE,
            description=(
                "The body is the canonical-JSON `maintainer_ack` envelope that `owm slashing ack` "
                "writes; its Ed25519 signature by a key in the coordinator's `[stake] "
                "maintainer_keys` is the credential. A tier-2/3 node is slashed once 2 distinct "
                "maintainers acknowledged `slash` for the same evidence hash and reason."
            ),
        ),
        network(
            "GET", "/slashing/pending", "pendingSlashingCases",
            "Slashing cases waiting for signals or maintainer acknowledgements (SRS-STAKE-04)",
            Access.CLIENT, pending_cases,
            {
                200: Reply("Oldest evidence first.", obj({"cases": array(CASE)})),
                503: problem("This coordinator runs no slashing service."),
            },
            params=(limit("cases"),),
        ),
    ]
