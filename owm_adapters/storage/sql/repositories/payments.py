"""SQL repositories: reward payments (the outbox) and the payment log (SRS-LN-04, LN-05)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_core.errors import Conflict
from owm_core.payments.records import (
    AttemptOutcome,
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    merge,
)


def _payment_row(p: RewardPayment) -> dict[str, Any]:
    return {
        "payment_hash": p.payment_hash,
        "payment_id": p.payment_id,
        "task_id": p.task_id,
        "node_id": p.node_id,
        "amount_msat": p.amount_msat,
        "bolt11": p.bolt11,
        "state": p.state.value,
        "attempts": p.attempts,
        "last_error": p.last_error,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def _row_payment(row: Row[Any]) -> RewardPayment:
    m = row._mapping
    return RewardPayment(
        payment_id=m["payment_id"],
        task_id=m["task_id"],
        node_id=m["node_id"],
        amount_msat=m["amount_msat"],
        payment_hash=m["payment_hash"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        bolt11=m["bolt11"],
        state=PaymentState(m["state"]),
        attempts=m["attempts"],
        last_error=m["last_error"],
    )


def _attempt_row(a: PaymentAttempt) -> dict[str, Any]:
    return {
        "payment_hash": a.payment_hash,
        "task_id": a.task_id,
        "node_id": a.node_id,
        "amount_msat": a.amount_msat,
        "at": a.at,
        "outcome": a.outcome.value,
        "error": a.error,
    }


def _row_attempt(row: Row[Any]) -> PaymentAttempt:
    m = row._mapping
    return PaymentAttempt(
        payment_hash=m["payment_hash"],
        task_id=m["task_id"],
        node_id=m["node_id"],
        amount_msat=m["amount_msat"],
        at=m["at"],
        outcome=AttemptOutcome(m["outcome"]),
        error=m["error"],
    )


class SqlPaymentRepository(SqlRepository):
    """Reward payments (``payments``) and the payment log (``payment_attempts``)."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash."""
        c = t.payments.c
        by_hash = select(t.payments).where(c.payment_hash == payment.payment_hash)
        with self._db.tx(write=True) as conn:
            row = conn.execute(by_hash.with_for_update()).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t.payments).values(_payment_row(payment)))
                    return payment
                except IntegrityError:  # another writer inserted this hash (or payment_id) first
                    row = conn.execute(by_hash.with_for_update()).first()
                    if row is None:
                        raise Conflict(
                            f"payment id {payment.payment_id} is used by another hash"
                        ) from None
            kept = merge(_row_payment(row), payment)
            if kept is payment:
                conn.execute(
                    update(t.payments)
                    .where(c.payment_hash == payment.payment_hash)
                    .values(_payment_row(payment))
                )
            return kept

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        with self._db.tx() as conn:
            row = conn.execute(
                select(t.payments).where(t.payments.c.payment_hash == payment_hash)
            ).first()
        return None if row is None else _row_payment(row)

    def _listed(self, *condition: Any, limit: int | None = None) -> list[RewardPayment]:
        c = t.payments.c
        query = select(t.payments).where(*condition).order_by(c.created_at, c.seq).limit(limit)
        with self._db.tx() as conn:
            return [_row_payment(r) for r in conn.execute(query).all()]

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        return self._listed(t.payments.c.task_id == task_id)

    def pending(self, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments still owed (pending or failed), oldest first."""
        owed = [PaymentState.PENDING.value, PaymentState.FAILED.value]
        return self._listed(t.payments.c.state.in_(owed), limit=limit)

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        return self._listed(t.payments.c.state == state.value, limit=limit)

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.payment_attempts).values(_attempt_row(attempt)))

    def for_node(self, node_id: str, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id``, newest first (SRS-LN-10)."""
        c = t.payments.c
        query = (
            select(t.payments)
            .where(c.node_id == node_id)
            .order_by(c.created_at.desc(), c.seq.desc())
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [_row_payment(r) for r in conn.execute(query).all()]

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        c = t.payment_attempts.c
        query = select(t.payment_attempts).where(c.payment_hash == payment_hash).order_by(c.seq)
        with self._db.tx() as conn:
            return [_row_attempt(r) for r in conn.execute(query).all()]
