"""The governance portal: server-rendered HTML pages at ``/governance``, plain forms enhanced by
htmx (SRS-GOV-01..06).

* ``GET /governance`` — the open proposals with their comment deadlines (SRS-GOV-01), every
  other proposal, the executed treasury proposals linked to their transactions (SRS-GOV-06),
  and the submit form (SRS-GOV-02/03).
* ``GET /governance/proposals/{id}`` — one proposal: its text, discussion, acknowledgements,
  treasury spend, and a form per action (comment, extend, acknowledge, close, execute).
* ``POST /governance/submit`` — a contributor submits with an API key (a linked identity).
* ``POST /governance/act`` — any action as a signed statement pasted into the form: the page
  shows the ``owm gov … --sign-only --coordinator K --challenge C`` command (``K``: this
  coordinator's key, which the statement is addressed to) that writes it with the signer's
  own key, so no key ever reaches the browser or the coordinator (SRS-SEC-12 in spirit: keys
  stay with their holders). ``C`` is a fresh challenge of this coordinator, answered within
  300 s and once (:mod:`owm_core.coordination.portal_challenges`): a challenge–response whose
  response is signed offline.

Every form works without script (a POST answered by a 303 redirect to the page, or the page
again with the error, HTTP 4xx); with htmx loaded the forms post in place
(``hx-post``/``hx-target``) and the answer replaces the page's main part. Every value is
escaped; every control has a label; the pages use headings, landmarks and plain links so
keyboard and screen-reader users get the same. Refusals name the field as the API's problems
do. No rule lives here: parse, call one service, render.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from owm_adapters.services.api import ApiServices
from owm_core.errors import DomainError, InvalidValue, NotFound
from owm_core.governance.proposals import Proposal, ProposalStatus, ProposalType
from owm_core.identity.envelopes import Envelope, parse_canonical_json
from owm_server.http.dashboard import _e, htmx_document, htmx_route
from owm_server.http.problems import status_of
from owm_server.http.v1.governance import explorer_link

MAX_FORM_BYTES = 256 * 1024
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
        "style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# A refusal (4xx) is a page too: swap it in like a success, so its message shows.
_HTMX_CONFIG = (
    '{"includeIndicatorStyles":false,"responseHandling":[{"code":"204","swap":false},'
    '{"code":"[2345]..","swap":true,"error":false}]}'
)
_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header,main{max-width:60rem;margin:0 auto;padding:0 1rem}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2rem .5rem;
border-bottom:1px solid #eee}label{display:block;font-weight:600;margin-top:.5rem}
input,select,textarea{width:100%;box-sizing:border-box;font:inherit;padding:.3rem}
button{margin-top:.6rem;font:inherit;padding:.3rem 1rem}
a:focus,button:focus,input:focus,textarea:focus,select:focus{outline:3px solid #1a73e8}
.error{border-color:#c00;color:#900}.done{border-color:#080}code{background:#eee}
"""


def _page(title: str, body: str) -> str:
    return htmx_document(
        f"{title} · OWM governance",
        "/governance/static/htmx.min.js",
        _STYLE,
        '<header><nav><a href="/governance">OWM governance</a></nav></header>'
        f'<main id="main"><h1>{_e(title)}</h1>{body}</main>',
        _HTMX_CONFIG,
    )


def _field(
    name: str, label: str, control: str = "input", ident: str = "", **attrs: str
) -> str:
    """A labelled control; ``ident`` (default ``name``) is its id, unique on the page."""
    ident = ident or name
    extra = " ".join(f'{k.replace("_", "-")}="{_e(v)}"' for k, v in attrs.items())
    if control == "textarea":
        tag = f'<textarea id="{ident}" name="{name}" {extra}></textarea>'
    else:
        tag = f'<input id="{ident}" name="{name}" {extra}>'
    return f'<label for="{ident}">{_e(label)}</label>{tag}'


def _form(action: str, legend: str, fields: str, button: str, hidden: str = "") -> str:
    return (
        f'<form method="post" action="{action}" hx-post="{action}" hx-target="#main" '
        f'hx-select="#main" hx-swap="outerHTML"><fieldset><legend>{_e(legend)}</legend>'
        f"{hidden}{fields}<button type=\"submit\">{_e(button)}</button></fieldset></form>"
    )


def _row(p: Proposal, now: int) -> str:
    link = f'<a href="/governance/proposals/{_e(p.proposal_id)}">{_e(p.title)}</a>'
    amount = f"{p.requested_sat:,} sat" if p.requested_sat else ""
    open_until = f"until {p.comment_deadline_at}" if p.accepts_comments(now) else ""
    return (f"<tr><td>{link}</td><td>{_e(p.type.value)}</td><td>{_e(amount)}</td>"
            f"<td>{_e(p.status.value)}</td><td>{_e(open_until)}</td></tr>")  # fmt: skip


