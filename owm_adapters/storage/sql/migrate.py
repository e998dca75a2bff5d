"""Schema migrations, run from code: ``owm-coordinator migrate`` upgrades, ``serve`` checks.

The alembic scripts live in ``migrations/`` at the repository root (``env.py`` and
``versions/``); the wheel ships that folder as the top-level package ``migrations`` next to
``owm_adapters``, so the same relative path finds it installed or in a checkout.
:func:`alembic_config` points alembic at them without any ``alembic.ini``, and hands it an open
connection made by :func:`~owm_adapters.storage.sql.engine.create_store_engine`, so migrations run
with the same SQLite pragmas as the repositories.

The rule for a running coordinator (:func:`ensure_current`): an empty database is created at
the latest schema, one at the latest schema is used, and any other one is refused with the
command that upgrades it, so a new release never alters a production schema unasked.

Several coordinators may start at once on one PostgreSQL database (SRS-COORD-05). Every
migration — and :func:`ensure_current`'s look-then-create — therefore runs under one
PostgreSQL session advisory lock (:data:`MIGRATION_LOCK_KEY`, :func:`migration_lock`): the
first process migrates, the others wait for it and then find the schema current, instead of
racing to create the same tables. SQLite (one coordinator, and its own file lock) takes none.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from owm_adapters.storage.sql.engine import WRITE, connect, create_store_engine

MIGRATION_LOCK_KEY = int.from_bytes(b"owm/migr", "big")
"""The PostgreSQL advisory lock id held while the schema changes (the bytes ``owm/migr``)."""
SCRIPT_LOCATION = Path(__file__).resolve().parents[3] / "migrations"
HEAD = "head"
BASE = "base"
MIGRATE_COMMAND = "owm-coordinator migrate"


class SchemaNotCurrent(RuntimeError):
    """The database holds tables at another schema revision than this release's head."""


def alembic_config(url: str) -> Config:
    """An alembic configuration for ``url`` with ``migrations/`` as the script location."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = HEAD, *, engine: Engine | None = None) -> None:
    """Migrate the store at ``url`` up to ``revision`` (default: the latest schema)."""
    _migrate(url, revision, engine, upgrading=True)


def downgrade(url: str, revision: str = BASE, *, engine: Engine | None = None) -> None:
    """Migrate the store at ``url`` down to ``revision`` (``"base"`` drops every table)."""
    _migrate(url, revision, engine, upgrading=False)


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Hold the schema's advisory lock on ``connection`` (PostgreSQL; nothing on SQLite).

    A session lock, taken and released in transactions of their own, so it spans the
    migrations' transactions; waits for as long as another process migrates.
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()  # whatever failed inside, the unlock runs in a clean transaction
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


def _migrate(url: str, revision: str, engine: Engine | None, *, upgrading: bool) -> None:
    """Run alembic under the migration lock over one connection of ``engine`` (one made for
    ``url`` and disposed of afterwards when none is given)."""
    own = engine is None
    engine = engine or create_store_engine(url)
    try:
        with connect(engine) as connection:
            connection.execution_options(**{WRITE: True})
            with migration_lock(connection):
                _alembic(connection, url, revision, upgrading=upgrading)
    finally:
        if own:
            engine.dispose()


def _alembic(connection: Connection, url: str, revision: str, *, upgrading: bool) -> None:
    """Run alembic over ``connection`` and commit."""
    config = alembic_config(url)
    config.attributes["connection"] = connection
    if upgrading:
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
    connection.commit()


def head_revision() -> str:
    """The newest revision of ``migrations/`` (what :func:`upgrade` migrates to)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def database_revision(engine: Engine) -> str | None:
    """The revision the database behind ``engine`` is at (None: never migrated)."""
    with connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at :func:`head_revision` (the readiness probe's question)."""
    return database_revision(engine) == head_revision()


def current_revision(url: str, *, engine: Engine | None = None) -> str | None:
    """The revision the database at ``url`` is at (``None``: never migrated)."""
    own = engine is None
    engine = engine or create_store_engine(url)
    try:
        return database_revision(engine)
    finally:
        if own:
            engine.dispose()


def ensure_current(url: str, *, engine: Engine | None = None) -> None:
    """Create an empty database at head; raise :class:`SchemaNotCurrent` for one elsewhere.

    "Empty" means no table at all, so a database another program filled is never adopted.
    The look and the creation hold the migration lock together: of several coordinators
    starting at once on an empty database, one creates the schema and the others find it.
    """
    own = engine is None
    engine = engine or create_store_engine(url)
    head = head_revision()
    try:
        with connect(engine) as connection:
            connection.execution_options(**{WRITE: True})
            with migration_lock(connection):
                revision = MigrationContext.configure(connection).get_current_revision()
                empty = not inspect(connection).get_table_names()
                connection.commit()
                if revision is None and empty:
                    _alembic(connection, url, HEAD, upgrading=True)
                    revision = head
        if revision != head:
            raise SchemaNotCurrent(
                f"the database schema is at revision {revision or 'none'}, this release needs "
                f"{head}: back up the database, then run `{MIGRATE_COMMAND}`"
            )
    finally:
        if own:
            engine.dispose()
