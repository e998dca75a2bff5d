"""Log lines a flood cannot multiply (SRS-SEC-15, SRS-SEC-16).

Anyone can open connections to the pool and any registered miner can submit bad shares as fast
as its link allows; one INFO line for each would let them fill the coordinator's disk and bury
what an operator needs to read. :class:`LogThrottle` decides which of many like lines to write:
the first of each kind (a refusal reason, a miner and its rejection code) at once, then at most
one per ``every_s`` seconds per kind, saying how many occurrences it stands for. Counting is
left to the callers' counters, which see every occurrence.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable

import attrs


@attrs.define(eq=False)
class LogThrottle:
    """Which occurrences of a kind of line get written (module docstring); thread-safe."""

    every_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _logged_at: dict[Hashable, float] = attrs.field(init=False, factory=dict)
    _unlogged: collections.Counter[Hashable] = attrs.field(init=False, factory=collections.Counter)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def due(self, kind: Hashable) -> int:
        """Record one occurrence of ``kind``: 0 if no line is due for it now, else how many
        occurrences the line to write now stands for (this one and those left unwritten since
        the kind's last line)."""
        with self._lock:
            now = self.clock()
            self._unlogged[kind] += 1
            last = self._logged_at.get(kind)
            if last is not None and now - last < self.every_s:
                return 0
            self._logged_at[kind] = now
            return self._unlogged.pop(kind)

    def info(self, logger: logging.Logger, kind: Hashable, message: str, *args: object) -> None:
        """Record one occurrence of ``kind`` and, if a line is due (:meth:`due`), log
        ``message % args`` at INFO on ``logger`` with how many occurrences it stands for."""
        count = self.due(kind)
        if count:
            logger.info(message + "; %d such since the last line", *args, count)


__all__ = ["LogThrottle"]
