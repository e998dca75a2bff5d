"""The control plane is mTLS only, and every node call is tied to the connection's certificate
(SRS-SEC-01, SRS-SEC-03): attacks on a running coordinator, each refused with nothing changed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import attrs
import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.tls import ClientTls, pinned_channel
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import SignatureInvalid
from owm_core.identity.assignments import verify_assignment
from owm_core.identity.keys import Identity
from owm_core.nodes.control_plane import AssignedTask
from tests.adapters.control_plane.test_tls import forged_certificate
from tests.reveals import commitment_envelope
from tests.server.harness import Coordinator, SimNode, StepClock, start_coordinator, task_request
from tests.services.market_world import register_idle
from tests.tls_support import COORDINATOR_TLS, client_tls, secure_channel


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def coordinator(tmp_path: Path, clock: StepClock) -> Iterator[Coordinator]:
    running = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), clock
    )
    yield running
    running.stop()


def stub_over(channel: grpc.Channel) -> pb_grpc.CoordinatorStub:
    return pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]


def refusal(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def address_of(coordinator: Coordinator) -> str:
    return f"127.0.0.1:{coordinator.server.port}"


def test_a_plaintext_client_gets_no_answer_at_all(coordinator: Coordinator) -> None:
    with grpc.insecure_channel(address_of(coordinator)) as channel:
        error = refusal(lambda: stub_over(channel).StakeTerms(pb.StakeTermsRequest(), timeout=5))
    assert error.code() is grpc.StatusCode.UNAVAILABLE


def test_a_tls_client_without_a_certificate_is_refused_in_the_handshake(
    coordinator: Coordinator,
) -> None:
    anonymous = grpc.ssl_channel_credentials(COORDINATOR_TLS.certificate_pem)
    options = [("grpc.ssl_target_name_override", "owm-coordinator")]
    with grpc.secure_channel(address_of(coordinator), anonymous, options=options) as channel:
        error = refusal(lambda: stub_over(channel).StakeTerms(pb.StakeTermsRequest(), timeout=5))
    assert error.code() is grpc.StatusCode.UNAVAILABLE


def test_registering_over_a_certificate_bound_to_another_identity_is_refused(
    coordinator: Coordinator, clock: StepClock
) -> None:
    victim, attacker = SimNode.create(), Identity.from_seed(os.urandom(32))
    victim.stake(coordinator)
    request = victim.register_request(coordinator.stub, clock.now())
    with secure_channel(address_of(coordinator), attacker) as channel:
        error = refusal(lambda: stub_over(channel).Register(request, timeout=5))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "bound to another identity" in (error.details() or "")
    assert coordinator.service.repositories.nodes.get(victim.node_id) is None


def test_a_stolen_certificate_without_the_identity_key_cannot_register_another_key(
    coordinator: Coordinator, clock: StepClock
) -> None:
    owner, thief = SimNode.create(), SimNode.create()
    thief.stake(coordinator)
    stolen = client_tls(owner.identity)  # the owner's certificate and TLS key, not its seed
    request = thief.register_request(coordinator.stub, clock.now())
    with pinned_channel(address_of(coordinator), stolen) as channel:
        error = refusal(lambda: stub_over(channel).Register(request, timeout=5))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert coordinator.service.repositories.nodes.get(thief.node_id) is None


def test_a_certificate_naming_a_node_but_vouched_for_by_another_key_is_refused(
    coordinator: Coordinator, clock: StepClock
) -> None:
    victim, impostor = SimNode.create(), Identity.from_seed(os.urandom(32))
    victim.stake(coordinator)
    victim.register(coordinator.stub, clock.now())
    forged = ClientTls(forged_certificate(victim.identity, impostor), COORDINATOR_TLS.fingerprint)
    heartbeat = pb.HeartbeatRequest(heartbeat_envelope=victim.heartbeat_envelope(clock.now()))
    with pinned_channel(address_of(coordinator), forged) as channel:
        error = refusal(lambda: stub_over(channel).Heartbeat(heartbeat, timeout=5))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED


def test_heartbeats_proofs_and_task_streams_over_another_nodes_certificate_are_refused(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node, other = SimNode.create(), SimNode.create()
    for who in (node, other):
        who.stake(coordinator)
        who.register(coordinator.stub, clock.now())
    with secure_channel(address_of(coordinator), other.identity) as channel:
        stub = stub_over(channel)
        heartbeat = pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
        proof = pb.SubmitProofRequest(proof_envelope=node.proof("t:0", b"out", clock.now()))
        commitment = pb.CommitResultRequest(
            commitment_envelope=commitment_envelope(node.identity, "t:0", b"out", clock.now())
        )
        feed = node.open_stream(stub)
        for error in (
            refusal(lambda: stub.Heartbeat(heartbeat, timeout=5)),
            refusal(lambda: stub.SubmitProof(proof, timeout=5)),
            refusal(lambda: stub.CommitResult(commitment, timeout=5)),
        ):
            assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        feed.wait_for(1, timeout_s=5)
        assert feed.error is not None
        assert feed.error.code() is grpc.StatusCode.UNAUTHENTICATED
    before = coordinator.service.repositories.nodes.get(node.node_id)
    assert before is not None and before.last_heartbeat == clock.now()  # the registration's
    # Over its own certificate the same node is served.
    assert coordinator.stub.Heartbeat(heartbeat).status


def test_assignments_carry_the_coordinators_signature_for_their_recipient(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    node.stake(coordinator)
    node.register(coordinator.stub, clock.now())
    feed = node.open_stream(cast(pb_grpc.CoordinatorStub, coordinator.stub))
    register_idle(coordinator.service.repositories, 2, clock.now())  # 3 replicas need 3 nodes
    coordinator.stub.SubmitTask(task_request("signed-task"))
    (sent,) = feed.wait_for(1)
    task = AssignedTask(
        task_id=sent.task_id,
        task_type=sent.task_type,
        input_schema_id=sent.input_schema_id,
        input_schema_version=sent.input_schema_version,
        price_msat=sent.price_msat,
        deadline_at=sent.deadline_at,
        input=sent.input,
        assigned_at_ms=sent.assigned_at_ms,
        signature=sent.coordinator_signature,
        model_version=sent.model_version,
    )
    assert sent.model_version == "genesis"  # a text inference: pinned, no release confirmed yet
    coordinator_key = coordinator.app.identity.public_key_hex
    verify_assignment(coordinator_key, task, node.public_key)
    with pytest.raises(SignatureInvalid):  # not valid for another node
        verify_assignment(coordinator_key, task, SimNode.create().public_key)
    with pytest.raises(SignatureInvalid):  # nor with its pin stripped or changed on the way
        verify_assignment(coordinator_key, attrs.evolve(task, model_version=""), node.public_key)
    feed.call.cancel()  # type: ignore[attr-defined]
