"""The standard gRPC health service (grpc.health.v1) on the coordinator, over mTLS only."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.memory import memory_repositories
from owm_server.grpc.server import SERVICE_NAME
from tests.server.harness import StepClock, start_coordinator
from tests.tls_support import secure_channel

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(channel: grpc.Channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(reply.status)


def test_health_check_answers_serving_for_the_server_and_the_coordinator_over_mtls(
    tmp_path: Path,
) -> None:
    running = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), StepClock()
    )
    try:
        with secure_channel(f"127.0.0.1:{running.server.port}") as channel:
            assert check(channel, "") == SERVING
            assert check(channel, SERVICE_NAME) == SERVING
            with pytest.raises(grpc.RpcError) as unknown:
                check(channel, "no.such.Service")
            assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    finally:
        running.stop()


def test_a_stopping_coordinator_reports_not_serving(tmp_path: Path) -> None:
    running = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), StepClock()
    )
    running.stop()
    reply = running.server.health.Check(
        health_pb2.HealthCheckRequest(service=SERVICE_NAME), None
    )
    assert reply.status == NOT_SERVING


def test_a_plaintext_health_check_gets_no_answer(tmp_path: Path) -> None:
    running = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), StepClock()
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.server.port}") as channel, \
                pytest.raises(grpc.RpcError) as refused:
            check(channel, "")
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop()
