"""Attacks on the public API's resources, each run against a real uvicorn server on loopback:
slowloris connections, trickled bodies, one address's many connections, forged
``X-Forwarded-For``, deeply nested JSON and strangers' nonces (SRS-SEC-04, SRS-NET-07,
SRS-API-04)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from websockets.sync.client import connect

from owm_adapters.services.api import ApiConfig
from owm_core.access.ratelimit import RateLimit
from owm_server.http import app as app_module
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer, HttpLimits
from tests.server.http.world import World, build_world


@contextmanager
def _serving(world: World, limits: HttpLimits) -> Iterator[str]:
    server = ApiServer(create_app(world.services), "127.0.0.1:0", grace_s=1, limits=limits)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop(5)


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, TimeoutError, BlockingIOError):
        return False


def test_slowloris_connections_are_dropped_while_normal_requests_keep_working(
    world: World,
) -> None:
    limits = HttpLimits(header_timeout_s=1.0)
    with _serving(world, limits) as base:
        port = int(base.rsplit(":", 1)[1])
        held = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200
        deadline = time.monotonic() + 10
        dropped: set[int] = set()
        while len(dropped) < len(held) and time.monotonic() < deadline:
            for index, sock in enumerate(held):
                if index not in dropped:
                    sock.settimeout(0.2)
                    if _closed_by_server(sock):
                        dropped.add(index)
        for sock in held:
            sock.close()
        assert len(dropped) == 20, f"only {len(dropped)} of 20 half-sent requests were dropped"
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200


def test_a_connection_that_sends_nothing_is_dropped_too(world: World) -> None:
    with _serving(world, HttpLimits(header_timeout_s=0.5)) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            assert sock.recv(1024) == b""
            assert time.monotonic() - started < 4


def test_forged_forwarded_for_from_loopback_does_not_escape_the_per_ip_registration_limit(
    world: World,
) -> None:
    with _serving(world, HttpLimits()) as base:
        replies = [
            httpx.post(
                f"{base}/v1/nodes/register",
                json=world.registration(world.node()),
                headers={"X-Forwarded-For": f"203.0.113.{i}"},
                timeout=10,
            )
            for i in range(11)
        ]
    assert [r.status_code for r in replies[:10]] == [201] * 10, replies[-1].text
    refused = replies[10]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["Retry-After"]) > 0
    assert len(world.repos.nodes.list()) == 10


def test_deeply_nested_json_is_a_400_problem_not_a_500(world: World) -> None:
    for depth in (33, 5_000, 200_000):
        body = b'{"public_key": ' + b"[" * depth + b"]" * depth + b"}"
        reply = world.client.post(
            "/v1/nodes/register", content=body, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 400, reply.text
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["code"] == "malformed-request"
        assert "deeper than 32" in reply.json()["detail"]
    assert world.repos.nodes.list() == []


def test_brackets_inside_strings_do_not_count_as_nesting(world: World) -> None:
    body = {"public_key": "[" * 100, "purpose": "{" * 100}
    reply = world.client.post("/v1/nodes/challenge", json=body)
    assert reply.status_code in (400, 422)
    assert "deeper than" not in reply.json()["detail"]


def test_strangers_flooding_nonces_do_not_fill_the_replay_guard(tmp_path: Path) -> None:
    worlds = build_world(tmp_path, ApiConfig(cache_ttl_ms=0, replay_guard_max_entries=5))
    world = next(worlds)
    node = world.register()
    path = f"/v1/nodes/{node.node_id}/status"
    for _ in range(20):
        stranger = world.node(stake_sat=0)
        reply = world.client.get(path, headers=world.signed(stranger, "GET", path))
        assert reply.status_code == 401
        assert reply.json()["code"] == "signature-invalid"
    used = [world.signed(node, "GET", path) for _ in range(5)]
    for headers in used:
        assert world.client.get(path, headers=headers).status_code == 200
    full = world.client.get(path, headers=world.signed(node, "GET", path))
    assert full.status_code == 429 and full.json()["code"] == "replay-guard-full"
    assert 1 <= int(full.headers["Retry-After"]) == full.json()["retry_after_s"] <= 601
    assert "WWW-Authenticate" not in full.headers  # not an authentication failure
    replayed = world.client.get(path, headers=used[0])  # a replay stays one, guard full or not
    assert replayed.status_code == 401 and replayed.json()["code"] == "replay-rejected"
    worlds.close()


def test_one_registered_key_cannot_fill_the_replay_guard_for_the_others(tmp_path: Path) -> None:
    config = ApiConfig(cache_ttl_ms=0, replay_guard_max_entries=6, signed_per_key=3)
    worlds = build_world(tmp_path, config)
    world = next(worlds)
    greedy, honest = world.register(), world.register()
    path = f"/v1/nodes/{greedy.node_id}/status"
    replies = [world.client.get(path, headers=world.signed(greedy, "GET", path)) for _ in range(10)]
    assert [r.status_code for r in replies] == [200] * 3 + [429] * 7
    assert replies[-1].headers["content-type"] == "application/problem+json"
    assert replies[-1].json()["code"] == "replay-guard-full"
    assert 1 <= int(replies[-1].headers["Retry-After"]) <= 601
    mine = f"/v1/nodes/{honest.node_id}/status"
    for _ in range(3):
        assert world.client.get(mine, headers=world.signed(honest, "GET", mine)).status_code == 200
    worlds.close()


def _read_until_closed(sock: socket.socket, timeout_s: float) -> bytes:
    """What the server sends until it closes the connection (or ``timeout_s`` passes)."""
    sock.settimeout(timeout_s)
    received = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        received += chunk
    return received


def test_a_body_trickled_a_byte_a_second_is_answered_408_and_closed_at_the_body_deadline(
    world: World,
) -> None:
    limits = HttpLimits(header_timeout_s=1.0, body_timeout_s=2.0)
    with _serving(world, limits) as base:
        port = int(base.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(
            b"POST /v1/nodes/challenge HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        )
        started = time.monotonic()
        sock.settimeout(0.05)
        answer = b""
        while time.monotonic() - started < 8 and not answer:
            try:
                sock.sendall(b" ")
                answer = sock.recv(4096)
            except TimeoutError:
                time.sleep(0.95)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer += _read_until_closed(sock, 2.0)
        held_s = time.monotonic() - started
        sock.close()
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        head, _, body = answer.partition(b"\r\n\r\n")
        assert b"application/problem+json" in head and b"connection: close" in head
        assert b'"code":"request-timeout"' in body
        assert held_s < 5, f"the trickled body held the connection for {held_s:.1f} s"
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200


def test_a_body_that_arrives_in_time_is_answered_as_usual(world: World) -> None:
    with _serving(world, HttpLimits(body_timeout_s=2.0)) as base:
        reply = httpx.post(f"{base}/v1/nodes/challenge", json={"public_key": "zz"}, timeout=5)
    assert reply.status_code == 422, reply.text


def test_one_address_holds_at_most_its_share_of_connections_and_the_next_is_answered_429(
    world: World,
) -> None:
    with _serving(world, HttpLimits(max_connections_per_ip=4)) as base:
        port = int(base.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        for sock in held:
            sock.sendall(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        time.sleep(0.2)
        refused = httpx.get(f"{base}/v1/openapi.json", timeout=5)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "rate-limited"
        assert "open connections from this address" in refused.json()["detail"]
        held.pop().close()
        time.sleep(0.2)
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200
        for sock in held:
            sock.close()


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_share_of_requests(
    world: World,
) -> None:
    limits = HttpLimits(max_connections_per_ip=2, trusted_proxies=("127.0.0.1",))
    with _serving(world, limits) as base:
        port = int(base.rsplit(":", 1)[1])
        slow = []
        for _ in range(2):  # the proxy's many connections are not capped as its own
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(
                b"POST /v1/nodes/challenge HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7"
                b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            slow.append(sock)
        time.sleep(0.2)
        same = httpx.get(
            f"{base}/v1/openapi.json", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=5
        )
        other = httpx.get(
            f"{base}/v1/openapi.json", headers={"X-Forwarded-For": "198.51.100.1"}, timeout=5
        )
        for sock in slow:
            sock.close()
        time.sleep(0.2)
        again = httpx.get(
            f"{base}/v1/openapi.json", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=5
        )
    assert same.status_code == 429 and same.json()["code"] == "rate-limited", same.text
    assert "requests at once from this address" in same.json()["detail"]
    assert other.status_code == 200
    assert again.status_code == 200


def test_a_client_that_disconnects_mid_body_is_one_quiet_line_without_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _serving(world, HttpLimits()) as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/nodes/challenge HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"pub"
            )
            time.sleep(0.3)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            "went away" in r.getMessage() for r in caplog.records
        ):
            time.sleep(0.05)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    gone = [r for r in caplog.records if "went away" in r.getMessage()]
    assert len(gone) == 1 and gone[0].levelno == logging.DEBUG


def _from(world: World, address: str) -> TestClient:
    return TestClient(create_app(world.services), raise_server_exceptions=False,
                      client=(address, 40_000))  # fmt: skip


def test_public_operations_are_limited_per_client_address(tmp_path: Path) -> None:
    worlds = build_world(tmp_path, ApiConfig(public_per_client=RateLimit(limit=3, window_s=60)))
    world = next(worlds)
    greedy, other = _from(world, "203.0.113.5"), _from(world, "198.51.100.7")
    body = {"public_key": world.node().public_key, "purpose": "register"}
    replies = [greedy.post("/v1/nodes/challenge", json=body) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    refused = replies[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "rate-limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    big = b'{"round": 1, "weights": [' + b"0.5," * 200_000 + b"0.5]}"
    upload = greedy.post("/v1/fl/updates", content=big,
                         headers={"content-type": "application/json"})  # fmt: skip
    assert upload.status_code == 429  # refused before its body is read
    assert other.post("/v1/nodes/challenge", json=body).status_code == 200
    world.clock.advance(60)
    assert greedy.post("/v1/nodes/challenge", json=body).status_code == 200
    worlds.close()


def test_a_strangers_body_is_not_parsed_before_its_credential_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    parse = app_module._parse_body

    def counting(op: Any, raw: bytes, content_type: str) -> Any:
        parsed.append(raw)
        return parse(op, raw, content_type)

    monkeypatch.setattr(app_module, "_parse_body", counting)
    post = "/v1/governance/proposals"
    big = b'{"title": "t", "description": "' + b"d" * 1_000_000 + b'", "extra": [1]}'
    json_type = {"content-type": "application/json"}
    forged = world.client.post(post, content=big,
                               headers={**json_type, "Authorization": "Bearer owm_wrong"})
    assert forged.status_code == 401, forged.text
    anonymous = world.client.post(post, content=big, headers=json_type)
    assert anonymous.status_code == 402
    stranger = world.node()
    signed = world.client.post(post, content=big,
                               headers={**json_type, **world.signed(stranger, "POST", post, big)})
    assert signed.status_code == 401
    assert parsed == []
    known = world.client.post(post, content=big, headers={**json_type, **world.api_key()})
    assert known.status_code == 422 and known.json()["field"].startswith("body.")
    assert len(parsed) == 1


def test_websockets_count_against_their_address_while_open_and_give_the_slot_back_on_close(
    world: World,
) -> None:
    with _serving(world, HttpLimits(max_connections_per_ip=2)) as base:
        feed = base.replace("http://", "ws://") + "/v1/mining/dashboard"
        for _ in range(5):  # more than the cap, one after the other
            with connect(feed) as socket_:
                assert json.loads(socket_.recv())
        time.sleep(0.2)
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200
        with connect(feed) as first, connect(feed) as second:
            assert first.recv() and second.recv()
            held = httpx.get(f"{base}/v1/openapi.json", timeout=5)
            assert held.status_code == 429, held.text
        time.sleep(0.2)
        assert httpx.get(f"{base}/v1/openapi.json", timeout=5).status_code == 200
