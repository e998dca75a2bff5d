"""Funded work only: who pays for each task, and the books of its escrow (SRS-LN-04/05/07).

:class:`TaskFunding` is the market's collaborator for money; the rules are
:mod:`owm_core.market.funding`. Every task has a paying :class:`Funder`:

* **Clients** sign their task over the control plane (a ``task_submission`` envelope,
  :func:`~owm_core.coordination.submissions.open_submission`) and pay from a prepaid balance
  of that key: :meth:`TaskFunding.open_escrow` debits ``replicas × (price + treasury share)``
  in the same transaction that stores the task, or refuses it (``InsufficientFunds`` naming
  the msat missing) and nothing is stored or dispatched. A balance is topped up by paying a
  treasury invoice (:meth:`TaskFunding.balance_request`); the top-up is credited exactly
  once, when the treasury's Lightning node reports it settled (checked at every balance
  request and submission of that key).
* **The network** (FL rounds, the devnet's sample traffic, query tasks) draws on a named
  treasury budget per period: ``network`` (FL rounds and operator keys listed in
  ``[funding] network_submitters``) or ``queries`` (the conglomerate's reader tasks: the API
  consumer paid the treasury through its key's or L402 token's quota, and the treasury buys
  the readers' work from this budget). A draw past the period's budget is refused.
* **Prices are capped** at ``[funding] max_price_msat`` for every task, whoever submits it.

Settlement: once a task's replicas are judged, :meth:`TaskFunding.reconcile` charges the escrow
each settled replica's negotiated price (never above the funded maximum) plus the treasury's
share, and closes it when every replica is settled or forfeited, refunding the rest to the
client's balance (or leaving it with the treasury). Every task ends
(:mod:`owm_core.market.endings`): replicas no node takes within ``[tasks] queue_timeout_s``
expire with their task or are dropped while a sibling runs; a task still unfinished
``task_ttl_s`` after submission has every waiting replica ended the same way (the backstop,
:meth:`TaskFunding.sweep`), so its escrow closes. Reconciling runs after every proof and,
for a crash between a proof and its charge, on every market sweep; it is idempotent, each
step one transaction, so a restart loses nothing and pays nothing twice. The payout dispatcher
never pays a node more than the price its escrow released.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import attrs

from owm_adapters.services.coordinator.shared import (
    NETWORK_BUDGET,
    QUERY_BUDGET,
    ClientGuards,
    FundingConfig,
)
from owm_adapters.services.sweep_cursor import SweepCursor, position
from owm_core.coordination.submissions import open_balance_request, open_submission
from owm_core.coordination.tasks import replicas_funded, siblings
from owm_core.errors import DomainError, InvalidValue, PolicyViolation, RateLimited
from owm_core.identity.envelopes import Envelope
from owm_core.market.funding import (
    Balance,
    Escrow,
    Payer,
    PeriodBudget,
    TopUp,
    TopUpState,
    check_price,
    close_escrow,
    credit_top_up,
    debit_balance,
    escrow_required_msat,
    fund_client_task,
    fund_network_task,
    refund_to_balance,
    settle_replica,
)
from owm_core.market.tasks import TERMINAL_STATES, TaskRequest, TaskState, VerificationPolicy
from owm_core.payments.lightning import InvoiceState
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

MAX_OPEN_TOP_UPS = 10
"""Unpaid top-up invoices one key may hold; more are refused (no invoice spam)."""
TOP_UP_RETRY_S = 60
"""What a request refused at the total bound of open top-ups is told to wait, in seconds."""
SWEEP_EVERY_S = 5.0
SWEEP_LIMIT = 1_000
"""Open escrows, and open top-ups, one sweep looks at: the next page of each after its
:class:`~owm_adapters.services.sweep_cursor.SweepCursor`, so none waits behind stuck ones."""
@attrs.frozen
class Funder:
    """Who pays for one task: a client's submitter key, or a named treasury budget."""

    payer: Payer
    name: str

    @classmethod
    def client(cls, public_key: str) -> Funder:
        """A client paying from the prepaid balance of ``public_key``."""
        return cls(Payer.CLIENT, public_key)

    @classmethod
    def network(cls, budget: str = NETWORK_BUDGET) -> Funder:
        """The treasury, drawing on its budget ``budget`` for the current period."""
        return cls(Payer.NETWORK, budget)


