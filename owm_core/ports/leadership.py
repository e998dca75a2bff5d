"""The leadership port: which coordinator runs the work that must run once (SRS-COORD-05).

Several coordinators may serve one network from one database. Most of their work is per
request and runs wherever the request lands; some must run on one of them at a time — FL
round scheduling, payout dispatch, stake re-verification, the market's time-outs and
expiries, retention jobs, OTS upgrades. Each such job has a name; a coordinator runs it only
while it holds that name's lead. Adapters: PostgreSQL session advisory locks on a dedicated
connection (``owm_adapters.storage.sql.leadership``), and a process-local twin that always
grants the lead (one coordinator on SQLite, ``owm_adapters.storage.memory.leadership``).
"""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    """Named leads, each held by at most one coordinator at a time."""

    def try_hold(self, name: str) -> bool:
        """Take the lead of ``name`` if it is free, or confirm it is still held; whether this
        process holds it now (never blocks for long: a standby asks again later)."""
        ...

    def release(self) -> None:
        """Give up every lead this process holds (shutdown)."""
        ...
