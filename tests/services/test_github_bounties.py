"""Bounties driven by the GitHub App's signed webhook events, paid over Lightning through the
payout outbox exactly once (SRS-LN-08), against the embedded ledger and the local GitHub
stand-in; the payloads are GitHub's own examples with the command or closing keyword set."""

from __future__ import annotations

import copy
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from owm_adapters.github.rest import GitHubRest
from owm_adapters.github.standin import GitHubStandIn
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.api.bounties import SETTLE_EVERY_MS, Bounties
from owm_adapters.services.bounty_book import (
    FUNDING_GRACE_S,
    SPONSOR_INVOICE_EXPIRY_S,
    BountyBook,
    BountyTerms,
)
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.errors import LightningUnavailable, PolicyViolation, RoleRequired
from owm_core.governance.bounty_rules import CLAIM_GRACE_S
from owm_core.governance.contributions import BountyStatus
from tests.github_app_support import SECRET, credentials, delivery, standin
from tests.github_examples import example
from tests.server.harness import StepClock

T0 = 1_800_000_000
REPO = "Codertocat/Hello-World"
INSTALLATION = 1
LAPSE_S = 86_400
pytestmark = pytest.mark.timeout(120)


@attrs.define
class Stage:
    repos: MemoryRepositories
    ledger: SimLedger
    clock: StepClock
    app: GitHubApp
    desk: BountyDesk
    dispatcher: PayoutDispatcher
    github: GitHubStandIn
    contributor_ln: str
    sponsor_ln: str

    def post(self, event: str, payload: dict[str, Any]) -> None:
        headers, raw = delivery(event, payload)
        self.app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], event, raw)

    def held_msat(self, pubkey: str) -> int:
        with sqlite3.connect(self.ledger.path) as db:
            a = db.execute("SELECT COALESCE(SUM(balance_a_msat), 0) FROM sim_ln_channels"
                           " WHERE node_a = ?", (pubkey,)).fetchone()[0]
            b = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                           " WHERE node_b = ?", (pubkey,)).fetchone()[0]
        return int(a + b)

    def last_comment(self) -> str:
        return self.github.comments[-1].body


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    clock = StepClock(T0)
    repos = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury_key = ledger.add_node("treasury")
    contributor, sponsor = ledger.add_node("contributor"), ledger.add_node("sponsor")
    ledger.open_channel(treasury_key, contributor, 10_000_000)
    ledger.open_channel(treasury_key, sponsor, 10_000_000)
    ledger.open_channel(sponsor, treasury_key, 10_000_000)
    treasury = ledger.lightning("treasury")
    dispatcher = PayoutDispatcher(repos, treasury, LedgerInvoiceSource(ledger), clock)
    with standin(clock.now) as github:
        github.add_repository(REPO, INSTALLATION)
        port = GitHubRest(github.url, credentials(), clock)
        book = BountyBook(repos, clock, treasury, BountyTerms(
            max_bounty_sat=5_000, budget_sat=8_000, unclaimed_lapse_s=LAPSE_S))
        desk = BountyDesk(repos, book, dispatcher, port)
        app = GitHubApp(repos, clock, SECRET, port, [desk])
        yield Stage(repos, ledger, clock, app, desk, dispatcher, github, contributor, sponsor)
    dispatcher.stop()


def comment(body: str, login: str, association: str, issue: int = 1) -> dict[str, Any]:
    payload = copy.deepcopy(example("issue_comment", "created"))
    payload["installation"] = {"id": INSTALLATION}
    payload["comment"].update(body=body, author_association=association)
    payload["comment"]["user"]["login"] = login
    payload["issue"]["number"] = issue
    return payload


def pull_closed(merged: bool, author: str, body: str, number: int = 2) -> dict[str, Any]:
    payload = copy.deepcopy(example("pull_request", "closed"))
    payload["installation"] = {"id": INSTALLATION}
    payload["number"] = number
    payload["pull_request"].update(merged=merged, body=body, number=number)
    payload["pull_request"]["user"]["login"] = author
    return payload


def issue_closed(issue: int = 1) -> dict[str, Any]:
    payload = copy.deepcopy(example("issues", "reopened"))  # GitHub ships no "closed" one
    payload.update(action="closed", installation={"id": INSTALLATION})
    payload["issue"]["state"] = "closed"
    payload["issue"]["number"] = issue
    return payload


