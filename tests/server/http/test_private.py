"""Private by default: the dashboard and the live mining feed answer the operator's machine
only, and errors never show anonymous callers the coordinator's internal hosts (SRS-SEC-07)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from owm_adapters.services.api import ApiConfig
from owm_core.errors import LightningUnavailable
from owm_server.http.app import create_app
from tests.server.http.world import World, build_world

PRIVATE = ("/dashboard", "/dashboard/fragments/nodes", "/dashboard/fragments/payments")


def _outsider(world: World) -> TestClient:
    return TestClient(
        create_app(world.services), raise_server_exceptions=False, client=("203.0.113.9", 4000)
    )


def test_the_dashboard_refuses_callers_from_other_machines_with_a_403_problem(
    world: World,
) -> None:
    outsider = _outsider(world)
    for path in PRIVATE:
        reply = outsider.get(path, headers={"X-Forwarded-For": "127.0.0.1"})
        assert reply.status_code == 403, path
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["code"] == "forbidden"
        assert world.client.get(path).status_code == 200


def test_the_live_mining_feed_refuses_callers_from_other_machines(world: World) -> None:
    outsider = _outsider(world)
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        outsider.websocket_connect("/v1/mining/dashboard") as socket,
    ):
        socket.receive_json()
    assert refused.value.code == 1008
    with world.client.websocket_connect("/v1/mining/dashboard") as socket:
        assert socket.receive_json()["type"] == "pool_metrics"


@pytest.fixture
def closed_world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path, ApiConfig(cache_ttl_ms=0, dashboard_access="off"))


def test_a_dashboard_turned_off_is_not_found_even_from_loopback(closed_world: World) -> None:
    reply = closed_world.client.get("/dashboard")
    assert reply.status_code == 404 and reply.json()["code"] == "not-found"
    assert closed_world.client.get("/v1/openapi.json").status_code == 200


def test_an_unreachable_treasury_node_is_a_503_that_names_no_internal_host(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_client_ip: str | None = None) -> None:
        raise LightningUnavailable(
            "LND AddInvoice failed at 10.13.37.5:10009: UNAVAILABLE: Tls handshake failed"
        )

    monkeypatch.setattr(world.services.access, "offer_access", down)
    reply = world.client.get("/v1/stake/requirements")
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["code"] == "lightning-unavailable"
    assert "10.13.37.5" not in reply.text and "10009" not in reply.text
    assert "Tls" not in reply.text
