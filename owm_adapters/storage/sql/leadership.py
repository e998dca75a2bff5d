"""Leadership over PostgreSQL session advisory locks (SRS-COORD-05).

Each named lead is one advisory lock id (the first 8 bytes of SHA-256 of ``owm/lead/<name>``),
taken with ``pg_try_advisory_lock`` on one dedicated connection that lives as long as the
coordinator leads: a session lock is released by PostgreSQL when its session ends, so a
coordinator that dies (SIGKILL, a lost host, a cut network once TCP notices) hands its leads
over without anyone's help. Standbys call :meth:`AdvisoryLeadership.try_hold` every few
seconds and take a lead within that period of its release. The holder's calls run ``SELECT 1``
on the connection; if that fails, every lead is reported lost at once (the jobs stop), and the
next call opens a new connection and tries again.

The connection's ``application_name`` is ``owm-coordinator/<pid>``, so an operator (and the
high-availability test) can see in ``pg_locks`` joined with ``pg_stat_activity`` which
coordinator process holds which lead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

from sqlalchemy import Connection, Engine, text
from sqlalchemy.pool import NullPool

from owm_adapters.storage.sql.engine import create_store_engine

log = logging.getLogger(__name__)


def lead_lock_id(name: str) -> int:
    """The signed 64-bit advisory lock id of the lead ``name``."""
    digest = hashlib.sha256(f"owm/lead/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLeadership:
    """Named leads as PostgreSQL session advisory locks on one dedicated connection."""

    def __init__(self, url: str) -> None:
        self._engine: Engine = create_store_engine(
            url, poolclass=NullPool,
            connect_args={"application_name": f"owm-coordinator/{os.getpid()}"},
        )  # fmt: skip
        self._connection: Connection | None = None
        self._held: set[str] = set()
        #: Leads held when the connection was lost: each is reported lost once, so its job
        #: stops even if this process takes the lead again at once.
        self._lost: set[str] = set()
        self._lock = threading.Lock()

    def try_hold(self, name: str) -> bool:
        """Take the lead of ``name`` if free, or confirm the connection holding it lives."""
        with self._lock:
            if name in self._lost:
                self._lost.discard(name)
                return False
            try:
                connection = self._connected()
                if name in self._held:
                    connection.execute(text("SELECT 1"))
                else:
                    taken = connection.execute(
                        text("SELECT pg_try_advisory_lock(:id)"), {"id": lead_lock_id(name)}
                    ).scalar_one()
                    if taken:
                        self._held.add(name)
                connection.commit()
            except Exception as exc:
                log.warning("leadership connection lost (%s); every lead is given up",
                            type(exc).__name__)
                self._drop()
                return False
            return name in self._held

    def release(self) -> None:
        """Give up every lead (closing the session releases its locks)."""
        with self._lock:
            if self._connection is not None and self._held:
                try:  # at once, not when the server notices the closed session
                    self._connection.execute(text("SELECT pg_advisory_unlock_all()"))
                    self._connection.commit()
                except Exception:  # a broken session: closing it releases the locks
                    log.debug("leads not released explicitly", exc_info=True)
            self._drop()
            self._lost.clear()
        self._engine.dispose()

    def _connected(self) -> Connection:
        if self._connection is None:
            self._connection = self._engine.connect()
        return self._connection

    def _drop(self) -> None:
        self._lost |= self._held
        self._held.clear()
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken: nothing left to release
                log.debug("leadership connection did not close cleanly", exc_info=True)
            self._connection = None
