"""The onion service's port is a second port of the coordinator's one gRPC server
(SRS-COORD-08), and calls arriving there are limited per node key, never per IP (SRS-NET-07)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.access.ratelimit import Transport
from owm_core.market.tasks import VerificationPolicy
from owm_server.grpc.limits import stream_owner, via_onion
from owm_server.grpc.servicer import transport_of
from tests.server.harness import (
    NodeRoutingStub,
    SimNode,
    StepClock,
    start_coordinator,
    task_request,
)
from tests.tls_support import secure_channel


class Peer:
    """The two things a servicer context tells about its caller."""

    def __init__(self, peer: str, certificate: bytes = b"") -> None:
        self._peer = peer
        self._certificate = certificate

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._certificate]} if self._certificate else {}


def ctx(peer: str, certificate: bytes = b"") -> grpc.ServicerContext:
    return cast(grpc.ServicerContext, Peer(peer, certificate))


@pytest.mark.parametrize(
    ("peer", "onion", "expected"),
    [
        ("ipv4:127.0.0.1:41000", True, Transport.ONION),
        ("ipv6:[::1]:41000", True, Transport.ONION),
        ("ipv6:%5B::1%5D:41000", True, Transport.ONION),
        ("unix:/run/owm/onion.sock", True, Transport.ONION),
        ("ipv4:192.0.2.2:41000", True, Transport.CLEARNET),
        ("ipv6:[2001:db8::5]:41000", True, Transport.CLEARNET),
        ("ipv4:127.0.0.1:41000", False, Transport.CLEARNET),
    ],
)
def test_a_call_counts_as_onion_only_from_loopback_with_an_onion_port_configured(
    peer: str, onion: bool, expected: Transport
) -> None:
    assert transport_of(ctx(peer), onion) is expected


def test_onion_streams_are_counted_per_client_certificate_and_clearnet_ones_per_address() -> None:
    alice = ctx("ipv4:127.0.0.1:41000", b"-----alice certificate-----")
    bob = ctx("ipv4:127.0.0.1:41001", b"-----bob certificate-----")
    assert via_onion(alice, True) and via_onion(bob, True)
    assert stream_owner(alice, True) != stream_owner(bob, True)
    assert stream_owner(alice, True) == stream_owner(
        ctx("ipv4:127.0.0.1:50000", b"-----alice certificate-----"), True)
    assert stream_owner(ctx("ipv4:192.0.2.2:41000", b"x"), True) == "ip:192.0.2.2"
    assert stream_owner(alice, False) == "ip:127.0.0.1"
    assert stream_owner(ctx("ipv6:[2001:db8::5]:41000"), True) == "ip:2001:db8::/64"


def test_the_onion_port_is_a_second_port_of_the_same_grpc_server(tmp_path: Path) -> None:
    clock = StepClock(1_800_000_000)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    running = start_coordinator(memory_repositories(), ledger, clock, onion_listen="127.0.0.1:0")
    try:
        server = running.server
        assert set(server.ports) == {Transport.CLEARNET, Transport.ONION}
        assert server.ports[Transport.CLEARNET] != server.ports[Transport.ONION]
        assert [v for v in vars(server).values() if isinstance(v, grpc.Server)] == [server.server]
        for port in server.ports.values():
            with secure_channel(f"127.0.0.1:{port}") as channel:
                health = health_pb2_grpc.HealthStub(channel)
                answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                assert answer.status == health_pb2.HealthCheckResponse.SERVING
        server.server.stop(0).wait(5)  # stopping the one server closes both ports
        for port in server.ports.values():
            with pytest.raises((grpc.RpcError, OSError)), \
                    secure_channel(f"127.0.0.1:{port}") as channel:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2)
    finally:
        running.stop()


def test_a_node_registers_beats_reads_its_stake_and_takes_tasks_over_either_port(
    tmp_path: Path,
) -> None:
    """The whole control plane answers on the clearnet port and on the onion service's port
    (SRS-NET-01): one node does everything over each, register, heartbeat, stake query and a
    task stream that is dispatched a task."""
    clock = StepClock(1_800_000_000)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    running = start_coordinator(
        memory_repositories(), ledger, clock, config, onion_listen="127.0.0.1:0"
    )
    stubs = {t: NodeRoutingStub(f"127.0.0.1:{port}") for t, port in running.server.ports.items()}
    assert set(stubs) == {Transport.CLEARNET, Transport.ONION}
    try:
        for transport, stub in stubs.items():
            node = SimNode.create()
            node.stake(running)
            assert node.register(stub, clock.now()).stake_status == "active", transport
            beat = stub.Heartbeat(
                pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
            )
            assert beat.status == "online", transport
            stake = stub.StakeStatus(pb.StakeStatusRequest(node_id=node.node_id))
            assert stake.status == "active", transport
            feed = node.open_stream(stub)
            try:
                running.stub.SubmitTask(task_request(f"job-{transport.value}"))
                assert [a.task_id for a in feed.wait_for(1)] == [f"job-{transport.value}:0"]
            finally:
                feed.close()
    finally:
        for stub in stubs.values():
            stub.close()
        running.stop()
