"""The database an SQL store runs on: transactions, error translation and shared statements.

Transactions: each repository call runs in its own transaction and commits before returning
(write transactions take SQLite's write lock up front). Inside :meth:`Database.atomic`, calls
on the same thread share one transaction that commits when the block ends; each call there
runs in a savepoint, so a call that fails with :class:`~owm_core.errors.Conflict` can be
caught without spoiling the rest of the block. Integrity errors from the database (duplicate
keys, concurrent inserts) become ``Conflict``; integers too large for a ``BIGINT`` become
``InvalidValue``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, IntegrityError

from owm_adapters.storage.sql.engine import WRITE
from owm_core.errors import Conflict, InvalidValue

INT64_MAX = 2**63 - 1


class Database:
    """An engine plus the per-thread transaction that :meth:`atomic` opens."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
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
            with self.engine.connect() as fresh:
                if write:
                    fresh.execution_options(**{WRITE: True})
                with fresh.begin():
                    yield fresh
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None
        except (DataError, OverflowError):
            raise InvalidValue("value", "does not fit the store's 64-bit columns") from None

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """One transaction for every call on this thread until the block ends (flat nesting)."""
        if self._current() is not None:
            yield
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
        except IntegrityError as exc:
            raise Conflict(f"the write clashes with a stored record ({_constraint(exc)})") from None


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
