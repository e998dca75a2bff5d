"""The payment dispatcher over the embedded ledger (SRS-LN-04/05/08, and its metrics)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.lightning.embedded import SimLedger, SimLightning
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher, payment_counts
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import (
    InvalidTransition,
    InvalidValue,
    LightningUnavailable,
    StoreUnavailable,
)
from owm_core.governance.contributions import BountyStatus, open_bounty
from owm_core.market.tasks import Settlement, SettlementKind, Task, TaskRequest, TaskState
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.lightning import Invoice, PaymentResult
from owm_core.payments.records import AttemptOutcome, PaymentState
from owm_core.ports.repositories import Repositories

PRICE_MSAT = 40_000
START = 1_800_000_000


class Clock:
    """A wall clock moved by hand."""

    def __init__(self) -> None:
        self.t = START

    def now(self) -> int:
        return self.t

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@attrs.define
class FlakyLightning:
    """The treasury's node, which can be switched off (every call: LightningUnavailable)."""

    inner: SimLightning
    down: bool = False
    pays: int = 0

    def _check(self) -> None:
        if self.down:
            raise LightningUnavailable("embedded: node down")

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        self._check()
        self.pays += 1
        return self.inner.pay(bolt11, max_fee_msat, timeout_s)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        self._check()
        return self.inner.lookup_payment(payment_hash)

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        self._check()
        return self.inner.lookup_keysend(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@attrs.define
class World:
    repositories: Repositories
    ledger: SimLedger
    treasury: FlakyLightning
    node_ln: str
    clock: Clock
    dispatcher: PayoutDispatcher

    def received_msat(self, pubkey: str | None = None) -> int:
        """What the payee holds on its channels (all of it came from the treasury)."""
        who = pubkey or self.node_ln
        with sqlite3.connect(self.ledger.path) as db:
            a = db.execute("SELECT COALESCE(SUM(balance_a_msat), 0) FROM sim_ln_channels"
                           " WHERE node_a = ?", (who,)).fetchone()[0]
            b = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                           " WHERE node_b = ?", (who,)).fetchone()[0]
        return int(a + b)


def add_node(repositories: Repositories, ledger: SimLedger, alias: str,
             reliability_ppm: int = 1_000_000) -> tuple[str, str]:
    """A registered node whose Lightning node lives in the ledger; (node_id, ln pubkey)."""
    ln = ledger.add_node(alias)
    node_id = f"node-{alias}"
    repositories.nodes.add(Node(
        node_id=node_id, public_key=(alias.encode().hex() * 64)[:64],
        ln_node_uri=LnNodeUri(ln, "127.0.0.1", 9735), tier=Tier.T1, vram_mb=0, ram_mb=1,
        bandwidth_mbps=1, registered_at=START, last_heartbeat=START,
        reliability_ppm=reliability_ppm,
    ))
    return node_id, ln


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    repositories = memory_repositories()
    clock = Clock()
    ledger = SimLedger(tmp_path / "lightning.sqlite3", clock=clock.now)
    treasury_key = ledger.add_node("treasury")
    treasury = FlakyLightning(ledger.lightning("treasury"))
    _, node_ln = add_node(repositories, ledger, "n1")
    ledger.open_channel(treasury_key, node_ln, 1_000_000)
    dispatcher = PayoutDispatcher(
        repositories, treasury, LedgerInvoiceSource(ledger), clock  # type: ignore[arg-type]
    )
    yield World(repositories, ledger, treasury, node_ln, clock, dispatcher)
    dispatcher.stop()


def settle(task_id: str, node_id: str = "node-n1", price: int = PRICE_MSAT) -> Settlement:
    return Settlement(task_id, node_id, SettlementKind.SETTLE, price)


