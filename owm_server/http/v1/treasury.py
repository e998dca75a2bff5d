"""Signed governance statements, the governance log and the treasury's PSBTs (SRS-GOV-01..06,
SRS-LN-09, SRS-SEC-12).

``POST /v1/governance/statements`` takes a ``governance_statement`` envelope (``owm gov …``
writes them): its Ed25519 signature by a registered node, a maintainer or a multisig holder is
the credential, so the operation is public, and each key is rate limited. ``GET
/v1/governance/proposals/{id}`` shows one proposal with its treasury spend; ``GET
/v1/governance/log`` publishes the hash-chained, coordinator-signed log that ``owm gov log
verify`` checks. ``GET /v1/treasury`` describes the wallet; ``GET /v1/treasury/psbts/{id}``
exports a proposal's PSBT; ``POST /v1/treasury/psbts/{id}/signatures`` imports a holder's
signed copy (only signatures that verify against a holder key are kept). No rule lives here.
"""

from __future__ import annotations

from typing import Any

import attrs
from starlette.responses import Response

from owm_adapters.services.governance import GovernanceService, Receipt
from owm_core.errors import InvalidValue, NotFound
from owm_core.governance.treasury import TreasurySpend
from owm_core.identity.envelopes import Envelope, EnvelopeKind
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.v1.governance import PROPOSAL, PROPOSAL_ID, rendered
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    INT,
    NOT_FOUND,
    STR,
    array,
    envelope_schema,
    limit,
    nullable,
    obj,
)

STATEMENT: Schema = envelope_schema(
    EnvelopeKind.GOVERNANCE_STATEMENT.value,
    "the signer's Ed25519 public key",
    obj(
        {
            "action": {
                "type": "string",
                "enum": ["propose", "comment", "extend", "close", "ack", "psbt_create", "execute"],
            },
            "proposal_id": {"type": "string", "maxLength": 128},
            "args": {"type": "object"},
            "coordinator": {
                "type": "string", "pattern": "^[0-9a-f]{64}$",
                "description": "the public key of the coordinator the statement is addressed "
                "to (`GET /v1/network/coordinator`); another coordinator's is refused",
            },
        },
        additional=False,
    ),
    "The envelope `owm gov …` writes (canonical JSON).",
)
SPEND: Schema = obj(
    {
        "proposal_id": STR,
        "psbt": STR,
        "signers": array(STR),
        "txid": nullable(STR),
        "created_at": INT,
    }
)
LOG_ENTRY: Schema = {**obj({}), "description": "a governance-log entry, as published"}
RECEIPT: Schema = obj(
    {"proposal": PROPOSAL, "log_entry": LOG_ENTRY, "spend": {**SPEND, "type": ["object", "null"]}}
)
SIGNED_COPY: Schema = obj(
    {"psbt": {"type": "string", "minLength": 1, "maxLength": 1_400_000}}, additional=False
)
SPEND_ID = attrs.evolve(PROPOSAL_ID, description="The treasury proposal's id.")
START = Param(
    "start", "query", {"type": "integer", "minimum": 0, "default": 0}, "First entry index."
)


def _service(call: Call) -> GovernanceService:
    return running(
        call.services.statements, "governance-unavailable", "this coordinator runs no governance"
    )


def spend_json(spend: TreasurySpend | None) -> dict[str, Any] | None:
    """A treasury spend as published (the PSBT is public: it holds no secret)."""
    if spend is None:
        return None
    return {
        "proposal_id": spend.proposal_id,
        "psbt": spend.psbt,
        "signers": sorted(spend.signers),
        "txid": spend.txid,
        "created_at": spend.created_at,
    }


def _receipt(call: Call, receipt: Receipt) -> dict[str, Any]:
    return {
        "proposal": rendered(call, receipt.proposal),
        "log_entry": receipt.entry.to_dict(),
        "spend": spend_json(receipt.spend),
    }


def submit_statement(call: Call) -> Response:
    """Apply one signed statement; 201 with the proposal and its new log entry."""
    try:
        envelope = Envelope(**call.body)
        receipt = _service(call).submit(envelope)
    except InvalidValue as exc:
        field = exc.field if exc.field.startswith("body.") else f"body.{exc.field}"
        raise InvalidValue(field, exc.reason) from None
    return json(_receipt(call, receipt), status=201)


def show_proposal(call: Call) -> Response:
    """One proposal and its treasury spend."""
    service = _service(call)
    proposal = service.proposal(call.path["id"])
    spend = spend_json(service.spend(proposal.proposal_id))
    return json({**rendered(call, proposal), "spend": spend})


def governance_log(call: Call) -> Response:
    """The governance log from ``start``, with the key that signs it."""
    service = _service(call)
    entries = service.log(call.query.get("start", 0), call.query.get("limit", 100))
    return json(
        {"coordinator_key": service.coordinator_key, "entries": [e.to_dict() for e in entries]}
    )


