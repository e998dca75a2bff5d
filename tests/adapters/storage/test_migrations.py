"""The alembic migrations build exactly the schema of ``owm_adapters.storage.sql.tables`` and take
it
down again, on SQLite and on a real PostgreSQL server (``tests/conftest.py``).

"Exactly" is alembic's own judgement: ``compare_metadata`` (what ``--autogenerate`` uses) must
find no difference between the migrated database and the tables' ``MetaData``, types included.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from owm_adapters.storage.sql import create_store_engine, open_repositories, sqlite_url
from owm_adapters.storage.sql.migrate import alembic_config, downgrade, upgrade
from owm_adapters.storage.sql.tables import metadata

pytestmark = pytest.mark.timeout(120)

TABLES = set(metadata.tables)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("empty_postgresql_url")
    return url


@pytest.fixture
def engine(empty_url: str) -> Iterator[Engine]:
    built = create_store_engine(empty_url)
    yield built
    built.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            rows = conn.execute(
                text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
            ).scalars()
        else:
            rows = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            ).scalars()
        return set(rows)


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrading_an_empty_database_creates_exactly_the_tables_of_the_metadata(
    empty_url: str, engine: Engine
) -> None:
    upgrade(empty_url)
    assert _tables(engine) == TABLES | {"alembic_version"}
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    assert _current_revision(engine) == head


def test_the_slashing_log_guard_comes_with_the_schema_and_goes_with_it(
    empty_url: str, engine: Engine
) -> None:
    upgrade(empty_url)
    assert {t for t in _triggers(engine) if t.startswith("slashing_log_")}
    downgrade(empty_url, "base")
    assert _triggers(engine) == set()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            left = conn.execute(
                text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'owm_%'")
            ).scalar()
        assert left == 0


def test_downgrading_to_base_drops_every_table(empty_url: str, engine: Engine) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "base")
    assert _tables(engine) <= {"alembic_version"}
    assert _current_revision(engine) is None


def test_the_schema_can_be_rebuilt_after_a_downgrade_and_upgrading_twice_is_harmless(
    empty_url: str, engine: Engine
) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "base")
    upgrade(empty_url)
    upgrade(empty_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_the_migration_history_is_one_line_from_base_to_a_single_head() -> None:
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].down_revision is None
    for revision in revisions:
        assert revision.module.downgrade is not None


def test_the_embedded_store_is_a_wal_sqlite_file_under_the_data_directory(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "owm-data"
    url = sqlite_url(data_dir)
    repos = open_repositories(url)
    try:
        assert (data_dir / "coordinator.sqlite3").is_file()
        with repos.database.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) > 0
        assert _tables(repos.database.engine) == TABLES | {"alembic_version"}
    finally:
        repos.close()


# -- data migrations of the payout outbox ------------------------------------------------------

REFUSED_HASH, INVOICE_HASH, OLD_INVOICE_HASH, CURRENT_HASH = "e" * 64, "f" * 64, "d" * 64, "c" * 64


def _payment_row(conn: Any, seq: int, payment_hash: str, **columns: object) -> None:
    row: dict[str, object] = {
        "seq": seq, "payment_hash": payment_hash, "payment_id": f"p-{seq}", "task_id": "t",
        "node_id": "n", "amount_msat": 1_000, "bolt11": None, "state": "failed", "attempts": 1,
        "last_error": None, "created_at": 1, "updated_at": 2, "payee_pubkey": "02" + "cd" * 32,
        "memo": "m", "invoice_expires_at": None, "replaced_hashes": "[]", "method": "invoice",
    } | columns
    names = ", ".join(row)
    conn.execute(text(f"INSERT INTO payments ({names}) VALUES "
                      f"({', '.join(':' + n for n in row)})"), row)


def _attempt_row(conn: Any, payment_hash: str, error: str | None) -> None:
    conn.execute(text(
        "INSERT INTO payment_attempts (payment_hash, task_id, node_id, amount_msat, at, outcome,"
        " error) VALUES (:h, 't', 'n', 1000, 1, :outcome, :error)"),
        {"h": payment_hash, "outcome": "failed" if error else "started", "error": error})


def test_migration_0036_names_the_replaced_hashes_that_were_refused_keysends(
    empty_url: str, engine: Engine
) -> None:
    """Before 0036 a keysend hash was replaced only when its payee refused keysend, and each
    refusal was logged as a failed attempt of that hash: those replaced hashes become the
    record's ``replaced_keysend``; an expired invoice's replaced hash does not."""
    upgrade(empty_url, "0035")
    with engine.begin() as conn:
        _attempt_row(conn, REFUSED_HASH, None)
        _attempt_row(conn, REFUSED_HASH, "keysend refused by the payee: incorrect payment "
                                         "details")
        _attempt_row(conn, OLD_INVOICE_HASH, "no route")
        _payment_row(conn, 1, INVOICE_HASH, state="pending", bolt11="lnbcrt1x",
                     replaced_hashes=json.dumps([OLD_INVOICE_HASH, REFUSED_HASH]))
        _payment_row(conn, 2, CURRENT_HASH, method="keysend")
    upgrade(empty_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT payment_hash, replaced_keysend FROM payments")).all())
    assert {h: json.loads(v) for h, v in rows.items()} == {
        INVOICE_HASH: [REFUSED_HASH], CURRENT_HASH: []}


def test_migration_0037_marks_the_keysend_payouts_whose_error_said_refused(
    empty_url: str, engine: Engine
) -> None:
    """Before 0037 a refused keysend was a ``last_error`` beginning with "keysend refused by
    the payee"; those keysend payouts become ``keysend_refused``, nothing else does."""
    upgrade(empty_url, "0036")
    refused = "keysend refused by the payee: FAILURE_REASON_INCORRECT_PAYMENT_DETAILS"
    waiting = "keysend refused by the payee; waiting for an invoice from the payee: none yet"
    with engine.begin() as conn:
        _payment_row(conn, 1, "1" * 64, method="keysend", last_error=refused)
        _payment_row(conn, 2, "2" * 64, method="keysend", last_error=waiting)
        _payment_row(conn, 3, "3" * 64, method="keysend", last_error="no route")
        _payment_row(conn, 4, "4" * 64, method="keysend", state="pending", attempts=0)
        _payment_row(conn, 5, "5" * 64, last_error=refused, bolt11="lnbcrt1x")  # an invoice
    upgrade(empty_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, keysend_refused FROM payments ORDER BY seq")).all()
    assert [(seq, bool(flag)) for seq, flag in rows] == [
        (1, True), (2, True), (3, False), (4, False), (5, False)]
