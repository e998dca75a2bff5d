"""Alembic environment of the coordinator's store (run by ``owm_adapters.storage.sql.migrate``).

Uses the connection the caller put in ``config.attributes["connection"]`` (so SQLite gets the
adapter's pragmas), or else builds one from ``sqlalchemy.url``. Offline (``--sql``) mode is
supported for reviewing the DDL. SQLite runs in batch mode so later migrations can alter tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from owm_adapters.storage.sql.engine import WRITE, create_store_engine
from owm_adapters.storage.sql.tables import metadata

config = context.config
target_metadata = metadata


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_store_engine(str(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as fresh:
            fresh.execution_options(**{WRITE: True})
            _migrate(fresh)
            fresh.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
