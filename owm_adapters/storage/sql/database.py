"""The database an SQL store runs on: transactions, error translation and shared statements.

Transactions: each repository call runs in its own transaction and commits before returning
(write transactions take SQLite's write lock up front). Inside :meth:`Database.atomic`, calls
on the same thread share one transaction that commits when the block ends; each call there
runs in a savepoint, so a call that fails with :class:`~owm_core.errors.Conflict` can be
caught without spoiling the rest of the block. Integrity errors from the database (duplicate
keys, concurrent inserts) become ``Conflict``; integers too large for a ``BIGINT`` become
``InvalidValue``.

Connection loss (SRS-COORD-06): on PostgreSQL, taking a connection that fails (server down,
or only a read-only standby reachable while a failover is under way) is retried with growing
pauses, a bounded number of times (:class:`Reconnect`), each retry logged in one line (the
server's error's first line, never the URL's password); when the retries are spent, or when a
connection breaks inside a transaction, the call raises
:class:`~owm_core.errors.StoreUnavailable`. A transaction is never replayed here: its body is
the caller's, and a write whose commit broke may or may not have been kept, so the caller
decides (a worker's next period, a client's retry; the payout outbox looks before it pays).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from owm_adapters.storage.sql.engine import WRITE, driver_reason
from owm_core.errors import Conflict, InvalidValue, StoreUnavailable

log = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1


@attrs.frozen
class Reconnect:
    """How long a call waits for the database to come back: ``attempts`` retries, pausing
    ``first_delay_s`` and doubling up to ``max_delay_s`` (defaults: about 30 s in all, enough
    for a standby to be promoted)."""

    attempts: int = 10
    first_delay_s: float = 0.25
    max_delay_s: float = 4.0

    def delays(self) -> list[float]:
        """The pause before each retry, in order."""
        return [min(self.first_delay_s * 2**i, self.max_delay_s) for i in range(self.attempts)]


class Database:
    """An engine plus the per-thread transaction that :meth:`atomic` opens."""

    def __init__(
        self,
        engine: Engine,
        reconnect: Reconnect | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.reconnect = reconnect if reconnect is not None else Reconnect()
        self._sleep = sleep
        self._local = threading.local()

    def _current(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    @contextmanager
    def tx(self, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction: the atomic block's (in a savepoint) or a new one."""
        try:
            conn = self._current()
            if conn is not None:
                if write:
                    with conn.begin_nested():
                        yield conn
                else:
                    yield conn
                return
            with self._connect() as fresh:
                if write:
                    fresh.execution_options(**{WRITE: True})
                with fresh.begin():
                    yield fresh
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None
        except (DataError, OverflowError):
            raise InvalidValue("value", "does not fit the store's 64-bit columns") from None
        except DBAPIError as exc:
            raise self._lost(exc) from None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for every call on this thread until the block ends (flat nesting)."""
        if self._current() is not None:
            yield
            return
        try:
            with self._connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None
        except DBAPIError as exc:
            raise self._lost(exc) from None

    def _retries_connecting(self) -> bool:
        """Whether a failed connect is worth retrying: a server that may come back (not an
        SQLite file, whose errors do not heal by waiting)."""
        return self.engine.dialect.name != "sqlite"

    def _connect(self) -> Connection:
        """A pooled connection (pre-pinged), retried through a failover (module docstring)."""
        delays = self.reconnect.delays() if self._retries_connecting() else []
        for attempt, delay in enumerate([*delays, None], start=1):
            try:
                return self.engine.connect()
            except OperationalError as exc:
                if delay is None:
                    raise self._lost(exc) from None
                log.warning(
                    "database unavailable (%s); retry %d of %d in %.2f s",
                    driver_reason(exc), attempt, len(delays), delay,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _lost(self, exc: DBAPIError) -> Exception:
        """What a driver error inside a call becomes: StoreUnavailable when the connection is
        gone (or could not be made), else the error itself (a bug, not an outage)."""
        gone = isinstance(exc, OperationalError) and self._retries_connecting()
        if exc.connection_invalidated or gone:
            log.warning("database connection lost during a call (%s)", driver_reason(exc))
            return StoreUnavailable(
                f"the coordinator's database is unavailable ({driver_reason(exc)}); try again later"
            )
        return exc


def _constraint(exc: IntegrityError) -> str:
    """A short, secret-free description of the violated constraint."""
    return str(exc.orig).splitlines()[0][:200] if exc.orig is not None else "integrity"


def int64(name: str, value: int) -> int:
    """``value`` if it fits a BIGINT column; InvalidValue(``name``) otherwise."""
    if value > INT64_MAX:
        raise InvalidValue(name, "does not fit the store's 64-bit columns")
    return value


def upsert(
    conn: Connection, table: Table, row: dict[str, Any], key: str, only_if: Any = None
) -> bool:
    """INSERT … ON CONFLICT (key) DO UPDATE [WHERE only_if(excluded)]: one atomic statement on
    SQLite and PostgreSQL alike, so concurrent writers never clash. True if a row was written."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(table).values(row)
    excluded = statement.excluded
    upsert = statement.on_conflict_do_update(
        index_elements=[table.c[key]],
        set_={name: excluded[name] for name in row if name != key},
        where=None if only_if is None else only_if(excluded),
    ).returning(table.c[key])
    return conn.execute(upsert).first() is not None


@attrs.define
class SqlRepository:
    """Base of every SQL repository: the database it runs its statements on."""

    _db: Database
