"""Schema migrations, run from code: the coordinator migrates its store on start.

The alembic scripts live in ``migrations/`` at the repository root (``env.py`` and
``versions/``); :func:`alembic_config` points alembic at them without any ``alembic.ini``, and
hands it an open connection made by :func:`~owm_adapters.storage.sql.engine.create_store_engine`, so
migrations run with the same SQLite pragmas as the repositories.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from owm_adapters.storage.sql.engine import WRITE, create_store_engine

SCRIPT_LOCATION = Path(__file__).resolve().parents[3] / "migrations"
HEAD = "head"
BASE = "base"


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


def head_revision() -> str | None:
    """The newest revision of ``migrations/`` (what :func:`upgrade` migrates to)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def database_revision(engine: Engine) -> str | None:
    """The revision the database behind ``engine`` is at (None: never migrated)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at :func:`head_revision` (the readiness probe's question)."""
    return database_revision(engine) == head_revision()
