"""The GitHub App's webhook deliveries: memory, SQLite and PostgreSQL keep one contract — a
delivery id is stored once, and a replay is a Conflict that changes nothing (SRS-SEC-08)."""

from __future__ import annotations

import json

import pytest

from owm_core.errors import Conflict
from owm_core.governance.github_app import WebhookEvent, parse_webhook
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
