"""Where a periodic sweep over stored rows goes on next time.

A sweep that reads "the first N rows" every time never sees row N+1 while the first N stay
(an escrow whose reconciliation fails, a claimed bounty that waits for its merge): every row
after them starves. A :class:`SweepCursor` reads keyset pages instead: each sweep reads the
next ``limit`` rows after the key of the last row it saw, and starts over from the beginning
once a page comes back short. Each sweep still does bounded work, and every row stored for the
whole walk is looked at within ``ceil(rows / limit) + 1`` sweeps, whatever lies before it
(SRS-COORD-05: each coordinator walks with its own cursor; the rows, not the cursor, are shared).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import attrs

K = TypeVar("K")
T = TypeVar("T")


@attrs.define
class SweepCursor(Generic[K]):
    """The key a sweep's next page starts after; ``start`` (before every key) to begin again."""

    start: K
    _after: K = attrs.field(init=False)

    @_after.default
    def _beginning(self) -> K:
        return self.start

    def page(
        self, read: Callable[[K, int], Sequence[T]], key: Callable[[T], K], limit: int
    ) -> list[T]:
        """The next page: ``read(after, limit)`` returns up to ``limit`` rows whose keys come
        after ``after``, in key order; ``key`` is a row's key. A full page moves the cursor to
        its last row, a short one (the walk reached the end) back to the start."""
        rows = list(read(self._after, limit))
        self._after = key(rows[-1]) if rows and len(rows) >= limit else self.start
        return rows

    def go_on_after(self, key: K) -> None:
        """Start the next page after ``key`` instead: the caller got no further in this one."""
        self._after = key


def position(row: tuple[int, object]) -> int:
    """The key of a row read with its storage position, ``(seq, value)``."""
    return row[0]
