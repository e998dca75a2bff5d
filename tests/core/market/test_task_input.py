"""The bound on the task input and output bytes a store keeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.market.tasks import MAX_TASK_INPUT_BYTES, check_task_input


@given(data=st.binary(max_size=4096), kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_bytes_within_the_bound_are_kept_as_immutable_bytes(data: bytes, kind: type) -> None:
    kept = check_task_input(kind(data))
    assert type(kept) is bytes
    assert kept == data


def test_one_byte_over_the_bound_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidValue) as caught:
        check_task_input(b"\0" * (MAX_TASK_INPUT_BYTES + 1), "output")
    assert caught.value.field == "output"
    assert check_task_input(b"\0" * MAX_TASK_INPUT_BYTES) == b"\0" * MAX_TASK_INPUT_BYTES


@pytest.mark.parametrize("value", ["text", 3, None, [1, 2]])
def test_anything_but_bytes_is_refused(value: object) -> None:
    with pytest.raises(InvalidValue, match="must be bytes"):
        check_task_input(value)
