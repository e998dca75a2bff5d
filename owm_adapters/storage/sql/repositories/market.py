"""SQL repositories: tasks, their proofs, and the input and output bytes they carry."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import attrs
from sqlalchemy import Table, delete, func, insert, select, text, tuple_, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.envelopes import proof_of
from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import (
    EnvelopeRepository,
    Flat,
    MappedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope, to_bytes
from owm_core.market.commit_reveal import Commitment, RecordedCommitment
from owm_core.market.tasks import (
    ASSIGNABLE_STATES,
    MAX_STORED_TASK_DATA_BYTES,
    Task,
    TaskRequest,
    TaskState,
    check_task_input,
)

_ASSIGNABLE = sorted(s.value for s in ASSIGNABLE_STATES)

register_row(
    Task, flat=[Flat("request", {a.name: a.name for a in attrs.fields(TaskRequest)})]
)
register_row(
    RecordedCommitment,
    flat=[Flat("commitment", {a.name: a.name for a in attrs.fields(Commitment)})],
)


class SqlTaskRepository(MappedRepository):
    """Tasks (request flattened, state, assignment) in the ``tasks`` table."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.tasks).values(to_row(task)))

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        c = t.tasks.c
        condition = [c.task_id == task.task_id]
        if expected_state is not None:
            condition.append(c.state == expected_state.value)
        with self._db.tx(write=True) as conn:
            done = conn.execute(update(t.tasks).where(*condition).values(to_row(task)))
            if done.rowcount == 1:
                return
            state = conn.execute(select(c.state).where(c.task_id == task.task_id)).scalar()
        if state is None:
            raise Conflict(f"task {task.task_id} does not exist")
        expected = expected_state.value if expected_state is not None else "?"
        raise Conflict(f"task {task.task_id} is {state}, not {expected}")

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id)).first()
        return None if row is None else from_row(row, Task)

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        c = t.tasks.c
        query = select(t.tasks).where(c.state == state.value).order_by(c.seq).limit(limit)
        with self._db.tx() as conn:
            return [from_row(r, Task) for r in conn.execute(query).all()]

    def counts(self) -> Mapping[TaskState, int]:
        """How many tasks are stored in each state; a state with none is absent."""
        return self._counts(t.tasks.c.state, TaskState)

    def in_state_after(
        self, state: TaskState, after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` tasks in ``state`` stored after position ``after``, with positions."""
        return self._page_after(t.tasks, Task, after, limit, t.tasks.c.state == state.value)

    def waiting(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks stored after position ``after``, with positions."""
        return self._page_after(t.tasks, Task, after, limit, t.tasks.c.state.in_(_ASSIGNABLE))

    def expired_after(
        self, now: int, after: tuple[int, int] = (0, 0), limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks expired before ``now`` after ``(expires_at, seq)``
        ``after``, in that order, with positions.

        One page per assignable state, merged: each is an ordered range of the ``(state,
        expires_at, seq)`` index that stops at ``limit`` rows (a single ``state IN (...)``
        would sort every expired task on each tick)."""
        c = t.tasks.c
        pages = [
            select(
                select(t.tasks)
                .where(
                    c.state == state,
                    c.expires_at < now,
                    tuple_(c.expires_at, c.seq) > tuple_(*after),
                )
                .order_by(c.expires_at, c.seq)
                .limit(limit)
                .subquery()  # SQLite: no LIMIT in a UNION's arm
            )
            for state in _ASSIGNABLE
        ]
        merged = union_all(*pages).subquery()
        query = select(merged).order_by(merged.c.expires_at, merged.c.seq).limit(limit)
        with self._db.tx() as conn:
            return [(r.seq, from_row(r, Task)) for r in conn.execute(query).all()]

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks ``node_id`` holds (assigned, or committed and not revealed), oldest first."""
        c = t.tasks.c
        held = [TaskState.ASSIGNED.value, TaskState.COMMITTED.value]
        query = (
            select(t.tasks)
            .where(c.node_id == node_id, c.state.in_(held))
            .order_by(c.seq)
        )
        with self._db.tx() as conn:
            return [from_row(r, Task) for r in conn.execute(query).all()]

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first. A row that
        cannot be read back is logged once and passed over (``_readable``): it stays overdue,
        first in line, and would otherwise end every housekeeping tick that times tasks out."""
        c = t.tasks.c
        query = (
            select(t.tasks)
            .where(c.state == TaskState.ASSIGNED.value, c.deadline_at < now)
            .order_by(c.deadline_at, c.seq)
            .limit(limit)
        )
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [task for r in rows if (task := self._readable(r, Task)) is not None]


class SqlProofRepository(EnvelopeRepository):
    """Task-proof envelopes (canonical bytes plus query columns) in the ``proofs`` table."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        proof = proof_of(envelope)
        row = {
            "task_id": proof.task_id,
            "node_id": envelope.signer_node_id,
            "output_hash": proof.output_hash,
            "execution_ms": proof.execution_ms,
            "issued_at": envelope.issued_at,
            "envelope": to_bytes(envelope),
        }
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.proofs).values(row))

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        c = t.proofs.c
        return self._envelope(select(c.envelope).where(c.task_id == task_id, c.node_id == node_id))

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        c = t.proofs.c
        return self._envelopes(select(c.envelope).where(c.task_id == task_id).order_by(c.node_id))


class SqlTaskInputRepository(SqlRepository):
    """Task input bytes in ``task_inputs``."""

    FIELD = "input"

    @property
    def _table(self) -> Table:
        return t.task_inputs

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        data = check_task_input(data, self.FIELD, MAX_STORED_TASK_DATA_BYTES)
        c = self._table.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(self._table)
                .values(task_id=task_id, data=data)
                .on_conflict_do_nothing(index_elements=[c.task_id])
                .returning(c.task_id)
            )
            if conn.execute(statement).first() is not None:
                return
            stored = conn.execute(select(c.data).where(c.task_id == task_id)).scalar()
        if stored is None or bytes(stored) != data:
            raise Conflict(f"task {task_id} already has another {self.FIELD}")

    def get(self, task_id: str) -> bytes | None:
        """The data stored for ``task_id``, or None."""
        c = self._table.c
        with self._db.tx() as conn:
            stored = conn.execute(select(c.data).where(c.task_id == task_id)).scalar()
        return None if stored is None else bytes(stored)

    def delete(self, task_id: str) -> None:
        """Forget the data of ``task_id`` (nothing happens if none is stored)."""
        with self._db.tx(write=True) as conn:
            conn.execute(delete(self._table).where(self._table.c.task_id == task_id))


class SqlTaskOutputRepository(SqlTaskInputRepository):
    """Task outputs delivered with proofs, per replica id, in ``task_outputs``."""

    FIELD = "output"

    @property
    def _table(self) -> Table:
        return t.task_outputs


class SqlCommitmentRepository(MappedRepository):
    """Commitments per replica in ``task_commitments``."""

    def lock_round(self, round_id: str) -> None:
        """PostgreSQL: a transaction-scoped advisory lock on the round (released at commit);
        SQLite: nothing, its write transactions already run one at a time."""
        with self._db.tx(write=True) as conn:
            if conn.dialect.name == "postgresql":
                digest = hashlib.sha256(f"owm/round/{round_id}".encode()).digest()
                lock = {"id": int.from_bytes(digest[:8], "big", signed=True)}
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), lock)

    def add(self, record: RecordedCommitment) -> None:
        """Store a commitment; the same one again is a no-op, another for the replica Conflict."""
        row = to_row(record)
        c = t.task_commitments.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(t.task_commitments)
                .values(row)
                .on_conflict_do_nothing(index_elements=[c.replica_id])
                .returning(c.replica_id)
            )
            if conn.execute(statement).first() is not None:
                return
            stored = conn.execute(
                select(t.task_commitments).where(c.replica_id == row["replica_id"])
            ).first()
        if stored is None or from_row(stored, RecordedCommitment) != record:
            raise Conflict(f"replica {row['replica_id']} has already committed")

    def for_round(self, round_id: str) -> Sequence[RecordedCommitment]:
        """The commitments of ``round_id``, earliest first."""
        c = t.task_commitments.c
        query = select(t.task_commitments).where(c.round_id == round_id)
        return self._all(query.order_by(c.committed_at, c.replica_id), RecordedCommitment)

    def rounds_started_by_after(
        self, cutoff: int, after: str = "", limit: int = 100
    ) -> Sequence[str]:
        """Up to ``limit`` rounds first committed to by ``cutoff``, by id after ``after``: the
        ``round_id`` index read in order from ``after``, grouped as it goes."""
        c = t.task_commitments.c
        query = (
            select(c.round_id)
            .where(c.round_id > after)
            .group_by(c.round_id)
            .having(func.min(c.committed_at) <= cutoff)
            .order_by(c.round_id)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [str(r[0]) for r in conn.execute(query).all()]

    def delete_round(self, round_id: str) -> None:
        """Forget the commitments of a judged round."""
        table = t.task_commitments
        with self._db.tx(write=True) as conn:
            conn.execute(delete(table).where(table.c.round_id == round_id))