def open_and_claim(stage: Stage, amount: int = 1_000) -> str:
    stage.post("issue_comment", comment(f"/bounty {amount}", "maintainer", "OWNER"))
    (bounty,) = stage.repos.bounties.for_issue(REPO, 1)
    stage.post("issue_comment", comment(f"/claim {stage.contributor_ln}", "alice", "NONE"))
    return bounty.bounty_id


def test_a_merged_pull_request_by_the_claimant_pays_the_bounty_once_with_a_comment(
    stage: Stage,
) -> None:
    bounty_id = open_and_claim(stage)
    assert "claimed bounty" in stage.last_comment()
    merged = pull_closed(True, "alice", "This fixes #1.")
    stage.post("pull_request", merged)
    stage.post("pull_request", merged)  # GitHub redelivers under a new delivery id
    stage.dispatcher.sweep()
    (payment,) = stage.repos.payments.for_task(f"bounty:{bounty_id}")
    assert payment.settled and payment.amount_msat == 1_000_000
    assert stage.held_msat(stage.contributor_ln) == 1_000_000
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.PAID  # type: ignore[union-attr]
    paid_comments = [c for c in stage.github.comments if payment.payment_hash in c.body]
    assert paid_comments and paid_comments[0].number == 2 and "1000 sat" in paid_comments[0].body


def test_a_pull_request_closed_without_merge_or_by_someone_else_pays_nothing(
    stage: Stage,
) -> None:
    bounty_id = open_and_claim(stage)
    stage.post("pull_request", pull_closed(False, "alice", "Fixes #1"))
    assert "not paid" in stage.last_comment()
    stage.post("pull_request", pull_closed(True, "mallory", "Fixes #1", number=3))
    assert "claimed by @alice" in stage.last_comment()
    stage.dispatcher.sweep()
    assert stage.repos.payments.for_task(f"bounty:{bounty_id}") == []
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.OPEN  # type: ignore[union-attr]


def test_commands_over_the_cap_the_budget_or_by_a_non_maintainer_are_refused_with_a_reason(
    stage: Stage,
) -> None:
    stage.post("issue_comment", comment("/bounty 5001", "maintainer", "OWNER"))
    assert "at most 5000 sat" in stage.last_comment()
    stage.post("issue_comment", comment("/bounty 100", "mallory", "NONE"))
    assert "only a maintainer" in stage.last_comment()
    stage.post("issue_comment", comment("/bounty 5000", "maintainer", "MEMBER"))
    stage.post("issue_comment", comment("/bounty 5000", "maintainer", "MEMBER", issue=4))
    assert "budget has 3000 sat left" in stage.last_comment()
    stage.post("issue_comment", comment("/claim not-a-key", "alice", "NONE"))
    assert "public key" in stage.last_comment()
    stage.post("issue_comment", comment(f"/claim {stage.contributor_ln}", "maintainer", "OWNER"))
    assert "creator of a bounty cannot claim" in stage.last_comment()
    assert [b.amount_sat for b in stage.repos.bounties.list()] == [5_000]


def test_a_second_claimant_is_told_who_claimed_first(stage: Stage) -> None:
    open_and_claim(stage)
    stage.post("issue_comment", comment(f"/claim {stage.sponsor_ln}", "bob", "NONE"))
    assert "claimed by @alice" in stage.last_comment()


def test_a_sponsored_bounty_opens_once_paid_and_its_issue_closed_unpaid_refunds_the_sponsor(
    stage: Stage,
) -> None:
    opened = stage.desk.book.open("api:acme", REPO, 1, "t", 2_000, sponsor_payee=stage.sponsor_ln,
                                  installation_id=INSTALLATION)
    assert opened.bounty.status is BountyStatus.FUNDING and opened.invoice is not None
    assert stage.desk.book.settle_funding() == []  # not paid yet: not open
    before = stage.held_msat(stage.sponsor_ln)
    stage.ledger.pay(stage.sponsor_ln, opened.invoice.bolt11, 10_000)
    (funded,) = stage.desk.book.settle_funding()
    assert funded.status is BountyStatus.OPEN
    stage.post("issues", issue_closed())
    stage.post("issues", issue_closed())  # redelivered: refunded once
    stage.dispatcher.sweep()
    assert stage.repos.bounties.get(funded.bounty_id).status is BountyStatus.REFUNDED  # type: ignore[union-attr]
    (refund,) = stage.repos.payments.for_task(f"bounty-refund:{funded.bounty_id}")
    assert refund.settled and refund.amount_msat == 2_000_000
    assert stage.held_msat(stage.sponsor_ln) == before


