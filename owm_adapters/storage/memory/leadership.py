"""The process-local twin of the leadership port: one coordinator leads everything.

On SQLite or the in-memory store there is one coordinator per database, so every job that
must run once runs in it, as it always did (SRS-COORD-05: SQLite remains the single-coordinator
default).
"""

from __future__ import annotations


class LocalLeadership:
    """Grants every lead to this process."""

    def try_hold(self, name: str) -> bool:
        """Always True: no other coordinator shares this store."""
        return True

    def release(self) -> None:
        """Nothing to give up."""
