"""A payout whose invoice expired unpaid is asked for a new invoice and paid exactly once
(SRS-LN-04, SRS-LN-05, SRS-LN-08): the dispatcher over the embedded ledger, with a clock moved
by hand past the invoices' 30-day expiry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.bootstrap.coordinator import keysend_key_of
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services.payout_renewals import NOT_RENEWED
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import LightningUnavailable
from owm_core.governance.contributions import BountyStatus, open_bounty
from owm_core.identity.keys import Identity
from owm_core.payments.lightning import Invoice, PaymentResult, PaymentStatus
from owm_core.payments.outbox import INVOICE_EXPIRY_S, reward_payment_id
from owm_core.payments.records import AttemptOutcome, PaymentState, PayoutMethod, RewardPayment
from owm_core.ports.invoices import InvoiceSource
from owm_core.ports.repositories import Repositories
from tests.reveals import COORDINATOR_KEY_HEX
from tests.services.test_payouts import (
    PRICE_MSAT,
    START,
    Clock,
    FlakyLightning,
    World,
    add_node,
    settle,
)

MONTH = INVOICE_EXPIRY_S + 24 * 3600


@attrs.define
class CountingInvoices:
    """The payee's invoices, counted; ``offline`` makes the payee's node unreachable."""

    inner: InvoiceSource
    asked: int = 0
    offline: bool = False

    def invoice_for(self, payee_pubkey: str, amount_msat: int, memo: str, expiry_s: int
                    ) -> Invoice:
        if self.offline:
            raise LightningUnavailable("the payee's Lightning node is offline (test)")
        self.asked += 1
        return self.inner.invoice_for(payee_pubkey, amount_msat, memo, expiry_s)


@attrs.define
class Looked(FlakyLightning):
    """The treasury's node, with payments the test says are in flight or arrived."""

    answers: dict[str, PaymentResult] = attrs.field(factory=dict)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        if payment_hash in self.answers:
            return self.answers[payment_hash]
        return super().lookup_payment(payment_hash)

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        if key in self.answers:
            return self.answers[key]
        return super().lookup_keysend(key)


@attrs.define
class Net:
    world: World
    invoices: CountingInvoices
    treasury_key: str

    def dispatcher(self, checkpoint: object = None) -> PayoutDispatcher:
        """A dispatcher over the same store, Lightning and payee (a restart makes a new one)."""
        w = self.world
        made = PayoutDispatcher(w.repositories, w.treasury, self.invoices, w.clock)  # type: ignore[arg-type]
        if checkpoint is not None:
            made.checkpoint = checkpoint  # type: ignore[assignment]
        return made

    def open_channel(self) -> None:
        self.world.ledger.open_channel(self.treasury_key, self.world.node_ln, 1_000_000)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    """A node whose reward cannot be routed yet: the treasury has no channel to it."""
    repositories: Repositories = memory_repositories()
    clock = Clock()
    ledger = SimLedger(tmp_path / "lightning.sqlite3", clock=clock.now)
    treasury_key = ledger.add_node("treasury")
    treasury = Looked(ledger.lightning("treasury"))
    _, node_ln = add_node(repositories, ledger, "n1")
    invoices = CountingInvoices(LedgerInvoiceSource(ledger))
    world = World(repositories, ledger, treasury, node_ln, clock,
                  PayoutDispatcher(repositories, treasury, invoices, clock))  # type: ignore[arg-type]
    yield Net(world, invoices, treasury_key)
    world.dispatcher.stop()


def _unpaid_for_a_month(net: Net, task_id: str = "t1") -> RewardPayment:
    """A reward tried while no route exists, then a month later the route is there."""
    w = net.world
    w.dispatcher.on_settlement(settle(task_id))
    w.dispatcher.sweep()
    (payment,) = w.repositories.payments.for_task(task_id)
    assert payment.state is PaymentState.FAILED and payment.invoice_expires_at is not None
    assert payment.invoice_expires_at == START + INVOICE_EXPIRY_S
    w.clock.t += MONTH
    net.open_channel()
    return payment


