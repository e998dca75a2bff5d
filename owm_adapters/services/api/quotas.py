"""Daily quotas of paying callers: requests and writes per API key or L402 token (SRS-API-03).

Commercial keys and L402 tokens are not held to the free tier's window, but a 10-sat token must
not buy unlimited treasury-paid queries and writes either. :class:`DailyQuota` counts per key
and UTC day — one counter per key, so a flood of paid tokens costs a few bytes each — and says
how long until the next day when a key is over its quota.
"""

from __future__ import annotations

import threading

import attrs

DAY_S = 86_400


@attrs.frozen
class QuotaCheck:
    """One request counted: whether it was admitted, what is left and when the day turns."""

    admitted: bool
    remaining: int
    retry_after_s: int


class DailyQuota:
    """At most ``limit`` admissions per key and UTC day (thread-safe; see module docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a daily quota allows at least one request")
        self.limit = limit
        self._day = -1
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str, now: int) -> QuotaCheck:
        """Count one request of ``key`` at ``now`` (unix s) unless its day's quota is spent."""
        day, into = divmod(now, DAY_S)
        with self._lock:
            if day != self._day:  # yesterday's counters are of no use any more
                self._day = day
                self._counts.clear()
            used = self._counts.get(key, 0)
            if used >= self.limit:
                return QuotaCheck(False, 0, DAY_S - into)
            self._counts[key] = used + 1
        return QuotaCheck(True, self.limit - used - 1, 0)
