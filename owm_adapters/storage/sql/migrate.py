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
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from owm_adapters.storage.sql.engine import WRITE, create_store_engine

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


def _migrate(url: str, revision: str, engine: Engine | None, *, upgrading: bool) -> None:
    """Run alembic over one connection of ``engine`` (one made for ``url`` and disposed of
    afterwards when none is given)."""
    own = engine is None
    engine = engine or create_store_engine(url)
    config = alembic_config(url)
    try:
        with engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            config.attributes["connection"] = connection
            if upgrading:
                command.upgrade(config, revision)
            else:
                command.downgrade(config, revision)
            connection.commit()
    finally:
        if own:
            engine.dispose()


def head_revision() -> str:
    """The newest revision of ``migrations/`` (what :func:`upgrade` migrates to)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None, "migrations/versions is empty"
    return head


def database_revision(engine: Engine) -> str | None:
    """The revision the database behind ``engine`` is at (None: never migrated)."""
    with engine.connect() as connection:
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
    """
    own = engine is None
    engine = engine or create_store_engine(url)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            empty = not inspect(connection).get_table_names()
        head = head_revision()
        if revision is None and empty:
            upgrade(url, engine=engine)
        elif revision != head:
            raise SchemaNotCurrent(
                f"the database schema is at revision {revision or 'none'}, this release needs "
                f"{head}: back up the database, then run `{MIGRATE_COMMAND}`"
            )
    finally:
        if own:
            engine.dispose()
