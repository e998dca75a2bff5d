"""The GitHub App's webhook handler retries live in the store: a coordinator restarted (or
crashed) with one pending finishes it and pays the merge's bounty once, a retry cut short after
the payment pays nothing twice, one still failing after a day is given up with its delivery id
in the log, and of two coordinators on one store only one runs a due retry (SRS-LN-08,
SRS-COORD-05)."""

from __future__ import annotations

import logging
import shutil
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
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.github_app import GitHubApp
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.services.github_retries import LEASE_S, RETRY_FOR_S
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.sql import SqlRepositories, open_repositories
from owm_core.errors import GitHubUnavailable, LightningUnavailable
from owm_core.governance.github_app import WebhookEvent
from owm_core.ports.repositories import Repositories
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend
from tests.github_app_support import SECRET, credentials, delivery, standin
from tests.server.harness import StepClock
from tests.services.test_github_bounties import REPO, comment, pull_closed

T0 = 1_800_000_000
INSTALLATION = 1
pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template


class Crash(BaseException):
    """The coordinator's process ending here (nothing after it runs)."""


@attrs.define
class Coordinator:
    """One coordinator process: its own handle on the shared SQL store and its services."""

    repos: SqlRepositories
    dispatcher: PayoutDispatcher
    app: GitHubApp

    def post(self, event: str, payload: dict[str, Any]) -> str:
        headers, raw = delivery(event, payload)
        self.app.receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], event, raw)
        return headers["X-GitHub-Delivery"]

    def stop(self) -> None:
        self.dispatcher.stop()
        self.repos.close()


@attrs.define
class World:
    """The SQLite store, the Lightning ledger and GitHub that outlive coordinator restarts."""

    url: str
    clock: StepClock
    ledger: SimLedger
    github: GitHubStandIn
    contributor_ln: str
    started: list[Coordinator] = attrs.Factory(list)

    def start(self) -> Coordinator:
        repos = open_repositories(self.url, migrate=False)
        treasury = self.ledger.lightning("treasury")
        invoices = LedgerInvoiceSource(self.ledger)
        dispatcher = PayoutDispatcher(repos, treasury, invoices, self.clock)
        port = GitHubRest(self.github.url, credentials(), self.clock)
        book = BountyBook(repos, self.clock, treasury, BountyTerms(max_bounty_sat=5_000))
        app = GitHubApp(repos, self.clock, SECRET, port, [BountyDesk(repos, book, dispatcher,
                                                                     port)])  # fmt: skip
        self.started.append(Coordinator(repos, dispatcher, app))
        return self.started[-1]

    def held_msat(self) -> int:
        with sqlite3.connect(self.ledger.path) as db:
            row = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                             " WHERE node_b = ?", (self.contributor_ln,)).fetchone()  # fmt: skip
        return int(row[0])

    def open_and_claim(self, coordinator: Coordinator) -> str:
        coordinator.post("issue_comment", comment("/bounty 1000", "maintainer", "OWNER"))
        (bounty,) = coordinator.repos.bounties.for_issue(REPO, 1)
        coordinator.post("issue_comment", comment(f"/claim {self.contributor_ln}", "alice",
                                                   "NONE"))  # fmt: skip
        return bounty.bounty_id


@pytest.fixture
def world(tmp_path: Path, sqlite_template: Path) -> Iterator[World]:
    path = tmp_path / "coordinator.sqlite3"
    shutil.copy(sqlite_template, path)
    clock = StepClock(T0)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury, contributor = ledger.add_node("treasury"), ledger.add_node("contributor")
    ledger.open_channel(treasury, contributor, 10_000_000)
    with standin(clock.now) as github:
        github.add_repository(REPO, INSTALLATION)
        built = World(f"sqlite:///{path}", clock, ledger, github, contributor)
        yield built
        for coordinator in built.started:
            coordinator.app.retries.stop()
            coordinator.stop()


def no_invoice(*_args: object) -> object:
    raise LightningUnavailable("waiting for the node to hand in an invoice")


