"""The row converter machinery the SQL repositories map values with (storage/sql/rows.py)."""

from __future__ import annotations

import enum
import json

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.storage.sql.database import INT64_MAX
from owm_adapters.storage.sql.rows import Flat, from_row, register_row, to_row
from owm_core.errors import InvalidValue


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Point:
    x: int
    y: int


@attrs.frozen
class Shape:
    shape_id: str
    colour: Colour
    names: tuple[str, ...]
    size: int
    filled: bool
    at: Point | None = None
    notes: tuple[str, ...] = ()
    blob: bytes | None = None


register_row(
    Shape,
    renamed={"shape_id": "id"},
    flat=[Flat("at", {"x": "at_x", "y": "at_y"})],
    omitted=["notes"],
    computed={"name_count": lambda s: len(s.names)},
    int64_columns=["size"],
)

class _DatabaseRow:
    """What a query hands back, as far as ``from_row`` reads it: the row's mapping."""

    def __init__(self, mapping: dict[str, object]) -> None:
        self._mapping = mapping


texts = st.text(max_size=8)
shapes = st.builds(
    Shape,
    shape_id=texts,
    colour=st.sampled_from(Colour),
    names=st.lists(texts, max_size=4).map(tuple),
    size=st.integers(0, INT64_MAX),
    filled=st.booleans(),
    at=st.none() | st.builds(Point, st.integers(), st.integers()),
    notes=st.lists(texts, max_size=3).map(tuple),
    blob=st.none() | st.binary(max_size=16),
)


@given(shape=shapes)
def test_a_value_comes_back_from_its_row_with_the_omitted_attributes_given_back(
    shape: Shape,
) -> None:
    row = to_row(shape)
    assert set(row) == {
        "id",
        "colour",
        "names",
        "size",
        "filled",
        "at_x",
        "at_y",
        "blob",
        "name_count",
    }
    # what a database hands back: integer booleans, memoryview blobs
    stored = {**row, "filled": int(row["filled"])}
    if row["blob"] is not None:
        stored["blob"] = memoryview(row["blob"])
    assert from_row(_DatabaseRow(stored), Shape, notes=shape.notes) == shape


@given(shape=shapes)
def test_enums_travel_as_their_value_and_tuples_of_text_as_json(shape: Shape) -> None:
    row = to_row(shape)
    assert row["colour"] == shape.colour.value
    assert json.loads(row["names"]) == list(shape.names)
    assert (row["at_x"] is None) == (shape.at is None)


@given(size=st.integers(INT64_MAX + 1, 2**80))
def test_an_integer_beyond_a_bigint_is_refused_naming_its_column(size: int) -> None:
    shape = Shape("s", Colour.RED, (), size, False)
    with pytest.raises(InvalidValue) as caught:
        to_row(shape)
    assert caught.value.field == "size"


def test_a_class_registered_twice_is_refused_so_its_row_shape_stays_unambiguous() -> None:
    with pytest.raises(TypeError, match="Shape already has a row shape"):
        register_row(Shape)
