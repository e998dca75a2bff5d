"""SQL repositories: reward payments (the outbox) and the payment log (SRS-LN-04, LN-05)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import (
    MappedRepository,
    PutRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.payments.records import (
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    check_replacement,
    merge,
)

register_row(RewardPayment)
register_row(PaymentAttempt)
register_row(PayoutChannelOpening, int64_columns=["started_at"])


class SqlPaymentRepository(MappedRepository):
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
                        conn.execute(insert(t.payments).values(to_row(payment)))
                    return payment
                except IntegrityError:  # another writer inserted this hash (or payment_id) first
                    row = conn.execute(by_hash.with_for_update()).first()
                    if row is None:
                        raise Conflict(
                            f"payment id {payment.payment_id} is used by another hash"
                        ) from None
            kept = merge(from_row(row, RewardPayment), payment)
            if kept is payment:
                conn.execute(
                    update(t.payments)
                    .where(c.payment_hash == payment.payment_hash)
                    .values(to_row(payment))
                )
            return kept

    def replace_invoice(self, old_hash: str, renewed: RewardPayment) -> RewardPayment:
        """Store ``renewed`` in place of the record with ``old_hash`` (its invoice renewed): one
        UPDATE of that row, which keeps its ``seq``."""
        c = t.payments.c
        by_hash = select(t.payments).where(c.payment_hash == old_hash)
        with self._db.tx(write=True) as conn:
            row = conn.execute(by_hash.with_for_update()).first()
            if row is None:
                raise Conflict(f"no payment with hash {old_hash} (renewed or never stored)")
            check_replacement(from_row(row, RewardPayment), renewed)
            try:
                with conn.begin_nested():
                    conn.execute(
                        update(t.payments)
                        .where(c.payment_hash == old_hash)
                        .values(to_row(renewed))
                    )
            except IntegrityError:  # the new hash is another record's
                raise Conflict(
                    f"payment hash {renewed.payment_hash} is stored for another payment"
                ) from None
        return renewed

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

    def with_payment_ids(self, payment_ids: Collection[str]) -> Sequence[RewardPayment]:
        """The payments stored under any of ``payment_ids``, oldest first."""
        if not payment_ids:
            return []
        return self._listed(t.payments.c.payment_id.in_(list(payment_ids)))

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        return self._listed(t.payments.c.state == state.value, limit=limit)

    def counts(self) -> Mapping[PaymentState, int]:
        """How many payments are stored in each state; a state with none is absent."""
        return self._counts(t.payments.c.state, PaymentState)

    def in_states_after(
        self, states: Collection[PaymentState], after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, RewardPayment]]:
        """Up to ``limit`` payments in one of ``states`` stored after position ``after``, with
        positions.

        One page per state, merged: each is an ordered range of the ``(state, seq)`` index
        that stops at ``limit`` rows, where a single ``state IN (...)`` cannot be read in
        ``seq`` order and would sort every owed payment after ``after`` on each sweep."""
        values = sorted({s.value for s in states})
        if not values:
            return []
        c = t.payments.c

        def page(after: int, limit: int) -> Select[Any]:
            merged = union_all(*(
                select(
                    select(t.payments).where(c.state == value, c.seq > after)
                    .order_by(c.seq).limit(limit).subquery()  # SQLite: no LIMIT in a UNION's arm
                )
                for value in values
            )).subquery()  # fmt: skip
            return select(merged).order_by(merged.c.seq).limit(limit)

        return self._positioned(page, after, limit, RewardPayment)

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        self._insert(t.payment_attempts, attempt)

    def for_node(
        self, node_id: str, limit: int = 100, states: Collection[PaymentState] | None = None
    ) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id`` (in one of ``states`` if
        given), newest first (SRS-LN-10)."""
        c = t.payments.c
        query = (
            select(t.payments)
            .where(c.node_id == node_id)
            .order_by(c.created_at.desc(), c.seq.desc())
            .limit(limit)
        )
        if states is not None:
            query = query.where(c.state.in_([state.value for state in states]))
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

    _table = t.payout_channels

    def opened_since(self, started_at: int) -> int:
        """The capacity (sat) of the openings started at or after ``started_at``."""
        c = t.payout_channels.c
        query = select(func.coalesce(func.sum(c.amount_sat), 0)).where(c.started_at >= started_at)
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())