def test_a_reward_whose_invoice_expired_unpaid_is_asked_again_and_paid_once(
    net: Net, caplog: pytest.LogCaptureFixture,
) -> None:
    w = net.world
    old = _unpaid_for_a_month(net)
    assert net.invoices.asked == 1
    with caplog.at_level(logging.INFO):
        w.dispatcher.sweep()

    (paid,) = w.repositories.payments.for_task("t1")
    assert paid.settled and paid.payment_id == old.payment_id
    assert paid.payment_hash != old.payment_hash and paid.replaced_hashes == (old.payment_hash,)
    assert paid.amount_msat == old.amount_msat and paid.memo == "OWM reward t1"
    assert net.invoices.asked == 2 and w.received_msat() == PRICE_MSAT
    assert w.repositories.payments.get(old.payment_hash) is None
    outcomes = [a.outcome for a in w.repositories.payments.attempts(paid.payment_hash)]
    assert outcomes == [AttemptOutcome.STARTED, AttemptOutcome.SUCCEEDED]
    renewal = [r for r in caplog.records if "renewed as" in r.getMessage()]
    assert len(renewal) == 1 and old.payment_hash in renewal[0].getMessage()
    assert paid.bolt11 is not None and paid.bolt11 not in caplog.text  # no invoice in the log

    for _ in range(3):
        w.clock.t += MONTH
        w.dispatcher.sweep()
    assert net.invoices.asked == 2 and w.received_msat() == PRICE_MSAT


@pytest.mark.parametrize(
    "crash_at", ["after-renewal-invoice", "after-renewal", "before-pay", "after-pay"]
)
def test_a_crash_during_a_renewal_pays_once_after_the_restart(net: Net, crash_at: str) -> None:
    w = net.world
    old = _unpaid_for_a_month(net)
    seen: list[str] = []

    def crash(name: str) -> None:
        seen.append(name)
        if name == crash_at:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        net.dispatcher(crash).sweep()
    assert crash_at in seen
    (stored,) = w.repositories.payments.for_task("t1")
    assert not stored.settled
    if crash_at == "after-renewal-invoice":  # the new invoice was never stored: asked again
        assert stored.payment_hash == old.payment_hash

    restarted = net.dispatcher()
    restarted.sweep()
    restarted.sweep()
    (paid,) = w.repositories.payments.for_task("t1")
    assert paid.settled and w.received_msat() == PRICE_MSAT
    assert old.payment_hash in paid.replaced_hashes
    assert w.treasury.pays == 2  # the first, unroutable try and the one that paid


def test_a_payment_of_the_old_invoice_still_in_flight_is_waited_for_not_renewed(
    net: Net,
) -> None:
    w = net.world
    old = _unpaid_for_a_month(net)
    assert isinstance(w.treasury, Looked)
    w.treasury.answers[old.payment_hash] = PaymentResult(old.payment_hash, PaymentStatus.IN_FLIGHT)
    w.dispatcher.sweep()
    (waiting,) = w.repositories.payments.for_task("t1")
    assert waiting.payment_hash == old.payment_hash and waiting.state is PaymentState.IN_FLIGHT
    assert net.invoices.asked == 1 and w.treasury.pays == 1

    w.treasury.answers[old.payment_hash] = PaymentResult(
        old.payment_hash, PaymentStatus.SUCCEEDED, PRICE_MSAT, 0, "cd" * 32)
    w.dispatcher.sweep()
    (paid,) = w.repositories.payments.for_task("t1")
    assert paid.settled and paid.payment_hash == old.payment_hash
    assert net.invoices.asked == 1 and w.treasury.pays == 1  # recorded, nothing sent


def test_a_renewed_payout_whose_old_invoice_arrived_after_all_is_never_paid_again(
    net: Net,
) -> None:
    """The record keeps the replaced hashes until it is paid and looks them up before each
    send: the new invoice is not paid when the old one was."""
    w = net.world
    old = _unpaid_for_a_month(net)
    assert isinstance(w.treasury, Looked)
    def crash(name: str) -> None:
        if name == "after-renewal":
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        net.dispatcher(crash).sweep()
    (renewed,) = w.repositories.payments.for_task("t1")
    assert renewed.replaced_hashes == (old.payment_hash,) and renewed.state is PaymentState.PENDING
    w.treasury.answers[old.payment_hash] = PaymentResult(
        old.payment_hash, PaymentStatus.SUCCEEDED, PRICE_MSAT, 0, "cd" * 32)
    w.dispatcher.sweep()
    (paid,) = w.repositories.payments.for_task("t1")
    assert paid.settled and w.treasury.pays == 1 and w.received_msat() == 0


