"""Attacks on the gRPC control plane's resources, each performed against a real port.

Replay-guard flooding (SRS-SEC-03), thread exhaustion by idle or unauthenticated streams, one
key holding many streams, oversized messages (SRS-COORD-02): each test attacks, then checks
that honest nodes are still served and nothing was lost.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import grpc
import pytest

from owm_adapters.bootstrap.settings import CoordinatorSection
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.submitter import signed_balance_request
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity import envelopes
from owm_core.identity.envelopes import EnvelopeKind, TaskRejection
from owm_core.identity.keys import Identity
from owm_server.grpc.limits import GrpcLimits, StreamLimiter, stream_owner
from tests.server.harness import Coordinator, SimNode, StepClock, start_coordinator, task_request
from tests.services.market_world import register_idle


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


def running(
    tmp_path: Path,
    clock: StepClock,
    config: ServiceConfig | None = None,
    *,
    max_workers: int = 16,
    limits: GrpcLimits | None = None,
) -> Coordinator:
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    return start_coordinator(
        memory_repositories(), ledger, clock, config or ServiceConfig(tick_s=0.05),
        max_workers=max_workers, limits=limits,
    )


def staked_node(coordinator: Coordinator, clock: StepClock) -> SimNode:
    node = SimNode.create()
    node.stake(coordinator)
    assert node.register(coordinator.stub, clock.now()).stake_status == "active"
    return node


def rejection(node: SimNode, replica_id: str, now: int) -> bytes:
    body = TaskRejection(task_id=replica_id, field="input.prompt", reason="must be a string")
    env = envelopes.seal(node.identity, EnvelopeKind.TASK_REJECTION, body, os.urandom(16), now,
                         audience=node.coordinator)
    return envelopes.to_bytes(env)


def failure(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value


def retry_after_s(refusal: grpc.RpcError) -> int:
    """The ``retry-after-s`` trailing metadata of a rate-limit refusal."""
    return int(dict(refusal.trailing_metadata() or ())["retry-after-s"])  # type: ignore[attr-defined]


class Silent:
    """A request stream that sends nothing until released (an idle or malicious client)."""

    def __init__(self, first: list[pb.HeartbeatBatch] | None = None) -> None:
        self.first = first or []
        self.release = threading.Event()

    def __iter__(self) -> Iterator[pb.HeartbeatBatch]:
        yield from self.first
        self.release.wait(30)


def test_strangers_flooding_rejections_do_not_fill_the_replay_guard(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(tmp_path, clock, ServiceConfig(tick_s=0.05, replay_max_entries=5))
    holder = staked_node(coordinator, clock)
    feed = holder.open_stream(coordinator.stub)
    register_idle(coordinator.service.repositories, 2, clock.now())  # 3 replicas need 3 nodes
    coordinator.stub.SubmitTask(task_request("job-flood"))
    (assignment,) = feed.wait_for(1)

    for _ in range(20):
        stranger = SimNode.create()
        request = pb.RejectTaskRequest(
            rejection_envelope=rejection(stranger, assignment.task_id, clock.now())
        )
        refused = failure(lambda: coordinator.stub.RejectTask(request))  # noqa: B023
        assert refused.code() is grpc.StatusCode.UNAUTHENTICATED
        assert "no registered node" in (refused.details() or "")

    for _ in range(3):
        coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=holder.heartbeat_envelope(clock.now()))
        )
    reply = coordinator.stub.RejectTask(
        pb.RejectTaskRequest(rejection_envelope=rejection(holder, assignment.task_id, clock.now()))
    )
    assert reply.task_id == assignment.task_id
    feed.close()
    coordinator.stop()


def test_strangers_balance_requests_do_not_fill_the_nodes_replay_guard(
    tmp_path: Path, clock: StepClock
) -> None:
    config = ServiceConfig(tick_s=0.05, replay_max_entries=5, newcomer_replay_max_entries=3)
    coordinator = running(tmp_path, clock, config)
    honest = staked_node(coordinator, clock)

    answers = []
    for _ in range(10):  # fresh keys cost nothing, nor does FundBalance(0)
        stranger = Identity.from_seed(os.urandom(32))
        try:
            coordinator.stub.FundBalance(signed_balance_request(
                stranger, 0, clock.now(), coordinator_key=coordinator.service.signer.public_key_hex,
            ))
            answers.append("served")
        except grpc.RpcError as exc:
            assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            answers.append(exc.details() or "")
    free = task_request("free", 0, submitter=Identity.from_seed(os.urandom(32)))
    with pytest.raises(grpc.RpcError, match="price above 0 msat"):  # refused before its nonce
        coordinator.stub.SubmitTask(free)

    assert answers[:3] == ["served"] * 3  # the newcomers' own guard holds 3
    assert all(a.startswith("replay-guard-full: replay guard is full") for a in answers[3:])
    for _ in range(5):  # the nodes' guard holds 5: the strangers took no place in it
        reply = coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=honest.heartbeat_envelope(clock.now()))
        )
        assert reply.status == "online"
    coordinator.stop()


def test_one_registered_key_cannot_fill_the_replay_guard_for_the_others(
    tmp_path: Path, clock: StepClock
) -> None:
    config = ServiceConfig(tick_s=0.05, replay_max_entries=6, replay_max_per_key=3)
    coordinator = running(tmp_path, clock, config)
    greedy, honest = staked_node(coordinator, clock), staked_node(coordinator, clock)

    codes = []
    for _ in range(10):
        request = pb.RejectTaskRequest(rejection_envelope=rejection(greedy, "t:0", clock.now()))
        codes.append(failure(lambda: coordinator.stub.RejectTask(request)))  # noqa: B023

    assert [c.code() for c in codes] == [grpc.StatusCode.NOT_FOUND] * 3 + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ] * 7
    assert "more than 3 envelopes by this key" in (codes[-1].details() or "")
    assert 1 <= retry_after_s(codes[-1]) <= 601
    for _ in range(3):
        reply = coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=honest.heartbeat_envelope(clock.now()))
        )
        assert reply.node_id == honest.node_id
    coordinator.stop()


def test_sixty_four_idle_heartbeat_streams_without_credentials_do_not_stall_the_server(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(
        tmp_path, clock, max_workers=64, limits=GrpcLimits(streams_per_peer=1_000)
    )
    silent = Silent()
    calls: list[Future[pb.HeartbeatStreamSummary]] = [
        coordinator.stub.HeartbeatStream.future(iter(silent)) for _ in range(70)
    ]
    time.sleep(1.0)  # every stream has reached the server (or been refused)

    started = time.monotonic()
    node = staked_node(coordinator, clock)
    coordinator.stub.Heartbeat(
        pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now())), timeout=2
    )
    assert time.monotonic() - started < 2.0

    refused = [c for c in calls if c.done()]
    assert len(refused) == 70 - 12  # 64 threads: 48 for streams, 12 of them heartbeat streams
    for call in refused:
        error = call.exception()
        assert isinstance(error, grpc.RpcError)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too-many-streams" in (error.details() or "")
    silent.release.set()
    for call in calls:
        call.exception(5)
    coordinator.stop()


def test_idle_heartbeat_streams_cannot_take_the_slots_kept_for_task_streams(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(  # many addresses (or free certificates over the onion port)
        tmp_path, clock, max_workers=16, limits=GrpcLimits(streams_per_peer=1_000)
    )
    honest = staked_node(coordinator, clock)
    silent = Silent()
    calls = [coordinator.stub.HeartbeatStream.future(iter(silent)) for _ in range(20)]
    time.sleep(1.0)

    held = [c for c in calls if not c.done()]
    feed = honest.open_stream(coordinator.stub)
    register_idle(coordinator.service.repositories, 2, clock.now())  # 3 replicas need 3 nodes
    coordinator.stub.SubmitTask(task_request("job-beside-idle-streams"))

    assert len(feed.wait_for(1)) == 1, feed.error
    assert len(held) == 3  # 16 threads: 12 for streams, a quarter of them heartbeat streams
    for call in calls:
        if call.done():
            error = call.exception()
            assert isinstance(error, grpc.RpcError)
            assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "3 heartbeat streams already" in (error.details() or "")
    silent.release.set()
    feed.close()
    coordinator.stop()


class PeerContext:
    """A call's context as the stream limiter reads it: the peer, no certificate."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise grpc.RpcError(f"{code.name}: {details}")


