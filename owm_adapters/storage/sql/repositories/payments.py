"""SQL repositories: reward payments (the outbox) and the payment log (SRS-LN-04, LN-05)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.rows import (
    MappedRepository,
    PutRepository,
    from_row,
    register_row,
    row_converter,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.payments.records import (
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    merge,
)

_ROWS = row_converter()
"""How this context's values become rows and back."""
register_row(_ROWS, RewardPayment)
register_row(_ROWS, PaymentAttempt)
register_row(_ROWS, PayoutChannelOpening, int64_columns=["started_at"])


class SqlPaymentRepository(MappedRepository):
    """Reward payments (``payments``) and the payment log (``payment_attempts``)."""

    _rows = _ROWS

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash."""
        c = t.payments.c
        by_hash = select(t.payments).where(c.payment_hash == payment.payment_hash)
        with self._db.tx(write=True) as conn:
            row = conn.execute(by_hash.with_for_update()).first()
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(t.payments).values(to_row(_ROWS, payment)))
                    return payment
                except IntegrityError:  # another writer inserted this hash (or payment_id) first
                    row = conn.execute(by_hash.with_for_update()).first()
                    if row is None:
                        raise Conflict(
                            f"payment id {payment.payment_id} is used by another hash"
                        ) from None
            kept = merge(from_row(_ROWS, row, RewardPayment), payment)
            if kept is payment:
                conn.execute(
                    update(t.payments)
                    .where(c.payment_hash == payment.payment_hash)
                    .values(to_row(_ROWS, payment))
                )
            return kept

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        return self._first(
            select(t.payments).where(t.payments.c.payment_hash == payment_hash), RewardPayment
        )

    def _listed(self, *condition: Any, limit: int | None = None) -> list[RewardPayment]:
        c = t.payments.c
        query = select(t.payments).where(*condition).order_by(c.created_at, c.seq).limit(limit)
        return self._all(query, RewardPayment)

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
        self._insert(t.payment_attempts, attempt)

    def for_node(self, node_id: str, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id``, newest first (SRS-LN-10)."""
        c = t.payments.c
        query = (
            select(t.payments)
            .where(c.node_id == node_id)
            .order_by(c.created_at.desc(), c.seq.desc())
            .limit(limit)
        )
        return self._all(query, RewardPayment)

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        c = t.payment_attempts.c
        query = select(t.payment_attempts).where(c.payment_hash == payment_hash).order_by(c.seq)
        return self._all(query, PaymentAttempt)

    def attempts_since(self, start: int, limit: int = 10_000) -> Sequence[PaymentAttempt]:
        """Up to ``limit`` log lines logged at or after ``start``, in the order they were
        logged."""
        c = t.payment_attempts.c
        query = select(t.payment_attempts).where(c.at >= start).order_by(c.seq).limit(limit)
        return self._all(query, PaymentAttempt)

    def settled_since(self, start: int, limit: int = 10_000) -> Sequence[RewardPayment]:
        """Up to ``limit`` succeeded payments settled (``updated_at``) at or after ``start``,
        earliest settled first."""
        c = t.payments.c
        query = (
            select(t.payments)
            .where(c.state == PaymentState.SUCCEEDED.value, c.updated_at >= start)
            .order_by(c.updated_at, c.seq)
            .limit(limit)
        )
        return self._all(query, RewardPayment)


class SqlPayoutChannelRepository(PutRepository[PayoutChannelOpening]):
    """The treasury's latest payout-channel opening per node, in ``payout_channels``."""

    _rows = _ROWS
    _table = t.payout_channels
    _key = "node_id"
    _kind = PayoutChannelOpening

    def opened_since(self, started_at: int) -> int:
        """The capacity (sat) of the openings started at or after ``started_at``."""
        c = t.payout_channels.c
        query = select(func.coalesce(func.sum(c.amount_sat), 0)).where(c.started_at >= started_at)
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())
