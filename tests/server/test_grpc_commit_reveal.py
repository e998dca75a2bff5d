"""Commit–reveal over gRPC: a lazy node cannot copy a sibling's result and be paid (SRS-SEC-11).

The finding: GetTask (no credential) showed the sibling replicas' output hashes before the
verdict and output bytes were optional, so a lazy node copied a hash and was paid. These tests
perform that attack against a running coordinator and check it fails, clearly, and that only
the nodes that did the work are paid.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.coordination.reveals import RevealWindows
from owm_core.market.tasks import TaskState
from tests.reveals import salt_of
from tests.server.harness import Coordinator, SimNode, StepClock, start_coordinator, task_request

TRUTH = b'{"answer":42}'
WINDOWS = RevealWindows(commit_window_s=60, reveal_window_s=30)


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def running(tmp_path: Path, clock: StepClock) -> Iterator[Coordinator]:
    config = ServiceConfig(tick_s=0.05, reveal_windows=WINDOWS)  # redundant, k = 3
    coordinator = start_coordinator(
        memory_repositories(), SimLedger(tmp_path / "lightning.sqlite3"), clock, config
    )
    yield coordinator
    coordinator.stop()


def three_nodes(running: Coordinator, clock: StepClock) -> dict[str, tuple[SimNode, str]]:
    """Three staked nodes, each holding one replica of ``job``: node_id → (node, replica)."""
    nodes = []
    for _ in range(3):
        node = SimNode.create()
        node.stake(running)
        node.register(running.stub, clock.now())
        nodes.append(node)
    feeds = [n.open_stream(running.stub) for n in nodes]
    running.stub.SubmitTask(task_request("job"))
    held = {n.node_id: (n, f.wait_for(1)[0].task_id) for n, f in zip(nodes, feeds, strict=True)}
    for feed in feeds:
        feed.close()
    return held


def wait_until(check: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_get_task_shows_no_output_hash_before_the_verdict_and_a_copier_is_not_paid(
    running: Coordinator, clock: StepClock
) -> None:
    (honest_a, a), (honest_b, b), (lazy, mine) = three_nodes(running, clock).values()
    truth_hash = hashlib.sha256(TRUTH).hexdigest()
    honest_a.commit(running.stub, a, TRUTH, clock.now())
    honest_b.commit(running.stub, b, TRUTH, clock.now())

    peek = running.stub.GetTask(pb.GetTaskRequest(task_id="job"))  # anonymous, as the lazy node

    assert "output_hash" not in pb.ReplicaView.DESCRIPTOR.fields_by_name
    assert {r.state for r in peek.replicas} == {"committed", "assigned"}
    assert truth_hash.encode() not in peek.SerializeToString()
    stored = running.service.repositories.commitments.for_round("job")
    assert all(r.commitment.digest.encode() not in peek.SerializeToString() for r in stored)

    lazy.commit(running.stub, mine, b"a guess", clock.now())  # it has to commit to something
    honest_a.reveal(running.stub, a, TRUTH, clock.now())
    peek = running.stub.GetTask(pb.GetTaskRequest(task_id="job"))
    assert truth_hash.encode() not in peek.SerializeToString()  # still nothing to copy
    with pytest.raises(grpc.RpcError) as copied:
        lazy.reveal(running.stub, mine, TRUTH, clock.now())  # the truth, learned somehow
    assert copied.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert copied.value.details().startswith("policy-violation: ")
    honest_b.reveal(running.stub, b, TRUTH, clock.now())

    clock.advance(WINDOWS.reveal_window_s + 1)  # the lazy node stays silent: it fails
    tasks = running.service.repositories.tasks
    wait_until(lambda: tasks.get(mine).state is TaskState.FORFEITED)  # type: ignore[union-attr]
    assert tasks.get(a).state is tasks.get(b).state is TaskState.SETTLED  # type: ignore[union-attr]
    payments = running.service.repositories.payments
    assert payments.for_task(mine) == []
    done = running.stub.GetTask(pb.GetTaskRequest(task_id="job"))
    assert done.outcome == "verified" and truth_hash.encode() not in done.SerializeToString()


def test_a_reveal_without_output_bytes_is_refused_with_invalid_argument(
    running: Coordinator, clock: StepClock
) -> None:
    held = three_nodes(running, clock)
    for node, replica in held.values():
        node.commit(running.stub, replica, TRUTH, clock.now())
    node, replica = next(iter(held.values()))

    salt = salt_of(node.node_id, replica)
    for output in (b"", node.sealed(replica, b"other bytes")):
        with pytest.raises(grpc.RpcError) as refused:
            running.stub.SubmitProof(pb.SubmitProofRequest(
                proof_envelope=node.proof(replica, TRUTH, clock.now()), output=output, salt=salt,
            ))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("invalid-value: output: ")
    assert running.service.repositories.proofs.get(replica, node.node_id) is None
    assert node.reveal(running.stub, replica, TRUTH, clock.now()).state == "completed"


def test_a_copied_commitment_is_refused_over_grpc(running: Coordinator, clock: StepClock) -> None:
    from owm_core.identity import envelopes
    from owm_core.identity.envelopes import EnvelopeKind, TaskCommitment

    (honest, a), _, (lazy, mine) = three_nodes(running, clock).values()
    honest.commit(running.stub, a, TRUTH, clock.now())
    (stored,) = running.service.repositories.commitments.for_round("job")
    copy = TaskCommitment(task_id=mine, commitment=stored.commitment.digest)
    raw = envelopes.to_bytes(envelopes.seal(
        lazy.identity, EnvelopeKind.TASK_COMMITMENT, copy, b"\x01" * 16, clock.now(),
        audience=lazy.coordinator))

    with pytest.raises(grpc.RpcError) as refused:
        running.stub.CommitResult(pb.CommitResultRequest(commitment_envelope=raw))

    assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "copies another replica" in refused.value.details()
    assert running.service.repositories.tasks.get(mine).state is TaskState.ASSIGNED  # type: ignore[union-attr]
