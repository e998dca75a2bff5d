"""The coordinator's books balance over any stream of tasks: what nodes are paid, plus the
treasury's shares and refunds, equals what clients paid in plus what the network budgets drew
— never more (funded work only).

A hypothesis state machine drives :class:`TaskFunding` over the in-memory store: clients top up
their balances by paying invoices, client and network tasks are submitted (some refused: over
the cap, short of balance, past the budget), replicas settle at any price up to the funded
maximum or forfeit, sweeps run at any moment, periods pass and unfinished tasks expire.
"""

from __future__ import annotations

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from owm_adapters.control_plane.submitter import signed_balance_request
from owm_adapters.services.coordinator.funding import MAX_OPEN_TOP_UPS, Funder, TaskFunding
from owm_adapters.services.coordinator.shared import (
    NETWORK_BUDGET,
    QUERY_BUDGET,
    ClientGuards,
    FundingConfig,
    ServiceConfig,
)
from owm_adapters.storage.memory import memory_repositories
from owm_core.coordination.endings import end_task
from owm_core.coordination.tasks import siblings, submit_task
from owm_core.errors import InsufficientFunds, InvalidValue, PolicyViolation
from owm_core.identity.keys import Identity
from owm_core.market.funding import Payer, TopUpState
from owm_core.market.tasks import TaskRequest, TaskState, VerificationPolicy
from owm_core.nodes.tiers import Tier
from owm_core.payments.lightning import Invoice, InvoiceState
from tests.server.harness import COORDINATOR_KEY

CLIENTS = [Identity.from_seed(bytes([0x70 + i]) * 32) for i in range(3)]
CAP = 40_000
POLICY = VerificationPolicy(redundancy=3)
CONFIG = FundingConfig(
    max_price_msat=CAP, budgets_msat={NETWORK_BUDGET: 200_000, QUERY_BUDGET: 90_000},
    period_s=1_000, task_ttl_s=1_500,
)


@attrs.define
class Clock:
    t: int = 1_800_000_000

    def now(self) -> int:
        return self.t

    def monotonic_ms(self) -> int:
        return self.t * 1000


@attrs.define
class Treasury:
    """The treasury's invoices: created on request, settled when the test pays them."""

    clock: Clock
    invoices: dict[str, Invoice] = attrs.Factory(dict)

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        payment_hash = f"{len(self.invoices) + 1:064x}"
        invoice = Invoice(f"lnbcrt{len(self.invoices) + 1}", payment_hash, amount_msat,
                          expiry_s, self.clock.now(), InvoiceState.OPEN)
        self.invoices[payment_hash] = invoice
        return invoice

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        return self.invoices[payment_hash]