def test_a_treasury_bounty_whose_issue_closes_unpaid_is_cancelled_and_frees_its_budget(
    stage: Stage,
) -> None:
    stage.post("issue_comment", comment("/bounty 5000", "maintainer", "OWNER"))
    stage.post("issues", issue_closed())
    (bounty,) = stage.repos.bounties.for_issue(REPO, 1)
    assert bounty.status is BountyStatus.CANCELLED
    assert stage.repos.bounties.committed_treasury_sat() == 0
    with pytest.raises(PolicyViolation):
        stage.desk.book.open("api:acme", REPO, 9, "t", 8_001, installation_id=INSTALLATION,
                             maintainer=True)


def test_with_the_payout_worker_running_a_merge_is_paid_well_within_sixty_seconds(
    stage: Stage,
) -> None:
    bounty_id = open_and_claim(stage)
    stage.dispatcher.start()
    started = time.monotonic()
    stage.post("pull_request", pull_closed(True, "alice", "Closes #1"))
    while stage.repos.bounties.get(bounty_id).status is not BountyStatus.PAID:  # type: ignore[union-attr]
        assert time.monotonic() - started < 60, "not paid within 60 s (SRS-LN-08)"
        time.sleep(0.05)
    assert stage.held_msat(stage.contributor_ln) == 1_000_000


def test_a_claimed_bounty_whose_issue_closes_before_the_merge_arrives_is_still_paid_once(
    stage: Stage,
) -> None:
    """Merging a pull request that fixes an issue closes the issue too, and GitHub delivers
    the two events in no set order: the issue's coming first must not cancel the bounty."""
    bounty_id = open_and_claim(stage)
    stage.post("issues", issue_closed())
    assert "waits 60 minutes for the merge of a pull request by @alice" in stage.last_comment()
    stage.clock.advance(CLAIM_GRACE_S - 1)
    stage.desk.lapse()
    stage.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    stage.post("issues", issue_closed())  # redelivered
    stage.clock.advance(CLAIM_GRACE_S)
    assert stage.desk.lapse() == []
    stage.dispatcher.sweep()
    (payment,) = stage.repos.payments.for_task(f"bounty:{bounty_id}")
    assert payment.settled and stage.held_msat(stage.contributor_ln) == 1_000_000
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.PAID  # type: ignore[union-attr]


def test_a_claimed_bounty_whose_issue_closed_without_the_claimants_merge_lapses_after_the_grace(
    stage: Stage,
) -> None:
    treasury_id = open_and_claim(stage, 3_000)
    opened = stage.desk.book.open("api:acme", REPO, 5, "t", 2_000, sponsor_payee=stage.sponsor_ln,
                                  installation_id=INSTALLATION)
    assert opened.invoice is not None
    stage.ledger.pay(stage.sponsor_ln, opened.invoice.bolt11, 10_000)
    stage.desk.book.settle_funding()
    stage.post("issue_comment", comment(f"/claim {stage.contributor_ln}", "alice", "NONE", 5))
    before = stage.held_msat(stage.sponsor_ln)
    stage.post("issues", issue_closed(1))
    stage.post("issues", issue_closed(5))
    assert stage.repos.bounties.committed_treasury_sat() == 3_000  # still held for alice
    stage.clock.advance(CLAIM_GRACE_S)
    lapsed = {b.bounty_id: b.status for b in stage.desk.lapse()}
    assert lapsed == {treasury_id: BountyStatus.CANCELLED,
                      opened.bounty.bounty_id: BountyStatus.REFUNDED}  # fmt: skip
    assert stage.desk.lapse() == []  # once
    stage.post("pull_request", pull_closed(True, "alice", "Fixes #1, fixes #5"))  # too late
    stage.dispatcher.sweep()
    assert stage.repos.payments.for_task(f"bounty:{treasury_id}") == []
    assert stage.repos.bounties.committed_treasury_sat() == 0
    assert stage.held_msat(stage.sponsor_ln) == before + 2_000_000