def test_a_payee_that_gives_no_new_invoice_is_retried_with_backoff_and_paid_when_back(
    net: Net,
) -> None:
    w = net.world
    old = _unpaid_for_a_month(net)
    net.invoices.offline = True
    w.dispatcher.sweep()
    (failed,) = w.repositories.payments.for_task("t1")
    assert failed.payment_hash == old.payment_hash and failed.state is PaymentState.FAILED
    assert failed.last_error is not None and failed.last_error.startswith(NOT_RENEWED)
    assert "offline" in failed.last_error and failed.attempts == old.attempts + 1
    w.clock.t += 1
    w.dispatcher.sweep()  # its backoff is not over: the payee is not asked again yet
    assert w.repositories.payments.get(old.payment_hash) == failed

    net.invoices.offline = False
    w.clock.t += 600
    w.dispatcher.sweep()
    (paid,) = w.repositories.payments.for_task("t1")
    assert paid.settled and paid.replaced_hashes == (old.payment_hash,)
    assert w.received_msat() == PRICE_MSAT and net.invoices.asked == 2


def test_a_node_on_lnd_or_cln_is_asked_again_through_its_pending_payouts(tmp_path: Path) -> None:
    """The way the first invoice came: the payout waits in ``PendingPayouts`` until the node
    hands in an invoice (here handed in directly, as ``SubmitInvoice`` does after its checks)."""
    repositories = memory_repositories()
    clock = Clock()
    ledger = SimLedger(tmp_path / "lightning.sqlite3", clock=clock.now)
    treasury_key = ledger.add_node("treasury")
    treasury = FlakyLightning(ledger.lightning("treasury"))
    _, node_ln = add_node(repositories, ledger, "n1")  # no channel yet: no route
    source = NodeInvoiceSource(repositories, clock, coordinator_key=COORDINATOR_KEY_HEX)
    dispatcher = PayoutDispatcher(repositories, treasury, source, clock)  # type: ignore[arg-type]

    def hand_in() -> None:
        (pending,) = repositories.payout_requests.waiting_for(node_ln)
        assert pending.amount_msat == PRICE_MSAT and pending.memo == "OWM reward t1"
        invoice = ledger.create_invoice(node_ln, PRICE_MSAT, pending.memo, pending.expiry_s)
        repositories.payout_requests.hand_in(pending.payment_id, invoice)

    dispatcher.on_settlement(settle("t1"))
    dispatcher.sweep()  # no invoice yet: the payout is listed for the node
    hand_in()
    clock.t += 5
    dispatcher.sweep()
    (first,) = repositories.payments.for_task("t1")
    assert first.state is PaymentState.FAILED  # the treasury's node has no route

    clock.t += MONTH
    ledger.open_channel(treasury_key, node_ln, 1_000_000)
    dispatcher.sweep()
    (waiting,) = repositories.payments.for_task("t1")
    assert waiting.last_error is not None and waiting.last_error.startswith(NOT_RENEWED)
    hand_in()
    clock.t += 600
    dispatcher.sweep()
    (renewed,) = repositories.payments.for_task("t1")
    assert renewed.replaced_hashes == (first.payment_hash,)
    assert renewed.settled and renewed.payee_pubkey == node_ln
    assert repositories.payout_requests.waiting() == []


