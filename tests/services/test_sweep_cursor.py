"""A sweep cursor walks every stored row in bounded pages: wherever the walk stands, each row is
read within ``ceil(rows / limit) + 1`` pages."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.services.sweep_cursor import SweepCursor


def pages_of(keys: list[int]) -> Callable[[int, int], Sequence[int]]:
    def read(after: int, limit: int) -> Sequence[int]:
        return [k for k in sorted(keys) if k > after][:limit]

    return read


@given(
    keys=st.sets(st.integers(1, 10_000), max_size=40), limit=st.integers(1, 8),
    already=st.integers(0, 12),
)
def test_every_row_is_read_within_ceil_rows_over_limit_plus_one_pages_from_anywhere(
    keys: set[int], limit: int, already: int
) -> None:
    cursor = SweepCursor(0)
    read = pages_of(list(keys))
    for _ in range(already):
        cursor.page(read, lambda k: k, limit)
    seen: set[int] = set()
    for _ in range(math.ceil(len(keys) / limit) + 1):
        page = cursor.page(read, lambda k: k, limit)
        assert len(page) <= limit
        seen.update(page)
    assert seen == keys


def test_a_short_page_starts_the_walk_again() -> None:
    cursor = SweepCursor(0)
    read = pages_of([1, 2, 3, 4, 5])
    assert [cursor.page(read, lambda k: k, 2) for _ in range(4)] == [[1, 2], [3, 4], [5], [1, 2]]