def test_a_settled_task_is_paid_once_and_every_attempt_is_logged(world: World) -> None:
    world.dispatcher.on_settlement(settle("t1"))
    world.dispatcher.on_settlement(Settlement("t1", "node-n1", SettlementKind.FORFEIT, 0))
    world.dispatcher.sweep()
    world.dispatcher.on_settlement(settle("t1"))  # a replayed settlement
    world.dispatcher.sweep()
    world.dispatcher.sweep()

    (payment,) = world.repositories.payments.for_task("t1")
    assert payment.state is PaymentState.SUCCEEDED and payment.attempts == 1
    assert payment.amount_msat == PRICE_MSAT and payment.node_id == "node-n1"
    assert world.received_msat() == PRICE_MSAT
    log = world.repositories.payments.attempts(payment.payment_hash)
    assert [a.outcome for a in log] == [AttemptOutcome.STARTED, AttemptOutcome.SUCCEEDED]
    assert all((a.task_id, a.node_id, a.amount_msat, a.at) == ("t1", "node-n1", PRICE_MSAT, START)
               for a in log)


def test_the_reward_is_scaled_by_reliability_and_the_stake_bonus(world: World) -> None:
    add_node(world.repositories, world.ledger, "half", reliability_ppm=500_000)
    world.dispatcher.on_settlement(settle("t2", "node-half"))
    world.dispatcher.sweep()
    (payment,) = world.repositories.payments.for_task("t2")
    assert payment.amount_msat == PRICE_MSAT // 2
    assert payment.state is PaymentState.FAILED  # the node has no channel: no route yet


def test_with_lightning_down_payments_wait_with_backoff_and_are_paid_when_it_returns(
    world: World,
) -> None:
    world.treasury.down = True
    world.dispatcher.on_settlement(settle("t3"))
    world.dispatcher.sweep()
    (payment,) = world.repositories.payments.for_task("t3")
    assert payment.state is PaymentState.FAILED
    assert payment.last_error is not None and "unavailable" in payment.last_error

    world.clock.t += 4
    world.dispatcher.sweep()  # 5 s backoff not over: not even tried
    assert world.repositories.payments.get(payment.payment_hash).attempts == 1  # type: ignore[union-attr]
    world.clock.t += 1
    world.dispatcher.sweep()  # due, but the lookup fails: a failed attempt, 10 s backoff
    again = world.repositories.payments.get(payment.payment_hash)
    assert again is not None and again.state is PaymentState.FAILED and again.attempts == 2
    world.treasury.down = False
    world.clock.t += 9
    world.dispatcher.sweep()
    assert world.treasury.pays == 0
    world.clock.t += 1
    world.dispatcher.sweep()

    paid = world.repositories.payments.get(payment.payment_hash)
    assert paid is not None and paid.state is PaymentState.SUCCEEDED
    assert world.received_msat() == PRICE_MSAT
    outcomes = [a.outcome for a in world.repositories.payments.attempts(payment.payment_hash)]
    assert outcomes.count(AttemptOutcome.FAILED) >= 1 and outcomes[-1] is AttemptOutcome.SUCCEEDED
    assert world.treasury.pays == 1


def test_a_payment_found_paid_after_a_restart_is_recorded_and_not_sent_again(
    world: World,
) -> None:
    seen: list[str] = []

    def crash_after_pay(name: str) -> None:
        seen.append(name)
        if name == "after-pay":
            raise SystemExit("killed")

    world.dispatcher.checkpoint = crash_after_pay
    world.dispatcher.on_settlement(settle("t4"))
    with pytest.raises(SystemExit):
        world.dispatcher.sweep()
    (in_flight,) = world.repositories.payments.for_task("t4")
    assert in_flight.state is PaymentState.IN_FLIGHT
    assert seen == ["after-invoice", "after-record", "before-pay", "after-pay"]

    restarted = PayoutDispatcher(world.repositories, world.treasury,  # type: ignore[arg-type]
                                 LedgerInvoiceSource(world.ledger), world.clock)
    assert restarted.reconcile() == 0  # settled tasks with a record are not enqueued again
    restarted.sweep()
    paid = world.repositories.payments.get(in_flight.payment_hash)
    assert paid is not None and paid.state is PaymentState.SUCCEEDED and paid.attempts == 1
    assert world.treasury.pays == 1 and world.received_msat() == PRICE_MSAT


