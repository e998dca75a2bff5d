"""In-memory twin: reward payments (the outbox) and the payment log (SRS-LN-04, LN-05)."""

from __future__ import annotations

import collections
from collections.abc import Collection, Mapping, Sequence

from owm_adapters.storage.memory.state import PutStateRepository, StateRepository
from owm_core.errors import Conflict
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice
from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.payments.records import (
    PaymentAttempt,
    PaymentState,
    RewardPayment,
    check_replacement,
    merge,
)


class MemoryPaymentRepository(StateRepository):
    """Reward payments per payment hash, and the payment log as a list."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash."""
        with self._lock:
            stored = self._state.payments.get(payment.payment_hash)
            if stored is None:
                if payment.payment_id in self._state.payment_ids:
                    raise Conflict(f"payment id {payment.payment_id} is used by another hash")
                self._state.payments[payment.payment_hash] = (self._state.next_seq(), payment)
                self._state.payment_ids[payment.payment_id] = payment.payment_hash
                by_node = self._state.payments_by_node
                by_node[payment.node_id] = (*by_node.get(payment.node_id, ()), payment.payment_hash)
                return payment
            kept = merge(stored[1], payment)
            self._state.payments[payment.payment_hash] = (stored[0], kept)
            return kept

    def replace_invoice(self, old_hash: str, renewed: RewardPayment) -> RewardPayment:
        """Store ``renewed`` in place of the record with ``old_hash`` (its invoice renewed)."""
        with self._lock:
            stored = self._state.payments.get(old_hash)
            if stored is None:
                raise Conflict(f"no payment with hash {old_hash} (renewed or never stored)")
            check_replacement(stored[1], renewed)
            new_hash = renewed.payment_hash
            if new_hash in self._state.payments:
                raise Conflict(f"payment hash {new_hash} is stored for another payment")
            del self._state.payments[old_hash]
            self._state.payments[new_hash] = (stored[0], renewed)
            self._state.payment_ids[renewed.payment_id] = new_hash
            by_node = self._state.payments_by_node
            by_node[renewed.node_id] = tuple(
                new_hash if h == old_hash else h for h in by_node.get(renewed.node_id, ())
            )
            return renewed

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        with self._lock:
            stored = self._state.payments.get(payment_hash)
            return None if stored is None else stored[1]

    def _ordered(self) -> list[RewardPayment]:
        rows = sorted(self._state.payments.values(), key=lambda sp: (sp[1].created_at, sp[0]))
        return [p for _, p in rows]

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        with self._lock:
            return [p for p in self._ordered() if p.task_id == task_id]

    def with_payment_ids(self, payment_ids: Collection[str]) -> Sequence[RewardPayment]:
        """The payments stored under any of ``payment_ids``, oldest first."""
        with self._lock:
            hashes = {self._state.payment_ids.get(i) for i in payment_ids}
            rows = [self._state.payments[h] for h in hashes if h is not None]
            rows.sort(key=lambda r: (r[1].created_at, r[0]))
            return [p for _, p in rows]

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        with self._lock:
            return [p for p in self._ordered() if p.state is state][:limit]

    def counts(self) -> Mapping[PaymentState, int]:
        """How many payments are stored in each state; a state with none is absent."""
        with self._lock:
            return collections.Counter(p.state for _, p in self._state.payments.values())

    def in_states_after(
        self, states: Collection[PaymentState], after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, RewardPayment]]:
        """Up to ``limit`` payments in one of ``states`` stored after position ``after``, with
        positions."""
        with self._lock:
            rows = sorted(self._state.payments.values(), key=lambda sp: sp[0])
        return [(seq, p) for seq, p in rows if seq > after and p.state in states][:limit]

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        with self._lock:
            self._state.attempts.append(attempt)

    def for_node(
        self, node_id: str, limit: int = 100, states: Collection[PaymentState] | None = None
    ) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id`` (in one of ``states`` if
        given), newest first (SRS-LN-10)."""
        with self._lock:
            hashes = self._state.payments_by_node.get(node_id, ())
            rows = [self._state.payments[h] for h in hashes]
            rows = [r for r in rows if states is None or r[1].state in states]
            rows.sort(key=lambda r: (r[1].created_at, r[0]), reverse=True)
            return [p for _, p in rows[:limit]]

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        with self._lock:
            return [a for a in self._state.attempts if a.payment_hash == payment_hash]

    def attempts_since(self, start: int, limit: int = 10_000) -> Sequence[PaymentAttempt]:
        """Up to ``limit`` log lines logged at or after ``start``, in the order they were
        logged."""
        with self._lock:
            return [a for a in self._state.attempts if a.at >= start][:limit]

    def settled_since(self, start: int, limit: int = 10_000) -> Sequence[RewardPayment]:
        """Up to ``limit`` succeeded payments settled (``updated_at``) at or after ``start``,
        earliest settled first."""
        with self._lock:
            rows = [
                r for r in self._state.payments.values()
                if r[1].settled and r[1].updated_at >= start
            ]
            rows.sort(key=lambda r: (r[1].updated_at, r[0]))
            return [p for _, p in rows[:limit]]


class MemoryPayoutChannelRepository(PutStateRepository[PayoutChannelOpening]):
    """The treasury's latest payout-channel opening per node."""

    _table = "payout_channels"
    _key = "node_id"

    def opened_since(self, started_at: int) -> int:
        """The capacity (sat) of the openings started at or after ``started_at``."""
        with self._lock:
            return sum(
                o.amount_sat for o in self._state.payout_channels.values()
                if o.started_at >= started_at
            )


