"""Task inputs and outputs at rest: sealed by the coordinator to itself (SRS-SEC-02)."""

from __future__ import annotations

import pytest

from owm_adapters.services.coordinator.sealing import SealedBlobs, TaskSealing
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import Conflict, InvalidValue
from owm_core.identity.keys import Identity
from owm_core.market.tasks import MAX_TASK_INPUT_BYTES

COORDINATOR = TaskSealing(Identity.from_seed(b"\x0c" * 32))


def test_a_stored_input_reads_back_but_its_row_holds_only_sealed_bytes() -> None:
    repositories = memory_repositories()
    inputs = SealedBlobs(repositories.task_inputs, COORDINATOR, "task-input")
    inputs.put("job-1", b'{"prompt": "private"}')
    assert inputs.get("job-1") == b'{"prompt": "private"}'
    row = repositories.task_inputs.get("job-1")
    assert row is not None and b"private" not in row
    inputs.delete("job-1")
    assert inputs.get("job-1") is None and repositories.task_inputs.get("job-1") is None


def test_the_same_input_again_is_a_no_op_and_another_one_a_conflict() -> None:
    inputs = SealedBlobs(memory_repositories().task_inputs, COORDINATOR, "task-input")
    inputs.put("job-1", b"one")
    inputs.put("job-1", b"one")
    with pytest.raises(Conflict):
        inputs.put("job-1", b"two")
    assert inputs.get("job-1") == b"one"


def test_a_row_moved_under_another_task_does_not_open() -> None:
    repositories = memory_repositories()
    inputs = SealedBlobs(repositories.task_inputs, COORDINATOR, "task-input")
    inputs.put("job-1", b"for job one")
    row = repositories.task_inputs.get("job-1")
    assert row is not None
    repositories.task_inputs.put("job-2", row)
    with pytest.raises(InvalidValue, match="another purpose") as refused:
        inputs.get("job-2")
    assert refused.value.field == "stored task-input"


def test_rows_sealed_by_one_coordinator_key_do_not_open_with_another() -> None:
    repositories = memory_repositories()
    SealedBlobs(repositories.task_outputs, COORDINATOR, "task-output", "output").put(
        "job-1:0", b"answer"
    )
    thief = TaskSealing(Identity.from_seed(b"\x0d" * 32))
    with pytest.raises(InvalidValue, match="does not open"):
        SealedBlobs(repositories.task_outputs, thief, "task-output", "output").get("job-1:0")


def test_the_size_bound_applies_to_the_data_not_to_its_sealed_row() -> None:
    outputs = SealedBlobs(memory_repositories().task_outputs, COORDINATOR, "task-output", "output")
    largest = b"\x00" * MAX_TASK_INPUT_BYTES
    outputs.put("job-1:0", largest)
    assert outputs.get("job-1:0") == largest
    with pytest.raises(InvalidValue) as refused:
        outputs.put("job-2:0", largest + b"\x00")
    assert refused.value.field == "output"
