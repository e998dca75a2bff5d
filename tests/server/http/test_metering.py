"""Metered commercial access (SRS-API-02/03): paid keys and tokens have daily quotas, writes
have their own, and amounts and comment threads are bounded — each answered with a problem
document and nothing stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owm_adapters.services.api import ApiConfig
from owm_core.access.api_keys import Plan
from owm_core.access.ratelimit import RateLimit
from tests.server.http.world import World, build_world

READ = "/v1/stake/requirements"
BOUNTIES = "/v1/github/bounties"
PROPOSALS = "/v1/governance/proposals"
PROPOSAL = {"title": "t", "description": "d", "type": "policy", "implementation_plan": "p"}


@pytest.fixture
def metered(tmp_path: Path) -> Iterator[World]:
    config = ApiConfig(
        cache_ttl_ms=0,
        paid_requests_per_day=3,
        writes_per_day=2,
        max_comments_per_author=2,
        max_comments_per_proposal=3,
    )
    yield from build_world(tmp_path, config)


def _is_429(reply: Any) -> int:
    assert reply.status_code == 429
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "rate-limited"
    return int(reply.headers["Retry-After"])


def test_a_paid_key_has_a_daily_quota_answered_with_429_and_retry_after(metered: World) -> None:
    paid = metered.api_key(owner="acme", plan=Plan.COMMERCIAL)
    for left in (2, 1, 0):
        reply = metered.client.get(READ, headers=paid)
        assert reply.status_code == 200
        assert reply.headers["RateLimit-Remaining"] == str(left)
    retry_after = _is_429(metered.client.get(READ, headers=paid))
    assert 0 < retry_after <= 86_400
    metered.clock.advance(retry_after)
    assert metered.client.get(READ, headers=paid).status_code == 200


def test_writes_have_their_own_daily_quota(metered: World) -> None:
    key = metered.api_key(owner="spammer")
    for _ in range(2):
        assert metered.client.post(PROPOSALS, json=PROPOSAL, headers=key).status_code == 201
    _is_429(metered.client.post(PROPOSALS, json=PROPOSAL, headers=key))
    assert len(metered.client.get(PROPOSALS, headers=key).json()["proposals"]) == 2


def test_a_free_key_cannot_open_a_21_million_btc_bounty(world: World) -> None:
    body = {"repository": "owm-network/owm", "issue_number": 1, "title": "x",
            "amount_sat": 21_000_000 * 100_000_000}  # fmt: skip
    reply = world.client.post(BOUNTIES, json=body, headers=world.api_key())
    assert reply.status_code == 422
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["field"] == "amount_sat"
    assert world.client.get(BOUNTIES, headers=world.api_key()).json() == {"bounties": []}


def test_a_proposal_cannot_request_more_than_the_cap(world: World) -> None:
    body = {**PROPOSAL, "type": "treasury", "requested_sat": 10**15}
    reply = world.client.post(PROPOSALS, json=body, headers=world.api_key())
    assert reply.status_code == 422 and reply.json()["field"] == "requested_sat"


def test_comment_threads_are_bounded_per_author_and_per_proposal(metered: World) -> None:
    author = metered.api_key(owner="author")
    proposal = metered.client.post(PROPOSALS, json=PROPOSAL, headers=author).json()
    path = f"{PROPOSALS}/{proposal['proposal_id']}/comment"
    alice = metered.api_key(owner="alice")
    for text in ("one", "two"):
        assert metered.client.post(path, json={"text": text}, headers=alice).status_code == 201
    third = metered.client.post(path, json={"text": "three"}, headers=metered.api_key("alice"))
    assert third.status_code == 409 and third.json()["code"] == "policy-violation"
    assert metered.client.post(path, json={"text": "b"}, headers=author).status_code == 201
    full = metered.client.post(path, json={"text": "c"}, headers=metered.api_key("carol"))
    assert full.status_code == 409 and full.json()["code"] == "policy-violation"
    texts = [c["text"] for c in metered.client.get(PROPOSALS, headers=author).json()[
        "proposals"][0]["comments"]]  # fmt: skip
    assert texts == ["one", "two", "b"]


@pytest.fixture
def stingy(tmp_path: Path) -> Iterator[World]:
    config = ApiConfig(cache_ttl_ms=0, invoices_per_client=RateLimit(limit=3, window_s=3_600))
    yield from build_world(tmp_path, config)


def test_anonymous_callers_cannot_make_the_treasury_create_invoices_without_limit(
    stingy: World,
) -> None:
    hashes = set()
    for _ in range(3):
        offered = stingy.client.get(READ)
        assert offered.status_code == 402
        hashes.add(offered.json()["payment_hash"])
    assert len(hashes) == 3
    refused = stingy.client.get(READ)
    retry_after = _is_429(refused)
    assert "invoice" not in refused.json() and "WWW-Authenticate" not in refused.headers
    assert _is_429(stingy.client.get("/v1/payments/invoice")) > 0
    stingy.clock.advance(retry_after)
    assert stingy.client.get(READ).status_code == 402