def _table(rows: list[str], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "<tr><th>title</th><th>type</th><th>amount</th><th>status</th><th>comments</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _signing_flags(services: ApiServices) -> str:
    """The ``owm gov … --sign-only`` flags of this page's signed forms: this coordinator's
    key (``--coordinator``) and a fresh challenge (``--challenge``)."""
    statements = services.statements
    if statements is None:
        return ""
    return f"--coordinator {statements.coordinator_key} --challenge {statements.challenge()}"


def _submit_form(flags: str) -> str:
    kinds = "".join(f'<option value="{t.value}">{t.value}</option>' for t in ProposalType)
    fields = (
        _field("title", "Title", required="required", maxlength="200")
        + _field("description", "Description", "textarea", required="required", rows="4")
        + f'<label for="type">Type</label><select id="type" name="type">{kinds}</select>'
        + _field("requested_sat", "Amount (sat, treasury proposals)", type="number", min="0")
        + _field("payout_address", "Payout address (treasury proposals)")
        + _field("implementation_plan", "Implementation plan", "textarea", required="required")
        + _field("api_key", "Your API key (contributors)", type="password",
                 autocomplete="off", required="required")
    )
    signed = (
        "<p>Node operators, maintainers and holders sign with their own key instead: "
        f"<code>owm gov propose --title … --key KEY --sign-only {flags}</code>, "
        "then paste it here within five minutes.</p>"
        + _field("statement", "Signed proposal", "textarea", "statement-propose", rows="3",
                 required="required")
    )  # fmt: skip
    return (_form("/governance/submit", "Submit a proposal (contributors)", fields, "Submit")
            + _form("/governance/act", "Submit a signed proposal", signed, "Submit signed"))


def index_page(services: ApiServices, message: str = "") -> str:
    """Open proposals first (soonest deadline), then the rest; executed ones with their tx."""
    now = services.clock.now()
    proposals = list(services.governance.proposals())
    open_ones = sorted((p for p in proposals if p.accepts_comments(now)),
                       key=lambda p: p.comment_deadline_at)  # fmt: skip
    others = [p for p in proposals if not p.accepts_comments(now)]
    template = _template(services)
    executed = [
        f'<li>{_e(p.title)}: <a href="{_e(explorer_link(template, p.txid) or "#")}">'
        f"{_e(p.txid)}</a></li>"
        for p in proposals if p.txid
    ]  # fmt: skip
    body = (
        message
        + f'<section aria-labelledby="open"><h2 id="open">Open for comments</h2>'
        f"{_table([_row(p, now) for p in open_ones], 'No proposal is open.')}</section>"
        + f'<section aria-labelledby="rest"><h2 id="rest">Other proposals</h2>'
        f"{_table([_row(p, now) for p in others], 'None yet.')}</section>"
        + '<section aria-labelledby="paid"><h2 id="paid">Executed treasury proposals</h2>'
        + (f"<ul>{''.join(executed)}</ul>" if executed else "<p>None yet.</p>") + "</section>"
        + f"<section>{_submit_form(_signing_flags(services))}</section>"
    )
    return _page("Proposals", body)


def _template(services: ApiServices) -> str:
    return services.statements.config.explorer_tx_url if services.statements else ""


def _details(p: Proposal, services: ApiServices) -> str:
    now = services.clock.now()
    link = explorer_link(_template(services), p.txid)
    tx = f'<dd><a href="{_e(link)}">{_e(p.txid)}</a></dd>' if link else f"<dd>{_e(p.txid)}</dd>"
    comments = "".join(
        f"<li><strong>{_e(c.author[:16])}</strong> at {c.at}: {_e(c.text)}</li>"
        for c in p.comments
    ) or "<li>No comments yet.</li>"
    return (
        f'<section><dl><dt>Status</dt><dd id="status">{_e(p.status.value)}</dd>'
        f"<dt>Type</dt><dd>{_e(p.type.value)}</dd><dt>Amount</dt><dd>{p.requested_sat:,} sat</dd>"
        f"<dt>Payout address</dt><dd>{_e(p.payout_address)}</dd>"
        f"<dt>Comments</dt><dd>{'open until ' if p.accepts_comments(now) else 'closed at '}"
        f'{p.comment_deadline_at}</dd><dt>Acknowledged by</dt><dd id="acks">'
        f"{len(p.acknowledgements)} of 5 holders</dd><dt>Transaction</dt>{tx}</dl>"
        f"<h2>Description</h2><p>{_e(p.description)}</p>"
        f"<h2>Implementation plan</h2><p>{_e(p.implementation_plan)}</p></section>"
        f'<section aria-labelledby="talk"><h2 id="talk">Discussion</h2><ul>{comments}</ul>'
        "</section>"
    )


_ACTIONS = (
    ("comment", "Comment", '--text "…"'),
    ("extend", "Extend the comment period (maintainers)", "--deadline-at <POSIX s>"),
    ("ack", "Acknowledge (treasury multisig holders)", ""),
    ("close", "Close (maintainers)", "--outcome accepted"),
    ("execute", "Execute (maintainers; treasury proposals broadcast their transaction)", ""),
)


def _action_forms(p: Proposal, flags: str) -> str:
    out = []
    hidden = f'<input type="hidden" name="proposal_id" value="{_e(p.proposal_id)}">'
    for action, legend, args in _ACTIONS:
        command = (f"owm gov {action} {p.proposal_id} {args} --key KEY --sign-only "
                   f"{flags}").replace("  ", " ")  # fmt: skip
        fields = (f"<p>Sign it: <code>{_e(command)}</code></p>"
                  + _field("statement", "Signed statement", "textarea",
                           f"statement-{action}", rows="3", required="required"))  # fmt: skip
        form = _form("/governance/act", legend, fields, legend.split(" (")[0], hidden)
        out.append(f'<section id="{action}">{form}</section>')
    return "".join(out)


def proposal_page(services: ApiServices, proposal_id: str, message: str = "") -> str:
    """One proposal, its discussion and its action forms."""
    p = services.repositories.proposals.get(proposal_id)
    if p is None:
        raise NotFound(f"no proposal {proposal_id}")
    executed = p.status is ProposalStatus.EXECUTED
    forms = "" if executed else _action_forms(p, _signing_flags(services))
    return _page(p.title, message + _details(p, services) + forms)


def _notice(text: str, ok: bool) -> str:
    kind, role = ("done", "status") if ok else ("error", "alert")
    return f'<section class="{kind}" role="{role}"><p>{_e(text)}</p></section>'


def _refusal(exc: DomainError) -> str:
    field = f" (field: {exc.field})" if isinstance(exc, InvalidValue) else ""
    return _notice(f"Refused: {exc.message}{field}", False)


async def _form_fields(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        raise InvalidValue("form", f"longer than {MAX_FORM_BYTES} bytes")
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise InvalidValue("form", "is not UTF-8") from None
    return {k: v[0] for k, v in parsed.items()}


def _statement(text: str) -> Envelope:
    data = parse_canonical_json(text.strip().encode("utf-8"), "statement")
    if not isinstance(data, dict):
        raise InvalidValue("statement", "must be the JSON object `owm gov … --sign-only` prints")
    try:
        return Envelope(**data)
    except TypeError:
        raise InvalidValue("statement", "is not a signed statement") from None


def _html(body: str, status: int = 200) -> Response:
    return HTMLResponse(body, status, headers=_HEADERS)


def routes(services: ApiServices) -> list[BaseRoute]:
    """The portal's pages and form handlers (module docstring)."""

    def index(_request: Request) -> Response:
        return _html(index_page(services))

    def show(request: Request) -> Response:
        try:
            return _html(proposal_page(services, request.path_params["id"]))
        except NotFound as exc:
            return _html(_page("Not found", _notice(exc.message, False)), 404)

    async def submit(request: Request) -> Response:
        try:
            form = await _form_fields(request)
            caller = services.access.caller_by_api_key(form.get("api_key", ""))
            services.access.admit(caller, node_management=False, write=True)
            amount = form.get("requested_sat", "") or "0"
            if not amount.isdigit():
                raise InvalidValue("requested_sat", "must be a whole number of sat")
            proposal = services.governance.submit_proposal(
                caller, form.get("title", ""), form.get("description", ""),
                _kind(form.get("type", "")), form.get("implementation_plan", ""), int(amount),
                form.get("payout_address", ""),
            )  # fmt: skip
        except DomainError as exc:
            return _html(index_page(services, _refusal(exc)), status_of(exc))
        return RedirectResponse(f"/governance/proposals/{proposal.proposal_id}", 303)

    async def act(request: Request) -> Response:
        form: dict[str, Any] = {}
        try:
            form = await _form_fields(request)
            statements = services.statements
            if statements is None:
                raise NotFound("this coordinator runs no governance")
            receipt = statements.submit_answer(_statement(form.get("statement", "")))
        except DomainError as exc:
            pid = str(form.get("proposal_id", ""))
            try:
                body = proposal_page(services, pid, _refusal(exc))
            except NotFound:
                body = index_page(services, _refusal(exc))
            return _html(body, status_of(exc))
        pid = receipt.proposal.proposal_id
        return RedirectResponse(f"/governance/proposals/{pid}", 303)

    return [
        Route("/governance", index, methods=["GET"]),
        Route("/governance/proposals/{id}", show, methods=["GET"]),
        Route("/governance/submit", submit, methods=["POST"]),
        Route("/governance/act", act, methods=["POST"]),
        htmx_route("/governance/static/htmx.min.js"),
    ]


def _kind(value: str) -> ProposalType:
    try:
        return ProposalType(value)
    except ValueError:
        raise InvalidValue("type", "must be technical, treasury or policy") from None

