"""Data contributors' credits paid over Lightning through the payout outbox, on a threshold or
a timer, exactly once per payout (SRS 2.2, SRS-LN-08); read back as a statement."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services import payout_sweeps
from owm_adapters.services.data_payouts import DataCreditLedger, DataCreditPayouts
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.errors import InvalidValue, LightningUnavailable
from owm_core.knowledge.credit_payouts import PayoutTerms, payout_due, payout_ids
from owm_core.knowledge.retrieval import DataCredit
from tests.server.harness import StepClock
from tests.services.payout_history import settled_payouts

T0 = 1_800_000_000
TERMS = PayoutTerms(threshold_msat=50_000, interval_s=3_600, min_msat=1_000)


@attrs.define
class Stage:
    repos: MemoryRepositories
    ledger: SimLedger
    clock: StepClock
    ledger_view: DataCreditLedger
    payouts: DataCreditPayouts
    dispatcher: PayoutDispatcher
    alice_ln: str

    def credit(self, query_id: str, msat: int, who: str = "alice") -> None:
        self.repos.data_credits.add(query_id, [DataCredit(who, "ds-" + "a" * 24, msat, 1)],
                                    self.clock.now())

    def held_msat(self) -> int:
        with sqlite3.connect(self.ledger.path) as db:
            row = db.execute("SELECT COALESCE(SUM(balance_b_msat), 0) FROM sim_ln_channels"
                             " WHERE node_b = ?", (self.alice_ln,)).fetchone()
        return int(row[0])


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    clock = StepClock(T0)
    repos = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury_key, alice_ln = ledger.add_node("treasury"), ledger.add_node("alice")
    ledger.open_channel(treasury_key, alice_ln, 10_000_000)
    dispatcher = PayoutDispatcher(repos, ledger.lightning("treasury"), LedgerInvoiceSource(ledger),
                                  clock)  # fmt: skip
    yield Stage(repos, ledger, clock, DataCreditLedger(repos, clock),
                DataCreditPayouts(repos, clock, dispatcher, TERMS), dispatcher, alice_ln)
    dispatcher.stop()


def test_credits_over_the_threshold_are_paid_once_and_show_in_the_statement(stage: Stage) -> None:
    stage.ledger_view.register_payee("alice", stage.alice_ln)
    stage.credit("q1", 30_000)
    assert stage.payouts.sweep() == []  # under the threshold, timer not due
    stage.credit("q2", 25_000)
    (payout,) = stage.payouts.sweep()
    assert payout.amount_msat == 55_000
    assert stage.payouts.sweep() == []  # enqueued: nothing more is owed
    stage.dispatcher.sweep()
    assert stage.held_msat() == 55_000
    statement = stage.ledger_view.statement("alice")
    assert statement.credited_msat == statement.paid_msat == 55_000
    assert statement.owed_msat == 0
    assert [p.payment_hash for p in statement.payouts] == [payout.payment_hash]
    assert {q for q, _, _ in statement.credits} == {"q1", "q2"}


def test_the_timer_pays_a_small_balance_and_the_next_payout_is_a_new_one(stage: Stage) -> None:
    stage.ledger_view.register_payee("alice", stage.alice_ln)
    stage.credit("q1", 2_000)
    assert stage.payouts.sweep() == []
    stage.clock.advance(3_600)
    (first,) = stage.payouts.sweep()
    stage.credit("q2", 60_000)
    (second,) = stage.payouts.sweep()
    assert (first.amount_msat, second.amount_msat) == (2_000, 60_000)
    assert first.payment_id != second.payment_id
    stage.dispatcher.sweep()
    assert stage.held_msat() == 62_000


def test_no_payee_no_payout_and_a_bad_node_key_is_refused(stage: Stage) -> None:
    stage.credit("q1", 90_000)
    assert stage.payouts.sweep() == []
    with pytest.raises(InvalidValue, match="ln_node"):
        stage.ledger_view.register_payee("alice", "lnbc1notakey")
    assert stage.ledger_view.statement("alice").owed_msat == 90_000


def test_a_contributor_paid_a_thousand_times_before_is_paid_each_time_after(
    stage: Stage,
) -> None:
    stage.ledger_view.register_payee("alice", stage.alice_ln)
    settled_payouts(stage.repos, functools.partial(payout_ids, "alice"), 1_000, 1_000, T0)
    stage.credit("q-past", 1_000 * 1_000)
    stage.credit("q1", 60_000)
    (first,) = stage.payouts.sweep()  # the 1,001st payout
    stage.credit("q2", 70_000)
    (second,) = stage.payouts.sweep()
    assert (first.amount_msat, second.amount_msat) == (60_000, 70_000)
    assert second.payment_id != first.payment_id
    assert stage.payouts.sweep() == []
    statement = stage.ledger_view.statement("alice")
    assert statement.enqueued_msat == statement.credited_msat == 1_130_000
    assert statement.owed_msat == 0
    assert statement.payouts[-1] == second


@given(owed=st.integers(0, 10**9), age=st.integers(0, 10**6))
def test_a_payout_is_due_only_at_the_threshold_or_after_the_interval(owed: int, age: int) -> None:
    due = payout_due(owed, T0, T0, T0 + age, TERMS)
    assert due == (owed >= TERMS.threshold_msat or (owed >= TERMS.min_msat and age >= 3_600))


def test_a_payee_whose_node_hands_in_no_invoice_holds_back_no_other_payee(stage: Stage) -> None:
    """A contributor's node that cannot hand in an invoice (no OWM daemon, keysend off) is
    asked again each sweep, and the contributors after it are paid meanwhile."""
    silent_ln = stage.ledger.add_node("aaron")  # "aaron" < "alice": met first
    asked = NodeInvoiceSource(stage.repos, stage.clock, coordinator_key="00" * 32,
                              fallback=OnlyFor(LedgerInvoiceSource(stage.ledger), stage.alice_ln))
    dispatcher = PayoutDispatcher(stage.repos, stage.ledger.lightning("treasury"), asked,
                                  stage.clock)  # fmt: skip
    payouts = DataCreditPayouts(stage.repos, stage.clock, dispatcher, TERMS)
    stage.ledger_view.register_payee("aaron", silent_ln)
    stage.ledger_view.register_payee("alice", stage.alice_ln)
    stage.credit("q1", 60_000, who="aaron")
    stage.credit("q2", 60_000, who="alice")
    (paid,) = payouts.sweep()
    assert (paid.node_id, paid.amount_msat) == (stage.alice_ln, 60_000)
    assert [p.payee_pubkey for p in stage.repos.payout_requests.waiting()] == [silent_ln]
    dispatcher.stop()


@attrs.define
class OnlyFor:
    """An invoice source that answers for one Lightning node only (the others must hand
    theirs in)."""

    inner: LedgerInvoiceSource
    payee: str

    def invoice_for(self, payee_pubkey: str, amount_msat: int, memo: str, expiry_s: int) -> object:
        if payee_pubkey != self.payee:
            raise LightningUnavailable("no invoice (test)")
        return self.inner.invoice_for(payee_pubkey, amount_msat, memo, expiry_s)


def test_every_payee_is_swept_however_many_pages_they_fill(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Payees are read a page at a time; the sweep reaches those past the first page (the
    store's listing is cut at two here, as it is at a thousand by default)."""
    monkeypatch.setattr(payout_sweeps, "PAYEES_PAGE", 2)
    listed = stage.repos.data_payees.list
    monkeypatch.setattr(stage.repos.data_payees, "list",
                        lambda limit=1_000, after="": listed(min(limit, 2), after))
    treasury = stage.ledger.add_node("treasury")
    for name in ("bea", "cai", "dan", "eve"):
        node = stage.ledger.add_node(name)
        stage.ledger.open_channel(treasury, node, 1_000_000)
        stage.ledger_view.register_payee(name, node)
        stage.credit(f"q-{name}", 60_000, who=name)
    stage.ledger_view.register_payee("alice", stage.alice_ln)
    stage.credit("q-alice", 60_000)
    assert len(stage.payouts.sweep()) == 5
