"""Database failover (SRS-COORD-06): a coordinator taking payments on a PostgreSQL primary with
a streaming standby survives the primary's crash and the standby's promotion, and the durable
payout outbox neither loses nor repeats a payment.

The test runs two real PostgreSQL servers from the installed binaries: a primary (synchronous
replication to its standby, as docs/high-availability.md recommends) and a standby made with
``pg_basebackup -R``. A real coordinator process (:mod:`tests.e2e.failover_worker`, built by
``build_coordinator``) connects with a libpq host list and ``target_session_attrs=read-write``
and settles tasks whose rewards its payout dispatcher pays over the embedded Lightning ledger
(a file of its own, like a real Lightning node's database). Mid-stream the primary is killed
(``pg_ctl stop -m immediate``: a crash, no clean shutdown) and the standby promoted
(``pg_ctl promote``); the coordinator reconnects by itself and finishes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from sqlalchemy import create_engine, text

from owm_adapters.storage.sql.migrate import upgrade
from tests.conftest import PG_USER, _bindir, _free_port
from tests.e2e.failover_worker import NODES, price_of, task_of

pytestmark = pytest.mark.slow

COUNT = 60
DATABASE = "owm"
PASSWORD = "failover-test-password-never-logged"
WORKER_TIMEOUT_S = 240


@attrs.define
class Server:
    """One PostgreSQL server of the pair: its data directory and port."""

    data: Path
    port: int

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"


@attrs.define
class ReplicatedPostgres:
    """A primary and a streaming standby, started and stopped as the postgres user if root."""

    bindir: Path
    workdir: Path
    prefix: list[str]
    primary: Server
    standby: Server

    def run(self, tool: str, *args: str, timeout: float = 120) -> None:
        subprocess.run([*self.prefix, str(self.bindir / tool), *args], check=True,
                       capture_output=True, timeout=timeout)  # fmt: skip

    def start(self, server: Server, *options: str) -> None:
        line = " ".join([f"-p {server.port} -k {self.workdir} -c listen_addresses=127.0.0.1",
                         "-c fsync=off", *options])  # fmt: skip
        self.run("pg_ctl", "-D", str(server.data), "-o", line, "-l", f"{server.data}.log",
                 "-w", "-t", "60", "start", timeout=90)  # fmt: skip

    def stop(self, server: Server) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(server.data), "-m",
                        "immediate", "stop"], capture_output=True, timeout=60)  # fmt: skip

    def coordinator_url(self) -> str:
        """The URL an operator writes: both servers, the writable one wins (libpq's form)."""
        return (
            f"postgresql://{PG_USER}:{PASSWORD}@127.0.0.1:{self.primary.port},"
            f"127.0.0.1:{self.standby.port}/{DATABASE}?target_session_attrs=read-write"
        )


def _wait_for(what: str, check: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _scalar(url: str, query: str) -> object:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(query)).scalar()
    finally:
        engine.dispose()


@pytest.fixture
def replicated() -> Iterator[ReplicatedPostgres]:
    """A migrated primary with a synchronous streaming standby; both stopped afterwards."""
    bindir = _bindir()
    assert bindir is not None, "PostgreSQL binaries not found (apt-get install postgresql)"
    as_root = os.geteuid() == 0
    workdir = Path(tempfile.mkdtemp(prefix="owm-pg-ha-"))
    if as_root:
        shutil.chown(workdir, user="postgres", group="postgres")
    pair = ReplicatedPostgres(
        bindir, workdir, ["runuser", "-u", "postgres", "--"] if as_root else [],
        Server(workdir / "primary", _free_port()), Server(workdir / "standby", _free_port()),
    )
    try:
        pair.run("initdb", "-D", str(pair.primary.data), "-A", "trust", "-U", PG_USER, "-E",
                 "UTF8", "--no-sync", "--no-instructions")  # fmt: skip
        pair.start(pair.primary, "-c wal_level=replica", "-c max_wal_senders=4")
        admin = create_engine(pair.primary.admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {DATABASE}"))
        admin.dispose()
        pair.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(pair.primary.port), "-U",
                 PG_USER, "-D", str(pair.standby.data), "-R", "-X", "stream",
                 "--checkpoint=fast")  # fmt: skip
        pair.start(pair.standby)
        _wait_for("the standby to stream", lambda: _scalar(
            pair.primary.admin_url(), "SELECT count(*) FROM pg_stat_replication"
        ) == 1)  # fmt: skip
        # only now synchronous: a commit is acknowledged once the standby has it
        admin = create_engine(pair.primary.admin_url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("ALTER SYSTEM SET synchronous_standby_names = '*'"))
            conn.execute(text("SELECT pg_reload_conf()"))
        admin.dispose()
        _wait_for("the standby to stream synchronously", lambda: _scalar(
            pair.primary.admin_url(),
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        ) == 1)  # fmt: skip
        upgrade(f"postgresql://{PG_USER}@127.0.0.1:{pair.primary.port}/{DATABASE}")
        yield pair
    finally:
        pair.stop(pair.standby)
        pair.stop(pair.primary)
        shutil.rmtree(workdir, ignore_errors=True)


def _start_worker(data_dir: Path, url: str) -> tuple[subprocess.Popen[str], list[str]]:
    """The coordinator process and the lines it printed so far (read by a thread)."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.failover_worker", str(data_dir), url, str(COUNT)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return process, lines


def _payments(url: str) -> dict[str, tuple[str, str]]:
    """task id → (payment hash, state), as the database at ``url`` has them."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT task_id, payment_hash, state FROM payments"))
            return {task: (payment_hash, state) for task, payment_hash, state in rows}
    finally:
        engine.dispose()


