"""The slashing endpoints of the public API v1: maintainer acknowledgements, reversals and
pending cases.

``POST /v1/slashing/acknowledgements`` takes the signed ``maintainer_ack`` envelope that
``owm slashing ack`` writes (SRS-SEC-14) and hands it to the coordinator's
:class:`~owm_adapters.services.slashing.SlashingService`; the envelope itself is the credential
(its signer must be a configured maintainer key: else 403). ``GET /v1/slashing/pending`` lists
the nodes with open evidence and no decision yet, with what each still waits for (SRS-STAKE-04).
``POST /v1/slashing/reversals`` takes a ``slashing_reversal`` envelope (``owm slashing
reverse``) from a maintainer upholding an appeal, with the same credential as an
acknowledgement; two distinct maintainers who did not acknowledge the slashing reverse it
(docs/slashing.md, "Appeals"). ``GET /v1/slashing/reversals/{log_index}`` publishes the
statements behind the reversal of slashing-log entry ``log_index``, readable like the slashing
log itself, so anyone can check that the maintainers the reversal entry names signed it
(``owm slashing-log verify``).
No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response

from owm_adapters.services.api.views import PublishedReversal
from owm_adapters.services.slashing import AckReceipt, Backing, PendingCase, SlashingService
from owm_adapters.services.slashing_reversals import ReversalReceipt
from owm_core.errors import (
    AcknowledgerMayNotReverse,
    InvalidValue,
    NotAMaintainer,
    NotFound,
    SignatureInvalid,
)
from owm_core.identity.envelopes import Envelope, EnvelopeKind, MaintainerAcknowledgement, open_body
from owm_core.stake.slashing import SlashingReason
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.problems import Problem
from owm_server.http.v1.schemas import (
    HEX32,
    INT,
    NODE_ID,
    PUBLIC_KEY,
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

LOG_ENTRY: Schema = {**obj({}), "description": "the slashing-log entry, as published"}
REVERSAL_ENVELOPE: Schema = envelope_schema(
    EnvelopeKind.SLASHING_REVERSAL.value,
    "the maintainer's Ed25519 public key",
    obj(
        {
            "log_index": {**INT, "description": "the slashing-log entry to reverse"},
            "node_id": NODE_ID,
        },
        additional=False,
    ),
    "The envelope `owm slashing reverse` writes (canonical JSON).",
)
REVERSAL_RECEIPT: Schema = obj(
    {
        "log_index": INT,
        "node_id": STR,
        "signer": STR,
        "recorded": {"type": "boolean", "description": "false: this envelope was known already"},
        "maintainers": {
            **array(STR),
            "description": "distinct maintainers whose statements count for this reversal",
        },
        "quorum": INT,
        "reversed": {"type": "boolean"},
        "log_entry": {**LOG_ENTRY, "type": ["object", "null"]},
        "cooldown_lifted": {"type": ["boolean", "null"]},
        "reissued_payments": {"type": ["integer", "null"]},
        "reissued_msat": {"type": ["integer", "null"]},
    }
)

PUBLISHED_REVERSAL: Schema = obj(
    {
        "log_index": {**INT, "description": "the slashing-log entry that was reversed"},
        "node_id": NODE_ID,
        "reversed_by": {**INT, "description": "index of the reversal entry in the log"},
        "maintainers": {**array(PUBLIC_KEY), "description": "the reversal entry's maintainers"},
        "statement_hash": {**HEX32, "description": "the reversal entry's statement_hash"},
        "statements": {
            **array(REVERSAL_ENVELOPE),
            "description": "one signed statement per maintainer, in maintainer order: exactly "
            "the ones the coordinator counted when it appended the reversal entry; the "
            "SHA-256 of the canonical JSON of the sorted list of their SHA-256s (each over the "
            "canonical envelope) is `statement_hash`",
        },
        "log_entry": LOG_ENTRY,
    }
)
LOG_INDEX = Param(
    "log_index", "path", {"type": "integer", "minimum": 0, "maximum": 2**53},
    "Index of the reversed slashing-log entry (the statements' `log_index`).", True,
)  # fmt: skip

BACKING: Schema = obj(
    {"evidence_hash": STR, "reason": STR, "maintainers": array(STR), "count": INT}
)
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


def reversal_receipt_json(r: ReversalReceipt) -> dict[str, Any]:
    """The answer to one submitted reversal statement."""
    done = r.outcome
    return published(
        REVERSAL_RECEIPT,
        r,
        log_index=r.statement.log_index,
        node_id=r.statement.node_id,
        maintainers=list(r.maintainers),
        reversed=done is not None,
        log_entry=None if done is None else done.entry.to_dict(),
        cooldown_lifted=None if done is None else done.cooldown_lifted,
        reissued_payments=None if done is None else done.reissued,
        reissued_msat=None if done is None else done.reissued_msat,
    )


def submit_reversal(call: Call) -> Response:
    """Record a maintainer's signed reversal statement; 201 when new, 200 when known already."""
    slashing = _service(call)
    try:
        envelope = Envelope(**call.body)
        receipt = slashing.reversals.submit(envelope)
    except (NotAMaintainer, AcknowledgerMayNotReverse) as exc:
        raise Problem(403, "forbidden", exc.message, field="body.signer") from None
    except SignatureInvalid:
        raise InvalidValue("body.signature", "does not verify against body.signer") from None
    except InvalidValue as exc:  # fields of the envelope: prefix them with the request body
        raise InvalidValue(f"body.{exc.field}", exc.reason) from None
    status = 201 if receipt.recorded else 200
    return JSONResponse(reversal_receipt_json(receipt), status_code=status)


