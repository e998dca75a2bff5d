"""A real PostgreSQL server for the repository and migration tests, started by the test run.

``postgresql_server`` (session scope) runs ``initdb`` and ``pg_ctl start`` from the installed
PostgreSQL binaries in a temporary directory, listening on 127.0.0.1 at a free port and a
private unix-socket directory, and stops it and removes the directory at the end of the
session, also when tests fail. It never skips: CI installs PostgreSQL (``apt-get install
postgresql``), and missing binaries fail the run with a message saying so.

Where the binaries are: ``$OWM_PG_BINDIR`` if set (and only there), else
``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on
``PATH``. PostgreSQL refuses to run as root; as root (CI), the directory is handed to the
``postgres`` system user and the binaries run via ``runuser -u postgres --``; otherwise they
run as the current user. The cluster is made with
``-A trust -U owm`` and runs without fsync (test data only), so tests connect as ``owm``.

Each test gets its own database: ``migrated_postgresql_url`` is a copy of a template migrated
once per session (``CREATE DATABASE … TEMPLATE``, a file copy), ``empty_postgresql_url`` is
empty; both are dropped after the test.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import settings
from sqlalchemy import Engine, create_engine, text

from owm_adapters.bootstrap.logs import CHATTY_LIBRARIES
from owm_adapters.storage.sql.migrate import upgrade

# Speed is measured by the benchmarks in bench/, not per example: hypothesis's 200 ms deadline
# only turned a loaded machine's pauses into failures of rules that hold.
settings.register_profile("owm", deadline=None)
settings.load_profile("owm")

PG_USER = "owm"
START_TIMEOUT_S = 30


def _bindir() -> Path | None:
    if os.environ.get("OWM_PG_BINDIR"):  # explicit: no fallback
        chosen = Path(os.environ["OWM_PG_BINDIR"])
        return chosen if (chosen / "initdb").is_file() else None
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(Path(found))

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.parent.name.split(".") if x.isdigit())

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class PostgresServer:
    """A running throw-away PostgreSQL cluster and an admin engine on its ``postgres`` DB."""

    port: int
    admin: Engine
    _names: Iterator[int] = attrs.field(factory=lambda: itertools.count(1))

    def url(self, database: str) -> str:
        """The URL of ``database`` on this server (user owm, no password), as an operator
        would write it: the adapter picks the psycopg 3 driver itself."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str = "template0") -> str:
        """A new database copied from ``template``; returns its name."""
        name = f"owm_test_{next(self._names)}"
        quote = self.admin.dialect.identifier_preparer.quote
        with self.admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quote(name)} TEMPLATE {quote(template)}"))
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever is still connected."""
        quote = self.admin.dialect.identifier_preparer.quote
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quote(name)} WITH (FORCE)"))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse a collection in which two tests share a node id: pytest-xdist, which runs the
    suite's files in worker processes, keeps one test per id and would silently run one."""
    ids = Counter(item.nodeid for item in session.items)
    if twice := sorted(nodeid for nodeid, count in ids.items() if count > 1):
        raise pytest.UsageError(f"tests share a node id, so one of each would run: {twice}")


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresServer]:
    """Start PostgreSQL from the installed binaries for this test session; stop it afterwards."""
    bindir = _bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found: install them "
            "(Debian/Ubuntu: apt-get install postgresql) or set OWM_PG_BINDIR to their "
            "directory. The repository contract tests need a real PostgreSQL server.",
            pytrace=False,
        )
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        pytest.fail("running as root needs `runuser` (util-linux) to start PostgreSQL as the "
                    "postgres user", pytrace=False)  # fmt: skip
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    workdir = Path(tempfile.mkdtemp(prefix="owm-pg-"))
    data, log = workdir / "data", workdir / "log"
    if as_root:
        shutil.chown(workdir, user="postgres", group="postgres")
    port = _free_port()
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    started = False
    admin: Engine | None = None
    try:
        subprocess.run(
            [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", PG_USER,
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", str(START_TIMEOUT_S), "start"],
            check=True, capture_output=True, timeout=START_TIMEOUT_S + 10,
        )  # fmt: skip
        started = True
        admin = create_engine(
            f"postgresql+psycopg://{PG_USER}@127.0.0.1:{port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        yield PostgresServer(port=port, admin=admin)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace")
        if log.exists():
            detail += log.read_text(errors="replace")
        pytest.fail(f"PostgreSQL did not start: {detail}", pytrace=False)
    finally:
        if admin is not None:
            admin.dispose()
        if started:
            subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_template(postgresql_server: PostgresServer) -> str:
    """A database migrated to head once per session, copied for each test."""
    name = postgresql_server.create_database()
    upgrade(postgresql_server.url(name))
    return name


@pytest.fixture
def migrated_postgresql_url(
    postgresql_server: PostgresServer, postgresql_template: str
) -> Iterator[str]:
    """A fresh database with the latest schema, dropped after the test."""
    name = postgresql_server.create_database(template=postgresql_template)
    yield postgresql_server.url(name)
    postgresql_server.drop_database(name)


@pytest.fixture
def empty_postgresql_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database (no tables), dropped after the test."""
    name = postgresql_server.create_database()
    yield postgresql_server.url(name)
    postgresql_server.drop_database(name)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """The programs' group callbacks configure the root logger (handler, level); a test that
    runs one must not change what later tests log or capture."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", *CHATTY_LIBRARIES)}
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
