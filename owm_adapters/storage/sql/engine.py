"""SQLAlchemy engines for the coordinator's store: SQLite (embedded default) or PostgreSQL.

SQLite (a file under the data directory, :func:`sqlite_url`) is configured on every new
connection for a single-machine server with concurrent threads:

- ``journal_mode=WAL`` so readers never block the writer (and vice versa);
- ``foreign_keys=ON`` (SQLite leaves them off by default);
- ``busy_timeout`` so a writer waits for the lock instead of failing at once;
- the driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself
  (``BEGIN IMMEDIATE`` for write transactions, see :data:`WRITE`), so a transaction that reads
  and then writes takes the write lock up front and cannot fail half-way with ``SQLITE_BUSY``.

PostgreSQL URLs (``postgresql://…``) use psycopg 3 (``postgresql+psycopg``) with pre-ping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from owm_adapters.files import private_directory, private_file

SQLITE_FILE = "coordinator.sqlite3"
BUSY_TIMEOUT_MS = 10_000
WRITE = "owm_write"
"""Execution option: the transaction about to begin will write (SQLite: ``BEGIN IMMEDIATE``)."""


def sqlite_url(data_dir: str | Path) -> str:
    """The URL of the embedded store, ``<data_dir>/coordinator.sqlite3`` (directory created)."""
    directory = private_directory(Path(data_dir).expanduser())
    return f"sqlite:///{directory / SQLITE_FILE}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if engine.url.database not in (None, "", ":memory:"):
                private_file(Path(engine.url.database))  # SQLite created it with the umask's mode
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_store_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings above; extra ``kwargs`` go to create_engine."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)
