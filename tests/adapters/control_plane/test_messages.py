"""Values ↔ control-plane messages (owm_adapters/control_plane/messages.py): one rule both ends
of the wire use, so what the servicer writes is what the client reads back."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.messages import COORDINATOR_SIGNED, from_message, to_message
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.nodes.control_plane import AssignedTask

hexes = st.binary(min_size=32, max_size=32).map(bytes.hex)
int64 = st.integers(0, 2**63 - 1)
assignments = st.builds(
    AssignedTask,
    task_id=st.text(max_size=20),
    task_type=st.text(max_size=20),
    input_schema_id=st.text(max_size=20),
    input_schema_version=int64,
    price_msat=int64,
    deadline_at=int64,
    input=st.binary(max_size=64),
    assigned_at_ms=int64,
    signature=st.binary(max_size=64),
    model_version=st.text(max_size=20),
)


@given(task=assignments)
def test_an_assignment_read_back_from_its_message_is_the_assignment_sent(
    task: AssignedTask,
) -> None:
    message = to_message(pb.TaskAssignment, task, COORDINATOR_SIGNED)
    assert message.coordinator_signature == task.signature
    assert from_message(AssignedTask, message, COORDINATOR_SIGNED) == task


@given(key=hexes, nonce=hexes, purpose=st.sampled_from(ChallengePurpose), at=st.integers(0, 2**40))
def test_a_challenge_travels_with_its_purpose_as_text_and_comes_back_as_the_enum(
    key: str, nonce: str, purpose: ChallengePurpose, at: int
) -> None:
    challenge = Challenge(key, purpose, nonce, at, at + 120)
    message = to_message(pb.Challenge, challenge)
    assert message.purpose == purpose.value
    assert message.coordinator_signature == b""  # the signing layer adds it, not the value
    assert from_message(Challenge, message) == challenge


def test_given_fields_win_over_the_values_attributes() -> None:
    challenge = Challenge("ab" * 32, ChallengePurpose.REGISTER, "cd" * 32, 1, 2)
    message = to_message(pb.Challenge, challenge, expires_at=9)
    assert from_message(Challenge, message).expires_at == 9
    assert from_message(Challenge, message, expires_at=3).expires_at == 3
