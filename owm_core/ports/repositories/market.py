"""The task market's repositories: task replicas, their signed proofs, the input and
output bytes the tasks carry, and the money that funds them.

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from owm_core.identity.envelopes import Envelope
from owm_core.market.commit_reveal import RecordedCommitment
from owm_core.market.funding import Balance, Escrow, PeriodBudget, TopUp
from owm_core.market.tasks import Task, TaskState


class TaskRepository(Protocol):
    """Tasks of the market (data flow 3), keyed by task_id; a task is never lost."""

    def add(self, task: Task) -> None:
        """Store a submitted task, committed before returning; Conflict if the id exists."""
        ...

    def save(self, task: Task, expected_state: TaskState | None = None) -> None:
        """Replace a stored task; Conflict if unknown or its state is not ``expected_state``."""
        ...

    def get(self, task_id: str) -> Task | None:
        """The task with ``task_id``, or None."""
        ...

    def with_state(self, state: TaskState, limit: int = 100) -> Sequence[Task]:
        """Up to ``limit`` tasks in ``state``, oldest submission first."""
        ...

    def counts(self) -> Mapping[TaskState, int]:
        """How many tasks (replicas) are stored in each state; a state with none is absent."""
        ...

    def in_state_after(
        self, state: TaskState, after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` tasks in ``state`` stored after position ``after``, in storage
        order, each with its position (pass the last one back to go on: a sweep)."""
        ...

    def waiting(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks (submitted, timed out) stored after position
        ``after``, in storage order, each with its position (pass the last one back to go on)."""
        ...

    def expired_after(
        self, now: int, after: tuple[int, int] = (0, 0), limit: int = 100
    ) -> Sequence[tuple[int, Task]]:
        """Up to ``limit`` assignable tasks whose ``expires_at`` < ``now``, each with its
        position, in ``(expires_at, position)`` order after ``after`` (the last one's
        ``(expires_at, position)``, passed back to go on: a sweep)."""
        ...

    def assigned_to(self, node_id: str) -> Sequence[Task]:
        """Tasks ``node_id`` holds: assigned, or committed and not yet revealed (so a node
        that reconnects mid-round gets them again and reveals), oldest first."""
        ...

    def overdue(self, now: int, limit: int = 100) -> Sequence[Task]:
        """Assigned tasks whose ``deadline_at`` < ``now``, earliest deadline first."""
        ...


class ProofRepository(Protocol):
    """Signed task-proof envelopes (SRS-SEC-11), at most one per (task, node)."""

    def add(self, envelope: Envelope) -> None:
        """Store a verified task-proof envelope; Conflict if its signer already proved the task."""
        ...

    def get(self, task_id: str, node_id: str) -> Envelope | None:
        """The proof ``node_id`` sent for ``task_id``, or None."""
        ...

    def for_task(self, task_id: str) -> Sequence[Envelope]:
        """Every proof for ``task_id``, ordered by node_id."""
        ...


class TaskInputRepository(Protocol):
    """Each submitted task's input bytes, keyed by the submitted task_id (not per replica).

    Kept so that a task re-pushed after a coordinator restart still reaches its node with its
    input; deleted once the task's replicas are settled or forfeited. Data longer than
    :data:`~owm_core.market.tasks.MAX_TASK_INPUT_BYTES` is refused with InvalidValue(``input``).
    """

    def put(self, task_id: str, data: bytes) -> None:
        """Store ``data`` for ``task_id``; same data again is a no-op, other data a Conflict."""
        ...

    def get(self, task_id: str) -> bytes | None:
        """The input stored for ``task_id``, or None."""
        ...

    def delete(self, task_id: str) -> None:
        """Forget the input of ``task_id`` (nothing happens if none is stored)."""
        ...


class FundingRepository(Protocol):
    """Funded work only: prepaid balances, their top-up invoices, task escrows and the
    network budgets' draws (:mod:`owm_core.market.funding`)."""

    def balance(self, public_key: str) -> Balance | None:
        """The prepaid balance of a submitter key, or None if it never had one."""
        ...

    def save_balance(self, balance: Balance) -> None:
        """Store a balance (insert or replace)."""
        ...

    def add_top_up(self, top_up: TopUp) -> None:
        """Store a new top-up invoice; Conflict if its payment hash exists."""
        ...

    def save_top_up(self, top_up: TopUp) -> None:
        """Replace a stored top-up; Conflict if unknown."""
        ...

    def open_top_ups(self, public_key: str | None = None, limit: int = 100) -> Sequence[TopUp]:
        """Top-ups still OPEN (of ``public_key`` if given), oldest first, at most ``limit``."""
        ...

    def open_top_ups_after(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, TopUp]]:
        """Up to ``limit`` OPEN top-ups of every key stored after position ``after``, in
        storage order, each with its position (pass the last one back to go on: a sweep)."""
        ...

    def count_payable_top_ups(self, now: int) -> int:
        """How many top-ups, of every key, are still OPEN and unexpired at ``now`` (their
        invoices can still be paid)."""
        ...

    def add_escrow(self, escrow: Escrow) -> None:
        """Store a task's new escrow; Conflict if the task has one."""
        ...

    def escrow(self, task_id: str) -> Escrow | None:
        """The escrow of a submitted task, or None."""
        ...

    def save_escrow(self, escrow: Escrow) -> None:
        """Replace a stored escrow; Conflict if unknown."""
        ...

    def open_escrows(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Escrow]]:
        """Up to ``limit`` escrows not yet closed stored after position ``after``, in storage
        order, each with its position (pass the last one back to go on: a sweep)."""
        ...

    def budget(self, name: str) -> PeriodBudget | None:
        """What the network budget ``name`` drew in its latest period, or None."""
        ...

    def save_budget(self, name: str, budget: PeriodBudget) -> None:
        """Store the draw of budget ``name`` (insert or replace)."""
        ...


class CommitmentRepository(Protocol):
    """Replicas' commitments (commit–reveal, SRS-SEC-11), one per replica, kept until the
    round they belong to is judged, so a coordinator restart mid-round loses none."""

    def lock_round(self, round_id: str) -> None:
        """Inside :meth:`Repositories.atomic`: hold the round against every other coordinator
        on the store until the block ends, so that of several reveals arriving at once at
        different coordinators the last one sees the others and judges the round
        (SRS-COORD-05). A no-op where one process owns the store (its market lock
        serialises)."""
        ...

    def add(self, record: RecordedCommitment) -> None:
        """Store a commitment; the same one again is a no-op, another for the replica Conflict."""
        ...

    def for_round(self, round_id: str) -> Sequence[RecordedCommitment]:
        """The commitments of ``round_id``, earliest first."""
        ...

    def rounds_started_by_after(
        self, cutoff: int, after: str = "", limit: int = 100
    ) -> Sequence[str]:
        """Up to ``limit`` rounds whose first commitment arrived at or before ``cutoff`` (the
        rounds whose windows may have closed), by id after ``after`` (the last one, passed
        back to go on: a sweep)."""
        ...

    def delete_round(self, round_id: str) -> None:
        """Forget the commitments of a judged round (nothing happens if there are none)."""
        ...
