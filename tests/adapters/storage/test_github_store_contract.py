"""The GitHub App's records: memory, SQLite and PostgreSQL keep one contract — a delivery id is
stored once, a replay is a Conflict that changes nothing (SRS-SEC-08); bounties keep their
funding and claim, are found by issue, and the treasury's open ones are summed (SRS-LN-08)."""

from __future__ import annotations

import json

import attrs
import pytest

from owm_core.errors import Conflict
from owm_core.governance.bounty_rules import Funding
from owm_core.governance.contributions import BountyStatus, open_bounty
from owm_core.governance.github_app import WebhookEvent, parse_webhook
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
    assert again.get("carol") is None