@pytest.mark.parametrize("rounds", [6])
def test_the_merge_and_the_issue_closing_delivered_at_once_pay_the_claimant_exactly_once(
    stage: Stage, rounds: int
) -> None:
    """The merged pull request (twice: GitHub redelivers) and the issue it closed arrive on
    three threads at the same instant, for several bounties: each is paid once, none is
    cancelled (SRS-LN-08)."""
    errors: list[Exception] = []
    for issue in range(1, rounds + 1):
        stage.post("issue_comment", comment("/bounty 500", "maintainer", "OWNER", issue))
        stage.post("issue_comment", comment(f"/claim {stage.contributor_ln}", "alice", "NONE",
                                            issue))  # fmt: skip
        merged = pull_closed(True, "alice", f"Fixes #{issue}", number=100 + issue)
        deliveries = [("pull_request", merged), ("issues", issue_closed(issue)),
                      ("pull_request", merged)]  # fmt: skip
        barrier = threading.Barrier(len(deliveries))

        def deliver(event: str, payload: dict[str, Any], barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                stage.post(event, payload)
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=deliver, args=(*d, barrier)) for d in deliveries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    stage.clock.advance(CLAIM_GRACE_S)
    assert stage.desk.lapse() == []
    stage.dispatcher.sweep()
    bounties = stage.repos.bounties.list(None)
    assert len(bounties) == rounds and {b.status for b in bounties} == {BountyStatus.PAID}
    for bounty in bounties:
        assert len(stage.repos.payments.for_task(f"bounty:{bounty.bounty_id}")) == 1
    assert stage.held_msat(stage.contributor_ln) == rounds * 500_000


