"""The payment dispatcher: pays task rewards and GitHub bounties through a durable outbox.

Owns the I/O side of SRS-LN-04/05/08 (the rules are :mod:`owm_core.payments.outbox`):

* :class:`PayoutDispatcher` — one worker thread. Settlements arrive through the coordinator's
  ``on_settlement`` listener and are queued in memory; the worker turns each into an outbox
  record (node's invoice obtained first, record stored ``pending`` with its payment hash
  *before* anything is paid), then pays: the record goes ``in_flight`` (stored) → ``pay`` →
  ``succeeded``/``failed`` (stored), with a line in the payment log for every attempt, success
  and failure (task id, node id, amount, timestamp: SRS-LN-05). It sweeps the outbox every
  ``sweep_s`` seconds: pending payments, failed ones whose backoff has passed, and in-flight
  ones, which are looked up (``lookup_payment``; a keysend payout's ``lookup_keysend``) before
  anything is sent again. An invoice
  that expired unpaid is renewed first (:mod:`~owm_adapters.services.payout_renewals`). On
  start it also reconciles: every settled task without a reward record (a crash between
  settlement and enqueue) is enqueued, so a SIGKILL at any point loses nothing and pays
  nothing twice. A payee given as a bare Lightning node key whose invoice source has no
  invoice to give (it runs no OWM node daemon) is paid by *keysend* instead
  (:mod:`owm_core.payments.keysend`): the record is stored pending with the hash of a
  preimage derived from its payment id, so every attempt, after any crash, sends that same
  hash and is looked up first, like an invoice's.
* :class:`LedgerInvoiceSource` — the embedded network's :class:`InvoiceSource`: the payee's
  simulated Lightning node signs the invoice.
* :func:`payment_counts` — outbox records by state, for the metrics (SRS-COORD-*).

``checkpoint`` is called with a name at each durable step (``after-invoice``, ``after-record``,
``before-pay``, ``after-pay``, ``after-success``; a renewal's ``after-renewal-invoice`` and
``after-renewal``); the crash tests make the process SIGKILL itself, or raise, there. It does
nothing in production.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.payout_records import PayeeRecords, payment_fields, withdraw_request
from owm_adapters.services.payout_renewals import InvoiceRenewals
from owm_adapters.services.payout_sending import PayoutSender
from owm_adapters.services.sweep_cursor import SweepCursor, position
from owm_adapters.services.sweep_failures import SweepFailures
from owm_adapters.services.workers import Loop
from owm_core.errors import (
    DomainError,
    InvalidTransition,
    InvalidValue,
    LightningUnavailable,
    StoreUnavailable,
    must_exist,
)
from owm_core.governance.contributions import BountyStatus
from owm_core.market.tasks import Settlement, SettlementKind, TaskState
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.keysend import KeysendKey, is_keysend_refused
from owm_core.payments.lightning import Invoice
from owm_core.payments.outbox import (
    BOUNTY_TASK_PREFIX,
    INVOICE_EXPIRY_S,
    Action,
    after_pay,
    bounty_payment_id,
    bounty_task_id,
    decide,
    is_due,
    retry_delay_s,
    reward_amount_msat,
    reward_payment_id,
    unavailable,
)
from owm_core.payments.records import (
    AttemptOutcome,
    PaymentState,
    RewardPayment,
    attempt_record,
    fail,
)
from owm_core.payments.rewards import BPS
from owm_core.ports.clock import Clock
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import PaymentRepository, Repositories

log = logging.getLogger(__name__)

DEFAULT_SWEEP_S = 2.0
RECONCILE_LIMIT = 100_000
"""Settled tasks one reconciliation looks at: the next page after its cursor."""
BATCH = 100
"""In-flight payments one sweep looks up (the next page after its cursor), and half the
payments it acts on; owed payments are read ten times as many at a time."""
_OWED = (PaymentState.PENDING, PaymentState.FAILED)


def _no_checkpoint(_name: str) -> None:
    return None


class LedgerInvoiceSource:
    """Invoices from the embedded ledger: the payee's simulated node issues and signs them."""

    def __init__(self, ledger: SimLedger) -> None:
        self.ledger = ledger

    def invoice_for(self, payee_pubkey: str, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """An invoice from the payee's simulated node; LightningUnavailable if it has none."""
        try:
            return self.ledger.create_invoice(payee_pubkey, amount_msat, memo[:600], expiry_s)
        except InvalidValue as exc:
            if exc.field == "node":
                raise LightningUnavailable(
                    "the payee's Lightning node cannot issue invoices (not in the embedded ledger)"
                ) from None
            raise


@attrs.define
class _Waiting:
    """A settlement whose outbox record could not be made yet (payee unreachable)."""

    settlement: Settlement
    failures: int = 0
    next_at: int = 0


class NodeInvoiceDesk(Protocol):
    """Where nodes on LND/CLN hand in the invoices of their payouts (SRS-LN-04): what the
    control plane (gRPC ``PendingPayouts`` / ``SubmitInvoice``) needs of it."""

    def pending_for(self, query_envelope: bytes) -> list[PendingPayout]:
        """The payouts awaiting an invoice from the signer's registered Lightning node."""
        ...

    def submit(self, invoice_envelope: bytes) -> tuple[str, Invoice]:
        """Accept a node's invoice for one pending payout; the payout's id and the invoice."""
        ...


def _settlement_fields(settlement: Settlement) -> dict[str, object]:
    """A settlement's task and node as structured log fields."""
    return {"task_id": settlement.task_id, "node_id": settlement.node_id}


class PayoutDispatcher:
    """Pays rewards and bounties exactly once through the outbox (see the module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        lightning: Lightning,
        invoices: InvoiceSource,
        clock: Clock,
        *,
        sweep_s: float = DEFAULT_SWEEP_S,
        checkpoint: Callable[[str], None] = _no_checkpoint,
        reconcile_every_s: float | None = None,
        keysend_key: KeysendKey | None = None,
        keysend: bool = True,
    ) -> None:
        """``reconcile_every_s``: with several coordinators on one store (SRS-COORD-05) tasks
        settle on coordinators whose dispatcher does not run, so the one that runs it
        reconciles this often (None: only when it starts, one coordinator). ``keysend_key``
        and ``keysend``: see :class:`~owm_adapters.services.payout_sending.PayoutSender`."""
        self.repositories = repositories
        self.lightning = lightning
        self.invoices = invoices
        self.clock = clock
        self.sweep_s = sweep_s
        self.checkpoint = checkpoint
        self._lock = threading.RLock()  # the outbox: one payment step at a time
        self._queue_lock = threading.Lock()  # settlements waiting for their record
        self._waiting: list[_Waiting] = []
        self._loop = Loop("owm-payouts", self.sweep, sweep_s, first=self.reconcile)
        self.reconcile_every_s = reconcile_every_s
        self._reconciled_at = 0.0
        self._settled: SweepCursor[int] = SweepCursor(0)
        self._in_flight: SweepCursor[int] = SweepCursor(0)
        self._owed: SweepCursor[int] = SweepCursor(0)
        self._failures = SweepFailures(log)
        self.sender = PayoutSender(lightning, keysend_key, keysend)
        self.records = PayeeRecords(repositories.payments, invoices, clock, self.sender,
                                    network_node=repositories.nodes.has_ln_pubkey,
                                    checkpoint=lambda name: self.checkpoint(name),
                                    repositories=repositories)
        self.renewals = InvoiceRenewals(repositories, lightning, invoices, clock,
                                        checkpoint=lambda name: self.checkpoint(name),
                                        keysend_key=keysend_key, keysend=keysend,
                                        network_node=repositories.nodes.has_ln_pubkey)

    @property
    def payments(self) -> PaymentRepository:
        """The outbox."""
        return self.repositories.payments

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker: reconcile settled tasks once, then sweep every ``sweep_s``."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker (what is queued in memory is found again by the next reconcile)."""
        self._loop.stop(timeout_s)

    # -- enqueueing --------------------------------------------------------------------------

    def on_settlement(self, settlement: Settlement) -> None:
        """The coordinator's settlement listener: queue a paid settlement for the worker."""
        if settlement.kind is not SettlementKind.SETTLE or settlement.amount_msat <= 0:
            return
        if self.reconcile_every_s is not None and not self._loop.running:
            return  # another coordinator pays (SRS-COORD-05): its reconcile finds the task
        with self._queue_lock:
            self._waiting.append(_Waiting(settlement))
        self._loop.wake()

    def reconcile(self, limit: int = RECONCILE_LIMIT) -> int:
        """Enqueue the settled tasks with no reward record yet among the next ``limit`` after
        the last one looked at (a :class:`SweepCursor`: settled tasks stay settled, and each is
        looked at within ``ceil(settled / limit) + 1`` calls); return how many (SRS-LN-04,
        SRS-COORD-05: how a task settled on another coordinator gets paid)."""
        found = 0
        settled = functools.partial(self.repositories.tasks.in_state_after, TaskState.SETTLED)
        for _, task in self._settled.page(settled, position, limit):
            if not task.node_id or not task.price_msat:
                continue
            payment_id = reward_payment_id(task.task_id, task.node_id)
            if any(p.payment_id == payment_id for p in self.payments.for_task(task.task_id)):
                continue
            settlement = Settlement(
                task.task_id, task.node_id, SettlementKind.SETTLE, task.price_msat
            )
            with self._queue_lock:
                if any(w.settlement == settlement for w in self._waiting):
                    continue
                self._waiting.append(_Waiting(settlement))
            found += 1
        return found

    def enqueue_reward(self, settlement: Settlement) -> RewardPayment | None:
        """Make the outbox record of one settlement (idempotent); None if nothing is owed.

        The reward is price × reliability × stake bonus (SRS-LN-04), capped at the price: the
        escrow funded the price, never more. The node's invoice is asked
        for first (LightningUnavailable propagates: the caller retries with backoff); the
        record is stored pending with the invoice's payment hash before anything is paid.
        """
        payment_id = reward_payment_id(settlement.task_id, settlement.node_id)
        with self._lock:
            for existing in self.payments.for_task(settlement.task_id):
                if existing.payment_id == payment_id:
                    return existing
            node = must_exist(
                self.repositories.nodes.get(settlement.node_id),
                f"node {settlement.node_id} is not registered; reward not paid",
            )
            stake = self.repositories.stakes.get(node.public_key)
            bonus = stake.bonus_bps if stake is not None else BPS
            amount = reward_amount_msat(settlement.amount_msat, node.reliability_ppm, bonus)
            if amount <= 0:
                log.info("task %s: reward of node %s rounds to 0 msat", settlement.task_id,
                         settlement.node_id, extra=_settlement_fields(settlement))
                return None
            pubkey, memo = node.ln_node_uri.pubkey, f"OWM reward {settlement.task_id}"
            invoice = self.invoices.invoice_for(pubkey, amount, memo, INVOICE_EXPIRY_S)
            return self.records.record(payment_id, settlement.task_id, settlement.node_id,
                                       invoice, (pubkey, memo))

    def bounty_merged(self, bounty_id: str, pr_ref: str, payee: str) -> RewardPayment:
        """A merged pull request earns its bounty: enqueue the payout in the outbox (SRS-LN-08).

        ``payee`` is the contributor's BOLT11 invoice for exactly the bounty amount, or the
        public key (or ``pubkey@host:port``) of their Lightning node, which is then asked for
        an invoice. Idempotent: a bounty already enqueued returns its record. The bounty turns
        ``paid`` in the same transaction that records the payment's success.
        """
        bounty = must_exist(self.repositories.bounties.get(bounty_id), f"no bounty {bounty_id}")
        payment_id = bounty_payment_id(bounty_id)
        task_id = bounty_task_id(bounty_id)
        with self._lock:
            for existing in self.payments.for_task(task_id):
                if existing.payment_id == payment_id:
                    return existing
            if bounty.status is not BountyStatus.OPEN:
                raise InvalidTransition(f"bounty {bounty_id} is {bounty.status.value}")
            amount = bounty.amount_sat * 1_000
            memo = f"OWM bounty {bounty_id} for {pr_ref}"
            recorded = self.records.to_payee(payee, payment_id, task_id, amount, memo)
        log.info("bounty %s (%s): payout of %d msat enqueued as %s", bounty_id, pr_ref, amount,
                 recorded.payment_hash, extra=payment_fields(recorded))
        self._loop.wake()
        return recorded

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        """Enqueue one payment of ``amount_msat`` to ``payee`` (a BOLT11 invoice for exactly
        that amount, or a Lightning node's public key, asked for an invoice) under the
        deterministic ``payment_id``: a second call returns the first record, so whatever asks
        twice (a redelivered event, a timer after a crash) pays once (SRS-LN-08)."""
        with self._lock:
            for existing in self.payments.for_task(task_id):
                if existing.payment_id == payment_id:
                    return existing
            recorded = self.records.to_payee(payee, payment_id, task_id, amount_msat, memo)
        self._loop.wake()
        return recorded

    # -- paying ------------------------------------------------------------------------------

    def sweep(self) -> int:
        """Enqueue what settled, then act on the due payments; return how many were acted on.

        It looks up the next :data:`BATCH` in-flight payments and acts on the due ones among
        the next ``10 × BATCH`` owed ones (at most ``2 × BATCH`` in all), each page after where
        the previous sweep got to (:class:`SweepCursor`), so payments owed for good (forfeited),
        long in flight or failing a step (logged) never hide later ones (SRS-LN-04)."""
        every = self.reconcile_every_s
        if every is not None and time.monotonic() - self._reconciled_at >= every:
            self._reconciled_at = time.monotonic()
            self.reconcile()
        self._enqueue_waiting()
        now = self.clock.now()
        acted = 0
        flying = functools.partial(self.payments.in_states_after, (PaymentState.IN_FLIGHT,))
        in_flight = self._in_flight.page(flying, position, BATCH)
        owed = functools.partial(self.payments.in_states_after, _OWED)
        due = [row for row in self._owed.page(owed, position, 10 * BATCH) if is_due(row[1], now)]
        room = 2 * BATCH - len(in_flight)
        if len(due) > room:  # the rest of this page first, next time
            self._owed.go_on_after(due[room - 1][0])
            due = due[:room]
        for _, payment in [*in_flight, *due]:
            if self._loop.stopping:
                break
            self._failures.attempt(payment.payment_hash, f"payout {payment.payment_id}",
                                   functools.partial(self.process, payment.payment_hash))
            acted += 1
        return acted

    def _enqueue_waiting(self) -> None:
        now = self.clock.now()
        with self._queue_lock:
            batch, self._waiting = self._waiting, []
        keep: list[_Waiting] = []
        for item in batch:
            if item.next_at > now:
                keep.append(item)
                continue
            try:
                self.enqueue_reward(item.settlement)
            except (LightningUnavailable, StoreUnavailable) as exc:
                # Kept in memory for the next sweep: a database failover loses no settlement.
                item.failures += 1
                item.next_at = now + retry_delay_s(item.failures)
                log.warning("task %s: reward of node %s not enqueued yet (%s); retry in %d s",
                            item.settlement.task_id, item.settlement.node_id, exc,
                            item.next_at - now, extra=_settlement_fields(item.settlement))
                keep.append(item)
            except DomainError:
                log.exception("task %s: reward of node %s not enqueued",
                              item.settlement.task_id, item.settlement.node_id)
        with self._queue_lock:
            self._waiting = keep + self._waiting

    def process(self, payment_hash: str) -> RewardPayment | None:
        """One step for one payment: look up if it may have gone out, then record or pay."""
        with self._lock:
            payment = self.payments.get(payment_hash)
            if payment is None:
                return None
            now = self.clock.now()
            prepared = self.renewals.prepare(payment, now)
            if prepared.renewed:  # its invoice expired unpaid: the next step pays the new one
                return self.process(prepared.payment.payment_hash)
            if prepared.refused:  # Lightning down, or no new invoice for an expired one
                return self._store(prepared.payment, AttemptOutcome.FAILED, now)
            decision = decide(payment, prepared.looked_up, now, prepared.earlier)
            if decision.action is Action.NOTHING:
                return decision.payment
            if decision.action is Action.RECORD:
                outcome = (
                    AttemptOutcome.SUCCEEDED if decision.payment.settled else None
                )
                return self._store(decision.payment, outcome, now)
            refused = self.sender.refusal(decision.payment, now)
            if refused is not None:  # nothing is sent under a hash that is not the record's
                return self._store(refused, AttemptOutcome.FAILED, now)
            sending = self._store(decision.payment, AttemptOutcome.STARTED, now)
            self.checkpoint("before-pay")
            try:
                result = self.sender.send(sending)
            except (LightningUnavailable, InvalidValue) as exc:  # down, or the request refused
                later = self.clock.now()
                failed = unavailable(sending, later, str(exc)) if isinstance(
                    exc, LightningUnavailable) else fail(sending, later, f"refused: {exc}")
                log.warning("payment %s: %s; retry in %d s", payment_hash, failed.last_error,
                            retry_delay_s(failed.attempts), extra=payment_fields(failed))
                return self._store(failed, AttemptOutcome.FAILED, later)
            self.checkpoint("after-pay")
            later = self.clock.now()
            after = after_pay(sending, result, later)
            if after.state is PaymentState.IN_FLIGHT:
                return after
            stored = self._store(
                after,
                AttemptOutcome.SUCCEEDED if after.settled else AttemptOutcome.FAILED,
                later,
            )
            if stored.settled:
                self.checkpoint("after-success")
            elif is_keysend_refused(stored):
                log.error("payment %s (%s): the payee's node %s refuses keysend; keysend is given"
                          " up for this payout, which waits for an invoice from that node (it "
                          "must hand one in, or be paid by hand)", stored.payment_hash,
                          stored.payment_id, stored.payee_pubkey, extra=payment_fields(stored))
            return stored

    def _store(
        self, payment: RewardPayment, outcome: AttemptOutcome | None, now: int
    ) -> RewardPayment:
        """Store the record, its log line and (for a paid bounty) the bounty, in one commit."""
        with self.repositories.atomic():
            stored = self.payments.upsert(payment)
            if outcome is not None:
                self.payments.log_attempt(attempt_record(stored, outcome, now))
            if stored.settled:
                withdraw_request(self.repositories, stored)  # no node invoices it any more
            if stored.settled and stored.task_id.startswith(BOUNTY_TASK_PREFIX):
                self._mark_bounty_paid(stored.task_id.removeprefix(BOUNTY_TASK_PREFIX))
        log.info(
            "payment %s %s: task %s node %s amount %d msat attempt %d at %d%s",
            stored.payment_hash, (outcome.value if outcome else stored.state.value),
            stored.task_id, stored.node_id, stored.amount_msat, stored.attempts, now,
            f" error: {stored.last_error}" if stored.state is PaymentState.FAILED else "",
            extra=payment_fields(stored),
        )
        return stored

    def _mark_bounty_paid(self, bounty_id: str) -> None:
        bounty = self.repositories.bounties.get(bounty_id)
        if bounty is not None and bounty.status is BountyStatus.OPEN:
            self.repositories.bounties.save(attrs.evolve(bounty, status=BountyStatus.PAID))


def payment_counts(payments: PaymentRepository) -> dict[str, int]:
    """Outbox records by state, for the payments gauge (one count query)."""
    counts = payments.counts()
    return {state.value: counts.get(state, 0) for state in PaymentState}


__all__ = [
    "LedgerInvoiceSource",
    "NodeInvoiceDesk",
    "PayoutDispatcher",
    "payment_counts",
]