def test_a_coordinator_restarted_with_a_pending_retry_pays_the_merge_once_when_it_starts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge arrives while the payee's node has no invoice; the coordinator then stops
    (its memory is lost). The next one to start runs the stored retry from its worker at once
    and the bounty is paid, once."""
    first = world.start()
    bounty_id = world.open_and_claim(first)
    monkeypatch.setattr(first.dispatcher.invoices, "invoice_for", no_invoice)
    first.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    assert first.app.waiting() == 1 and first.repos.payments.for_task(f"bounty:{bounty_id}") == []
    first.stop()

    world.clock.advance(5)
    second = world.start()
    assert second.app.waiting() == 1
    second.app.retries.start()  # what the singleton job does on the leading coordinator
    deadline = time.monotonic() + 30
    while second.app.waiting() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert second.app.waiting() == 0
    second.dispatcher.sweep()
    (payment,) = second.repos.payments.for_task(f"bounty:{bounty_id}")
    assert payment.settled and world.held_msat() == 1_000_000


def test_a_retry_after_a_crash_between_the_payment_and_marking_it_done_pays_nothing_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler enqueues the payout, the payout is paid, and the process dies before the
    retry is removed: the next coordinator runs the handler again when the lease ends, and
    the outbox's deterministic payout id keeps the contributor paid exactly once."""
    first = world.start()
    bounty_id = world.open_and_claim(first)

    def pay_then_crash(*_args: object) -> None:
        first.dispatcher.sweep()
        raise Crash

    monkeypatch.setattr(first.repos.handler_retries, "remove", pay_then_crash)
    with pytest.raises(Crash):
        first.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    assert world.held_msat() == 1_000_000
    first.stop()

    second = world.start()
    assert second.app.waiting() == 1 and second.app.retry_due() == 0  # its lease holds
    world.clock.advance(LEASE_S)
    assert second.app.retry_due() == 1 and second.app.waiting() == 0
    second.dispatcher.sweep()
    assert len(second.repos.payments.for_task(f"bounty:{bounty_id}")) == 1
    assert world.held_msat() == 1_000_000


def test_a_retry_still_failing_a_day_after_its_delivery_is_given_up_and_logged_with_its_id(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = world.start()
    world.open_and_claim(first)
    monkeypatch.setattr(first.dispatcher.invoices, "invoice_for", no_invoice)
    delivery_id = first.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    while world.clock.now() < T0 + RETRY_FOR_S - 600:
        world.clock.advance(600)
        assert first.app.retry_due() == 1 and first.app.waiting() == 1
    world.clock.advance(1_200)
    with caplog.at_level(logging.ERROR, "owm_adapters.services.github_retries"):
        assert first.app.retry_due() == 0
    assert first.app.waiting() == 0
    (record,) = [r for r in caplog.records if "given up" in r.getMessage()]
    assert delivery_id in record.getMessage() and "invoice" in record.getMessage()


@attrs.define
class Flaky:
    """A handler that fails once for a passing reason, then counts (slowly) its runs."""

    runs: list[str] = attrs.Factory(list)
    name: str = "flaky"

    def __call__(self, event: WebhookEvent) -> None:
        self.runs.append(event.delivery_id)
        if len(self.runs) == 1:
            raise GitHubUnavailable("cannot reach GitHub")
        time.sleep(0.2)


def test_two_coordinators_on_one_store_run_a_due_retry_once(backend: Backend) -> None:
    """Both coordinators' workers look for due retries at the same instant (each on its own
    handle on the store): the retry runs once, then it is done."""
    clock = StepClock(T0)
    handler = Flaky()
    stores: list[Repositories] = [backend.repos, backend.reopen()]
    apps = [GitHubApp(store, clock, SECRET, handlers=[handler]) for store in stores]
    headers, raw = delivery("ping", {"zen": "Keep it simple."})
    apps[0].receive(headers["X-Hub-Signature-256"], headers["X-GitHub-Delivery"], "ping", raw)
    clock.advance(5)
    barrier = threading.Barrier(2)
    ran: list[int] = []

    def work(app: GitHubApp) -> None:
        barrier.wait()
        ran.append(app.retry_due())

    threads = [threading.Thread(target=work, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(ran) == [0, 1] and len(handler.runs) == 2
    assert apps[1].waiting() == 0


def test_a_merge_stored_just_before_a_crash_is_still_paid_once_by_the_next_coordinator(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the delivery is stored (and acknowledged) but before any
    handler ran: the runs stored with the delivery are picked up when their lease ends."""
    first = world.start()
    bounty_id = world.open_and_claim(first)

    def crash(*_args: object) -> None:
        raise Crash

    monkeypatch.setattr(first.app.handler_runs, "run_first", crash)
    with pytest.raises(Crash):
        first.post("pull_request", pull_closed(True, "alice", "Fixes #1"))
    first.stop()

    second = world.start()
    world.clock.advance(LEASE_S)
    assert second.app.retry_due() == 1 and second.app.waiting() == 0
    second.dispatcher.sweep()
    (payment,) = second.repos.payments.for_task(f"bounty:{bounty_id}")
    assert payment.settled and world.held_msat() == 1_000_000
