"""Task inputs and outputs travel and rest sealed to their recipient (SRS-SEC-02).

Each test performs the attack over the real gRPC port: reading the wire message or the
database, opening an input with another node's key, delivering a changed or foreign output.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.sql import open_repositories
from owm_core.errors import InvalidValue
from owm_core.market.tasks import TaskState, VerificationPolicy
from tests.reveals import salt_of
from tests.server.harness import (
    Coordinator,
    SimNode,
    StepClock,
    sqlite_url_in,
    start_coordinator,
    task_request,
)

SECRET_INPUT = b'{"prompt": "the launch code is 7f3a-91c2"}'
SECRET_OUTPUT = b'{"text": "the answer is 4e1d-b077"}'


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def running(tmp_path: Path, clock: StepClock) -> Iterator[Coordinator]:
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    coordinator = start_coordinator(
        open_repositories(sqlite_url_in(tmp_path)), SimLedger(tmp_path / "ln.sqlite3"), clock,
        config,
    )
    yield coordinator
    coordinator.stop()
    coordinator.service.repositories.close()


def staked(running: Coordinator, clock: StepClock) -> SimNode:
    node = SimNode.create()
    node.stake(running)
    node.register(running.stub, clock.now())
    return node


def assigned(running: Coordinator, node: SimNode, task_id: str) -> pb.TaskAssignment:
    feed = node.open_stream(running.stub)
    running.stub.SubmitTask(task_request(task_id, input_data=SECRET_INPUT))
    (assignment,) = feed.wait_for(1)
    feed.close()
    return assignment


def database_bytes(tmp_path: Path) -> bytes:
    """Everything SQLite keeps on disk for the coordinator: the file and its journal."""
    path = tmp_path / "coordinator.sqlite3"
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(FULL)").close()
    return b"".join(p.read_bytes() for p in tmp_path.glob("coordinator.sqlite3*"))


def test_the_input_on_the_wire_opens_only_for_the_node_it_was_assigned_to(
    running: Coordinator, clock: StepClock
) -> None:
    node, other = staked(running, clock), staked(running, clock)
    assignment = assigned(running, node, "job-secret")
    assert SECRET_INPUT not in assignment.SerializeToString()
    assert node.opened(assignment) == SECRET_INPUT
    with pytest.raises(InvalidValue, match="does not open"):
        other.opened(assignment)


def test_the_database_holds_no_input_or_output_in_the_clear(
    running: Coordinator, clock: StepClock, tmp_path: Path
) -> None:
    node = staked(running, clock)
    assignment = assigned(running, node, "job-secret")
    assert SECRET_INPUT not in database_bytes(tmp_path)

    proof = node.proof(assignment.task_id, SECRET_OUTPUT, clock.now())
    node.commit(running.stub, assignment.task_id, SECRET_OUTPUT, clock.now())
    salt = salt_of(node.node_id, assignment.task_id)
    sealed = node.sealed(assignment.task_id, SECRET_OUTPUT)
    assert SECRET_OUTPUT not in sealed
    reply = running.stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=proof, output=sealed, salt=salt))

    assert reply.state == TaskState.SETTLED.value
    assert SECRET_OUTPUT not in database_bytes(tmp_path)
    assert running.service.task_output("job-secret") == SECRET_OUTPUT  # to its submitter


def test_a_changed_sealed_output_is_refused_and_nothing_is_stored(
    running: Coordinator, clock: StepClock
) -> None:
    node = staked(running, clock)
    assignment = assigned(running, node, "job-tampered")
    proof = node.proof(assignment.task_id, SECRET_OUTPUT, clock.now())
    node.commit(running.stub, assignment.task_id, SECRET_OUTPUT, clock.now())
    salt = salt_of(node.node_id, assignment.task_id)
    sealed = bytearray(node.sealed(assignment.task_id, SECRET_OUTPUT))
    sealed[-1] ^= 0x01

    with pytest.raises(grpc.RpcError) as refused:
        running.stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=proof, output=bytes(sealed), salt=salt))

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid-value: output: does not open")
    repositories = running.service.repositories
    assert repositories.tasks.get(assignment.task_id).state is TaskState.COMMITTED
    assert repositories.task_outputs.get(assignment.task_id) is None
    assert repositories.proofs.get(assignment.task_id, node.node_id) is None
    good = node.sealed(assignment.task_id, SECRET_OUTPUT)
    reply = running.stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=proof, output=good, salt=salt))
    assert reply.state == TaskState.SETTLED.value


@pytest.mark.parametrize("delivered", ["plain", "sealed by another node", "for another replica"])
def test_an_output_not_sealed_by_the_proofs_signer_for_its_replica_is_refused(
    running: Coordinator, clock: StepClock, delivered: str
) -> None:
    node, other = staked(running, clock), staked(running, clock)
    assignment = assigned(running, node, "job-foreign")
    proof = node.proof(assignment.task_id, SECRET_OUTPUT, clock.now())
    node.commit(running.stub, assignment.task_id, SECRET_OUTPUT, clock.now())
    salt = salt_of(node.node_id, assignment.task_id)
    output = {
        "plain": SECRET_OUTPUT,
        "sealed by another node": other.sealed(assignment.task_id, SECRET_OUTPUT),
        "for another replica": node.sealed("job-other:0", SECRET_OUTPUT),
    }[delivered]

    with pytest.raises(grpc.RpcError) as refused:
        running.stub.SubmitProof(pb.SubmitProofRequest(
            proof_envelope=proof, output=output, salt=salt))

    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("invalid-value: output: ")
    assert running.service.repositories.task_outputs.get(assignment.task_id) is None
