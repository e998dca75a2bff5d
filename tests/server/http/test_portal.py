"""The governance portal (spec 4.9): server-rendered pages and plain forms (htmx-enhanced),
accessible markup, and the whole flow — submit, comment, extend, acknowledge, execute — in real
headless Chromium with screenshots checked for content (SRS-GOV-01..06)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from owm_adapters.services.api import ApiServices
from owm_adapters.treasury.wallet import sign_with_key
from owm_core.coordination.portal_challenges import issue_challenge
from owm_core.identity.envelopes import to_bytes
from owm_core.identity.keys import Identity
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer
from tests.governance_keys import COORDINATOR, HOLDER_IDS, HOLDER_SECRETS, MAINTAINERS, statement
from tests.server.harness import StepClock
from tests.server.http.cdp import Browser, png_is_not_blank, png_size
from tests.server.http.governed import PAYEE, governed_services

T0 = 1_800_000_000
DAY = 86_400


class Portal:
    def __init__(self, services: ApiServices, clock: StepClock) -> None:
        self.services, self.clock = services, clock
        self.client = TestClient(create_app(services), raise_server_exceptions=False,
                                 follow_redirects=False)  # fmt: skip
        self.key = services.access.create_api_key("carol")[1]

    def signed(
        self, who: Identity, action: str, pid: str = "", challenge: str | None = None,
        **args: object,
    ) -> str:  # fmt: skip
        """A statement as `owm gov … --sign-only --challenge C` prints it (a fresh C if none)."""
        statements = self.services.statements
        assert statements is not None
        nonce = challenge or statements.challenge()
        return to_bytes(statement(who, action, pid, self.clock.now(), nonce, **args)).decode()

    def submit(self, **fields: str) -> object:
        form = {"title": "Audit", "description": "An audit.", "type": "treasury",
                "requested_sat": "20000000", "payout_address": PAYEE,
                "implementation_plan": "Pay on delivery.", "api_key": self.key, **fields}
        return self.client.post("/governance/submit", data=form)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    clock = StepClock(T0)
    p = Portal(governed_services(tmp_path, clock, per_hour=100), clock)
    yield p
    p.client.close()


def test_the_index_lists_open_proposals_with_their_deadlines_and_a_labelled_submit_form(
    portal: Portal,
) -> None:
    created = portal.submit()
    assert created.status_code == 303  # type: ignore[attr-defined]
    page = portal.client.get("/governance")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    text = page.text
    assert "Open for comments" in text and "Audit" in text
    assert f"until {T0 + 14 * DAY}" in text
    for control in ("title", "description", "type", "requested_sat", "payout_address",
                    "implementation_plan", "api_key"):
        assert f'<label for="{control}">' in text and f'id="{control}"' in text
    assert '<html lang="en">' in text and "<main" in text
    assert "form-action 'self'" in page.headers["content-security-policy"]
    assert '<script src="/governance/static/htmx.min.js">' in text


def test_a_proposal_page_has_a_labelled_form_per_action_with_the_command_to_sign_it(
    portal: Portal,
) -> None:
    pid = portal.submit().headers["location"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    text = portal.client.get(f"/governance/proposals/{pid}").text
    for action in ("comment", "extend", "ack", "close", "execute"):
        assert f'<label for="statement-{action}">' in text
        assert f"owm gov {action} {pid}" in text
    key = COORDINATOR.public_key_hex  # the statement is addressed to this coordinator
    assert re.search(rf"--sign-only --coordinator {key} --challenge [0-9a-f]{{32}}</code>", text)


def test_a_statement_that_answers_no_fresh_challenge_of_this_coordinator_is_refused(
    portal: Portal,
) -> None:
    """The portal's challenge–response: a pasted statement must carry, as its nonce, a
    challenge this coordinator issued within 300 s; one the signer drew itself, one another
    coordinator issued, or an expired one is refused naming the statement, and nothing is
    logged; an answered challenge's statement is not taken twice (SRS-GOV-02/03)."""
    pid = portal.submit().headers["location"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    log_before = len(portal.services.statements.log())  # type: ignore[union-attr]
    self_drawn = to_bytes(statement(MAINTAINERS[0], "comment", pid, portal.clock.now(),
                                    text="mine")).decode()  # fmt: skip
    other = issue_challenge(Identity.from_seed(b"\x07" * 32).sign, b"abcd", portal.clock.now())
    old = portal.services.statements.challenge()  # type: ignore[union-attr]
    portal.clock.advance(301)
    for envelope in (self_drawn, portal.signed(MAINTAINERS[0], "comment", pid, other, text="x"),
                     portal.signed(MAINTAINERS[0], "comment", pid, old, text="late")):
        refused = portal.client.post("/governance/act",
                                     data={"proposal_id": pid, "statement": envelope})
        assert refused.status_code == 422, refused.text
        assert "challenge" in refused.text and "field: statement" in refused.text
    assert len(portal.services.statements.log()) == log_before  # type: ignore[union-attr]
    answer = portal.signed(MAINTAINERS[0], "comment", pid, text="fresh")
    assert portal.client.post("/governance/act", data={"proposal_id": pid,
                                                        "statement": answer}).status_code == 303
    again = portal.client.post("/governance/act", data={"proposal_id": pid, "statement": answer})
    assert again.status_code == 401 and "accepted before" in again.text  # a replay


def test_a_pasted_statement_acts_and_a_refusal_names_the_rule_and_the_field(
    portal: Portal,
) -> None:
    pid = portal.submit().headers["location"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    done = portal.client.post("/governance/act", data={
        "proposal_id": pid, "statement": portal.signed(MAINTAINERS[0], "comment", pid, text="ok"),
    })  # fmt: skip
    assert done.status_code == 303
    assert "ok" in portal.client.get(f"/governance/proposals/{pid}").text
    refused = portal.client.post("/governance/act", data={
        "proposal_id": pid, "statement": portal.signed(HOLDER_IDS[0], "extend", pid,
                                                         deadline_at=T0 + 20 * DAY),
    })  # fmt: skip
    assert refused.status_code == 403
    assert "only a core maintainer may extend" in refused.text and 'role="alert"' in refused.text
    garbage = portal.client.post("/governance/act", data={"proposal_id": pid, "statement": "{"})
    assert garbage.status_code == 422 and "field: statement" in garbage.text
    bad = portal.submit(requested_sat="lots")
    assert bad.status_code == 422 and "field: requested_sat" in bad.text  # type: ignore[attr-defined]


def test_a_node_operators_signed_proposal_is_pasted_on_the_index_page(portal: Portal) -> None:
    """Node operators, maintainers and holders propose with their own key (SRS-GOV-02)."""
    assert '<label for="statement-propose">' in portal.client.get("/governance").text
    envelope = portal.signed(MAINTAINERS[1], "propose", title="Raise the t2 stake",
                             description="Sybils.", type="policy", implementation_plan="Edit.")
    done = portal.client.post("/governance/act", data={"statement": envelope})
    assert done.status_code == 303
    page = portal.client.get(done.headers["location"]).text
    assert "Raise the t2 stake" in page and "policy" in page


def test_values_from_proposals_are_escaped(portal: Portal) -> None:
    pid = portal.submit(title="<script>alert(1)</script>").headers["location"].rsplit("/", 1)[1]  # type: ignore[attr-defined]
    for page in ("/governance", f"/governance/proposals/{pid}"):
        text = portal.client.get(page).text
        assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text


# --------------------------------------------------------------------------- real Chromium


@pytest.mark.slow
def test_in_headless_chromium_a_treasury_proposal_is_submitted_discussed_acknowledged_and_executed(
    tmp_path: Path,
) -> None:
    clock = StepClock(T0)
    services = governed_services(tmp_path, clock, per_hour=100)
    portal = Portal(services, clock)
    server = ApiServer(create_app(services), "127.0.0.1:0", grace_s=1)  # type: ignore[arg-type]
    server.start()
    browser = Browser(tmp_path / "profile")
    base = f"http://127.0.0.1:{server.port}"
    try:
        _drive(browser, base, portal, tmp_path)
    finally:
        browser.close()
        server.stop(1)
        portal.client.close()


def _challenge(browser: Browser) -> str:
    """The challenge the page shows in its `--challenge` commands."""
    found = re.search(r"--challenge ([0-9a-f]{32})", browser.text())
    assert found, "the page shows no challenge"
    return found.group(1)


def _settled(browser: Browser, expect: str) -> None:
    browser.wait_for(f"document.querySelector('main').innerText.includes({expect!r})"
                     " && !document.querySelector('.htmx-request')")


def _paste(browser: Browser, action: str, envelope: str, expect: str) -> None:
    browser.fill_and_submit(f"#{action} form", {"statement": envelope})
    _settled(browser, expect)


def _keyboard_reaches_every_control(browser: Browser) -> None:
    """Tab from the top of the page visits every form control and button, in page order."""
    browser.eval("document.activeElement && document.activeElement.blur()")
    wanted = browser.eval("Array.from(document.querySelectorAll("
                          "'main textarea, main button')).length")  # fmt: skip
    visited: list[str] = []
    for _ in range(200):
        browser.press("Tab")
        current = browser.focused()
        if current in visited:
            break
        visited.append(current)
    controls = [v for v in visited if v.startswith(("textarea", "button"))]
    assert len(controls) == wanted, visited
    for action in ("comment", "extend", "ack", "close", "execute"):
        assert f"textarea#statement-{action}" in visited


def _comment_by_keyboard(browser: Browser, envelope: str, expect: str) -> None:
    """Type the statement into the comment form, Tab to its button, press Enter."""
    browser.eval("document.getElementById('statement-comment').focus()")
    browser.type_text(envelope)
    browser.press("Tab")
    assert browser.focused() == "button:Comment"
    browser.press("Enter", "\r")
    _settled(browser, expect)


def _status(browser: Browser, status: str) -> None:
    browser.wait_for(f"document.querySelector('#status').innerText === {status!r}"
                     " && !document.querySelector('.htmx-request')")


def _drive(browser: Browser, base: str, portal: Portal, tmp_path: Path) -> None:
    browser.goto(f"{base}/governance")
    browser.fill_and_submit("form[action='/governance/submit']", {
        "title": "Audit the node daemon", "description": "An external audit.",
        "type": "treasury", "requested_sat": "20000000", "payout_address": PAYEE,
        "implementation_plan": "Pay on delivery.", "api_key": portal.key,
    })  # fmt: skip
    browser.wait_for("!!document.querySelector('input[name=proposal_id]')")
    pid = browser.eval("document.querySelector('input[name=proposal_id]').value")
    shot = browser.screenshot(tmp_path / "submitted.png")
    assert png_is_not_blank(shot, 1280, 1400)
    assert "Audit the node daemon" in browser.text() and "0 of 5 holders" in browser.text()
    acks_before = browser.screenshot(tmp_path / "acks-0.png", "#acks")
    _keyboard_reaches_every_control(browser)

    _comment_by_keyboard(browser, portal.signed(MAINTAINERS[1], "comment", pid,
                                                _challenge(browser), text="Which auditor?"),
                         "Which auditor?")  # fmt: skip
    deadline = T0 + 21 * DAY
    extend = portal.signed(MAINTAINERS[0], "extend", pid, _challenge(browser),
                           deadline_at=deadline)  # fmt: skip
    _paste(browser, "extend", extend, f"open until {deadline}")
    for i, holder in enumerate(HOLDER_IDS):
        _paste(browser, "ack", portal.signed(holder, "ack", pid, _challenge(browser)),
               f"{i + 1} of 5 holders")  # fmt: skip
    shot = browser.screenshot(tmp_path / "acknowledged.png")
    assert png_is_not_blank(shot, 1280, 1400) and "5 of 5 holders" in browser.text()
    acks_after = browser.screenshot(tmp_path / "acks-5.png", "#acks")
    # the screenshot of the acknowledgements shows text, and other text than before
    assert png_is_not_blank(acks_after, *png_size(acks_after)) and acks_after != acks_before

    portal.clock.advance(21 * DAY)  # the page's challenge is stale now: reload it
    browser.goto(f"{base}/governance/proposals/{pid}")
    _paste(browser, "close", portal.signed(MAINTAINERS[0], "close", pid, _challenge(browser),
                                           outcome="accepted"), "closed at")  # fmt: skip
    _status(browser, "accepted")
    accepted = browser.screenshot(tmp_path / "status-accepted.png", "#status")
    statements = portal.services.statements
    assert statements is not None
    unsigned = statements.submit(statement(HOLDER_IDS[0], "psbt_create", pid, portal.clock.now()))
    assert unsigned.spend is not None
    for secret in HOLDER_SECRETS[1:4]:
        statements.import_signed(pid, sign_with_key(unsigned.spend.psbt, secret))
    _paste(browser, "execute", portal.signed(MAINTAINERS[0], "execute", pid, _challenge(browser)),
           "Transaction")  # fmt: skip
    _status(browser, "executed")
    executed = browser.screenshot(tmp_path / "status-executed.png", "#status")
    assert png_is_not_blank(accepted, *png_size(accepted)) and executed != accepted
    txid = statements.proposal(pid).txid
    assert txid and txid in browser.text()
    link = browser.eval("document.querySelector('main a[href*=\"mempool.space\"]').href")
    assert link == f"https://mempool.space/tx/{txid}"
    shot = browser.screenshot(tmp_path / "executed.png")
    assert png_is_not_blank(shot, 1280, 1400)

    browser.goto(f"{base}/governance")
    index = browser.text()
    assert "Executed treasury proposals" in index and txid in index
    assert re.search(r"Audit the node daemon\s+treasury\s+20,000,000 sat\s+executed", index)
