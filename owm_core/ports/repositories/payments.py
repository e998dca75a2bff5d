"""The payments repository: reward payments waiting to be sent (the outbox) and their log
(SRS-LN-04, SRS-LN-05).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice
from owm_core.payments.payout_channels import PayoutChannelOpening
from owm_core.payments.records import PaymentAttempt, PaymentState, RewardPayment


class PaymentRepository(Protocol):
    """Reward payments (the outbox) and the payment log (SRS-LN-04, SRS-LN-05)."""

    def upsert(self, payment: RewardPayment) -> RewardPayment:
        """Insert, or update state/attempts/error/bolt11 of the record with this payment_hash.

        Idempotent: the same value twice leaves one record. Conflict if the stored record
        with this hash is for another payment_id, task, node or amount. Returns what is stored.
        """
        ...

    def replace_invoice(self, old_hash: str, renewed: RewardPayment) -> RewardPayment:
        """Store ``renewed`` in place of the record with ``old_hash`` in one write: its invoice
        expired unpaid and was renewed (``owm_core.payments.renewals``).

        The record keeps its place (``for_task``, ``for_node``, ``pending`` orders); it is found
        under ``renewed.payment_hash`` and no longer under ``old_hash``. Conflict, and nothing
        changed, unless ``check_replacement`` accepts it (no record with ``old_hash``: another
        dispatcher renewed it first), or if another record holds the new hash. Returns it.
        """
        ...

    def get(self, payment_hash: str) -> RewardPayment | None:
        """The payment with ``payment_hash``, or None."""
        ...

    def for_task(self, task_id: str) -> Sequence[RewardPayment]:
        """Payments for ``task_id``, oldest first."""
        ...

    def with_payment_ids(self, payment_ids: Collection[str]) -> Sequence[RewardPayment]:
        """The payments stored under any of ``payment_ids`` (one at most each), oldest first:
        a payee's numbered payouts, looked up a page at a time."""
        ...

    def with_state(self, state: PaymentState, limit: int = 100) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments in ``state`` (e.g. in_flight after a restart), oldest first."""
        ...

    def counts(self) -> Mapping[PaymentState, int]:
        """How many payments are stored in each state; a state with none is absent."""
        ...

    def in_states_after(
        self, states: Collection[PaymentState], after: int = 0, limit: int = 100
    ) -> Sequence[tuple[int, RewardPayment]]:
        """Up to ``limit`` payments in one of ``states`` stored after position ``after``, in
        storage order, each with its position (pass the last one back to go on: a sweep)."""
        ...

    def log_attempt(self, attempt: PaymentAttempt) -> None:
        """Append one line to the payment log (SRS-LN-05)."""
        ...

    def attempts(self, payment_hash: str) -> Sequence[PaymentAttempt]:
        """The log lines of one payment, in the order they were logged."""
        ...

    def for_node(
        self, node_id: str, limit: int = 100, states: Collection[PaymentState] | None = None
    ) -> Sequence[RewardPayment]:
        """Up to ``limit`` payments owed or paid to ``node_id`` (in one of ``states`` if
        given), newest first (SRS-LN-10)."""
        ...

    def attempts_since(self, start: int, limit: int = 10_000) -> Sequence[PaymentAttempt]:
        """Up to ``limit`` log lines logged at or after ``start``, in the order they were
        logged (the dashboard's payments and earnings over time)."""
        ...

    def settled_since(self, start: int, limit: int = 10_000) -> Sequence[RewardPayment]:
        """Up to ``limit`` succeeded payments whose ``updated_at`` (when they settled) is at or
        after ``start``, earliest settled first (the dashboard's payment latency)."""
        ...


class PayoutChannelRepository(Protocol):
    """The treasury's payout-channel openings, one record per node: its latest (SRS-LN-03)."""

    def put(self, opening: PayoutChannelOpening) -> None:
        """Store ``opening`` as the node's latest, replacing an earlier one."""
        ...

    def get(self, node_id: str) -> PayoutChannelOpening | None:
        """The latest opening recorded for ``node_id``, or None."""
        ...

    def opened_since(self, started_at: int) -> int:
        """The capacity (sat) of the openings started at or after ``started_at``."""
        ...


class PayoutRequestRepository(Protocol):
    """Payouts waiting for the payee node's own invoice, and the invoices handed in for them
    (SRS-LN-04), shared by every coordinator on the store (SRS-COORD-05)."""

    def request(self, payout: PendingPayout, keep: int) -> None:
        """Record ``payout`` as awaiting its invoice unless its id is recorded already; then
        at most ``keep`` records, the oldest requested dropped first."""
        ...

    def waiting_for(self, payee_pubkey: str) -> Sequence[PendingPayout]:
        """The payouts awaiting an invoice from ``payee_pubkey``, oldest first (a payout whose
        invoice was handed in no longer awaits one)."""
        ...

    def waiting(self) -> Sequence[PendingPayout]:
        """Every payout awaiting an invoice, oldest first."""
        ...

    def get(self, payment_id: str) -> PendingPayout | None:
        """The payout ``payment_id`` if it awaits an invoice, else None."""
        ...

    def hand_in(self, payment_id: str, invoice: Invoice) -> None:
        """Keep the node's ``invoice`` for the payout; it no longer awaits one."""
        ...

    def take_invoice(self, payment_id: str) -> Invoice | None:
        """Remove the payout and return the invoice handed in for it; None (nothing removed)
        when none was. Of several callers at once, one gets the invoice."""
        ...

    def withdraw(self, payment_id: str) -> bool:
        """Remove the payout ``payment_id``, waiting or with its invoice handed in: it is paid
        another way (keysend) or settled, so no node should invoice it any more. Whether it was
        there; idempotent."""
        ...
