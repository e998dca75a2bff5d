"""The coordinator service (spec 4.10) through its gRPC control plane over a real localhost port
(SRS-COORD-02)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import attrs
import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.access.ratelimit import Transport
from owm_core.coordination.challenges import ChallengePurpose
from owm_core.identity.keys import Identity
from owm_core.market.tasks import TaskState, VerificationMode, VerificationPolicy
from owm_core.nodes.registry import NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import Stake, StakeStatus, check_stake
from tests.reveals import salt_of
from tests.server.harness import (
    Coordinator,
    NodeRoutingStub,
    SimNode,
    StepClock,
    start_coordinator,
    task_request,
)
from tests.services.market_world import register


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def ledger(tmp_path: Path) -> SimLedger:
    return SimLedger(tmp_path / "lightning.sqlite3")


@pytest.fixture
def coordinator(ledger: SimLedger, clock: StepClock) -> Iterator[Coordinator]:
    running = start_coordinator(memory_repositories(), ledger, clock)
    yield running
    running.stop()


def staked_node(coordinator: Coordinator, clock: StepClock) -> SimNode:
    node = SimNode.create()
    node.stake(coordinator)
    reply = node.register(coordinator.stub, clock.now())
    assert reply.stake_status == "active"
    return node


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()


def test_a_node_with_a_correct_challenge_signature_and_stake_is_registered_active(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    node.stake(coordinator)

    reply = node.register(coordinator.stub, clock.now())

    assert reply.node_id == node.node_id
    assert (reply.tier, reply.stake_status, reply.required_sats) == ("t1", "active", 100_000)
    stored = coordinator.service.repositories.nodes.get(node.node_id)
    assert stored is not None and str(stored.ln_node_uri) == node.ln_node_uri


def test_a_wrong_challenge_signature_is_unauthenticated(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node, impostor = SimNode.create(), SimNode.create()
    node.stake(coordinator)
    request = node.register_request(coordinator.stub, clock.now())
    challenge = node.challenge(coordinator.stub, ChallengePurpose.REGISTER)
    request.challenge_nonce = challenge.nonce
    request.signature = impostor.answer(challenge, {"anything": 1})

    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.Register(request)

    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "signature" in info.value.details()
    assert coordinator.service.repositories.nodes.get(node.node_id) is None


def test_a_malformed_field_is_invalid_argument_naming_the_field(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    request = node.register_request(coordinator.stub, clock.now())
    request.ln_node_uri = "not-a-uri"

    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.Register(request)

    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ln_node_uri" in info.value.details()
    assert "Traceback" not in info.value.details()


def test_the_eleventh_registration_from_one_ip_within_an_hour_is_resource_exhausted(
    coordinator: Coordinator, clock: StepClock
) -> None:
    for _ in range(10):
        staked_node(coordinator, clock)
        clock.advance(60)
    eleventh = SimNode.create()
    eleventh.stake(coordinator)

    with pytest.raises(grpc.RpcError) as info:
        eleventh.register(coordinator.stub, clock.now())

    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    clock.advance(3600)
    assert eleventh.register(coordinator.stub, clock.now()).stake_status == "active"


def test_a_node_without_a_stake_channel_is_refused_with_the_required_amount(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()

    with pytest.raises(grpc.RpcError) as info:
        node.register(coordinator.stub, clock.now())

    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "required_sats=100000" in info.value.details()


def test_a_slashed_key_cannot_register_during_its_cooldown(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = SimNode.create()
    node.stake(coordinator)
    now = clock.now()
    check = check_stake(Tier.T1, [])
    slashed = Stake(
        public_key=node.public_key,
        tier=Tier.T1,
        status=StakeStatus.SLASHED,
        required_sats=check.required_sats,
        capacity_sat=0,
        bonus_bps=10_000,
        changed_at=now - 86_400,
        cooldown_until=now + 29 * 86_400,
    )
    coordinator.service.repositories.stakes.save(slashed)

    with pytest.raises(grpc.RpcError) as info:
        node.register(coordinator.stub, now)

    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "cooldown" in info.value.details()


def test_a_heartbeat_flips_a_silent_node_back_online(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """The registry is live (SRS-COORD-01): a node silent past its missed heartbeats is offline,
    and a heartbeat puts it back online until it falls silent again."""
    node = staked_node(coordinator, clock)
    clock.advance(181)
    assert coordinator.service.status_of(node.node_id) is NodeStatus.OFFLINE

    reply = coordinator.stub.Heartbeat(
        pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
    )

    assert reply.status == "online"
    stored = coordinator.service.repositories.nodes.get(node.node_id)
    assert stored is not None and stored.last_heartbeat == clock.now()
    clock.advance(181)
    assert coordinator.service.status_of(node.node_id) is NodeStatus.OFFLINE


def test_a_replayed_heartbeat_is_unauthenticated(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = staked_node(coordinator, clock)
    raw = node.heartbeat_envelope(clock.now())
    coordinator.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))

    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))

    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "nonce" in info.value.details()


def test_a_heartbeat_or_proof_signed_for_another_coordinator_is_unauthenticated(
    coordinator: Coordinator, clock: StepClock
) -> None:
    """SRS-SEC-03: what a node signed for a testnet's coordinator, however fresh, is not
    accepted by this one (the envelope names its audience in its signature)."""
    node = staked_node(coordinator, clock)
    testnet = attrs.evolve(node, coordinator=Identity.from_seed(b"\x0d" * 32).public_key_hex)

    with pytest.raises(grpc.RpcError) as beat:
        coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=testnet.heartbeat_envelope(clock.now()))
        )
    with pytest.raises(grpc.RpcError) as proof:
        coordinator.stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=testnet.proof("job-1", b"x", clock.now()), output=b"",
            salt=salt_of(node.node_id, "job-1"),
        ))  # fmt: skip

    assert beat.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert proof.value.code() is grpc.StatusCode.UNAUTHENTICATED
    coordinator.stub.Heartbeat(  # signed for this coordinator, the same node is heard
        pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
    )


def test_a_heartbeat_stream_counts_accepted_and_rejected_heartbeats(
    coordinator: Coordinator, clock: StepClock
) -> None:
    nodes = [staked_node(coordinator, clock) for _ in range(3)]
    stranger = SimNode.create()
    batch = [n.heartbeat_envelope(clock.now()) for n in nodes for _ in range(2)]
    batch.append(stranger.heartbeat_envelope(clock.now()))
    batch.append(b"{not json")

    summary = coordinator.stub.HeartbeatStream(
        iter(
            [
                pb.HeartbeatBatch(heartbeat_envelopes=batch[:4]),
                pb.HeartbeatBatch(heartbeat_envelopes=batch[4:]),
            ]
        )
    )

    assert (summary.accepted, summary.rejected) == (6, 2)
    assert any("not registered" in e for e in summary.errors)


def test_a_submitted_task_is_dispatched_over_the_stream_and_settled_after_proofs(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(tick_s=0.05)  # redundant, k = 3
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        nodes = [staked_node(running, clock) for _ in range(3)]
        feeds = [n.open_stream(running.stub) for n in nodes]
        started = time.monotonic()

        submitted = running.stub.SubmitTask(task_request("job-1"))

        got = [f.wait_for(1)[0] for f in feeds]
        assert time.monotonic() - started < 1.0  # SRS-PERF-09
        assert sorted(a.task_id for a in got) == sorted(submitted.replica_ids)
        assert all(
            n.opened(a) == b'{"prompt": "hello"}' for n, a in zip(nodes, got, strict=True)
        )
        assert all(a.assigned_at_ms == clock.now() * 1000 for a in got)  # the market's clock
        outputs = [b"same answer", b"same answer", b"dissent"]
        for node, assignment, output in zip(nodes, got, outputs, strict=True):
            node.commit(running.stub, assignment.task_id, output, clock.now())
        for node, assignment, output in zip(nodes, got, outputs, strict=True):
            node.reveal(running.stub, assignment.task_id, output, clock.now())
        view = running.stub.GetTask(pb.GetTaskRequest(task_id="job-1"))
        assert view.outcome == "verified"
        states = {r.node_id: r.state for r in view.replicas}
        assert states[nodes[2].node_id] == "forfeited"
        assert [states[nodes[0].node_id], states[nodes[1].node_id]] == ["settled", "settled"]
        for feed in feeds:
            feed.close()
    finally:
        running.stop()


def test_a_proof_is_stored_durably_before_the_rpc_returns(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        node = staked_node(running, clock)
        feed = node.open_stream(running.stub)
        running.stub.SubmitTask(task_request("job-2"))
        (assignment,) = feed.wait_for(1)
        assert node.commit(running.stub, assignment.task_id, b"out", clock.now()).reveals_open
        request = pb.SubmitProofRequest(
            proof_envelope=node.proof(assignment.task_id, b"out", clock.now()),
            output=node.sealed(assignment.task_id, b"out"),
            salt=salt_of(node.node_id, assignment.task_id),
        )

        reply = running.stub.SubmitProof(request)

        stored = running.service.repositories.proofs.get(assignment.task_id, node.node_id)
        assert stored is not None
        assert reply.state == "settled"
        again = running.stub.SubmitProof(request)
        assert again.state == "settled"
        feed.close()
    finally:
        running.stop()


def test_a_proof_from_a_node_the_task_is_not_assigned_to_is_refused(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        node, other = staked_node(running, clock), staked_node(running, clock)
        feed = node.open_stream(running.stub)
        running.stub.SubmitTask(task_request("job-3"))
        (assignment,) = feed.wait_for(1)

        for send in (other.commit, other.reveal):
            with pytest.raises(grpc.RpcError) as info:
                send(running.stub, assignment.task_id, b"x", clock.now())
            assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        feed.close()
    finally:
        running.stop()


def test_a_timed_out_assignment_is_reassigned_to_another_node(
    ledger: SimLedger, clock: StepClock
) -> None:
    config = ServiceConfig(
        verification=VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0),
        assignment_timeout_s=30,
        tick_s=0.05,
    )
    running = start_coordinator(memory_repositories(), ledger, clock, config)
    try:
        first = staked_node(running, clock)
        first_feed = first.open_stream(running.stub, ask_msat=100)
        running.stub.SubmitTask(task_request("job-4"))
        (assignment,) = first_feed.wait_for(1)
        second = staked_node(running, clock)
        second_feed = second.open_stream(running.stub, ask_msat=200)

        clock.advance(31)
        (reassigned,) = second_feed.wait_for(1)

        assert reassigned.task_id == assignment.task_id
        task = running.service.repositories.tasks.get(assignment.task_id)
        assert task is not None and task.state is TaskState.ASSIGNED
        assert task.node_id == second.node_id and task.tried_node_ids == (first.node_id,)
        first_feed.close()
        second_feed.close()
    finally:
        running.stop()


def test_deregistration_and_stake_status(coordinator: Coordinator, clock: StepClock) -> None:
    node = staked_node(coordinator, clock)
    status = coordinator.stub.StakeStatus(pb.StakeStatusRequest(node_id=node.node_id))
    assert (status.status, status.capacity_sat) == ("active", 100_000)
    challenge = node.challenge(coordinator.stub, ChallengePurpose.DEREGISTER)

    reply = coordinator.stub.Deregister(
        pb.DeregisterRequest(
            public_key=node.public_key,
            challenge_nonce=challenge.nonce,
            signature=node.answer(challenge, {}),
        )
    )

    assert reply.stake_status == "deregistered"
    unknown = SimNode.create()
    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.StakeStatus(pb.StakeStatusRequest(public_key=unknown.public_key))
    assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_on_the_onion_endpoint_registrations_are_not_limited_per_ip(
    ledger: SimLedger, clock: StepClock
) -> None:
    running = start_coordinator(memory_repositories(), ledger, clock, onion_listen="127.0.0.1:0")
    onion = NodeRoutingStub(f"127.0.0.1:{running.server.ports[Transport.ONION]}")
    try:
        stub = cast(pb_grpc.CoordinatorStub, onion)
        for _ in range(11):  # every Tor client arrives from 127.0.0.1 (SRS-NET-07)
            node = SimNode.create()
            node.stake(running)
            assert node.register(stub, clock.now()).stake_status == "active"
    finally:
        onion.close()
        running.stop()


def test_a_heartbeat_can_carry_a_new_signed_manifest(
    coordinator: Coordinator, clock: StepClock
) -> None:
    node = staked_node(coordinator, clock)
    node.manifest = attrs.evolve(node.manifest, bandwidth_mbps=250)
    stale = SimNode(node.identity, node.ln_key, attrs.evolve(node.manifest, bandwidth_mbps=1))

    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=stale.heartbeat_envelope(clock.now()))
        )
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION

    reply = coordinator.stub.Heartbeat(
        pb.HeartbeatRequest(
            heartbeat_envelope=node.heartbeat_envelope(clock.now()),
            manifest_envelope=node.manifest_envelope(clock.now()),
        )
    )

    assert reply.status == "online"
    stored = coordinator.service.repositories.manifests.get(node.node_id)
    assert stored is not None and stored.body["bandwidth_mbps"] == 250


def test_metrics_report_heartbeats_registry_size_and_dispatch_latency(
    coordinator: Coordinator, clock: StepClock
) -> None:
    from prometheus_client import generate_latest

    from owm_server.metrics import CoordinatorMetrics

    metrics = CoordinatorMetrics()
    metrics.bind(coordinator.service)
    node = staked_node(coordinator, clock)
    coordinator.stub.Heartbeat(
        pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
    )
    feed = node.open_stream(coordinator.stub)
    others = [Identity.from_seed(bytes([0x50 + i]) * 32) for i in range(2)]
    register(coordinator.service.repositories, others, clock.now())  # 3 nodes admit 3 replicas
    coordinator.stub.SubmitTask(task_request("job-m"))
    feed.wait_for(1)
    feed.close()

    text = generate_latest(metrics.registry).decode()

    assert "owm_heartbeats_accepted_total 1.0" in text
    assert 'owm_registry_nodes{status="online"} 3.0' in text
    assert 'owm_tasks{state="assigned"} 1.0' in text
    assert 'owm_tasks{state="submitted"} 2.0' in text
    assert "owm_dispatch_latency_seconds_count 1.0" in text
