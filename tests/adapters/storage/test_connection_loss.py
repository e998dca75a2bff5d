"""The SQL adapter's connection handling when PostgreSQL goes away (SRS-COORD-06).

Taking a connection is retried a bounded number of times with one log line each, never
showing the password; a connection that breaks inside a call becomes StoreUnavailable and the
next call gets a fresh one; SQLite errors are not retried; libpq host lists are understood.
The whole failover (primary, standby, promotion) is tests/e2e/test_database_failover.py.
"""

from __future__ import annotations

import logging
import socket

import pytest
from sqlalchemy import create_engine, text

from owm_adapters.storage.sql import open_repositories
from owm_adapters.storage.sql.database import Database, Reconnect
from owm_adapters.storage.sql.engine import create_store_engine, multi_host_url
from owm_core.errors import StoreUnavailable
from tests.conftest import PostgresServer

SECRET = "hunter2-not-for-logs"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_an_unreachable_database_is_retried_a_bounded_number_of_times_then_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://owm:{SECRET}@127.0.0.1:{_closed_port()}/owm"
    pauses: list[float] = []
    database = Database(create_store_engine(url), Reconnect(attempts=4, first_delay_s=0.5,
                        max_delay_s=1.0), sleep=pauses.append)  # fmt: skip
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(StoreUnavailable) as raised,
        database.tx() as conn,
    ):
        conn.execute(text("SELECT 1"))
    assert pauses == [0.5, 1.0, 1.0, 1.0]
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 4 and "retry 4 of 4 in 1.00 s" in retries[-1]
    assert "database unavailable" in retries[0] and "127.0.0.1" in retries[0]
    assert "try again later" in raised.value.message
    assert SECRET not in caplog.text and SECRET not in raised.value.message


def test_a_connection_killed_inside_a_call_fails_that_call_and_the_next_one_reconnects(
    postgresql_server: PostgresServer, migrated_postgresql_url: str
) -> None:
    repositories = open_repositories(migrated_postgresql_url, migrate=False)
    database = repositories.database
    admin = create_engine(migrated_postgresql_url.replace("postgresql://", "postgresql+psycopg://"),
                          isolation_level="AUTOCOMMIT")  # fmt: skip
    try:
        with pytest.raises(StoreUnavailable), database.tx() as conn:
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            conn.execute(text("SELECT 1"))
        assert repositories.nodes.get("nobody") is None  # a fresh connection answers
    finally:
        admin.dispose()
        repositories.close()


def test_sqlite_errors_are_not_retried_as_outages(tmp_path: object) -> None:
    pauses: list[float] = []
    database = Database(create_store_engine("sqlite:////nonexistent-dir/x.sqlite3"),
                        sleep=pauses.append)  # fmt: skip
    with pytest.raises(Exception) as raised, database.tx() as conn:
        conn.execute(text("SELECT 1"))
    assert not isinstance(raised.value, StoreUnavailable) and pauses == []


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://owm@db-a:5432,db-b:5433/owm?target_session_attrs=read-write",
            "postgresql://owm@/owm?host=db-a:5432&host=db-b:5433&target_session_attrs=read-write",
        ),
        ("postgresql+psycopg://u:p@a:1,b:2/d", "postgresql+psycopg://u:p@/d?host=a:1&host=b:2"),
        ("postgresql://owm@db-a:5432/owm", "postgresql://owm@db-a:5432/owm"),
        ("sqlite:///x.sqlite3", "sqlite:///x.sqlite3"),
    ],
)
def test_a_libpq_host_list_becomes_the_form_sqlalchemy_parses(given: str, expected: str) -> None:
    assert multi_host_url(given) == expected


def test_a_multi_host_url_connects_to_the_server_that_accepts_writes(
    postgresql_server: PostgresServer, migrated_postgresql_url: str
) -> None:
    database = migrated_postgresql_url.rsplit("/", 1)[1]
    url = (f"postgresql://owm@127.0.0.1:{_closed_port()},127.0.0.1:{postgresql_server.port}"
           f"/{database}?target_session_attrs=read-write")  # fmt: skip
    repositories = open_repositories(url, migrate=False)
    try:
        assert repositories.nodes.get("nobody") is None
    finally:
        repositories.close()
