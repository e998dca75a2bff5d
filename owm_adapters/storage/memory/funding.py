"""In-memory twin: prepaid balances, top-up invoices, task escrows, network budget draws."""

from __future__ import annotations

from collections.abc import Sequence

from owm_adapters.storage.memory.state import StateRepository
from owm_core.market.funding import Balance, Escrow, PeriodBudget, TopUp, TopUpState


class MemoryFundingRepository(StateRepository):
    """Balances by key, top-ups by payment hash and escrows by task id (with insertion order)."""

    def balance(self, public_key: str) -> Balance | None:
        """The prepaid balance of a submitter key, or None if it never had one."""
        with self._lock:
            return self._state.balances.get(public_key)

    def save_balance(self, balance: Balance) -> None:
        """Store a balance (insert or replace)."""
        with self._lock:
            self._state.balances[balance.public_key] = balance

    def add_top_up(self, top_up: TopUp) -> None:
        """Store a new top-up invoice; Conflict if its payment hash exists."""
        self._insert_in_order(
            "top_ups", top_up.payment_hash, top_up, f"top-up {top_up.payment_hash} already exists"
        )

    def save_top_up(self, top_up: TopUp) -> None:
        """Replace a stored top-up; Conflict if unknown."""
        self._replace_in_order(
            "top_ups", top_up.payment_hash, top_up, f"top-up {top_up.payment_hash} is unknown"
        )

    def open_top_ups(self, public_key: str | None = None, limit: int = 100) -> Sequence[TopUp]:
        """Top-ups still OPEN (of ``public_key`` if given), oldest first, at most ``limit``."""
        with self._lock:
            rows = sorted(self._state.top_ups.values(), key=lambda row: row[0])
        return [
            t for _, t in rows
            if t.state is TopUpState.OPEN and public_key in (None, t.public_key)
        ][:limit]

    def open_top_ups_after(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, TopUp]]:
        """Up to ``limit`` OPEN top-ups stored after position ``after``, with positions."""
        with self._lock:
            rows = sorted(self._state.top_ups.values(), key=lambda row: row[0])
        return [(seq, t) for seq, t in rows if seq > after and t.state is TopUpState.OPEN][:limit]

    def count_payable_top_ups(self, now: int) -> int:
        """How many top-ups, of every key, are still OPEN and unexpired at ``now``."""
        with self._lock:
            return sum(
                1 for _, t in self._state.top_ups.values()
                if t.state is TopUpState.OPEN and t.expires_at > now
            )

    def add_escrow(self, escrow: Escrow) -> None:
        """Store a task's new escrow; Conflict if the task has one."""
        self._insert_in_order(
            "escrows", escrow.task_id, escrow, f"task {escrow.task_id} already has an escrow"
        )

    def escrow(self, task_id: str) -> Escrow | None:
        """The escrow of a submitted task, or None."""
        with self._lock:
            stored = self._state.escrows.get(task_id)
        return None if stored is None else stored[1]

    def save_escrow(self, escrow: Escrow) -> None:
        """Replace a stored escrow; Conflict if unknown."""
        self._replace_in_order(
            "escrows", escrow.task_id, escrow, f"task {escrow.task_id} has no escrow"
        )

    def open_escrows(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Escrow]]:
        """Up to ``limit`` open escrows stored after position ``after``, with positions."""
        with self._lock:
            rows = sorted(self._state.escrows.values(), key=lambda row: row[0])
        return [(seq, e) for seq, e in rows if seq > after and not e.closed][:limit]

    def budget(self, name: str) -> PeriodBudget | None:
        """What the network budget ``name`` drew in its latest period, or None."""
        with self._lock:
            return self._state.budgets.get(name)

    def save_budget(self, name: str, budget: PeriodBudget) -> None:
        """Store the draw of budget ``name`` (insert or replace)."""
        with self._lock:
            self._state.budgets[name] = budget