class MemoryPayoutRequestRepository(StateRepository):
    """Payouts awaiting an invoice, by payout id, with the invoice handed in (or None)."""

    def request(self, payout: PendingPayout, keep: int) -> None:
        """Record ``payout`` unless its id is recorded already; keep at most ``keep``."""
        with self._lock:
            held = self._state.payout_requests
            if payout.payment_id in held:
                return
            held[payout.payment_id] = (payout, None)
            excess = len(held) - keep
            if excess > 0:
                oldest = sorted(held, key=lambda k: (held[k][0].requested_at, k))[:excess]
                for payment_id in oldest:
                    del held[payment_id]

    def waiting_for(self, payee_pubkey: str) -> Sequence[PendingPayout]:
        """The payouts awaiting an invoice from ``payee_pubkey``, oldest first."""
        return [p for p in self.waiting() if p.payee_pubkey == payee_pubkey]

    def waiting(self) -> Sequence[PendingPayout]:
        """Every payout awaiting an invoice, oldest first."""
        with self._lock:
            found = [p for p, invoice in self._state.payout_requests.values() if invoice is None]
        return sorted(found, key=lambda p: (p.requested_at, p.payment_id))

    def get(self, payment_id: str) -> PendingPayout | None:
        """The payout if it awaits an invoice, else None."""
        with self._lock:
            held = self._state.payout_requests.get(payment_id)
        return held[0] if held is not None and held[1] is None else None

    def hand_in(self, payment_id: str, invoice: Invoice) -> None:
        """Keep the node's invoice for the payout."""
        with self._lock:
            held = self._state.payout_requests.get(payment_id)
            if held is not None:
                self._state.payout_requests[payment_id] = (held[0], invoice)

    def take_invoice(self, payment_id: str) -> Invoice | None:
        """Remove the payout and return its handed-in invoice (None: none, nothing removed)."""
        with self._lock:
            held = self._state.payout_requests.get(payment_id)
            if held is None or held[1] is None:
                return None
            del self._state.payout_requests[payment_id]
            return held[1]

    def withdraw(self, payment_id: str) -> bool:
        """Remove the payout, waiting or invoiced; whether it was there."""
        with self._lock:
            return self._state.payout_requests.pop(payment_id, None) is not None
