"""The GitHub App's records: memory, SQLite and PostgreSQL keep one contract — a delivery id is
stored once, a replay is a Conflict that changes nothing (SRS-SEC-08); a webhook handler's
pending retry survives a reopen and is claimed by one worker only (SRS-LN-08); bounties keep their
funding and claim, are found by issue, and the treasury's open ones are summed (SRS-LN-08)."""

from __future__ import annotations

import json
import threading

import attrs
import pytest

from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_core.errors import Conflict, PolicyViolation
from owm_core.governance.bounty_rules import Funding
from owm_core.governance.contributions import BountyStatus, open_bounty
from owm_core.governance.github_app import HandlerRetry, WebhookEvent, parse_webhook
from owm_core.knowledge.credit_payouts import DataPayee
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend

pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template

T0 = 1_800_000_000


def delivery(delivery_id: str, at: int, action: str = "opened") -> WebhookEvent:
    body = {"action": action, "repository": {"full_name": "o/r"}, "installation": {"id": 9}}
    return parse_webhook(delivery_id, "pull_request", json.dumps(body).encode(), at)


def test_a_delivery_survives_a_reopen_and_deliveries_list_newest_first(backend: Backend) -> None:
    events = backend.repos.webhook_events
    first, second = delivery("d-1", T0), delivery("d-2", T0 + 5, "closed")
    events.add(first)
    events.add(second)
    again = backend.reopen().webhook_events
    assert again.get("d-1") == first
    assert again.list() == [second, first]
    assert again.list(limit=1) == [second]
    assert again.get("d-3") is None


def test_a_repositorys_app_installation_is_its_newest_delivery_that_names_one(
    backend: Backend,
) -> None:
    events = backend.repos.webhook_events
    assert events.installation_of("o/r") is None
    events.add(delivery("d-1", T0))  # installation 9
    newer = attrs.evolve(delivery("d-2", T0 + 5), installation_id=11)
    events.add(newer)
    events.add(attrs.evolve(delivery("d-3", T0 + 9), installation_id=None))  # names none
    events.add(attrs.evolve(delivery("d-4", T0 + 20), repository="o/other", installation_id=4))
    again = backend.reopen().webhook_events
    assert again.installation_of("o/r") == 11
    assert again.installation_of("o/other") == 4
    assert again.installation_of("o/none") is None


def test_a_replayed_delivery_id_is_a_conflict_and_the_stored_event_stays(
    backend: Backend,
) -> None:
    events = backend.repos.webhook_events
    original = delivery("d-1", T0)
    events.add(original)
    with pytest.raises(Conflict, match="replay"):
        events.add(delivery("d-1", T0 + 60, "closed"))
    assert backend.reopen().webhook_events.get("d-1") == original
    assert events.list() == [original]


def test_a_claimed_sponsored_bounty_survives_a_reopen_and_is_found_by_its_issue(
    backend: Backend,
) -> None:
    bounties = backend.repos.bounties
    treasury = open_bounty(bounty_id="b1", repository="o/r", issue_number=3, title="t",
                           amount_sat=700, created_by="github:m", now=T0)  # fmt: skip
    sponsored = attrs.evolve(
        open_bounty(bounty_id="b2", repository="o/r", issue_number=3, title="t",
                    amount_sat=900, created_by="api:acme", now=T0 + 1),
        funding=Funding.SPONSOR, sponsor_payee="02" + "ab" * 32, sponsor_invoice_hash="c" * 64,
        claimant="alice", claimant_payee="03" + "cd" * 32, installation_id=2**40,
        issue_closed_at=T0 + 2,
    )  # fmt: skip
    bounties.add(treasury)
    bounties.add(sponsored)
    bounties.add(attrs.evolve(treasury, bounty_id="b3", issue_number=4))
    again = backend.reopen().bounties
    assert again.for_issue("o/r", 3) == [treasury, sponsored]
    assert again.committed_treasury_sat() == 1_400  # sponsored ones are not the treasury's
    bounties.save(attrs.evolve(treasury, status=BountyStatus.CANCELLED))
    assert backend.reopen().bounties.committed_treasury_sat() == 700


def test_a_data_payee_is_replaced_and_survives_a_reopen(backend: Backend) -> None:
    payees = backend.repos.data_payees
    payees.put(DataPayee("bob", "02" + "ab" * 32, T0))
    payees.put(DataPayee("alice", "03" + "cd" * 32, T0))
    newer = DataPayee("alice", "02" + "ef" * 32, T0 + 9)
    payees.put(newer)
    again = backend.reopen().data_payees
    assert again.get("alice") == newer
    assert [p.contributor for p in again.list()] == ["alice", "bob"]
    assert [p.contributor for p in again.list(limit=1, after="alice")] == ["bob"]
    assert again.get("carol") is None


class _Clock:
    def now(self) -> int:
        return T0

    def monotonic(self) -> float:
        return 0.0