class Books(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.repos = memory_repositories()
        self.treasury = Treasury(self.clock)
        self.funding = TaskFunding(
            self.repos, self.treasury, self.clock, CONFIG, POLICY,  # type: ignore[arg-type]
            ClientGuards.sized_by(ServiceConfig(funding=CONFIG)),
            coordinator_key=COORDINATOR_KEY.public_key_hex,
        )
        self.collected = 0
        self.drawn = 0
        self.tasks: list[str] = []
        self.max_price: dict[str, int] = {}

    # -- money in ----------------------------------------------------------------------------

    @rule(client=st.integers(0, len(CLIENTS) - 1), amount=st.integers(1, 150_000),
          pay=st.booleans())
    def top_up(self, client: int, amount: int, pay: bool) -> None:
        signed = signed_balance_request(CLIENTS[client], amount, self.clock.now(),
                                        coordinator_key=COORDINATOR_KEY.public_key_hex)
        raw = bytes(signed.request_envelope)
        key = CLIENTS[client].public_key_hex
        try:
            view = self.funding.balance_request(raw)
        except PolicyViolation:
            # refused only while the key already holds the most unpaid invoices it may
            assert len(self.repos.funding.open_top_ups(key, MAX_OPEN_TOP_UPS)) == MAX_OPEN_TOP_UPS
            return
        assert view.top_up is not None
        if pay:
            invoice = self.treasury.invoices[view.top_up.payment_hash]
            self.treasury.invoices[invoice.payment_hash] = attrs.evolve(
                invoice, state=InvoiceState.SETTLED
            )
            self.collected += amount

    @rule(client=st.one_of(st.none(), st.integers(0, len(CLIENTS) - 1)),
          budget=st.sampled_from([NETWORK_BUDGET, QUERY_BUDGET]),
          price=st.integers(0, CAP + 10_000))
    def submit(self, client: int | None, budget: str, price: int) -> None:
        task_id = f"t{len(self.tasks) + len(self.max_price) + 1}"
        funder = Funder.network(budget) if client is None else Funder.client(
            CLIENTS[client].public_key_hex
        )
        request = TaskRequest(
            task_id=task_id, task_type="inference", input_schema_id="s", input_schema_version=1,
            min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False,
            max_price_msat=price,
        )
        if client is not None:
            self.funding.credit_paid_top_ups(funder.name)
        before = self.repos.funding.budget(budget)
        try:
            with self.repos.atomic():
                submit_task(self.repos, request, POLICY)
                escrow = self.funding.open_escrow(funder, request)
        except (InsufficientFunds, PolicyViolation, InvalidValue):
            assert self.repos.tasks.get(f"{task_id}:0") is None
            assert self.repos.funding.escrow(task_id) is None
            assert self.repos.funding.budget(budget) == before
            self.max_price[task_id] = -1  # refused; keeps ids unique
            return
        assert price <= CAP
        if escrow.payer is Payer.NETWORK:
            self.drawn += escrow.funded_msat
        self.tasks.append(task_id)
        self.max_price[task_id] = price

    # -- work done ---------------------------------------------------------------------------

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def judge(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.tasks))
        for replica in siblings(self.repos, task_id):
            if replica.state is not TaskState.SUBMITTED:
                continue
            outcome = data.draw(st.sampled_from(["settle", "forfeit", "wait"]))
            if outcome == "wait":
                continue
            price = data.draw(st.integers(0, self.max_price[task_id]))
            state = TaskState.SETTLED if outcome == "settle" else TaskState.FORFEITED
            self.repos.tasks.save(attrs.evolve(
                replica, state=state, node_id="node-" + replica.task_id[-1], price_msat=price,
            ))  # fmt: skip
        if data.draw(st.booleans()):
            self.funding.reconcile(task_id)

    @rule(seconds=st.sampled_from([0, 7, 600, 1_000]))
    def sweep(self, seconds: int) -> None:
        self.clock.t += seconds
        self.funding.sweep(float(self.clock.t * 10), self.end_overdue)

    def end_overdue(self, task_id: str) -> None:
        """What the market does for a task past ``task_ttl_s``: end what still waits."""
        end_task(self.repos, task_id, self.clock.now(), POLICY, b"seed", overdue=True)

    # -- the books ---------------------------------------------------------------------------

    @invariant()
    def paid_to_nodes_plus_shares_plus_refunds_equals_collected_plus_drawn(self) -> None:
        escrows = [e for t in self.tasks if (e := self.repos.funding.escrow(t)) is not None]
        assert len(escrows) == len(self.tasks)
        nodes = sum(e.paid_to_nodes_msat for e in escrows)
        shares = sum(e.treasury_share_msat for e in escrows)
        held = sum(e.held_msat for e in escrows)
        network_refunds = sum(e.refunded_msat for e in escrows if e.payer is Payer.NETWORK)
        balances = [self.repos.funding.balance(c.public_key_hex) for c in CLIENTS]
        available = sum(b.available_msat for b in balances if b is not None)
        credited = sum(b.funded_msat for b in balances if b is not None)
        assert credited <= self.collected  # a top-up is never credited twice or unpaid
        assert credited + self.drawn == (
            nodes + shares + network_refunds + available + held
        )
        assert nodes + shares <= self.collected + self.drawn  # never more
        for e in escrows:
            assert e.paid_to_nodes_msat <= len(e.settled_replica_ids) * self.max_price[e.task_id]

    @invariant()
    def every_paid_top_up_is_credited_once_swept(self) -> None:
        if self.repos.funding.open_top_ups():
            return
        paid = sum(
            i.amount_msat for i in self.treasury.invoices.values()
            if i.state is InvoiceState.SETTLED
        )
        balances = [self.repos.funding.balance(c.public_key_hex) for c in CLIENTS]
        assert sum(b.funded_msat for b in balances if b is not None) == paid
        assert all(t.state is not TopUpState.OPEN for t in self.repos.funding.open_top_ups())


Books.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_the_books_balance_over_random_task_streams = Books.TestCase
