"""Two coordinators on one PostgreSQL database share what a node or a client may send to either
(SRS-COORD-05): a challenge issued by one is answered at the other, a nonce used at one is
refused at the other, a registration limit counts both, a replica is assigned once, and the
jobs that must run once run on one of them, moving to the other when it stops.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.sql import open_repositories
from owm_core.market.tasks import TaskState, VerificationPolicy
from tests.server.harness import (
    Coordinator,
    SimNode,
    StepClock,
    start_coordinator,
    task_request,
)


@pytest.fixture
def pair(migrated_postgresql_url: str, tmp_path: Path) -> Iterator[tuple[Coordinator, ...]]:
    ledger, clock = SimLedger(tmp_path / "lightning.sqlite3"), StepClock()
    started: list[Coordinator] = []
    try:
        for _ in range(2):
            store = open_repositories(migrated_postgresql_url, migrate=False)
            config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
            started.append(start_coordinator(store, ledger, clock, config))
        yield tuple(started)
    finally:
        for coordinator in started:
            coordinator.stop()


def staked(a: Coordinator) -> SimNode:
    node = SimNode.create()
    node.stake(a)
    return node


def test_a_challenge_issued_by_one_coordinator_registers_the_node_at_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    request = node.register_request(a.stub, a.app.clock.now())

    reply = b.stub.Register(request)

    assert reply.node_id == node.node_id and reply.stake_status == "active"
    with pytest.raises(grpc.RpcError) as info:  # and it was one use, at both
        a.stub.Register(request)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_a_heartbeat_accepted_by_one_coordinator_is_refused_as_a_replay_by_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    node.register(a.stub, a.app.clock.now())
    raw = node.heartbeat_envelope(a.app.clock.now())
    b.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(
        a.app.clock.now())))  # b knows the node: registered at a

    a.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))
    with pytest.raises(grpc.RpcError) as info:
        b.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=raw))

    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "nonce" in info.value.details()


def test_a_task_submitted_at_one_coordinator_goes_once_to_a_node_streaming_from_the_other(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    node = staked(a)
    node.register(a.stub, a.app.clock.now())
    feed = node.open_stream(b.stub)

    a.stub.SubmitTask(task_request("shared-1"))

    (assignment,) = feed.wait_for(1, timeout_s=10)
    assert assignment.task_id.startswith("shared-1")
    stored = a.service.repositories.tasks.get(assignment.task_id)
    assert stored is not None and stored.state is TaskState.ASSIGNED
    assert stored.node_id == node.node_id
    time.sleep(0.5)
    assert len(feed.received) == 1  # pushed once
    feed.close()


def test_the_singleton_jobs_run_on_one_coordinator_and_move_when_it_stops(
    pair: tuple[Coordinator, Coordinator],
) -> None:
    a, b = pair
    assert a.app.singletons is not None and b.app.singletons is not None
    names = [name for name, _ in a.app.singletons.jobs]
    assert {"market-housekeeping", "stake-reverification", "retention"} <= set(names)
    assert all(a.app.singletons.leads(n) for n in names)
    assert not any(b.app.singletons.leads(n) for n in names)
    assert not b.service.housekeeping.on and a.service.housekeeping.on

    a.app.singletons.stop()
    deadline = time.monotonic() + 10
    while not all(b.app.singletons.leads(n) for n in names):
        assert time.monotonic() < deadline, "the leads did not move within 10 s"
        time.sleep(0.1)
    assert b.service.housekeeping.on and not a.service.housekeeping.on