class SqlPayoutRequestRepository(SqlRepository):
    """Payouts awaiting an invoice, and the invoices handed in, in ``payout_requests``."""

    def request(self, payout: PendingPayout, keep: int) -> None:
        """Record ``payout`` unless its id is recorded already; keep at most ``keep``."""
        c = t.payout_requests.c
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            added = conn.execute(
                dialect_insert(t.payout_requests).values(
                    payment_id=payout.payment_id, payee_pubkey=payout.payee_pubkey,
                    amount_msat=payout.amount_msat, memo=payout.memo, expiry_s=payout.expiry_s,
                    requested_at=payout.requested_at,
                ).on_conflict_do_nothing().returning(c.payment_id)
            ).first()
            beyond = select(c.payment_id).order_by(c.requested_at.desc(), c.payment_id.desc())
            if added is not None and conn.execute(beyond.offset(keep).limit(1)).first():
                conn.execute(delete(t.payout_requests).where(
                    c.payment_id.not_in(beyond.limit(keep).scalar_subquery())))

    def waiting_for(self, payee_pubkey: str) -> Sequence[PendingPayout]:
        """The payouts awaiting an invoice from ``payee_pubkey``, oldest first."""
        return self._waiting(t.payout_requests.c.payee_pubkey == payee_pubkey)

    def waiting(self) -> Sequence[PendingPayout]:
        """Every payout awaiting an invoice, oldest first."""
        return self._waiting()

    def get(self, payment_id: str) -> PendingPayout | None:
        """The payout if it awaits an invoice, else None."""
        found = self._waiting(t.payout_requests.c.payment_id == payment_id)
        return found[0] if found else None

    def hand_in(self, payment_id: str, invoice: Invoice) -> None:
        """Keep the node's invoice for the payout."""
        c = t.payout_requests.c
        with self._db.tx(write=True) as conn:
            conn.execute(update(t.payout_requests).where(c.payment_id == payment_id).values(
                bolt11=invoice.bolt11, payment_hash=invoice.payment_hash,
                invoice_expiry_s=invoice.expiry_s, invoice_created_at=invoice.created_at,
            ))

    def take_invoice(self, payment_id: str) -> Invoice | None:
        """Remove the payout and return its handed-in invoice (None: none, nothing removed)."""
        c = t.payout_requests.c
        with self._db.tx(write=True) as conn:
            row = conn.execute(
                delete(t.payout_requests)
                .where(c.payment_id == payment_id, c.bolt11.is_not(None))
                .returning(*t.payout_requests.c)
            ).first()
        if row is None:
            return None
        return Invoice(
            bolt11=row.bolt11, payment_hash=row.payment_hash, amount_msat=row.amount_msat,
            expiry_s=row.invoice_expiry_s, created_at=row.invoice_created_at,
            state=InvoiceState.OPEN, memo=row.memo,
        )

    def withdraw(self, payment_id: str) -> bool:
        """Remove the payout, waiting or invoiced; whether it was there."""
        c = t.payout_requests.c
        with self._db.tx(write=True) as conn:
            gone = conn.execute(
                delete(t.payout_requests).where(c.payment_id == payment_id)
                .returning(c.payment_id)
            ).first()
        return gone is not None

    def _waiting(self, *where: Any) -> list[PendingPayout]:
        c = t.payout_requests.c
        query = select(t.payout_requests).where(c.bolt11.is_(None), *where)
        with self._db.tx() as conn:
            rows = conn.execute(query.order_by(c.requested_at, c.payment_id)).all()
        return [
            PendingPayout(
                payment_id=r.payment_id, payee_pubkey=r.payee_pubkey, amount_msat=r.amount_msat,
                memo=r.memo, expiry_s=r.expiry_s, requested_at=r.requested_at,
            )
            for r in rows
        ]
