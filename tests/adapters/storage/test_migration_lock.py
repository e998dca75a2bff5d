"""Several coordinators starting at once on one PostgreSQL database (SRS-COORD-05).

Each process migrates under one PostgreSQL advisory lock
(``owm_adapters.storage.sql.migrate.migration_lock``): N processes started together on an empty
database — as ``owm-coordinator serve`` (create an empty database at head) and as
``owm-coordinator migrate`` (upgrade) — all succeed, and the schema is created once, at head.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from owm_adapters.storage.sql import create_store_engine
from owm_adapters.storage.sql.migrate import MIGRATION_LOCK_KEY, head_revision, upgrade
from owm_adapters.storage.sql.tables import metadata

pytestmark = pytest.mark.timeout(300)

PROCESSES = 6
STARTER = """
import sys, time
from pathlib import Path
go = Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
if sys.argv[2] == "serve":
    from owm_adapters.storage.sql import open_repositories
    open_repositories(sys.argv[1], upgrade_existing=False).close()
else:
    from owm_adapters.storage.sql.migrate import upgrade
    upgrade(sys.argv[1])
print("ok")
"""


def _revision(url: str) -> tuple[str | None, set[str]]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision(), set(
                inspect(conn).get_table_names()
            )
    finally:
        engine.dispose()


def test_six_coordinators_starting_together_on_an_empty_database_all_come_up_at_head(
    empty_postgresql_url: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    modes = ["serve", "migrate"] * (PROCESSES // 2)
    started = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, empty_postgresql_url, mode, str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        for mode in modes
    ]
    time.sleep(3)  # every interpreter is up and polling for the start signal
    go.touch()
    results = [p.communicate(timeout=240) for p in started]

    failures = [(m, err) for m, p, (_, err) in zip(modes, started, results, strict=True)
                if p.returncode != 0]
    assert failures == [], failures[0][1][-2000:]
    assert all(out.strip() == "ok" for out, _ in results)
    revision, tables = _revision(empty_postgresql_url)
    assert revision == head_revision()
    assert tables == set(metadata.tables) | {"alembic_version"}


def test_a_migration_waits_while_another_process_holds_the_lock(
    empty_postgresql_url: str,
) -> None:
    holder = create_store_engine(empty_postgresql_url)
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
            done = threading.Event()

            def migrate() -> None:
                upgrade(empty_postgresql_url)
                done.set()

            worker = threading.Thread(target=migrate)
            worker.start()

            assert not done.wait(2.0)  # blocked behind the lock, nothing created
            assert _revision(empty_postgresql_url) == (None, set())

            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
            worker.join(120)
        assert done.is_set()
        assert _revision(empty_postgresql_url)[0] == head_revision()
    finally:
        holder.dispose()


def test_the_lock_is_released_after_a_migration_so_the_next_one_runs(
    empty_postgresql_url: str,
) -> None:
    upgrade(empty_postgresql_url)
    engine = create_store_engine(empty_postgresql_url)
    try:
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}
            ).scalar()
            assert got is True
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
    finally:
        engine.dispose()
