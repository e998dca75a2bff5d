"""SQL repositories: prepaid balances, top-up invoices, task escrows, network budget draws."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, select

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import upsert
from owm_adapters.storage.sql.rows import MappedRepository, register_row, to_row
from owm_core.market.funding import Balance, Escrow, PeriodBudget, TopUp, TopUpState

_MSAT = ["funded_msat", "escrowed_msat", "refunded_msat", "available_msat"]
register_row(Balance, int64_columns=_MSAT)
register_row(TopUp, int64_columns=["amount_msat", "created_at", "expires_at"])
register_row(Escrow)
register_row(PeriodBudget)


class SqlFundingRepository(MappedRepository):
    """Balances in ``balances``, top-ups in ``top_ups``, escrows in ``escrows``, draws in
    ``budgets``."""

    def _upsert(self, table: Table, key: str, row: dict[str, Any]) -> None:
        with self._db.tx(write=True) as conn:
            upsert(conn, table, row, key)

    def balance(self, public_key: str) -> Balance | None:
        """The prepaid balance of a submitter key, or None if it never had one."""
        return self._first(select(t.balances).where(t.balances.c.public_key == public_key), Balance)

    def save_balance(self, balance: Balance) -> None:
        """Store a balance (insert or replace)."""
        self._upsert(t.balances, "public_key", to_row(balance))

    def add_top_up(self, top_up: TopUp) -> None:
        """Store a new top-up invoice; Conflict if its payment hash exists."""
        self._insert(t.top_ups, top_up)

    def save_top_up(self, top_up: TopUp) -> None:
        """Replace a stored top-up; Conflict if unknown."""
        missing = f"top-up {top_up.payment_hash} is unknown"
        self._overwrite(t.top_ups, top_up, missing, t.top_ups.c.payment_hash == top_up.payment_hash)

    def open_top_ups(self, public_key: str | None = None, limit: int = 100) -> Sequence[TopUp]:
        """Top-ups still OPEN (of ``public_key`` if given), oldest first, at most ``limit``."""
        c = t.top_ups.c
        query = select(t.top_ups).where(c.state == TopUpState.OPEN.value)
        if public_key is not None:
            query = query.where(c.public_key == public_key)
        return self._all(query.order_by(c.seq).limit(limit), TopUp)

    def open_top_ups_after(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, TopUp]]:
        """Up to ``limit`` OPEN top-ups stored after position ``after``, with positions."""
        return self._page_after(t.top_ups, TopUp, after, limit,
                                t.top_ups.c.state == TopUpState.OPEN.value)  # fmt: skip

    def count_payable_top_ups(self, now: int) -> int:
        """How many top-ups, of every key, are still OPEN and unexpired at ``now``."""
        c = t.top_ups.c
        query = select(func.count()).select_from(t.top_ups).where(
            c.state == TopUpState.OPEN.value, c.expires_at > now
        )
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())

    def add_escrow(self, escrow: Escrow) -> None:
        """Store a task's new escrow; Conflict if the task has one."""
        self._insert(t.escrows, escrow)

    def escrow(self, task_id: str) -> Escrow | None:
        """The escrow of a submitted task, or None."""
        return self._first(select(t.escrows).where(t.escrows.c.task_id == task_id), Escrow)

    def save_escrow(self, escrow: Escrow) -> None:
        """Replace a stored escrow; Conflict if unknown."""
        missing = f"task {escrow.task_id} has no escrow"
        self._overwrite(t.escrows, escrow, missing, t.escrows.c.task_id == escrow.task_id)

    def open_escrows(self, after: int = 0, limit: int = 100) -> Sequence[tuple[int, Escrow]]:
        """Up to ``limit`` open escrows stored after position ``after``, with positions."""
        return self._page_after(t.escrows, Escrow, after, limit, t.escrows.c.closed.is_(False))

    def budget(self, name: str) -> PeriodBudget | None:
        """What the network budget ``name`` drew in its latest period, or None."""
        return self._first(select(t.budgets).where(t.budgets.c.name == name), PeriodBudget)

    def save_budget(self, name: str, budget: PeriodBudget) -> None:
        """Store the draw of budget ``name`` (insert or replace)."""
        self._upsert(t.budgets, "name", {"name": name, **to_row(budget)})
