"""The pool's rejected shares, counted and logged (SRS-POOL-06, SRS-SEC-15, the live feed of
SRS-POOL-09).

Every rejected share is counted per reason code and per miner and code; with a
:class:`~owm_core.ports.repositories.pool.ShareRejectionRepository`, the counts since the last
flush are written to it in one write per period (the pool's worker loop flushes every few
seconds), so a flood of bad shares costs one write per period, not one per share. Logging goes
through a :class:`~owm_adapters.pool.log_limits.LogThrottle`: the first of a miner and code at
once, then at most one line per 10 s with the count.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

from owm_adapters.pool.log_limits import LogThrottle
from owm_core.ports.repositories.pool import ShareRejectionRepository

_REJECTED = "share rejected: miner=%s reason=%s (%s)"


class RejectionCounts:
    """Rejected shares per code and per miner and code, with the unflushed ones (thread-safe)."""

    def __init__(
        self, log: logging.Logger, now: Callable[[], int],
        store: ShareRejectionRepository | None = None,
    ) -> None:  # fmt: skip
        self._log = log
        self._now = now
        self._store = store
        self._lock = threading.Lock()
        self._by_code: collections.Counter[str] = collections.Counter()
        self._by_miner: collections.Counter[tuple[str, str]] = collections.Counter()
        self._unflushed: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lines = LogThrottle()

    def count(self, miner_id: str, code: str, detail: str) -> None:
        """Count and log one rejected share of ``miner_id`` answered ``code``."""
        with self._lock:
            self._by_code[code] += 1
            self._by_miner[miner_id, code] += 1
            if self._store is not None:
                self._unflushed[miner_id, code] += 1
        self._lines.info(self._log, (miner_id, code), _REJECTED, miner_id, code, detail)

    def by_code(self) -> dict[str, int]:
        """Shares rejected per code since this pool started."""
        with self._lock:
            return dict(self._by_code)

    def by_miner(self) -> dict[str, dict[str, int]]:
        """Shares rejected per miner and code: the stored totals plus those not yet flushed, or,
        without a store, those counted since this pool started."""
        with self._lock:
            counted = dict(self._by_miner if self._store is None else self._unflushed)
        by_miner = self._store.by_miner() if self._store is not None else {}
        for (miner, code), n in sorted(counted.items()):
            codes = by_miner.setdefault(miner, {})
            codes[code] = codes.get(code, 0) + n
        return {miner: dict(sorted(codes.items())) for miner, codes in sorted(by_miner.items())}

    def flush(self) -> int:
        """Write the counts since the last flush to the store in one write; how many were
        written (none are lost if the write fails: they wait for the next flush)."""
        if self._store is None:
            return 0
        with self._lock:
            pending, self._unflushed = self._unflushed, collections.Counter()
        if pending:
            try:
                self._store.add(dict(pending), self._now())
            except Exception:
                with self._lock:
                    self._unflushed.update(pending)  # kept for the next flush
                raise
        return sum(pending.values())
