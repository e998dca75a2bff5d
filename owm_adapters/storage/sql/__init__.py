"""The SQL adapter: every repository port on SQLAlchemy 2 Core, SQLite or PostgreSQL.

``open_repositories(url)`` is what the composition root calls: it builds the engine
(:mod:`.engine`), migrates the schema to the latest revision unless told not to
(:mod:`.migrate`, scripts in ``migrations/``) and returns the repositories bundle
(:mod:`.store`). The embedded default is ``sqlite_url(data_dir)``, a WAL-mode SQLite
file under the data directory; production uses a ``postgresql://`` URL (psycopg 3).
"""

from __future__ import annotations

from typing import Any

from owm_adapters.storage.sql.engine import create_store_engine, sqlite_url
from owm_adapters.storage.sql.migrate import (
    SchemaNotCurrent,
    current_revision,
    downgrade,
    ensure_current,
    head_revision,
    upgrade,
)
from owm_adapters.storage.sql.store import SqlRepositories, sql_repositories

__all__ = [
    "SchemaNotCurrent",
    "SqlRepositories",
    "create_store_engine",
    "current_revision",
    "downgrade",
    "ensure_current",
    "head_revision",
    "open_repositories",
    "sql_repositories",
    "sqlite_url",
    "upgrade",
]


def open_repositories(
    url: str, *, migrate: bool = True, upgrade_existing: bool = True, **engine_options: Any
) -> SqlRepositories:
    """Every repository over the database at ``url``, migrated to head first if ``migrate``.

    With ``upgrade_existing=False`` (what the coordinator uses) only an empty database is
    created at head and one at another revision raises :class:`SchemaNotCurrent`
    (:func:`ensure_current`); ``migrate=False`` checks nothing.
    """
    engine = create_store_engine(url, **engine_options)
    try:
        if migrate and upgrade_existing:
            upgrade(url, engine=engine)
        elif migrate:
            ensure_current(url, engine=engine)
    except BaseException:
        engine.dispose()
        raise
    return sql_repositories(engine)