def published_reversal_json(r: PublishedReversal) -> dict[str, Any]:
    """A reversal entry with the statements behind it, as published."""
    entry = r.entry
    return published(
        PUBLISHED_REVERSAL,
        entry,
        log_index=entry.reverses,
        reversed_by=entry.index,
        statements=[{**e.unsigned(), "signature": e.signature} for e in r.statements],
        log_entry=entry.to_dict(),
    )


def reversal_statements(call: Call) -> Response:
    """The statements behind the reversal of one slashing-log entry; 404 while not reversed."""
    reversal = call.services.views.reversal(call.path["log_index"])
    return JSONResponse(published_reversal_json(reversal))


def pending_cases(call: Call) -> Response:
    """The nodes with open evidence and no decision yet."""
    cases = _service(call).pending(call.query.get("limit", 100))
    return JSONResponse({"cases": [case_json(c) for c in cases]})


def published_reversal_operation(network: Tag) -> Operation:
    """GET the statements behind a reversal: readable like the slashing log (``CLIENT``)."""
    return network(
        "GET", "/slashing/reversals/{log_index}", "slashingReversalStatements",
        "The maintainers' signed statements behind a reversal in the slashing log",
        Access.CLIENT, reversal_statements,
        {
            200: Reply("The reversal entry and the statements it was made on.",
                       PUBLISHED_REVERSAL),
            404: problem("That slashing-log entry is not reversed (`not-found`)."),
        },
        params=(LOG_INDEX,),
        description=(
            "Readable like `GET /v1/network/slashing-log`, so that anyone can check a "
            "reversal entry: the statements hash to its `statement_hash`, each signature "
            "verifies, the signers are its `maintainers` and each names its log index and "
            "node (`owm slashing-log verify` does all of it). Statements of an appeal "
            "still under review are not published."
        ),
        inline=True,
    )


def operations() -> list[Operation]:
    """Submit a maintainer's acknowledgement or reversal; read the statements behind a
    reversal; list the pending cases."""
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
            "POST", "/slashing/reversals", "submitSlashingReversal",
            "Submit a maintainer's signed reversal of a slashing on appeal", Access.PUBLIC,
            submit_reversal,
            {
                200: Reply("Known already; nothing changed.", REVERSAL_RECEIPT),
                201: Reply(
                    "Recorded; `reversed` tells whether it completed the quorum (then "
                    "`log_entry` is the new reversal entry of the slashing log).",
                    REVERSAL_RECEIPT,
                ),
                403: problem(
                    "The signer is not a configured maintainer key, or acknowledged the "
                    "slashing (`forbidden`)."
                ),
                409: problem(
                    "No slashing of that node at that index, already reversed, or superseded "
                    "by a later slashing of the node (`reversal-refused`)."
                ),
                503: problem("This coordinator runs no slashing service."),
            },
            body=REVERSAL_ENVELOPE,
            description=(
                "The body is the canonical-JSON `slashing_reversal` envelope that `owm slashing "
                "reverse` writes; its Ed25519 signature by a key in the coordinator's `[stake] "
                "maintainer_keys` is the credential, as for acknowledgements. Once 2 distinct "
                "maintainers who did not acknowledge the slashing sent one for the same log "
                "index, the coordinator appends a reversal entry to the slashing log, lifts "
                "the node's cooldown and re-issues its forfeited rewards, in one transaction."
            ),
        ),
        published_reversal_operation(network),
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