def test_reconciliation_enqueues_a_settled_task_that_never_reached_the_outbox(
    world: World,
) -> None:
    request = TaskRequest("t5:0", "inference", "owm.inference.text", 1, Tier.T1, 0, 0, False,
                          PRICE_MSAT)
    world.repositories.tasks.add(Task(request))
    world.repositories.tasks.save(attrs.evolve(
        Task(request), state=TaskState.SETTLED, node_id="node-n1", price_msat=PRICE_MSAT))
    assert world.dispatcher.reconcile() == 1
    assert world.dispatcher.reconcile() == 0
    world.dispatcher.sweep()
    (payment,) = world.repositories.payments.for_task("t5:0")
    assert payment.settled and world.received_msat() == PRICE_MSAT


def test_a_payee_whose_node_cannot_issue_invoices_is_retried_later(world: World) -> None:
    keyless = "02" + "11" * 32
    world.repositories.nodes.add(Node(
        node_id="node-keyless", public_key="ab" * 32,
        ln_node_uri=LnNodeUri(keyless, "127.0.0.1", 9735), tier=Tier.T1, vram_mb=0,
        ram_mb=1, bandwidth_mbps=1, registered_at=START, last_heartbeat=START,
    ))
    world.dispatcher.on_settlement(settle("t6", "node-keyless"))
    world.dispatcher.sweep()
    assert world.repositories.payments.for_task("t6") == []
    assert len(world.dispatcher._waiting) == 1


