"""SQL repositories: prepaid balances, top-up invoices, task escrows, network budget draws."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import from_row, register_row, row_converter, to_row
from owm_core.errors import Conflict
from owm_core.market.funding import Balance, Escrow, Payer, PeriodBudget, TopUp, TopUpState

_ROWS = row_converter()
"""How this context's values become rows and back."""
_MSAT = ["funded_msat", "escrowed_msat", "refunded_msat", "available_msat"]
register_row(_ROWS, Balance, int64_columns=_MSAT)
register_row(_ROWS, TopUp, int64_columns=["amount_msat", "created_at", "expires_at"])


def _escrow_row(escrow: Escrow) -> dict[str, Any]:
    return {
        "task_id": escrow.task_id,
        "payer": escrow.payer.value,
        "funder": escrow.funder,
        "opened_at": escrow.opened_at,
        "price_msat": escrow.price_msat,
        "share_msat": escrow.share_msat,
        "replicas": escrow.replicas,
        "funded_msat": escrow.funded_msat,
        "held_msat": escrow.held_msat,
        "paid_to_nodes_msat": escrow.paid_to_nodes_msat,
        "treasury_share_msat": escrow.treasury_share_msat,
        "refunded_msat": escrow.refunded_msat,
        "settled_replica_ids": json.dumps(sorted(escrow.settled_replica_ids)),
        "closed": escrow.closed,
    }


def _escrow_of(row: Row[Any]) -> Escrow:
    m = row._mapping
    return Escrow(
        task_id=m["task_id"],
        payer=Payer(m["payer"]),
        funder=m["funder"],
        opened_at=m["opened_at"],
        price_msat=m["price_msat"],
        share_msat=m["share_msat"],
        replicas=m["replicas"],
        funded_msat=m["funded_msat"],
        held_msat=m["held_msat"],
        paid_to_nodes_msat=m["paid_to_nodes_msat"],
        treasury_share_msat=m["treasury_share_msat"],
        refunded_msat=m["refunded_msat"],
        settled_replica_ids=frozenset(json.loads(m["settled_replica_ids"])),
        closed=bool(m["closed"]),
    )


class SqlFundingRepository(SqlRepository):
    """Balances in ``balances``, top-ups in ``top_ups``, escrows in ``escrows``, draws in
    ``budgets``."""

    def _upsert(self, table: Table, key: str, row: dict[str, Any]) -> None:
        column = table.c[key]
        with self._db.tx(write=True) as conn:
            done = conn.execute(update(table).where(column == row[key]).values(row))
            if done.rowcount == 0:
                conn.execute(insert(table).values(row))

    def balance(self, public_key: str) -> Balance | None:
        """The prepaid balance of a submitter key, or None if it never had one."""
        query = select(t.balances).where(t.balances.c.public_key == public_key)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else from_row(_ROWS, row, Balance)

    def save_balance(self, balance: Balance) -> None:
        """Store a balance (insert or replace)."""
        self._upsert(t.balances, "public_key", to_row(_ROWS, balance))

    def add_top_up(self, top_up: TopUp) -> None:
        """Store a new top-up invoice; Conflict if its payment hash exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.top_ups).values(to_row(_ROWS, top_up)))

    def save_top_up(self, top_up: TopUp) -> None:
        """Replace a stored top-up; Conflict if unknown."""
        c = t.top_ups.c
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.top_ups)
                .where(c.payment_hash == top_up.payment_hash)
                .values(to_row(_ROWS, top_up))
            )
        if done.rowcount == 0:
            raise Conflict(f"top-up {top_up.payment_hash} is unknown")

    def open_top_ups(self, public_key: str | None = None, limit: int = 100) -> Sequence[TopUp]:
        """Top-ups still OPEN (of ``public_key`` if given), oldest first, at most ``limit``."""
        c = t.top_ups.c
        query = select(t.top_ups).where(c.state == TopUpState.OPEN.value)
        if public_key is not None:
            query = query.where(c.public_key == public_key)
        with self._db.tx() as conn:
            rows = conn.execute(query.order_by(c.seq).limit(limit)).all()
        return [from_row(_ROWS, r, TopUp) for r in rows]

    def add_escrow(self, escrow: Escrow) -> None:
        """Store a task's new escrow; Conflict if the task has one."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.escrows).values(_escrow_row(escrow)))

    def escrow(self, task_id: str) -> Escrow | None:
        """The escrow of a submitted task, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.escrows).where(t.escrows.c.task_id == task_id)).first()
        return None if row is None else _escrow_of(row)

    def save_escrow(self, escrow: Escrow) -> None:
        """Replace a stored escrow; Conflict if unknown."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.escrows)
                .where(t.escrows.c.task_id == escrow.task_id)
                .values(_escrow_row(escrow))
            )
        if done.rowcount == 0:
            raise Conflict(f"task {escrow.task_id} has no escrow")

    def open_escrows(self, limit: int = 100) -> Sequence[Escrow]:
        """Escrows not yet closed, oldest first, at most ``limit``."""
        c = t.escrows.c
        query = select(t.escrows).where(c.closed.is_(False)).order_by(c.seq).limit(limit)
        with self._db.tx() as conn:
            return [_escrow_of(r) for r in conn.execute(query).all()]

    def budget(self, name: str) -> PeriodBudget | None:
        """What the network budget ``name`` drew in its latest period, or None."""
        with self._db.tx() as conn:
            row = conn.execute(select(t.budgets).where(t.budgets.c.name == name)).first()
        if row is None:
            return None
        return PeriodBudget(row._mapping["period"], row._mapping["drawn_msat"])

    def save_budget(self, name: str, budget: PeriodBudget) -> None:
        """Store the draw of budget ``name`` (insert or replace)."""
        row = {"name": name, "period": budget.period, "drawn_msat": budget.drawn_msat}
        self._upsert(t.budgets, "name", row)
