"""SQLAlchemy engines for the coordinator's store: SQLite (embedded default) or PostgreSQL.

SQLite (a file under the data directory, :func:`sqlite_url`) is configured on every new
connection for a single-machine server with concurrent threads:

- ``journal_mode=WAL`` so readers never block the writer (and vice versa);
- ``foreign_keys=ON`` (SQLite leaves them off by default);
- ``busy_timeout`` so a writer waits for the lock instead of failing at once;
- the driver's own transaction handling is switched off and SQLAlchemy emits ``BEGIN`` itself
  (``BEGIN IMMEDIATE`` for write transactions, see :data:`WRITE`), so a transaction that reads
  and then writes takes the write lock up front and cannot fail half-way with ``SQLITE_BUSY``.

PostgreSQL URLs (``postgresql://…``) use psycopg 3 (``postgresql+psycopg``) with pre-ping (a
pooled connection whose server went away is replaced before use) and a 5 s ``connect_timeout``
unless the URL sets one. For a primary with standbys (SRS-COORD-06) the URL may name several
servers as libpq does, ``postgresql://owm@db-a:5432,db-b:5432/owm?target_session_attrs=read-write``
(or as SQLAlchemy does, ``?host=db-a:5432&host=db-b:5432``): libpq tries them in order and keeps
the one that accepts writes, so after a failover new connections reach the promoted standby.
Each time the server a connection lands on changes, one line is logged (host and port only).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from owm_adapters.files import private_directory, private_file
from owm_core.errors import StoreUnavailable

log = logging.getLogger(__name__)

SQLITE_FILE = "coordinator.sqlite3"
CONNECT_TIMEOUT_S = 5
"""libpq's ``connect_timeout`` per server unless the URL sets one: a dead host is skipped."""
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


_LIBPQ_HOSTS = re.compile(
    r"^(?P<scheme>postgresql(?:\+psycopg)?://)(?P<user>[^@/?]*@)?(?P<hosts>[^/?@]*,[^/?@]*)"
    r"(?P<path>/[^?]*)?(?:\?(?P<query>.*))?$"
)


def multi_host_url(url: str) -> str:
    """``url`` with a libpq host list (``//user@a:5432,b:5433/db``) rewritten into the form
    SQLAlchemy parses (``//user@/db?host=a:5432&host=b:5433``); any other URL unchanged."""
    match = _LIBPQ_HOSTS.match(url)
    if match is None:
        return url
    hosts = [h for h in match["hosts"].split(",") if h]
    query = "&".join([*(f"host={h}" for h in hosts), *([match["query"]] if match["query"] else [])])
    return f"{match['scheme']}{match['user'] or ''}{match['path'] or '/'}?{query}"


def _log_server_changes(engine: Engine) -> None:
    """Log (host and port, nothing else) whenever a new connection lands on another server
    than the last one did: after a failover the log says where the store went."""
    last: list[tuple[str, int]] = []

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        info = getattr(dbapi_connection, "info", None)
        server = (str(getattr(info, "host", "?")), int(getattr(info, "port", 0) or 0))
        if last != [server]:
            log.info("database: connected to PostgreSQL at %s:%d%s", *server,
                     "" if not last else f" (was {last[0][0]}:{last[0][1]})")
            last[:] = [server]


def create_store_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings above; extra ``kwargs`` go to create_engine."""
    parsed = make_url(multi_host_url(url))
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    kwargs.setdefault("pool_pre_ping", True)
    if parsed.drivername == "postgresql+psycopg" and "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S,
                                  **kwargs.get("connect_args", {})}
    engine = create_engine(parsed, **kwargs)
    if parsed.drivername == "postgresql+psycopg":
        _log_server_changes(engine)
    return engine


def connect(engine: Engine) -> Connection:
    """``engine.connect()`` for the calls made before the repositories exist (the schema check
    at start-up, ``owm-coordinator migrate``): a database that cannot be reached is
    :class:`~owm_core.errors.StoreUnavailable` with the driver's reason on one line, so the
    operator reads what failed and where instead of a stack trace (the password never shown)."""
    try:
        return engine.connect()
    except OperationalError as exc:
        raise StoreUnavailable(
            f"cannot connect to the coordinator's database ({driver_reason(exc)}); check "
            "[coordinator] database_url"
        ) from None


def driver_reason(exc: DBAPIError) -> str:
    """The driver's error on one line, cut short: names each server tried (host, port) and its
    failure, never the password (libpq does not echo it; ``password=…`` is masked anyway)."""
    text = str(exc.orig) if exc.orig is not None else type(exc).__name__
    line = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    return _PASSWORD.sub(r"\1***", line or type(exc).__name__)[:400]


_PASSWORD = re.compile(r"(password\s*=\s*|://[^:/@\s]*:)[^\s@&]+", re.IGNORECASE)