def treasury_wallet(call: Call) -> Response:
    """The treasury wallet: descriptor, address, coins and balance."""
    service = _service(call)
    desk = running(service.treasury, "treasury-unavailable", "this coordinator has no treasury")
    coins = desk.coins()
    return json(
        {
            "descriptor": desk.wallet.descriptor,
            "address": desk.wallet.address,
            "quorum": desk.wallet.quorum,
            "balance_sat": sum(c.amount_sat for c in coins),
            "coins": [{"txid": c.txid, "vout": c.vout, "amount_sat": c.amount_sat} for c in coins],
        }
    )


def export_psbt(call: Call) -> Response:
    """The proposal's current PSBT, to sign on a hardware wallet."""
    spend = _service(call).spend(call.path["id"])
    if spend is None:
        raise NotFound(f"no PSBT has been prepared for proposal {call.path['id']}")
    return json(spend_json(spend))


def import_signatures(call: Call) -> Response:
    """Merge a holder's signed copy into the proposal's PSBT."""
    try:
        receipt = _service(call).import_signed(call.path["id"], call.body["psbt"])
    except InvalidValue as exc:
        raise InvalidValue(f"body.{exc.field}", exc.reason) from None
    return json(_receipt(call, receipt), status=201)


def operations() -> list[Operation]:
    """Statements, the governance log and the treasury's PSBTs."""
    return _governance_operations() + _treasury_operations()


def _governance_operations() -> list[Operation]:
    governance = Tag("governance")
    return [
        governance(
            "POST",
            "/governance/statements",
            "submitGovernanceStatement",
            "Submit a signed governance statement",
            Access.PUBLIC,
            submit_statement,
            {
                201: Reply("Applied and logged.", RECEIPT),
                401: problem(
                    "The signature does not verify, or the statement is stale or replayed."
                ),
                403: problem("The signer lacks the role the action needs (`role-required`)."),
                404: NOT_FOUND,
                409: problem("The proposal's state or a rule refuses it (`policy-violation`)."),
                429: problem("This key's statements per hour are used up."),
                503: problem("The treasury's Bitcoin node cannot answer now."),
            },
            body=STATEMENT,
            description=(
                "The body is the canonical-JSON `governance_statement` envelope `owm gov` "
                "writes. `body.action` is propose, comment (registered nodes, maintainers, "
                "holders), extend or close (maintainers), ack (holders), psbt_create or, for "
                "treasury proposals, execute (maintainers or holders; execute finalises and "
                "broadcasts the treasury transaction)."
            ),
        ),
        governance(
            "GET",
            "/governance/proposals/{id}",
            "showProposal",
            "Show one proposal",
            Access.CLIENT,
            show_proposal,
            {
                200: Reply(
                    "The proposal and its treasury spend.",
                    {
                        **PROPOSAL,
                        "properties": {
                            **PROPOSAL["properties"],
                            "spend": {**SPEND, "type": ["object", "null"]},
                        },
                    },
                ),
                404: NOT_FOUND,
            },
            params=(PROPOSAL_ID,),
        ),
        governance(
            "GET",
            "/governance/log",
            "governanceLog",
            "The signed governance log",
            Access.PUBLIC,
            governance_log,
            {
                200: Reply(
                    "Entries in order, and the coordinator key that signs them.",
                    obj({"coordinator_key": STR, "entries": array(LOG_ENTRY)}),
                )
            },
            params=(START, limit("entries")),
        ),
    ]


def _treasury_operations() -> list[Operation]:
    treasury = Tag("treasury")
    return [
        treasury(
            "GET",
            "/treasury",
            "treasuryWallet",
            "The treasury multisig wallet",
            Access.CLIENT,
            treasury_wallet,
            {
                200: Reply(
                    "Descriptor, address and coins.",
                    obj(
                        {
                            "descriptor": STR,
                            "address": STR,
                            "quorum": INT,
                            "balance_sat": INT,
                            "coins": array(obj({"txid": STR, "vout": INT, "amount_sat": INT})),
                        }
                    ),
                ),
                503: problem("No treasury, or its Bitcoin node cannot answer."),
            },
        ),
        treasury(
            "GET",
            "/treasury/psbts/{id}",
            "exportPsbt",
            "Export a proposal's PSBT",
            Access.CLIENT,
            export_psbt,
            {200: Reply("The PSBT (base64).", SPEND), 404: NOT_FOUND},
            params=(SPEND_ID,),
        ),
        treasury(
            "POST",
            "/treasury/psbts/{id}/signatures",
            "importSignedPsbt",
            "Import a holder's signed PSBT",
            Access.PUBLIC,
            import_signatures,
            {
                201: Reply("Merged and logged; `spend.signers` lists who signed.", RECEIPT),
                404: NOT_FOUND,
                409: problem("Broadcast already, or no treasury (`policy-violation`)."),
            },
            params=(SPEND_ID,),
            body=SIGNED_COPY,
            description=(
                "A copy of the PSBT of GET /treasury/psbts/{id}, signed by a holder's "
                "wallet; its signatures are the credential: each must verify against a "
                "holder key over the same unsigned transaction."
            ),
        ),
    ]