def test_heartbeat_streams_from_addresses_of_one_ipv6_64_count_as_one_client() -> None:
    limiter = StreamLimiter(GrpcLimits(streams_per_peer=2), max_workers=64)
    opened = limiter._client_stream(lambda requests, context: next(requests))
    hold = threading.Event()

    def idle() -> Iterator[None]:
        hold.wait(10)
        yield None

    peers = [f"ipv6:[2001:db8:1:2::{n}]:{40_000 + n}" for n in range(1, 4)]
    threads = [
        threading.Thread(target=opened, args=(idle(), PeerContext(p)), daemon=True)
        for p in peers[:2]
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while limiter.open_streams < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    with pytest.raises(grpc.RpcError, match="2 streams from this address are open"):
        opened(idle(), PeerContext(peers[2]))  # a third address of the same /64
    other = PeerContext("ipv6:[2001:db8:1:3::1]:40000")  # the next /64 is another client
    assert limiter._refusal(stream_owner(other, onion=False)) is None
    hold.set()
    for thread in threads:
        thread.join(5)
    assert limiter.open_streams == 0
    limiter.stop()


def test_the_coordinator_settings_set_the_heartbeat_stream_limits() -> None:
    section = CoordinatorSection(
        grpc_stream_idle_s=30, grpc_heartbeat_streams=5, grpc_heartbeat_streams_per_peer=2
    )
    limits = GrpcLimits.of(section)
    assert (limits.idle_s, limits.streams_per_peer) == (30, 2)
    assert (limits.stream_slots(64), limits.heartbeat_slots(64)) == (48, 5)
    assert GrpcLimits.of(CoordinatorSection()).heartbeat_slots(64) == 12
    assert GrpcLimits(heartbeat_streams=100).heartbeat_slots(64) == 47  # one left for tasks


def test_one_address_holds_at_most_its_share_of_heartbeat_streams(
    tmp_path: Path, clock: StepClock
) -> None:
    limits = GrpcLimits(streams_per_peer=3, heartbeat_streams=8)
    coordinator = running(tmp_path, clock, limits=limits)
    silent = Silent()
    calls = [coordinator.stub.HeartbeatStream.future(iter(silent)) for _ in range(5)]
    time.sleep(0.5)

    refused = [c.exception() for c in calls if c.done()]

    assert len(refused) == 2
    assert all(isinstance(e, grpc.RpcError) for e in refused)
    assert all("streams from this address" in (e.details() or "") for e in refused)
    silent.release.set()
    coordinator.stop()


def test_an_idle_heartbeat_stream_is_ended_with_a_status(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(tmp_path, clock, limits=GrpcLimits(idle_s=0.5))
    node = staked_node(coordinator, clock)
    silent = Silent([pb.HeartbeatBatch(heartbeat_envelopes=[node.heartbeat_envelope(clock.now())])])
    started = time.monotonic()

    error = failure(lambda: coordinator.stub.HeartbeatStream(iter(silent), timeout=10))

    assert time.monotonic() - started < 3
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "stream-idle" in (error.details() or "")
    assert coordinator.server.limiter.open_streams == 0
    silent.release.set()
    coordinator.stop()


def test_a_heartbeat_stream_ends_at_its_first_batch_without_an_admissible_heartbeat(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(tmp_path, clock)
    stranger = SimNode.create()
    forged = pb.HeartbeatBatch(heartbeat_envelopes=[stranger.heartbeat_envelope(clock.now())])
    silent = Silent([forged])
    started = time.monotonic()

    error = failure(lambda: coordinator.stub.HeartbeatStream(iter(silent), timeout=10))

    assert time.monotonic() - started < 2
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "admitted no heartbeat" in (error.details() or "")
    assert "not registered" in (error.details() or "")
    silent.release.set()
    coordinator.stop()


def test_heartbeats_refused_for_want_of_room_in_the_replay_guard_are_told_when_to_retry(
    tmp_path: Path, clock: StepClock
) -> None:
    config = ServiceConfig(tick_s=0.05, replay_max_per_key=2)
    coordinator = running(tmp_path, clock, config)
    busy, other = staked_node(coordinator, clock), staked_node(coordinator, clock)
    sent = [busy.heartbeat_envelope(clock.now()) for _ in range(2)]
    for envelope in sent:
        coordinator.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=envelope))

    fresh = pb.HeartbeatRequest(heartbeat_envelope=busy.heartbeat_envelope(clock.now()))
    full = failure(lambda: coordinator.stub.Heartbeat(fresh))
    assert full.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (full.details() or "").startswith("replay-guard-full: more than 2 envelopes")
    assert 1 <= retry_after_s(full) <= 601
    replayed = failure(
        lambda: coordinator.stub.Heartbeat(pb.HeartbeatRequest(heartbeat_envelope=sent[0]))
    )
    assert replayed.code() is grpc.StatusCode.UNAUTHENTICATED

    mixed = pb.HeartbeatBatch(heartbeat_envelopes=[
        other.heartbeat_envelope(clock.now()), busy.heartbeat_envelope(clock.now()), sent[0],
    ])  # fmt: skip
    summary = coordinator.stub.HeartbeatStream(iter([mixed]), timeout=10)
    assert (summary.accepted, summary.rejected) == (1, 2)
    assert summary.errors[0].startswith("replay-guard-full: more than 2 envelopes")
    assert summary.errors[1].startswith("replay-rejected: ")

    alone = pb.HeartbeatBatch(heartbeat_envelopes=[busy.heartbeat_envelope(clock.now())])
    ended = failure(lambda: coordinator.stub.HeartbeatStream(iter([alone]), timeout=10))
    assert ended.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (ended.details() or "").startswith("replay-guard-full: a batch admitted no heartbeat")
    assert 1 <= retry_after_s(ended) <= 601
    coordinator.stop()


def test_a_node_holds_one_task_stream_at_a_time(tmp_path: Path, clock: StepClock) -> None:
    coordinator = running(tmp_path, clock)
    node = staked_node(coordinator, clock)
    first = node.open_stream(coordinator.stub)
    time.sleep(0.2)

    second = node.open_stream(coordinator.stub)
    first._thread.join(3)

    assert not first._thread.is_alive()  # the older stream ended when the new one opened
    register_idle(coordinator.service.repositories, 2, clock.now())  # 3 replicas need 3 nodes
    coordinator.stub.SubmitTask(task_request("job-one-stream"))
    assert len(second.wait_for(1)) == 1
    assert coordinator.server.limiter.open_streams == 1
    second.close()
    coordinator.stop()


def test_the_task_stream_of_a_node_gone_silent_is_ended_and_its_thread_freed(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(tmp_path, clock, limits=GrpcLimits(liveness_check_s=0.1))
    node = staked_node(coordinator, clock)
    feed = node.open_stream(coordinator.stub)
    time.sleep(0.3)
    assert feed.error is None

    clock.advance(181)  # three missed heartbeats: offline
    feed._thread.join(3)

    assert feed.error is not None
    assert feed.error.code() is grpc.StatusCode.UNAVAILABLE
    assert "the node is offline" in (feed.error.details() or "")
    assert coordinator.server.limiter.open_streams == 0
    coordinator.stop()


def test_a_message_over_the_size_limit_is_refused_before_it_is_parsed(
    tmp_path: Path, clock: StepClock
) -> None:
    coordinator = running(tmp_path, clock, limits=GrpcLimits(max_message_bytes=64 * 1024))

    error = failure(
        lambda: coordinator.stub.Heartbeat(
            pb.HeartbeatRequest(heartbeat_envelope=b"{" * 100_000), timeout=5
        )
    )

    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    node = staked_node(coordinator, clock)
    coordinator.stub.Heartbeat(
        pb.HeartbeatRequest(heartbeat_envelope=node.heartbeat_envelope(clock.now()))
    )
    coordinator.stop()