def test_a_bounty_paid_to_the_contributors_own_expired_invoice_waits_for_a_new_one(
    net: Net,
) -> None:
    """An invoice the payee handed in itself cannot be asked for again: the payout stays,
    failed with a clear reason, and nothing is paid."""
    w = net.world
    w.repositories.bounties.add(open_bounty(
        bounty_id="b1", repository="owm/owm", issue_number=7, title="fix", amount_sat=10,
        created_by="alice", now=START))
    own = w.ledger.create_invoice(w.node_ln, 10_000, "bounty", INVOICE_EXPIRY_S)
    recorded = w.dispatcher.bounty_merged("b1", "owm/owm#12", own.bolt11)
    assert recorded.payee_pubkey is None
    w.dispatcher.sweep()  # no route
    w.clock.t += MONTH
    net.open_channel()
    w.dispatcher.sweep()
    (kept,) = w.repositories.payments.for_task("bounty:b1")
    assert kept.payment_hash == recorded.payment_hash and kept.state is PaymentState.FAILED
    assert kept.last_error is not None and "must hand in a new one" in kept.last_error
    assert net.invoices.asked == 0 and w.received_msat() == 0
    assert w.repositories.bounties.get("b1").status is BountyStatus.OPEN  # type: ignore[union-attr]


def test_a_record_stored_before_renewals_is_renewed_from_what_its_invoice_says(net: Net) -> None:
    """Records written before migration 0031 hold no payee, memo or expiry: the BOLT11 string
    has them (its payee, its description, its expiry counted from the record's creation)."""
    w = net.world
    invoice = w.ledger.create_invoice(w.node_ln, PRICE_MSAT, "OWM reward t9", INVOICE_EXPIRY_S)
    w.repositories.payments.upsert(RewardPayment(
        payment_id=reward_payment_id("t9", "node-n1"), task_id="t9", node_id="node-n1",
        amount_msat=PRICE_MSAT, payment_hash=invoice.payment_hash, created_at=START,
        updated_at=START, bolt11=invoice.bolt11))
    w.clock.t += MONTH
    net.open_channel()
    w.dispatcher.sweep()
    (paid,) = w.repositories.payments.for_task("t9")
    assert paid.settled and paid.replaced_hashes == (invoice.payment_hash,)
    assert (paid.payee_pubkey, paid.memo) == (w.node_ln, "OWM reward t9")
    assert w.received_msat() == PRICE_MSAT


# ----------------------------------------- a contributor's own invoice: keysend to its node


@attrs.define
class OwnInvoice:
    net: Net
    contributor: str
    bolt11_hash: str

    def dispatcher(self, checkpoint: object = None, keysend: bool = True) -> PayoutDispatcher:
        w = self.net.world
        made = PayoutDispatcher(w.repositories, w.treasury, self.net.invoices, w.clock,  # type: ignore[arg-type]
                                keysend_key=keysend_key_of(Identity.from_seed(b"\x03" * 32)),
                                keysend=keysend)
        if checkpoint is not None:
            made.checkpoint = checkpoint  # type: ignore[assignment]
        return made

    def payment(self) -> RewardPayment:
        (payment,) = self.net.world.repositories.payments.for_task("bounty:b1")
        return payment


def _own_invoice_expired_unpaid(net: Net) -> OwnInvoice:
    """A bounty claimed with the contributor's own BOLT11 from a bare node (no OWM node
    daemon, no registered node): no route for a month, then a channel opens."""
    w = net.world
    contributor = w.ledger.add_node("contributor")
    w.repositories.bounties.add(open_bounty(
        bounty_id="b1", repository="owm/owm", issue_number=7, title="fix", amount_sat=10,
        created_by="alice", now=START))
    own = w.ledger.create_invoice(contributor, 10_000, "bounty", INVOICE_EXPIRY_S)
    stage = OwnInvoice(net, contributor, own.payment_hash)
    recorded = stage.dispatcher().bounty_merged("b1", "owm/owm#12", own.bolt11)
    assert recorded.payee_pubkey is None and recorded.node_id == contributor
    stage.dispatcher().sweep()  # no route
    assert stage.payment().state is PaymentState.FAILED
    w.clock.t += MONTH
    w.ledger.open_channel(net.treasury_key, contributor, 1_000_000)
    return stage


