"""Attacks on the public API's resources, each run against a real uvicorn server on loopback:
slowloris connections, forged ``X-Forwarded-For``, deeply nested JSON and strangers' nonces
(SRS-SEC-04, SRS-NET-07, SRS-API-04)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from owm_adapters.services.api import ApiConfig
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
    for _ in range(5):
        assert world.client.get(path, headers=world.signed(node, "GET", path)).status_code == 200
    full = world.client.get(path, headers=world.signed(node, "GET", path))
    assert full.status_code == 401 and full.json()["code"] == "replay-rejected"
    worlds.close()


def test_one_registered_key_cannot_fill_the_replay_guard_for_the_others(tmp_path: Path) -> None:
    config = ApiConfig(cache_ttl_ms=0, replay_guard_max_entries=6, signed_per_key=3)
    worlds = build_world(tmp_path, config)
    world = next(worlds)
    greedy, honest = world.register(), world.register()
    path = f"/v1/nodes/{greedy.node_id}/status"
    replies = [world.client.get(path, headers=world.signed(greedy, "GET", path)) for _ in range(10)]
    assert [r.status_code for r in replies] == [200] * 3 + [401] * 7
    assert replies[-1].json()["code"] == "replay-rejected"
    mine = f"/v1/nodes/{honest.node_id}/status"
    for _ in range(3):
        assert world.client.get(mine, headers=world.signed(honest, "GET", mine)).status_code == 200
    worlds.close()
