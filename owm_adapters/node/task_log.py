"""The node's local SQLite task log (SRS-NODE-06): what ran, what came out, what it earned.

One row per replica the coordinator assigned: the task type and schema, the SHA-256 of the
input as received and of the output as proved, timing (received, started, finished,
execution ms), the outcome (``received`` → ``running`` → ``proved`` / ``failed`` /
``rejected``), the coordinator's state after the proof and the payment status
(``none`` → ``pending`` → ``credited`` / ``forfeited``) with the price in msat. Outputs are
kept (compressed JSON) so that the operator can inspect them and resend a lost proof.
``owm-node tasks`` and ``owm-node earnings`` read this file; the daemon writes it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from owm_adapters.files import private_directory, private_file

LOG_FILE = "tasks.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_log (
    replica_id      TEXT PRIMARY KEY,
    task_type       TEXT NOT NULL,
    schema_id       TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    input_hash      TEXT NOT NULL,
    input_bytes     INTEGER NOT NULL,
    price_msat      INTEGER NOT NULL,
    deadline_at     INTEGER NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT NOT NULL DEFAULT '',
    output_hash     TEXT NOT NULL DEFAULT '',
    output          BLOB,
    received_at_ms  INTEGER NOT NULL,
    started_at_ms   INTEGER,
    finished_at_ms  INTEGER,
    execution_ms    INTEGER,
    proof           BLOB,
    proof_state     TEXT NOT NULL DEFAULT '',
    payment_status  TEXT NOT NULL DEFAULT 'none'
);
CREATE INDEX IF NOT EXISTS task_log_state ON task_log (state);
CREATE INDEX IF NOT EXISTS task_log_payment ON task_log (payment_status);
"""

RECEIVED = "received"
RUNNING = "running"
PROVED = "proved"
FAILED = "failed"
REJECTED = "rejected"


@attrs.frozen
class LoggedTask:
    """One row of the task log."""

    replica_id: str
    task_type: str
    schema_id: str
    schema_version: int
    input_hash: str
    input_bytes: int
    price_msat: int
    deadline_at: int
    state: str
    reason: str
    output_hash: str
    received_at_ms: int
    started_at_ms: int | None
    finished_at_ms: int | None
    execution_ms: int | None
    proof_state: str
    payment_status: str


@attrs.frozen
class Earnings:
    """What the log says this node earned (msat): credited, awaiting verification, forfeited."""

    credited_msat: int
    pending_msat: int
    forfeited_msat: int
    credited_tasks: int
    pending_tasks: int
    forfeited_tasks: int
    failed_tasks: int
    rejected_tasks: int


_COLUMNS = [f.name for f in attrs.fields(LoggedTask)]