def test_a_contributors_own_invoice_that_expired_unpaid_is_paid_by_keysend_to_its_node_once(
    net: Net, caplog: pytest.LogCaptureFixture,
) -> None:
    stage = _own_invoice_expired_unpaid(net)
    w = net.world
    with caplog.at_level(logging.INFO):
        stage.dispatcher().sweep()
        stage.dispatcher().sweep()
    paid = stage.payment()
    assert paid.settled and paid.method is PayoutMethod.KEYSEND
    assert paid.payee_pubkey == stage.contributor and paid.bolt11 is None
    assert paid.replaced_hashes == (stage.bolt11_hash,)
    assert w.received_msat(stage.contributor) == 10_000  # once, the bounty's amount
    assert w.treasury.pays == 1  # the own invoice's one unroutable try; then one keysend
    assert w.repositories.bounties.get("b1").status is BountyStatus.PAID  # type: ignore[union-attr]
    assert net.invoices.asked == 0
    assert "paid by keysend to its node" in caplog.text


def test_an_own_invoice_whose_payment_is_still_in_flight_is_waited_for_not_sent_by_keysend(
    net: Net,
) -> None:
    stage = _own_invoice_expired_unpaid(net)
    w = net.world
    assert isinstance(w.treasury, Looked)
    w.treasury.answers[stage.bolt11_hash] = PaymentResult(stage.bolt11_hash,
                                                          PaymentStatus.IN_FLIGHT)
    stage.dispatcher().sweep()
    waiting = stage.payment()
    assert waiting.payment_hash == stage.bolt11_hash and waiting.method is PayoutMethod.INVOICE
    w.treasury.answers[stage.bolt11_hash] = PaymentResult(
        stage.bolt11_hash, PaymentStatus.SUCCEEDED, 10_000, 0, "cd" * 32)
    stage.dispatcher().sweep()
    paid = stage.payment()
    assert paid.settled and paid.payment_hash == stage.bolt11_hash  # the invoice was the payment
    assert w.received_msat(stage.contributor) == 0  # (the stand-in answer moved no money)


@pytest.mark.parametrize(
    "crash_at", ["after-renewal-invoice", "after-renewal", "before-pay", "after-pay"]
)
def test_a_crash_while_switching_an_own_invoice_to_keysend_pays_once(
    net: Net, crash_at: str,
) -> None:
    stage = _own_invoice_expired_unpaid(net)

    def crash(name: str) -> None:
        if name == crash_at:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        stage.dispatcher(crash).sweep()
    restarted = stage.dispatcher()
    restarted.sweep()
    restarted.sweep()
    paid = stage.payment()
    assert paid.settled and paid.method is PayoutMethod.KEYSEND
    assert paid.replaced_hashes == (stage.bolt11_hash,)
    assert net.world.received_msat(stage.contributor) == 10_000


def test_with_keysend_off_an_own_expired_invoice_still_waits_for_a_new_one(net: Net) -> None:
    stage = _own_invoice_expired_unpaid(net)
    stage.dispatcher(keysend=False).sweep()
    kept = stage.payment()
    assert kept.payment_hash == stage.bolt11_hash and kept.method is PayoutMethod.INVOICE
    assert kept.last_error is not None and kept.last_error.startswith(NOT_RENEWED)
    assert net.world.received_msat(stage.contributor) == 0


def test_an_own_invoice_of_a_registered_nodes_lightning_node_is_never_switched_to_keysend(
    net: Net,
) -> None:
    """SRS-LN-04: a node of the network is paid by invoice only, even when its own invoice
    expired; the payout waits for a new one."""
    w = net.world
    w.repositories.bounties.add(open_bounty(
        bounty_id="b1", repository="owm/owm", issue_number=7, title="fix", amount_sat=10,
        created_by="alice", now=START))
    own = w.ledger.create_invoice(w.node_ln, 10_000, "bounty", INVOICE_EXPIRY_S)
    stage = OwnInvoice(net, w.node_ln, own.payment_hash)
    stage.dispatcher().bounty_merged("b1", "owm/owm#12", own.bolt11)
    stage.dispatcher().sweep()
    w.clock.t += MONTH
    net.open_channel()
    stage.dispatcher().sweep()
    kept = stage.payment()
    assert kept.method is PayoutMethod.INVOICE and kept.payment_hash == own.payment_hash
    assert w.received_msat() == 0
