"""In-memory twin: tasks, their proofs, and the input and output bytes they carry."""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence

from owm_adapters.storage.envelopes import proof_of
from owm_adapters.storage.memory.state import StateRepository
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope
from owm_core.market.commit_reveal import RecordedCommitment
from owm_core.market.tasks import (
    ASSIGNABLE_STATES,
    MAX_STORED_TASK_DATA_BYTES,
    Task,
    TaskState,
    check_task_input,
)


class MemoryTaskRepository(StateRepository):
    """Tasks in a dict, with their insertion order."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        self._insert_in_order("tasks", task.task_id, task, f"task {task.task_id} already exists")

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        with self._lock:
            stored = self._state.tasks.get(task.task_id)
            if stored is None:
                raise Conflict(f"task {task.task_id} does not exist")
            if expected_state is not None and stored[1].state is not expected_state:
                raise Conflict(
                    f"task {task.task_id} is {stored[1].state.value}, not {expected_state.value}"
                )
            self._state.tasks[task.task_id] = (stored[0], task)

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        with self._lock:
            stored = self._state.tasks.get(task_id)
            return None if stored is None else stored[1]

    def _ordered(self) -> list[Task]:
        return [t for _, t in sorted(self._state.tasks.values(), key=lambda st: st[0])]

    def waiting(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks stored after position ``after``, with positions."""
        with self._lock:
            # the dict keeps insertion order, which is position order (add() draws next_seq)
            found = []
            for seq, task in self._state.tasks.values():
                if seq > after and task.state in ASSIGNABLE_STATES:
                    found.append((seq, task))
                    if len(found) >= limit:
                        break
            return found

    def expired_after(
        self, now: int, after: tuple[int, int] = (0, 0), limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks expired before ``now`` after ``(expires_at, seq)``
        ``after``, in that order, with positions."""
        with self._lock:
            late = sorted(
                ((t.expires_at, seq), t)
                for seq, t in self._state.tasks.values()
                if t.state in ASSIGNABLE_STATES and t.expires_at is not None and t.expires_at < now
                and (t.expires_at, seq) > after
            )
            return [(key[1], t) for key, t in late[:limit]]

    def in_state_after(
        self, state: TaskState, after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` tasks in ``state`` stored after position ``after``, with positions."""
        with self._lock:
            stored = sorted(self._state.tasks.values(), key=lambda st: st[0])
        return [(seq, t) for seq, t in stored if seq > after and t.state is state][:limit]

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        with self._lock:
            return [t for t in self._ordered() if t.state is state][:limit]

    def counts(self) -> Mapping[TaskState, int]:
        """How many tasks are stored in each state; a state with none is absent."""
        with self._lock:
            return collections.Counter(t.state for _, t in self._state.tasks.values())

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks ``node_id`` holds (assigned, or committed and not revealed), oldest first."""
        held = {TaskState.ASSIGNED, TaskState.COMMITTED}
        with self._lock:
            return [t for t in self._ordered() if t.state in held and t.node_id == node_id]

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first."""
        with self._lock:
            late = [
                (t.deadline_at, seq, t)
                for seq, t in self._state.tasks.values()
                if t.state is TaskState.ASSIGNED
                and t.deadline_at is not None
                and t.deadline_at < now
            ]
            return [t for _, _, t in sorted(late, key=lambda x: (x[0], x[1]))][:limit]


class MemoryProofRepository(StateRepository):
    """Task-proof envelopes per (task, node) in a dict."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        key = (proof_of(envelope).task_id, envelope.signer_node_id)
        self._insert_new(
            "proofs", key, envelope, f"node {key[1]} already sent a proof for task {key[0]}"
        )

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        with self._lock:
            return self._state.proofs.get((task_id, node_id))

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        with self._lock:
            return [e for (t, _n), e in sorted(self._state.proofs.items()) if t == task_id]


class MemoryTaskInputRepository(StateRepository):
    """Task input bytes per submitted task id."""

    FIELD = "input"

    def _blobs(self) -> dict[str, bytes]:
        return self._state.task_inputs

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        data = check_task_input(data, self.FIELD, MAX_STORED_TASK_DATA_BYTES)
        with self._lock:
            stored = self._blobs().get(task_id)
            if stored is not None and stored != data:
                raise Conflict(f"task {task_id} already has another {self.FIELD}")
            self._blobs()[task_id] = data

    def get(self, task_id: str) -> bytes | None:
        """The data stored for ``task_id``, or None."""
        with self._lock:
            return self._blobs().get(task_id)

    def delete(self, task_id: str) -> None:
        """Forget the data of ``task_id`` (nothing happens if none is stored)."""
        with self._lock:
            self._blobs().pop(task_id, None)


class MemoryTaskOutputRepository(MemoryTaskInputRepository):
    """Task outputs delivered with proofs, per replica id."""

    FIELD = "output"

    def _blobs(self) -> dict[str, bytes]:
        return self._state.task_outputs


class MemoryCommitmentRepository(StateRepository):
    """Commitments per replica id in a dict."""

    def lock_round(self, round_id: str) -> None:
        """Nothing: one process owns this store, and ``atomic`` holds its lock."""

    def add(self, record: RecordedCommitment) -> None:
        """Store a commitment; the same one again is a no-op, another for the replica Conflict."""
        replica = record.commitment.replica_id
        with self._lock:
            stored = self._state.commitments.get(replica)
            if stored is not None and stored != record:
                raise Conflict(f"replica {replica} has already committed")
            self._state.commitments[replica] = record

    def for_round(self, round_id: str) -> Sequence[RecordedCommitment]:
        """The commitments of ``round_id``, earliest first."""
        with self._lock:
            found = [r for r in self._state.commitments.values() if r.round_id == round_id]
        return sorted(found, key=lambda r: (r.committed_at, r.commitment.replica_id))

    def rounds_started_by_after(
        self, cutoff: int, after: str = "", limit: int = 100
    ) -> Sequence[str]:
        """Up to ``limit`` rounds first committed to by ``cutoff``, by id after ``after``."""
        first: dict[str, int] = {}
        with self._lock:
            for r in self._state.commitments.values():
                first[r.round_id] = min(first.get(r.round_id, r.committed_at), r.committed_at)
        return sorted(r for r, at in first.items() if at <= cutoff and r > after)[:limit]

    def delete_round(self, round_id: str) -> None:
        """Forget the commitments of a judged round."""
        with self._lock:
            stored = self._state.commitments
            for replica in [k for k, r in stored.items() if r.round_id == round_id]:
                del stored[replica]