class TaskLog:
    """The task log in ``path`` (created on first use); safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_directory(path.parent)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        private_file(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_dir(cls, data_dir: Path) -> TaskLog:
        """The log of the node whose state lives in ``data_dir``."""
        return cls(data_dir / LOG_FILE)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def record_received(
        self,
        replica_id: str,
        task_type: str,
        schema_id: str,
        schema_version: int,
        input_hash: str,
        input_bytes: int,
        price_msat: int,
        deadline_at: int,
        now_ms: int,
    ) -> bool:
        """Log a new assignment; False if this replica is already logged (a re-push)."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO task_log (replica_id, task_type, schema_id, schema_version,"
                " input_hash, input_bytes, price_msat, deadline_at, state, received_at_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (replica_id, task_type, schema_id, schema_version, input_hash, input_bytes,
                 price_msat, deadline_at, RECEIVED, now_ms),
            )
            return cursor.rowcount == 1

    def _update(self, replica_id: str, **values: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as db:
            db.execute(
                f"UPDATE task_log SET {assignments} WHERE replica_id = ?",  # noqa: S608
                (*values.values(), replica_id),
            )

    def mark_running(self, replica_id: str, now_ms: int) -> None:
        """The task's worker started."""
        self._update(replica_id, state=RUNNING, started_at_ms=now_ms)

    def mark_rejected(self, replica_id: str, reason: str, now_ms: int) -> None:
        """The input failed validation (SRS-NODE-07); nothing ran."""
        self._update(replica_id, state=REJECTED, reason=reason[:1000], finished_at_ms=now_ms)

    def mark_failed(self, replica_id: str, reason: str, execution_ms: int, now_ms: int) -> None:
        """The task ran and failed (crash, timeout, memory, error)."""
        self._update(replica_id, state=FAILED, reason=reason[:1000], execution_ms=execution_ms,
                     finished_at_ms=now_ms)

    def mark_proof_refused(self, replica_id: str, reason: str) -> None:
        """The coordinator refused the proof (e.g. the assignment had timed out)."""
        self._update(replica_id, state=FAILED, reason=reason[:1000])

    def mark_executed(
        self, replica_id: str, output_hash: str, output: dict[str, Any], proof: bytes,
        execution_ms: int, now_ms: int,
    ) -> None:
        """The task produced ``output``; its signed proof is stored before it is sent."""
        blob = zlib.compress(json.dumps(output, sort_keys=True).encode("utf-8"))
        self._update(replica_id, output_hash=output_hash, output=blob, proof=proof,
                     execution_ms=execution_ms, finished_at_ms=now_ms)

    def mark_proved(self, replica_id: str, proof_state: str, payment_status: str) -> None:
        """The coordinator stored the proof; ``proof_state`` is the replica's state after it."""
        self._update(replica_id, state=PROVED, proof_state=proof_state,
                     payment_status=payment_status)

    def set_payment(self, replica_id: str, proof_state: str, payment_status: str,
                    price_msat: int | None = None) -> None:
        """A later look at the coordinator changed what the proof earned."""
        values: dict[str, Any] = {"proof_state": proof_state, "payment_status": payment_status}
        if price_msat is not None:
            values["price_msat"] = price_msat
        self._update(replica_id, **values)

    def get(self, replica_id: str) -> LoggedTask | None:
        """One row, or None."""
        rows = self._select("WHERE replica_id = ?", (replica_id,))
        return rows[0] if rows else None

    def proof_of(self, replica_id: str) -> bytes | None:
        """The stored signed proof of a replica (to resend after a restart)."""
        with self._lock:
            row = self._db.execute(
                "SELECT proof FROM task_log WHERE replica_id = ?", (replica_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def output_of(self, replica_id: str) -> dict[str, Any] | None:
        """The output a replica produced, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT output FROM task_log WHERE replica_id = ?", (replica_id,)
            ).fetchone()
        if not row or row[0] is None:
            return None
        value: dict[str, Any] = json.loads(zlib.decompress(row[0]))
        return value

    def recent(self, limit: int = 50) -> list[LoggedTask]:
        """The latest ``limit`` rows, newest first."""
        return self._select("ORDER BY received_at_ms DESC, replica_id LIMIT ?", (limit,))

    def with_state(self, *states: str) -> list[LoggedTask]:
        """Rows in any of ``states``, oldest first."""
        marks = ", ".join("?" for _ in states)
        return self._select(f"WHERE state IN ({marks}) ORDER BY received_at_ms", states)

    def awaiting_payment(self) -> list[LoggedTask]:
        """Proved rows whose verification/settlement is not known yet."""
        return self._select("WHERE payment_status = 'pending' ORDER BY received_at_ms", ())

    def _select(self, where: str, params: tuple[Any, ...]) -> list[LoggedTask]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM task_log {where}"  # noqa: S608
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [LoggedTask(*row) for row in rows]

    def state_totals(self) -> dict[str, tuple[int, int]]:
        """Per state: how many rows and their summed task-worker time in ms (``/metrics``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*), COALESCE(SUM(execution_ms), 0) FROM task_log"
                " GROUP BY state"
            ).fetchall()
        return {state: (count, ms) for state, count, ms in rows}

    def earnings(self) -> Earnings:
        """Totals over the whole log."""
        with self._lock:
            rows = self._db.execute(
                "SELECT payment_status, state, COUNT(*), COALESCE(SUM(price_msat), 0)"
                " FROM task_log GROUP BY payment_status, state"
            ).fetchall()
        totals = {"credited": [0, 0], "pending": [0, 0], "forfeited": [0, 0]}
        failed = rejected = 0
        for payment, state, count, msat in rows:
            if payment in totals:
                totals[payment][0] += msat
                totals[payment][1] += count
            if state == FAILED:
                failed += count
            elif state == REJECTED:
                rejected += count
        return Earnings(
            credited_msat=totals["credited"][0],
            pending_msat=totals["pending"][0],
            forfeited_msat=totals["forfeited"][0],
            credited_tasks=totals["credited"][1],
            pending_tasks=totals["pending"][1],
            forfeited_tasks=totals["forfeited"][1],
            failed_tasks=failed,
            rejected_tasks=rejected,
        )