def test_a_merge_whose_payee_has_no_invoice_yet_is_paid_once_it_has_one(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In production a payee's Lightning node hands its invoice in later: the merge's bounty
    is enqueued by the intake's retry worker then, since GitHub's redelivery of the event
    would be refused as a replay (SRS-LN-08)."""
    bounty_id = open_and_claim(stage)
    source = stage.dispatcher.invoices
    real = source.invoice_for

    def not_yet(*_args: object) -> object:
        raise LightningUnavailable("waiting for the node to hand in an invoice")

    monkeypatch.setattr(source, "invoice_for", not_yet)
    stage.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    assert stage.repos.payments.for_task(f"bounty:{bounty_id}") == []
    assert stage.app.waiting() == 1
    assert stage.app.retry_due() == 0  # not due before its delay
    stage.clock.advance(5)
    assert stage.app.retry_due() == 1 and stage.app.waiting() == 1  # failed again: later
    monkeypatch.setattr(source, "invoice_for", real)
    stage.clock.advance(10)
    assert stage.app.retry_due() == 1 and stage.app.waiting() == 0
    stage.clock.advance(600)
    assert stage.app.retry_due() == 0
    stage.dispatcher.sweep()
    (payment,) = stage.repos.payments.for_task(f"bounty:{bounty_id}")
    assert payment.settled and stage.held_msat(stage.contributor_ln) == 1_000_000


def test_an_unclaimed_bounty_lapses_without_any_webhook_and_frees_the_treasurys_budget(
    stage: Stage,
) -> None:
    """GitHub may never send an issue's ``closed`` event (an uninstalled App, a lost delivery):
    the bounty-lapses worker frees the budget all the same (SRS-LN-08)."""
    stage.post("issue_comment", comment("/bounty 5000", "maintainer", "OWNER"))
    (bounty,) = stage.repos.bounties.for_issue(REPO, 1)
    with pytest.raises(PolicyViolation, match="budget has 3000 sat left"):
        stage.desk.book.open("github:m", REPO, 2, "t", 5_000, installation_id=INSTALLATION,
                             maintainer=True)
    stage.clock.advance(LAPSE_S - 1)
    assert stage.desk.lapse() == []
    stage.clock.advance(1)
    (lapsed,) = stage.desk.lapse()
    assert (lapsed.bounty_id, lapsed.status) == (bounty.bounty_id, BountyStatus.CANCELLED)
    assert stage.desk.lapse() == []  # once
    assert stage.repos.bounties.committed_treasury_sat() == 0
    stage.desk.book.open("github:m", REPO, 2, "t", 5_000, installation_id=INSTALLATION,
                         maintainer=True)


def test_a_claimed_bounty_does_not_lapse_while_its_claimant_works(stage: Stage) -> None:
    bounty_id = open_and_claim(stage)
    stage.clock.advance(LAPSE_S * 3)
    assert stage.desk.lapse() == []
    assert stage.repos.bounties.get(bounty_id).status is BountyStatus.OPEN  # type: ignore[union-attr]


def test_an_unclaimed_sponsored_bounty_lapses_and_refunds_its_sponsor_once(stage: Stage) -> None:
    opened = stage.desk.book.open("api:acme", REPO, 3, "t", 2_000, sponsor_payee=stage.sponsor_ln,
                                  installation_id=INSTALLATION)
    assert opened.invoice is not None
    before = stage.held_msat(stage.sponsor_ln)
    stage.ledger.pay(stage.sponsor_ln, opened.invoice.bolt11, 10_000)
    stage.clock.advance(LAPSE_S)
    (lapsed,) = stage.desk.lapse()
    assert lapsed.status is BountyStatus.REFUNDED
    assert stage.desk.lapse() == []
    stage.dispatcher.sweep()
    (refund,) = stage.repos.payments.for_task(f"bounty-refund:{lapsed.bounty_id}")
    assert refund.settled and stage.held_msat(stage.sponsor_ln) == before


def test_a_sponsored_bounty_whose_invoice_expired_unpaid_is_cancelled_and_nothing_is_paid(
    stage: Stage,
) -> None:
    opened = stage.desk.book.open("api:acme", REPO, 4, "t", 2_000, sponsor_payee=stage.sponsor_ln,
                                  installation_id=INSTALLATION)
    stage.clock.advance(SPONSOR_INVOICE_EXPIRY_S)
    assert stage.desk.lapse() == []  # a payment may still be in flight
    stage.clock.advance(FUNDING_GRACE_S)
    (lapsed,) = stage.desk.lapse()
    assert (lapsed.bounty_id, lapsed.status) == (opened.bounty.bounty_id, BountyStatus.CANCELLED)
    assert stage.repos.payments.for_task(f"bounty-refund:{lapsed.bounty_id}") == []


def test_the_book_opens_no_bounty_where_the_app_is_not_installed_nor_a_treasury_one_for_others(
    stage: Stage,
) -> None:
    with pytest.raises(PolicyViolation, match="not installed"):
        stage.desk.book.open("github:m", "someone/else", 1, "t", 100, maintainer=True)
    with pytest.raises(RoleRequired, match="only a maintainer"):
        stage.desk.book.open("api:acme", REPO, 1, "t", 100, installation_id=INSTALLATION)
    assert stage.repos.bounties.list(None) == []


def test_listing_bounties_looks_up_sponsors_invoices_at_most_every_few_seconds(
    stage: Stage,
) -> None:
    """GET /v1/github/bounties is public: its requests must not each cost a Lightning look-up
    per sponsored bounty waiting for its payment."""
    for issue in (1, 2):
        stage.desk.book.open("api:acme", REPO, issue, "t", 2_000, sponsor_payee=stage.sponsor_ln,
                             installation_id=INSTALLATION)  # fmt: skip
    looked_up: list[str] = []
    treasury = stage.desk.book._treasury
    stage.desk.book._treasury = Counted(treasury, looked_up)  # type: ignore[assignment]
    clock = Ticking(stage.clock.now())
    listing = Bounties(stage.repos, clock, book=stage.desk.book)
    for _ in range(3):
        listing.bounties()
    assert len(looked_up) == 2  # the two funding bounties, once
    clock.ms += SETTLE_EVERY_MS
    listing.bounties()
    assert len(looked_up) == 4


@attrs.define
class Ticking:
    """A clock whose monotonic time moves only when a test moves it."""

    at: int
    ms: int = 0

    def now(self) -> int:
        return self.at

    def monotonic_ms(self) -> int:
        return self.ms


@attrs.define
class Counted:
    """The treasury's node, counting invoice look-ups."""

    inner: Any
    looked_up: list[str]

    def lookup_invoice(self, payment_hash: str) -> Any:
        self.looked_up.append(payment_hash)
        return self.inner.lookup_invoice(payment_hash)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
