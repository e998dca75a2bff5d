"""POST /v1/github/webhook with GitHub's own example payloads: the signature is checked before
the body is parsed, a replayed delivery is refused, and an event is stored before it is
acknowledged (SRS-SEC-08)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from owm_adapters.services.github_app import GitHubApp
from owm_core.governance.github_app import webhook_signature
from tests.github_app_support import SECRET, delivery
from tests.github_examples import examples
from tests.server.http.world import World

EVENTS = ["pull_request", "issue_comment", "issues", "push", "installation", "ping"]


def serve_app(world: World) -> GitHubApp:
    app = GitHubApp(world.repos, world.clock, SECRET)
    world.serve(github=app)
    return app


def post(world: World, headers: dict[str, str], raw: bytes) -> Any:
    return world.client.post("/v1/github/webhook", headers=headers, content=raw)


@pytest.mark.parametrize("event", EVENTS)
def test_every_example_github_publishes_is_stored_then_acknowledged(
    world: World, event: str
) -> None:
    serve_app(world)
    for payload in examples(event):
        headers, raw = delivery(event, payload)
        reply = post(world, headers, raw)
        assert reply.status_code == 202, reply.text
        stored = world.repos.webhook_events.get(headers["X-GitHub-Delivery"])
        assert stored is not None and stored.event == event
        assert stored.body_sha256 == hashlib.sha256(raw).hexdigest()
        assert stored.body() == payload
        assert reply.json()["action"] == (payload.get("action") or "")
        assert stored.repository == (payload.get("repository") or {}).get("full_name", "")


def test_a_forged_signature_is_refused_before_the_body_is_parsed(world: World) -> None:
    serve_app(world)
    payload = examples("pull_request", "closed")[0]
    headers, raw = delivery("pull_request", payload, secret=b"not-the-app-secret-at-all")
    reply = post(world, headers, raw)
    assert reply.status_code == 401
    assert reply.json()["code"] == "signature-invalid"
    # unparseable garbage gets the same 401, not a 400: nothing parsed it
    garbage = post(world, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}, b"{{{")
    assert garbage.status_code == 401
    unsigned = {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}
    assert post(world, unsigned, raw).status_code == 401
    assert world.repos.webhook_events.list() == []


def test_a_body_altered_after_signing_is_refused(world: World) -> None:
    serve_app(world)
    payload = examples("issue_comment", "created")[0]
    headers, raw = delivery("issue_comment", payload)
    altered = raw.replace(b"You are totally right!", b"/bounty 2100000000000")
    assert altered != raw
    assert post(world, headers, altered).status_code == 401
    assert world.repos.webhook_events.list() == []


def test_a_replayed_delivery_is_refused_and_the_stored_event_is_unchanged(world: World) -> None:
    serve_app(world)
    payload = examples("pull_request", "closed")[0]
    headers, raw = delivery("pull_request", payload)
    assert post(world, headers, raw).status_code == 202
    first = world.repos.webhook_events.get(headers["X-GitHub-Delivery"])
    world.clock.advance(60)
    again = post(world, headers, raw)
    assert again.status_code == 409
    assert "replay" in again.json()["detail"]
    other = json.dumps({**payload, "action": "reopened"}).encode()
    replay = {**headers, "X-Hub-Signature-256": webhook_signature(SECRET, other)}
    assert post(world, replay, other).status_code == 409
    assert world.repos.webhook_events.list() == [first]


def test_an_event_the_store_cannot_keep_is_not_acknowledged_and_is_taken_when_redelivered(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_app(world)
    headers, raw = delivery("push", examples("push")[0])
    events = world.repos.webhook_events

    def broken(_event: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(events, "add", broken)
    reply = post(world, headers, raw)
    assert reply.status_code == 500
    assert reply.headers["content-type"].startswith("application/problem+json")
    monkeypatch.undo()
    assert post(world, headers, raw).status_code == 202  # GitHub's redelivery is taken
    assert events.get(headers["X-GitHub-Delivery"]) is not None


def test_without_a_configured_app_the_webhook_answers_503(world: World) -> None:
    headers, raw = delivery("ping", {"zen": "Design for failure."})
    reply = post(world, headers, raw)
    assert reply.status_code == 503
    assert reply.json()["code"] == "github-app-off"