def test_bounties_opened_at_once_from_many_threads_never_exceed_the_treasury_budget(
    backend: Backend,
) -> None:
    """Eight threads each open a 30,000 sat treasury bounty against a 100,000 sat budget at
    the same instant (each on its own handle on the store): exactly three open, the others are
    refused with a clear error, and the committed sum stays within the budget. On PostgreSQL
    under READ COMMITTED a read-then-insert budget check without the advisory lock lets more
    through (SRS-LN-08)."""
    threads_n, amount, budget = 8, 30_000, 100_000
    barrier = threading.Barrier(threads_n)
    opened: list[str] = []
    refused: list[str] = []

    def open_one(index: int) -> None:
        repos = backend.reopen()
        terms = BountyTerms(max_bounty_sat=amount, budget_sat=budget)
        book = BountyBook(repos, _Clock(), None, terms)  # type: ignore[arg-type]
        barrier.wait()
        try:
            opened.append(book.open("github:maint", "o/r", index, "t", amount, installation_id=1,
                                     maintainer=True).bounty.bounty_id)
        except PolicyViolation as exc:
            refused.append(str(exc))

    workers = [threading.Thread(target=open_one, args=(i + 1,)) for i in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert len(opened) == budget // amount and len(refused) == threads_n - len(opened)
    assert all("budget" in message for message in refused)
    assert backend.reopen().bounties.committed_treasury_sat() == len(opened) * amount <= budget


def test_a_pending_handler_retry_survives_a_reopen_and_is_listed_when_due(
    backend: Backend,
) -> None:
    retries = backend.repos.handler_retries
    later = HandlerRetry("d-1", "bounties", 1, T0 + 10, T0 + 86_400)
    sooner = HandlerRetry("d-2", "contributions", 3, T0 + 5, T0 + 86_400, "GitHub is down")
    retries.add(later)
    retries.add(sooner)
    with pytest.raises(Conflict):
        retries.add(later)
    again = backend.reopen().handler_retries
    assert again.get("d-2", "contributions") == sooner
    assert again.get("d-2", "bounties") is None
    assert again.due(T0 + 4) == []
    assert again.due(T0 + 10) == [sooner, later]
    assert again.due(T0 + 10, limit=1) == [sooner]
    assert again.count() == 2
    again.save(attrs.evolve(later, next_at=T0 + 99, reason="no invoice yet"))
    assert backend.reopen().handler_retries.get("d-1", "bounties").reason == "no invoice yet"  # type: ignore[union-attr]
    again.remove("d-1", "bounties")
    again.remove("d-1", "bounties")  # removing a removed one is no error
    assert backend.reopen().handler_retries.count() == 1
    with pytest.raises(Conflict):
        again.save(later)


def test_a_delivery_is_stored_with_its_handler_runs_and_a_replay_stores_neither(
    backend: Backend,
) -> None:
    """A delivery and its pending handler runs are written together, so a crash right after
    the delivery is stored cannot lose its handlers' work (SRS-LN-08)."""
    events = backend.repos.webhook_events
    first = delivery("d-1", T0)
    runs = [HandlerRetry("d-1", name, 1, T0 + 300, T0 + 86_400) for name in ("a", "b")]
    events.add(first, runs)
    again = backend.reopen()
    assert again.webhook_events.get("d-1") == first
    assert [again.handler_retries.get("d-1", n) for n in ("a", "b")] == runs
    again.handler_retries.remove("d-1", "a")
    with pytest.raises(Conflict, match="replay"):
        events.add(delivery("d-1", T0 + 60, "closed"), runs)
    assert backend.reopen().handler_retries.get("d-1", "a") is None  # not stored again
    assert backend.reopen().handler_retries.count() == 1


def test_a_retry_is_claimed_once_and_a_stale_claim_changes_nothing(backend: Backend) -> None:
    retries = backend.repos.handler_retries
    pending = HandlerRetry("d-1", "bounties", 1, T0, T0 + 86_400)
    retries.add(pending)
    taken = retries.claim(pending, T0 + 300)
    assert taken == attrs.evolve(pending, attempts=2, next_at=T0 + 300)
    assert backend.reopen().handler_retries.claim(pending, T0 + 300) is None  # read before
    assert backend.reopen().handler_retries.get("d-1", "bounties") == taken
    assert retries.due(T0 + 299) == []
    retries.remove("d-1", "bounties")
    assert retries.claim(taken, T0 + 600) is None


def test_workers_claiming_one_due_retry_at_once_leave_it_to_exactly_one(
    backend: Backend,
) -> None:
    """Eight workers, each on its own handle on the store, read the same due retry and claim it
    at the same instant: one gets it, the others get None (SRS-COORD-05)."""
    pending = HandlerRetry("d-1", "bounties", 2, T0, T0 + 86_400)
    backend.repos.handler_retries.add(pending)
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    won: list[HandlerRetry] = []

    def claim() -> None:
        repos = backend.reopen()
        (seen,) = repos.handler_retries.due(T0)
        barrier.wait()
        if (taken := repos.handler_retries.claim(seen, T0 + 300)) is not None:
            won.append(taken)

    workers = [threading.Thread(target=claim) for _ in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert won == [attrs.evolve(pending, attempts=3, next_at=T0 + 300)]
