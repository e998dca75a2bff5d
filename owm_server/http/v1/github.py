"""The GitHub endpoints of v1: repository analyses and bounties on issues.

* ``POST /v1/github/analyze`` queues a repository or one of its pull requests, which the
  GitHub App analyses at once (languages, files and lines changed, complexity, tests, authors,
  a score with its reasons); ``GET
  /v1/github/analysis/{id}`` reads it back. Without the App it stays ``queued``.
* ``POST /v1/github/webhook`` is the GitHub App's webhook: the signature
  (``X-Hub-Signature-256``) is checked over the raw body before it is parsed, a replayed
  ``X-GitHub-Delivery`` is refused, and the event is stored before the 202 (SRS-SEC-08).
* ``GET /v1/github/bounties`` lists bounties (open ones by default);
  ``POST /v1/github/bounties`` opens one in the caller's name.

No rule lives here: parse, call the service, render.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from owm_core.errors import InvalidValue
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_server.http.call import Call, running
from owm_server.http.contract import Access, Operation, Param, Reply, Schema, Tag, problem
from owm_server.http.problems import Problem
from owm_server.http.v1.render import json
from owm_server.http.v1.schemas import (
    INT,
    MAX_SAT,
    NOT_FOUND,
    OBJECT_ID,
    REPOSITORY,
    STR,
    array,
    nullable,
    obj,
    published,
    status_filter,
)

BOUNTY: Schema = obj(
    {
        "bounty_id": STR,
        "repository": STR,
        "issue_number": INT,
        "title": STR,
        "amount_sat": INT,
        "created_by": STR,
        "created_at": INT,
        "status": STR,
        "funding": STR,
        "claimant": STR,
        "invoice": nullable(STR),
    }
)
ANALYSIS: Schema = obj(
    {
        "analysis_id": STR,
        "repository": STR,
        "requested_by": STR,
        "requested_at": INT,
        "state": STR,
        "updated_at": nullable(INT),
        "result": nullable(STR),
        "pull_request": nullable(INT),
    }
)
ANALYZE_BODY: Schema = obj(
    {"repository": REPOSITORY,
     "pull_request": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}},
    required=["repository"], additional=False,
)  # fmt: skip
BOUNTY_BODY: Schema = obj(
    {
        "repository": REPOSITORY,
        "issue_number": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "amount_sat": {"type": "integer", "minimum": 1, "maximum": MAX_SAT},
        "sponsor_node": {"type": "string", "pattern": "^0[23][0-9a-f]{64}$"},
    },
    required=["repository", "issue_number", "title", "amount_sat"],
    additional=False,
)


def bounty_json(b: Bounty, invoice: str | None = None) -> dict[str, Any]:
    """A bounty as the API publishes it."""
    return published(BOUNTY, b, invoice=invoice)


def analysis_json(a: AnalysisRequest) -> dict[str, Any]:
    """An analysis request as the API publishes it."""
    return published(ANALYSIS, a)


def list_bounties(call: Call) -> Response:
    status = call.query.get("status", "open")
    bounties = call.services.bounties.bounties(None if status == "all" else BountyStatus(status))
    return json({"bounties": [bounty_json(b) for b in bounties]})


def create_bounty(call: Call) -> Response:
    body = call.body
    opened = call.services.bounties.create_bounty(
        call.who(), body["repository"], body["issue_number"], body["title"], body["amount_sat"],
        body.get("sponsor_node", ""),
    )  # fmt: skip
    invoice = opened.invoice.bolt11 if opened.invoice is not None else None
    return json(bounty_json(opened.bounty, invoice), status=201)


def analyze(call: Call) -> Response:
    body = call.body
    request = call.services.bounties.request_analysis(
        call.who(), body["repository"], body.get("pull_request")
    )
    return json(
        analysis_json(request),
        status=202,
        headers={"Location": f"/v1/github/analysis/{request.analysis_id}"},
    )


def get_analysis(call: Call) -> Response:
    return json(analysis_json(call.services.bounties.analysis(call.path["id"])))


WEBHOOK_ACK: Schema = obj({"delivery_id": STR, "event": STR, "action": STR, "repository": STR})


def webhook(call: Call) -> Response:
    app = running(
        call.services.github, "github-app-off",
        "the GitHub App is not configured on this coordinator ([github] webhook_secret_file)",
    )
    try:
        event = app.receive(
            call.headers.get("x-hub-signature-256"),
            call.headers.get("x-github-delivery"),
            call.headers.get("x-github-event"),
            call.body,
        )
    except InvalidValue as exc:
        if exc.field == "body":  # signed, but not a JSON object
            raise Problem(400, "malformed-request", exc.message) from None
        raise
    return json(
        {
            "delivery_id": event.delivery_id,
            "event": event.event,
            "action": event.action,
            "repository": event.repository,
        },
        status=202,
    )


CONTRIBUTION: Schema = {
    "type": "object",
    "description": "The coordinator-signed contribution record (`record`, `record_digest`, "
    "`coordinator_key`, `signature`: Ed25519 over the digest), its `analysis` and `ots_proof` "
    "(base64 `.ots` over `record_digest`).",
}


def contribution(call: Call) -> Response:
    app = running(call.services.github, "github-app-off", "the GitHub App is not configured")
    content = running(app.content, "github-app-off", "no content store is configured")
    raw = content.get(call.path["digest"])
    return Response(raw, media_type="application/json")


def operations() -> list[Operation]:
    """The webhook, analyses, contribution records and bounties."""
    github = Tag("github")
    return [
        github(
            "POST", "/github/webhook", "githubWebhook", "Receive a GitHub App webhook delivery",
            Access.PUBLIC, webhook,
            {
                202: Reply("Stored (acknowledged only once stored).", WEBHOOK_ACK),
                401: problem("`X-Hub-Signature-256` is missing or does not match the raw body."),
                409: problem("This `X-GitHub-Delivery` id was received already (a replay)."),
                503: problem("The GitHub App is not configured."),
            },
            body={"type": "object", "description": "GitHub's event payload, signed."},
            description="The signature is checked over the raw body before it is parsed; "
            "the event is stored under its delivery id before the answer (SRS-SEC-08).",
            raw_body=True,
        ),
        github(
            "POST", "/github/analyze", "analyzeRepository", "Submit a repo for analysis",
            Access.CLIENT, analyze,
            {
                202: Reply(
                    "Queued; poll the analysis. With the GitHub App installed on the "
                    "repository it runs at once: `result` holds files, lines, languages, "
                    "complexity, tests touched, authors and a score with its reasons; with "
                    "`pull_request`, of the files it changed, with `files_changed`, "
                    "`lines_added` and `lines_deleted`. Without the App it stays `queued` (no "
                    "result is invented).",
                    ANALYSIS,
                )
            },
            body=ANALYZE_BODY,
        ),
        github(
            "GET", "/github/analysis/{id}", "getAnalysis", "Get analysis results", Access.CLIENT,
            get_analysis, {200: Reply("The analysis.", ANALYSIS), 404: NOT_FOUND},
            params=(Param("id", "path", OBJECT_ID, "The analysis id.", True),),
        ),
        github(
            "GET", "/github/contributions/{digest}", "getContribution",
            "A merged contribution's signed record and OpenTimestamps proof", Access.PUBLIC,
            contribution,
            {
                200: Reply("The signed record, its analysis and its proof.", CONTRIBUTION),
                404: NOT_FOUND,
                503: problem("The GitHub App is not configured."),
            },
            params=(
                Param("digest", "path", {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                      "The SHA-256 the pull request comment links to.", True),
            ),
        ),
        *_bounty_operations(github),
    ]


def _bounty_operations(github: Tag) -> list[Operation]:
    """List and open bounties."""
    return [
        github(
            "GET", "/github/bounties", "listBounties", "List active bounties", Access.CLIENT,
            list_bounties,
            {200: Reply("Bounties, newest first.", obj({"bounties": array(BOUNTY)}))},
            params=(
                status_filter(
                    [*(b.value for b in BountyStatus), "all"], "Which bounties (default open)."
                ),
            ),
            inline=True,
        ),
        github(
            "POST", "/github/bounties", "createBounty", "Create a new bounty", Access.CLIENT,
            create_bounty,
            {
                201: Reply(
                    "The bounty: open (treasury-funded, opened by a maintainer), or `funding` "
                    "until the sponsor pays `invoice` (`sponsor_node`: where a refund goes). "
                    "Nobody's claim within `[github] bounty_lapse_s` (30 days): it lapses, "
                    "its sponsor refunded; an invoice unpaid: cancelled.", BOUNTY,
                ),
                403: problem(
                    "Treasury-funded without being a maintainer (`role-required`): an API "
                    "key whose owner `[github] bounty_maintainers` names; anyone else names "
                    "`sponsor_node` and pays the invoice."
                ),
                409: problem(
                    "The treasury's bounty budget cannot hold it, or the GitHub App is not "
                    "installed on the repository."
                ),
            },
            body=BOUNTY_BODY,
        ),
    ]
