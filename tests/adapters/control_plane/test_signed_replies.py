"""A node uses a coordinator reply only when the pinned coordinator key signed it for that
request (SRS-SEC-01/03): a fake coordinator behind the right TLS certificate (a stolen or
mis-issued one) answering Register/Heartbeat/StakeTerms unsigned, signed by another key, or
with a reply replayed from another request is refused over real mTLS; a genuine one works."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from owm_adapters.control_plane import replies
from owm_adapters.control_plane.grpc_client import GrpcControlPlane
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.tls import server_credentials
from owm_core.identity.keys import Identity
from owm_core.nodes.control_plane import ControlPlaneRefused
from tests.tls_support import COORDINATOR_TLS, client_tls

COORDINATOR = Identity.from_seed(b"k" * 32)
IMPOSTOR = Identity.from_seed(os.urandom(32))


class FakeCoordinator(pb_grpc.CoordinatorServicer):
    """Answers StakeTerms and Heartbeat, signing as ``mode`` says."""

    def __init__(self) -> None:
        self.mode = "genuine"
        self.replayed: pb.HeartbeatResponse | None = None

    def _sign(self, method: str, request: Any, reply: Any) -> Any:
        if self.mode == "genuine":
            replies.sign(COORDINATOR, method, request, reply)
        elif self.mode == "impostor":
            replies.sign(IMPOSTOR, method, request, reply)
        return reply

    def StakeTerms(self, request: Any, context: Any) -> pb.StakeTermsResponse:
        reply = pb.StakeTermsResponse(required_sats=100_000)
        return self._sign("StakeTerms", request, reply)

    def Heartbeat(self, request: Any, context: Any) -> pb.HeartbeatResponse:
        if self.mode == "replay" and self.replayed is not None:
            return self.replayed
        reply = self._sign("Heartbeat", request, pb.HeartbeatResponse(status="online"))
        self.replayed = reply
        return reply


@pytest.fixture
def fake() -> Iterator[tuple[FakeCoordinator, GrpcControlPlane]]:
    servicer = FakeCoordinator()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_CoordinatorServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_secure_port("127.0.0.1:0", server_credentials(COORDINATOR_TLS))
    server.start()
    plane = GrpcControlPlane(f"127.0.0.1:{port}", timeout_s=5, tls=client_tls(),
                             coordinator_public_key=COORDINATOR.public_key_hex)
    yield servicer, plane
    plane.close()
    server.stop(0)


def test_a_reply_signed_by_the_pinned_coordinator_key_is_used(fake) -> None:
    _servicer, plane = fake
    assert plane.stake_terms("t1").required_sats == 100_000
    assert plane.heartbeat(b"heartbeat-1") == "online"


@pytest.mark.parametrize("mode", ["unsigned", "impostor"])
def test_an_unsigned_or_wrongly_signed_reply_is_refused_never_used(fake, mode: str) -> None:
    servicer, plane = fake
    servicer.mode = mode
    for call in (lambda: plane.stake_terms("t1"), lambda: plane.heartbeat(b"heartbeat-1")):
        with pytest.raises(ControlPlaneRefused) as refused:
            call()
        assert refused.value.status == "reply-not-signed"
        assert "not signed by the pinned coordinator key" in refused.value.message


def test_an_old_genuine_reply_replayed_for_a_new_request_is_refused(fake) -> None:
    servicer, plane = fake
    assert plane.heartbeat(b"heartbeat-1") == "online"
    servicer.mode = "replay"
    with pytest.raises(ControlPlaneRefused) as refused:
        plane.heartbeat(b"heartbeat-2")
    assert refused.value.status == "reply-not-signed"
