"""Strict JSON readers refuse an object that repeats a key, naming the field they read."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.identity.envelopes import parse_canonical_json
from owm_core.market.task_types import parse_input

_KEYS = st.text(alphabet="abcdefgh", min_size=1, max_size=6)


@given(st.dictionaries(_KEYS, st.integers(), max_size=5))
def test_an_object_without_repeated_keys_reads_back_as_written(obj: dict[str, int]) -> None:
    text = "{" + ",".join(f'"{k}":{v}' for k, v in obj.items()) + "}"
    assert parse_canonical_json(text.encode()) == obj
    assert parse_input(text.encode()) == obj


@given(_KEYS)
def test_a_repeated_key_is_refused_by_envelopes_and_task_inputs_alike(key: str) -> None:
    text = f'{{"{key}": 1, "{key}": 2}}'.encode()
    with pytest.raises(InvalidValue, match="duplicate key") as envelope:
        parse_canonical_json(text)
    assert envelope.value.field == "envelope"
    with pytest.raises(InvalidValue, match="duplicate key") as task_input:
        parse_input(text)
    assert task_input.value.field == "input"