def test_a_coordinator_survives_a_primary_crash_and_promotion_without_losing_or_repeating_a_payment(
    replicated: ReplicatedPostgres, tmp_path: Path
) -> None:
    primary_db = replicated.primary.admin_url(DATABASE)
    process, lines = _start_worker(tmp_path / "coordinator", replicated.coordinator_url())
    try:
        _wait_for("payments before the failover", lambda: sum(
            state == "succeeded" for _, state in _payments(primary_db).values()
        ) >= 10, timeout_s=120)  # fmt: skip
        before = {task: row for task, row in _payments(primary_db).items() if row[1] == "succeeded"}
        settled_before = sum(line.startswith("settled ") for line in lines)
        assert settled_before < COUNT, "the failover must happen while payments are flowing"

        replicated.stop(replicated.primary)  # a crash: no clean shutdown
        time.sleep(2)  # the coordinator meets the outage (only a read-only standby answers)
        replicated.run("pg_ctl", "-D", str(replicated.standby.data), "-w", "promote")

        process.wait(WORKER_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output = "\n".join(lines)
    assert process.returncode == 0, output[-6000:]

    after = _payments(replicated.standby.admin_url(DATABASE))
    # every payment committed before the failover is still there, unchanged
    assert {task: after.get(task) for task in before} == before
    # every task paid, each exactly once (one outbox record, one Lightning payment)
    assert sorted(after) == sorted(task_of(i)[0] for i in range(COUNT))
    assert {state for _, state in after.values()} == {"succeeded"}
    with sqlite3.connect(tmp_path / "coordinator" / "lightning.sqlite3") as ledger:
        sent = ledger.execute(
            "SELECT COUNT(*), COUNT(DISTINCT payment_hash), SUM(amount_msat)"
            " FROM sim_ln_payments WHERE status = 'succeeded'"
        ).fetchone()
        received = dict(ledger.execute(
            "SELECT n.alias, c.balance_b_msat FROM sim_ln_channels c JOIN sim_ln_nodes n"
            " ON n.pubkey = c.node_b"
        ).fetchall())  # fmt: skip
    assert sent == (COUNT, COUNT, sum(price_of(i) for i in range(COUNT)))
    owed = {alias: sum(price_of(i) for i in range(COUNT) if task_of(i)[1] == alias)
            for alias in NODES}  # fmt: skip
    assert received == owed
    # the coordinator said what happened, and never printed the database password
    assert "database unavailable" in output
    assert f"connected to PostgreSQL at 127.0.0.1:{replicated.standby.port}" in output
    assert PASSWORD not in output
