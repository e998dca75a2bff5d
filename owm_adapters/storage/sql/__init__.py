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
from owm_adapters.storage.sql.migrate import downgrade, upgrade
from owm_adapters.storage.sql.store import SqlRepositories, sql_repositories

__all__ = [
    "SqlRepositories",
    "create_store_engine",
    "downgrade",
    "open_repositories",
    "sql_repositories",
    "sqlite_url",
    "upgrade",
]


def open_repositories(url: str, *, migrate: bool = True, **engine_options: Any) -> SqlRepositories:
    """Every repository over the database at ``url``, migrated to head first if ``migrate``.

    Pass ``migrate=False`` when several coordinators share one PostgreSQL and a deployment
    step runs :func:`upgrade` once instead.
    """
    engine = create_store_engine(url, **engine_options)
    if migrate:
        upgrade(url, engine=engine)
    return sql_repositories(engine)
