"""The governance endpoints of v1 (SRS-GOV-01..05): proposals and their comments.

``GET /v1/governance/proposals`` lists proposals; an authenticated caller submits one
(``POST``, SRS-GOV-02/03) and comments during its comment period (``…/{id}/comment``,
SRS-GOV-04; afterwards a 409 ``policy-violation``). No rule lives here: parse, call the
service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from owm_core.governance.proposals import Proposal, ProposalStatus, ProposalType
from owm_server.http.call import Call
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    BOOL,
    INT,
    MAX_SAT,
    NOT_FOUND,
    STR,
    array,
    nullable,
    obj,
    status_filter,
)

PROPOSAL: Schema = obj(
    {
        "proposal_id": STR,
        "author": STR,
        "title": STR,
        "description": STR,
        "type": STR,
        "implementation_plan": STR,
        "requested_sat": INT,
        "submitted_at": INT,
        "comment_deadline_at": INT,
        "status": STR,
        "accepts_comments": BOOL,
        "comments": array(obj({"author": STR, "text": STR, "at": INT})),
        "acknowledgements": INT,
        "acknowledged_by": array(STR),
        "txid": nullable(STR),
        "payout_address": STR,
        "explorer_url": nullable(STR),
    }
)
PROPOSAL_BODY: Schema = obj(
    {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "description": {"type": "string", "minLength": 1, "maxLength": 50_000},
        "type": {"type": "string", "enum": [t.value for t in ProposalType]},
        "implementation_plan": {"type": "string", "minLength": 1, "maxLength": 50_000},
        "requested_sat": {"type": "integer", "minimum": 0, "maximum": MAX_SAT},
        "payout_address": {"type": "string", "maxLength": 90, "pattern": "^[A-Za-z0-9]*$"},
    },
    ["title", "description", "type", "implementation_plan"],
    additional=False,
)
COMMENT_BODY: Schema = obj(
    {"text": {"type": "string", "minLength": 1, "maxLength": 20_000}}, additional=False
)
PROPOSAL_ID = Param(
    "id",
    "path",
    {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
    "The proposal id.",
    True,
)


def proposal_json(p: Proposal, now: int, explorer_tx_url: str = "") -> dict[str, Any]:
    """A proposal as the API publishes it; ``accepts_comments`` depends on ``now``; an
    executed treasury proposal links its transaction (SRS-GOV-06)."""
    return {
        "proposal_id": p.proposal_id,
        "author": p.author,
        "title": p.title,
        "description": p.description,
        "type": p.type.value,
        "implementation_plan": p.implementation_plan,
        "requested_sat": p.requested_sat,
        "submitted_at": p.submitted_at,
        "comment_deadline_at": p.comment_deadline_at,
        "status": p.status.value,
        "accepts_comments": p.accepts_comments(now),
        "comments": [{"author": c.author, "text": c.text, "at": c.at} for c in p.comments],
        "acknowledgements": len(p.acknowledgements),
        "acknowledged_by": sorted(p.acknowledgements),
        "txid": p.txid,
        "payout_address": p.payout_address,
        "explorer_url": explorer_link(explorer_tx_url, p.txid),
    }


def explorer_link(template: str, txid: str | None) -> str | None:
    """The block explorer's page of ``txid`` (``{txid}`` in ``template``), if both exist."""
    if not template or txid is None:
        return None
    return template.replace("{txid}", txid)


def rendered(call: Call, p: Proposal) -> dict[str, Any]:
    """``p`` as published now, linked to the configured block explorer."""
    statements = call.services.statements
    template = statements.config.explorer_tx_url if statements is not None else ""
    return proposal_json(p, call.services.clock.now(), template)


def list_proposals(call: Call) -> Response:
    status = call.query.get("status")
    governance = call.services.governance
    proposals = governance.proposals(None if status is None else ProposalStatus(status))
    return json({"proposals": [rendered(call, p) for p in proposals]})


def submit_proposal(call: Call) -> Response:
    body = call.body
    proposal = call.services.governance.submit_proposal(
        call.who(),
        title=body["title"],
        description=body["description"],
        proposal_type=ProposalType(body["type"]),
        implementation_plan=body["implementation_plan"],
        requested_sat=body.get("requested_sat", 0),
        payout_address=body.get("payout_address", ""),
    )
    return json(rendered(call, proposal), status=201)


def comment_proposal(call: Call) -> Response:
    proposal = call.services.governance.comment(call.who(), call.path["id"], call.body["text"])
    return json(rendered(call, proposal), status=201)


def operations() -> list[Operation]:
    """List, submit and comment on proposals."""
    governance = Tag("governance")
    return [
        governance(
            "GET", "/governance/proposals", "listProposals", "List governance proposals",
            Access.CLIENT, list_proposals,
            {200: Reply("Proposals, newest first.", obj({"proposals": array(PROPOSAL)}))},
            params=(status_filter([s.value for s in ProposalStatus], "Only this status."),),
            inline=True,
        ),
        governance(
            "POST", "/governance/proposals", "submitProposal",
            "Submit a new proposal (authenticated)", Access.CLIENT, submit_proposal,
            {201: Reply("The proposal, open for comments.", PROPOSAL)}, body=PROPOSAL_BODY,
        ),
        governance(
            "POST", "/governance/proposals/{id}/comment", "commentProposal",
            "Comment on a proposal", Access.CLIENT, comment_proposal,
            {
                201: Reply("The proposal with the comment.", PROPOSAL),
                404: NOT_FOUND,
                409: problem("The comment period is over (`policy-violation`)."),
            },
            params=(PROPOSAL_ID,), body=COMMENT_BODY,
        ),
    ]