def test_a_settlement_met_by_a_database_outage_is_kept_and_paid_once_the_database_is_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover (SRS-COORD-06) must not drop a settlement queued in memory."""
    upsert = world.repositories.payments.upsert

    def down(_payment: object) -> object:
        raise StoreUnavailable("the coordinator's database is unavailable (test)")

    monkeypatch.setattr(world.repositories.payments, "upsert", down)
    world.dispatcher.on_settlement(settle("t7"))
    world.dispatcher.sweep()
    assert len(world.dispatcher._waiting) == 1 and world.treasury.pays == 0

    monkeypatch.setattr(world.repositories.payments, "upsert", upsert)
    world.clock.t += 5  # the first retry's backoff
    world.dispatcher.sweep()
    (payment,) = world.repositories.payments.for_task("t7")
    assert payment.state is PaymentState.SUCCEEDED and world.treasury.pays == 1
    assert world.received_msat() == PRICE_MSAT


def test_a_merged_bounty_is_paid_once_through_the_outbox_and_marked_paid(world: World) -> None:
    world.repositories.bounties.add(open_bounty(
        bounty_id="b1", repository="owm/owm", issue_number=7, title="fix", amount_sat=25,
        created_by="alice", now=START))
    first = world.dispatcher.bounty_merged("b1", "owm/owm#12", world.node_ln)
    again = world.dispatcher.bounty_merged("b1", "owm/owm#12", world.node_ln)
    assert again == first and first.amount_msat == 25_000
    world.dispatcher.sweep()

    paid = world.repositories.payments.get(first.payment_hash)
    assert paid is not None and paid.settled and paid.task_id == "bounty:b1"
    assert world.received_msat() == 25_000
    assert world.repositories.bounties.get("b1").status is BountyStatus.PAID  # type: ignore[union-attr]
    assert world.dispatcher.bounty_merged("b1", "owm/owm#12", world.node_ln) == paid


def test_a_bounty_can_be_paid_to_a_contributors_invoice_of_the_exact_amount(
    world: World,
) -> None:
    world.repositories.bounties.add(open_bounty(
        bounty_id="b2", repository="owm/owm", issue_number=8, title="docs", amount_sat=10,
        created_by="alice", now=START))
    wrong: Invoice = world.ledger.create_invoice(world.node_ln, 9_000, "x", 3600)
    with pytest.raises(InvalidValue):
        world.dispatcher.bounty_merged("b2", "owm/owm#13", wrong.bolt11)
    good = world.ledger.create_invoice(world.node_ln, 10_000, "bounty", 3600)
    recorded = world.dispatcher.bounty_merged("b2", "owm/owm#13", good.bolt11)
    assert recorded.payment_hash == good.payment_hash and recorded.node_id == world.node_ln
    world.dispatcher.sweep()
    assert world.received_msat() == 10_000


def test_a_cancelled_bounty_is_not_paid(world: World) -> None:
    bounty = open_bounty(bounty_id="b3", repository="owm/owm", issue_number=9, title="x",
                         amount_sat=10, created_by="alice", now=START)
    world.repositories.bounties.add(attrs.evolve(bounty, status=BountyStatus.CANCELLED))
    with pytest.raises(InvalidTransition):
        world.dispatcher.bounty_merged("b3", "owm/owm#14", world.node_ln)


def test_payments_are_counted_by_state_for_the_metrics(world: World) -> None:
    from owm_adapters.services.coordinator.service import CoordinatorService
    from owm_server.metrics import CoordinatorMetrics

    world.dispatcher.on_settlement(settle("t7"))
    world.dispatcher.sweep()
    world.treasury.down = True
    world.dispatcher.on_settlement(settle("t8"))
    world.dispatcher.sweep()
    counts = payment_counts(world.repositories.payments)
    assert counts == {"pending": 0, "in_flight": 0, "succeeded": 1, "failed": 1}

    metrics = CoordinatorMetrics(state_max_age_s=0)
    metrics.bind(CoordinatorService(world.repositories, world.treasury, world.clock))  # type: ignore[arg-type]
    samples = {
        s.labels["state"]: s.value
        for family in metrics.registry.collect() if family.name == "owm_payments"
        for s in family.samples
    }
    assert samples == {"pending": 0, "in_flight": 0, "succeeded": 1, "failed": 1}


def test_a_verified_proof_is_paid_within_seconds_of_its_acceptance(tmp_path: Path) -> None:
    """SRS-LN-04 / SRS-PERF-03: the settlement wakes the worker (its sweep is 30 s here)."""
    from owm_adapters.services.coordinator.service import ServiceConfig
    from owm_core.market.tasks import VerificationPolicy
    from owm_core.payments.rewards import task_reward_msat
    from tests.fakes.ln_key import LnKey
    from tests.server.harness import SimNode, StepClock, start_coordinator, task_request

    clock = StepClock()
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    config = ServiceConfig(verification=VerificationPolicy(redundancy=1), tick_s=0.05)
    running = start_coordinator(memory_repositories(), ledger, clock, config,
                                invoices=LedgerInvoiceSource(ledger), payout_sweep_s=30)
    try:
        assert running.app.payouts is not None
        node = SimNode.create()
        node.ln_key = LnKey.fresh()  # the ledger's "worker" node: it issues the invoices
        ledger.add_node("worker", secret_key=node.ln_key.secret)
        node.stake(running)
        assert node.register(running.stub, clock.now()).stake_status == "active"
        feed = node.open_stream(running.stub)
        running.stub.SubmitTask(task_request("job-pay"))
        (assignment,) = feed.wait_for(1)

        accepted = time.monotonic()
        node.deliver(running.stub, assignment.task_id, b"out", clock.now())
        payments = running.service.repositories.payments
        while not (paid := payments.for_task(assignment.task_id)) or not paid[0].settled:
            assert time.monotonic() - accepted < 10, "no payment 10 s after the proof"
            time.sleep(0.02)
        assert time.monotonic() - accepted < 5  # far inside the 60 s of SRS-PERF-03
        task = running.service.repositories.tasks.get(assignment.task_id)
        stored = running.service.repositories.nodes.get(node.node_id)
        assert task is not None and task.price_msat is not None and stored is not None
        assert paid[0].amount_msat == task_reward_msat(
            task.price_msat, stored.reliability_ppm, 10_000)
        feed.close()
    finally:
        running.stop()


def test_the_embedded_coordinator_starts_and_stops_its_payment_dispatcher(
    tmp_path: Path,
) -> None:
    from owm_adapters.bootstrap.coordinator import build_coordinator
    from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings

    settings = CoordinatorSettings(coordinator=CoordinatorSection(
        data_dir=str(tmp_path), signing_key_path=str(tmp_path / "coordinator.key")))
    coordinator = build_coordinator(settings, store=memory_repositories())
    with coordinator.running(2):
        names = {t.name for t in threading.enumerate()}
        assert "owm-payouts" in names
    assert "owm-payouts" not in {t.name for t in threading.enumerate()}
