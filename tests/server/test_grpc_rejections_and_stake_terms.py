"""RejectTask and StakeTerms over a real localhost gRPC port (SRS-NODE-07, SRS-NODE-11)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskRejection
from owm_core.market.tasks import TaskState, VerificationMode, VerificationPolicy
from tests.server.harness import (
    COORDINATOR_KEY,
    T1_STAKE_SAT,
    Coordinator,
    SimNode,
    StepClock,
    start_coordinator,
    task_request,
)

ASSIGNMENT_TIMEOUT_S = 600


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def coordinator(tmp_path: Path, clock: StepClock) -> Iterator[Coordinator]:
    config = ServiceConfig(
        verification=VerificationPolicy(mode=VerificationMode.SPOT_CHECK, spot_check_rate_ppm=0),
        assignment_timeout_s=ASSIGNMENT_TIMEOUT_S,
        tick_s=0.05,
    )
    running = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), clock, config
    )
    yield running
    running.stop()


def staked_node(coordinator: Coordinator, clock: StepClock) -> SimNode:
    node = SimNode.create()
    node.stake(coordinator)
    assert node.register(coordinator.stub, clock.now()).stake_status == "active"
    return node


def rejection(node: SimNode, replica_id: str, now: int, field: str = "input.prompt") -> bytes:
    body = TaskRejection(task_id=replica_id, field=field, reason="must be a string")
    env = envelopes.seal(node.identity, EnvelopeKind.TASK_REJECTION, body, os.urandom(16), now,
                         audience=COORDINATOR_KEY.public_key_hex)
    return envelopes.to_bytes(env)


def test_a_rejection_by_the_assigned_node_requeues_the_task_to_another_node_at_once(
    coordinator: Coordinator, clock: StepClock
) -> None:
    first = staked_node(coordinator, clock)
    first_feed = first.open_stream(coordinator.stub, ask_msat=100)
    coordinator.stub.SubmitTask(task_request("job-r1"))
    (assignment,) = first_feed.wait_for(1)
    second = staked_node(coordinator, clock)
    second_feed = second.open_stream(coordinator.stub, ask_msat=200)
    time.sleep(0.2)
    assert second_feed.received == []  # the task is the first node's until it lets go

    started = time.monotonic()
    reply = coordinator.stub.RejectTask(
        pb.RejectTaskRequest(rejection_envelope=rejection(first, assignment.task_id, clock.now()))
    )
    (reassigned,) = second_feed.wait_for(1)

    assert time.monotonic() - started < 5  # no clock advance: no timeout was needed
    assert reassigned.task_id == assignment.task_id
    assert (reply.task_id, reply.state) == (assignment.task_id, "assigned")
    task = coordinator.service.repositories.tasks.get(assignment.task_id)
    assert task is not None and task.state is TaskState.ASSIGNED
    assert task.node_id == second.node_id and task.tried_node_ids == (first.node_id,)
    view = coordinator.stub.GetTask(pb.GetTaskRequest(task_id="job-r1"))
    (replica,) = view.replicas
    (recorded,) = replica.rejections
    assert (recorded.node_id, recorded.field, recorded.reason) == (
        first.node_id, "input.prompt", "must be a string"
    )
    assert recorded.rejected_at == clock.now()
    assert len(first_feed.received) == 1  # never offered back to the node that refused it
    first_feed.close()
    second_feed.close()


def test_a_rejection_by_a_node_the_task_is_not_assigned_to_is_a_failed_precondition(
    coordinator: Coordinator, clock: StepClock
) -> None:
    holder, stranger = staked_node(coordinator, clock), staked_node(coordinator, clock)
    feed = holder.open_stream(coordinator.stub)
    coordinator.stub.SubmitTask(task_request("job-r2"))
    (assignment,) = feed.wait_for(1)

    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.RejectTask(
            pb.RejectTaskRequest(
                rejection_envelope=rejection(stranger, assignment.task_id, clock.now())
            )
        )

    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert f"not assigned to node {stranger.node_id}" in (info.value.details() or "")
    task = coordinator.service.repositories.tasks.get(assignment.task_id)
    assert task is not None and task.node_id == holder.node_id
    (replica,) = coordinator.stub.GetTask(pb.GetTaskRequest(task_id="job-r2")).replicas
    assert list(replica.rejections) == []
    feed.close()


def test_a_replayed_or_malformed_rejection_is_refused(
    coordinator: Coordinator, clock: StepClock
) -> None:
    holder = staked_node(coordinator, clock)
    feed = holder.open_stream(coordinator.stub)
    coordinator.stub.SubmitTask(task_request("job-r3"))
    (assignment,) = feed.wait_for(1)
    raw = rejection(holder, assignment.task_id, clock.now())
    coordinator.stub.RejectTask(pb.RejectTaskRequest(rejection_envelope=raw))

    with pytest.raises(grpc.RpcError) as replayed:
        coordinator.stub.RejectTask(pb.RejectTaskRequest(rejection_envelope=raw))
    with pytest.raises(grpc.RpcError) as wrong_kind:
        coordinator.stub.RejectTask(
            pb.RejectTaskRequest(
                rejection_envelope=holder.proof(assignment.task_id, b"x", clock.now())
            )
        )

    assert replayed.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert wrong_kind.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "rejection_envelope" in (wrong_kind.value.details() or "")
    feed.close()


def test_stake_terms_name_the_treasury_and_the_minimum_before_registration(
    coordinator: Coordinator,
) -> None:
    terms = coordinator.stub.StakeTerms(pb.StakeTermsRequest(tier="t1"))
    t3 = coordinator.stub.StakeTerms(pb.StakeTermsRequest(tier="t3"))

    assert terms.treasury_node_uri == f"{coordinator.treasury}@127.0.0.1:9735"
    assert (terms.required_sats, terms.min_confirmations) == (T1_STAKE_SAT, 1)
    assert t3.required_sats == 2_000_000
    with pytest.raises(grpc.RpcError) as info:
        coordinator.stub.StakeTerms(pb.StakeTermsRequest(tier="gold"))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "tier" in (info.value.details() or "")
