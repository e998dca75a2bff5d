"""GET /health on 127.0.0.1 only (SRS-NODE-08)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from owm_adapters.node.health import HealthServer
from owm_adapters.probes import NotReady, Readiness


def get(port: int, path: str = "/health") -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def report():
    return {"state": "serving", "tier": "t1", "current_tasks": []}


@pytest.fixture
def server(report):
    health = HealthServer(0, lambda: report)
    health.start()
    yield health
    health.close()


def test_health_reports_the_daemon_state_as_json(server, report):
    assert get(server.port) == (200, report)


def test_a_daemon_that_is_not_serving_answers_503_with_its_state(server, report):
    report["state"] = "draining"
    status, body = get(server.port)
    assert status == 503 and body["state"] == "draining"


def test_other_paths_are_not_found(server):
    assert get(server.port, "/metrics")[0] == 404


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))  # no packet is sent; picks the outward interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_the_endpoint_is_bound_to_the_loopback_address_only(server):
    assert server.host == "127.0.0.1"
    outward = _non_loopback_address()
    if outward is not None:
        with pytest.raises(OSError):
            socket.create_connection((outward, server.port), timeout=2).close()


def test_ready_names_the_failing_parts_with_503_and_answers_200_when_all_are_ok(report):
    parts = {"control_plane": False}

    def control_plane() -> None:
        if not parts["control_plane"]:
            raise NotReady("unregistered")

    health = HealthServer(0, lambda: report, readiness=Readiness({
        "identity": lambda: None, "control_plane": control_plane,
    }))
    health.start()
    try:
        assert get(health.port, "/ready") == (503, {
            "status": "not_ready", "failing": ["control_plane"],
            "parts": {"identity": "ok", "control_plane": "unregistered"},
        })
        parts["control_plane"] = True
        assert get(health.port, "/ready") == (200, {
            "status": "ready", "parts": {"identity": "ok", "control_plane": "ok"},
        })
    finally:
        health.close()