NETWORK = Funder.network(NETWORK_BUDGET)
QUERIES = Funder.network(QUERY_BUDGET)


@attrs.frozen
class BalanceView:
    """A submitter's balance after a balance request, and the top-up invoice it asked for."""

    balance: Balance
    top_up: TopUp | None = None


@attrs.define(eq=False)
class TaskFunding:
    """Funders, escrows, balances and budgets of one coordinator (see the module docstring)."""

    repositories: Repositories
    lightning: Lightning
    clock: Clock
    config: FundingConfig
    policy: VerificationPolicy
    #: Clients' nonces: never in the nodes' replay guard (SRS-SEC-03).
    guards: ClientGuards
    #: This coordinator's public key, which a submitter's signature must be for (SRS-SEC-03).
    coordinator_key: str = attrs.field(kw_only=True)
    #: Top-up crediting and reconciliation, one at a time.
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    #: Top-up invoices, issued one at a time (the total bound holds under concurrency).
    _issuing: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _next_sweep: float = attrs.field(init=False, default=0.0)
    _escrows: SweepCursor[int] = attrs.field(init=False, factory=lambda: SweepCursor(0))
    _top_ups: SweepCursor[int] = attrs.field(init=False, factory=lambda: SweepCursor(0))

    # -- who pays ----------------------------------------------------------------------------

    def authenticate(self, raw: bytes, request: TaskRequest, input_data: bytes) -> Funder:
        """The paying funder of a task submitted over the control plane.

        The price cap is checked first (``InvalidValue`` naming it), then the submitter's
        signature over this very task; an operator key of ``network_submitters`` draws on the
        network budget, any other key on its prepaid balance, which must exist and cover the
        escrow (``InsufficientFunds`` naming what is missing). The nonce is recorded only for
        a signer that can pay, in the clients' guards (:class:`ClientGuards`), so strangers
        fill neither the nodes' replay guard nor the paying clients'.
        """
        check_price(request.max_price_msat, self.config.rules())
        envelope = open_submission(raw, request, input_data, self.coordinator_key)
        signer = envelope.signer
        balance = None
        if signer in self.config.network_submitters:
            funder = NETWORK
        else:
            self.credit_paid_top_ups(signer)
            funder = Funder.client(signer)
            balance = self.repositories.funding.balance(signer)
            debit_balance(
                balance or Balance(signer), self.escrow_msat(request, funder), request.task_id
            )
        self.guards.accept(envelope, balance, self.clock.now())
        return funder

    def accept_nonce(self, envelope: Envelope) -> None:
        """Record a verified client envelope's nonce in the clients' guard its signer's balance
        picks (:class:`ClientGuards`); ``ReplayRejected`` for a replay, ``ReplayGuardFull``
        (retry later) for a full guard."""
        balance = self.repositories.funding.balance(envelope.signer)
        self.guards.accept(envelope, balance, self.clock.now())

    def escrow_msat(self, request: TaskRequest, funder: Funder) -> int:
        """What the task's escrow must hold: every payable replica's price and share."""
        rules = self.config.rules(funder.name)
        replicas = replicas_funded(self.policy)
        return escrow_required_msat(request.max_price_msat, replicas, funder.payer, rules)

    def open_escrow(self, funder: Funder, request: TaskRequest) -> Escrow:
        """Fund a task being stored: debit its client's balance or draw on its budget.

        Call inside the transaction that stores the task, so both happen or neither; refused
        (``InvalidValue`` over the price cap, ``InsufficientFunds`` short of balance,
        ``PolicyViolation`` past the period's budget) before anything is dispatched.
        """
        rules = self.config.rules(funder.name)
        price = check_price(request.max_price_msat, rules)
        replicas = replicas_funded(self.policy)
        now = self.clock.now()
        funding = self.repositories.funding
        if funder.payer is Payer.CLIENT:
            required = escrow_required_msat(price, replicas, Payer.CLIENT, rules)
            balance = funding.balance(funder.name) or Balance(funder.name)
            funding.save_balance(debit_balance(balance, required, request.task_id))
            escrow = fund_client_task(
                request.task_id, price, replicas, required, rules, funder=funder.name,
                opened_at=now,
            )
        else:
            if funder.name not in self.config.budgets_msat:
                raise PolicyViolation(f"no treasury budget named {funder.name!r}")
            drawn = funding.budget(funder.name) or PeriodBudget(now // rules.period_s)
            budget, escrow = fund_network_task(
                drawn, request.task_id, price, replicas, now, rules, funder=funder.name
            )
            funding.save_budget(funder.name, budget)
        funding.add_escrow(escrow)
        return escrow

    # -- balances ----------------------------------------------------------------------------

    def balance_request(self, raw: bytes) -> BalanceView:
        """Answer a signed balance request: credit paid top-ups, and with ``amount_msat > 0``
        issue a treasury invoice that tops the balance up by that amount once paid.

        Bounded: at most :data:`MAX_OPEN_TOP_UPS` unpaid invoices per key
        (``PolicyViolation``), ``max_top_up_msat`` per invoice (``InvalidValue`` naming the
        limit) and, since keys cost nothing, ``max_open_top_ups`` unpaid, unexpired invoices of
        every key together (``RateLimited``: the treasury's node is not made to hold more).
        """
        envelope, body = open_balance_request(raw, self.coordinator_key)
        key = envelope.signer
        if body.amount_msat > self.config.max_top_up_msat:
            raise InvalidValue(
                "amount_msat", f"must be at most {self.config.max_top_up_msat} msat per top-up"
            )
        self.credit_paid_top_ups(key)  # first: a key that just paid is a paying client now
        self.accept_nonce(envelope)
        top_up = self._issue_top_up(key, body.amount_msat) if body.amount_msat > 0 else None
        balance = self.repositories.funding.balance(key) or Balance(key)
        return BalanceView(balance, top_up)

    def _issue_top_up(self, key: str, amount_msat: int) -> TopUp:
        """A new treasury invoice topping ``key``'s balance up, within the per-key and total
        bounds; one at a time, so the total is never passed by requests racing each other."""
        funding = self.repositories.funding
        if len(funding.open_top_ups(key, MAX_OPEN_TOP_UPS)) >= MAX_OPEN_TOP_UPS:
            raise PolicyViolation(
                f"{MAX_OPEN_TOP_UPS} unpaid top-up invoices are open for this key; pay or "
                "let them expire first"
            )
        cap = self.config.max_open_top_ups
        with self._issuing:
            if funding.count_payable_top_ups(self.clock.now()) >= cap:
                raise RateLimited(
                    f"the treasury holds {cap} unpaid top-up invoices, its limit "
                    "([funding] max_open_top_ups); retry once some are paid or expired",
                    retry_after_s=TOP_UP_RETRY_S,
                )
            invoice = self.lightning.create_invoice(
                amount_msat, "OWM prepaid task balance", self.config.top_up_expiry_s
            )
            top_up = TopUp(
                payment_hash=invoice.payment_hash, public_key=key,
                amount_msat=invoice.amount_msat, bolt11=invoice.bolt11,
                created_at=invoice.created_at, expires_at=invoice.expires_at,
            )
            funding.add_top_up(top_up)
        return top_up

    def credit_paid_top_ups(self, public_key: str | None = None) -> int:
        """Credit every open top-up of ``public_key`` (None: the sweep's next page of every
        key's, :data:`SWEEP_LIMIT` of them) its invoice reports settled, exactly once; close
        the ones the node reports canceled (expired unpaid). Returns how many were credited.
        Lightning being unreachable leaves them open for the next look, and the next sweep
        goes on after them, so a paid top-up is credited however many stay open before it
        (SRS-LN-07)."""
        funding = self.repositories.funding
        credited = 0
        with self._lock:
            if public_key is None:
                page = self._top_ups.page(funding.open_top_ups_after, position, SWEEP_LIMIT)
                top_ups = [top_up for _, top_up in page]
            else:
                top_ups = list(funding.open_top_ups(public_key, SWEEP_LIMIT))
            for top_up in top_ups:
                try:
                    state = self.lightning.lookup_invoice(top_up.payment_hash).state
                except DomainError as exc:
                    log.warning("top-up %s not looked up: %s", top_up.payment_hash, exc.code)
                    continue
                if state is InvoiceState.SETTLED:
                    self._credit(top_up)
                    credited += 1
                elif state is InvoiceState.CANCELED:
                    expired = attrs.evolve(top_up, state=TopUpState.EXPIRED)
                    self.repositories.funding.save_top_up(expired)
        return credited

    def _credit(self, top_up: TopUp) -> None:
        funding = self.repositories.funding
        with self.repositories.atomic():
            current = next(
                (t for t in funding.open_top_ups(top_up.public_key, SWEEP_LIMIT)
                 if t.payment_hash == top_up.payment_hash),
                None,
            )
            if current is None:  # credited meanwhile (another process): never twice
                return
            balance = funding.balance(top_up.public_key) or Balance(top_up.public_key)
            balance, credited = credit_top_up(balance, current)
            funding.save_balance(balance)
            funding.save_top_up(credited)
        log.info("top-up %s credited %d msat", top_up.payment_hash, top_up.amount_msat)

    # -- settlement --------------------------------------------------------------------------

    def reconcile(self, task_id: str) -> Escrow | None:
        """Bring a task's escrow up to date with its replicas (idempotent, one transaction).

        Each settled replica not yet charged is charged its negotiated price (never above the
        funded maximum) and the treasury's share; once every replica is settled or forfeited
        the escrow closes and its remainder goes back to the client's balance (network money
        simply stays with the treasury).
        """
        with self._lock, self.repositories.atomic():
            escrow = self.repositories.funding.escrow(task_id)
            if escrow is None or escrow.closed:
                return escrow
            replicas = siblings(self.repositories, task_id)
            for replica in replicas:
                if (
                    replica.state is TaskState.SETTLED
                    and replica.task_id not in escrow.settled_replica_ids
                ):
                    owed = min(replica.price_msat or 0, escrow.price_msat)
                    escrow, _ = settle_replica(escrow, replica.task_id, owed)
            refund = 0
            if replicas and all(r.state in TERMINAL_STATES for r in replicas):
                escrow, refund = close_escrow(escrow)
                if escrow.payer is Payer.CLIENT and refund:
                    balance = self.repositories.funding.balance(escrow.funder)
                    balance = balance or Balance(escrow.funder)
                    self.repositories.funding.save_balance(refund_to_balance(balance, refund))
            self.repositories.funding.save_escrow(escrow)
        if escrow.closed:
            log.info(
                "escrow of task %s closed: %d msat to nodes, %d msat treasury share, %d msat "
                "refunded to %s", task_id, escrow.paid_to_nodes_msat,
                escrow.treasury_share_msat, refund, escrow.payer.value,
            )
        return escrow

    def sweep(self, monotonic_s: float, end_overdue: Callable[[str], object]) -> int:
        """Every :data:`SWEEP_EVERY_S` seconds: have ``end_overdue`` end the waiting replicas
        of tasks past ``task_ttl_s`` (the market's :mod:`owm_core.coordination.endings`),
        reconcile open escrows (refunding ended tasks; also what a crash between a proof and
        its charge left behind) and credit paid top-ups. Returns how many escrows closed.

        Each sweep takes the next :data:`SWEEP_LIMIT` open escrows after the last one it saw
        (from the start again after a short page), so an escrow whose reconciliation keeps
        failing never hides the ones stored after it: every open escrow is reconciled within
        ``ceil(open / SWEEP_LIMIT) + 1`` sweeps (SRS-LN-04/05: its nodes paid, its client
        refunded)."""
        if monotonic_s < self._next_sweep:
            return 0
        self._next_sweep = monotonic_s + SWEEP_EVERY_S
        closed = 0
        now = self.clock.now()
        page = self._escrows.page(self.repositories.funding.open_escrows, position, SWEEP_LIMIT)
        for _, escrow in page:
            try:
                if now >= escrow.opened_at + self.config.task_ttl_s:
                    end_overdue(escrow.task_id)
                after = self.reconcile(escrow.task_id)
            except DomainError:
                log.exception("escrow of task %s not reconciled", escrow.task_id)
                continue
            closed += 1 if after is not None and after.closed else 0
        try:
            self.credit_paid_top_ups()
        except DomainError:
            log.exception("top-ups not credited")
        return closed

