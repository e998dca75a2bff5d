"""The payout dispatcher walks the whole outbox and every settled task, a page at a time
(SRS-LN-04): payments that stay owed for good (forfeited by a slashing) or in flight for long,
and settled tasks already paid, never hide the ones stored after them.

The page sizes are patched small so a few records show what thousands would in production.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from owm_adapters.lightning.embedded import SimLedger, SimLightning
from owm_adapters.services import payouts as payouts_module
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.storage.memory import memory_repositories
from owm_adapters.storage.sql import open_repositories
from owm_core.market.tasks import Task, TaskRequest, TaskState
from owm_core.nodes.tiers import Tier
from owm_core.payments.lightning import PaymentResult, PaymentStatus
from owm_core.payments.outbox import reward_payment_id
from owm_core.payments.records import (
    PaymentState,
    RewardPayment,
    forfeit,
    start_attempt,
)
from owm_core.ports.repositories import Repositories
from tests.server.harness import StepClock

START = 1_800_000_000
pytestmark = pytest.mark.timeout(120)



@attrs.define
class Treasury:
    """The treasury's node; the payments in ``stuck`` stay in flight however often looked up."""

    inner: SimLightning
    stuck: set[str] = attrs.Factory(set)
    #: Payments whose look-up fails in a way the adapter does not know (a bug, a new answer).
    unreadable: set[str] = attrs.Factory(set)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        if payment_hash in self.unreadable:
            raise ValueError("Enum PaymentFailureReason has no value 6")
        if payment_hash in self.stuck:
            return PaymentResult(payment_hash, PaymentStatus.IN_FLIGHT)
        return self.inner.lookup_payment(payment_hash)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@attrs.define
class Outbox:
    repos: Repositories
    treasury: Treasury
    payee: str
    dispatcher: PayoutDispatcher

    def enqueue(self, n: int) -> RewardPayment:
        return self.dispatcher.enqueue_to(self.payee, f"pay-{n}", f"task-{n}", 1_000, "reward")

    def states(self, count: int) -> list[PaymentState]:
        return [self.repos.payments.for_task(f"task-{n}")[0].state for n in range(count)]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with outbox_on(memory_repositories(), tmp_path) as opened:
        yield opened


@contextmanager
def outbox_on(repos: Repositories, tmp_path: Path) -> Iterator[Outbox]:
    ledger = SimLedger(tmp_path / "lightning.sqlite3", clock=StepClock().now)
    treasury_key, payee = ledger.add_node("treasury"), ledger.add_node("payee")
    ledger.open_channel(treasury_key, payee, 10_000_000)
    treasury = Treasury(ledger.lightning("treasury"))
    dispatcher = PayoutDispatcher(
        repos, treasury, LedgerInvoiceSource(ledger), StepClock(),  # type: ignore[arg-type]
        keysend=False,
    )
    yield Outbox(repos, treasury, payee, dispatcher)
    dispatcher.stop()


def test_payments_after_a_full_page_of_forfeited_ones_are_paid(outbox: Outbox) -> None:
    forfeited = [outbox.enqueue(n) for n in range(20)]  # BATCH 2: the owed page holds 20
    for payment in forfeited:
        outbox.repos.payments.upsert(forfeit(payment, START))
    for n in range(20, 25):
        outbox.enqueue(n)
    with patch.object(payouts_module, "BATCH", 2):
        for _ in range(math.ceil(25 / 20) + 1):
            outbox.dispatcher.sweep()
    assert outbox.states(25) == [PaymentState.FAILED] * 20 + [PaymentState.SUCCEEDED] * 5


def test_payments_stored_after_one_this_version_cannot_read_are_paid(tmp_path: Path) -> None:
    """A row edited by hand (or by another version) into what this one refuses is passed
    over by every sweep, and the payments after it, past a full page, are paid."""
    repos = open_repositories(f"sqlite:///{tmp_path / 'outbox.sqlite3'}")
    with outbox_on(repos, tmp_path) as outbox:
        for n in range(25):
            outbox.enqueue(n)
        with repos.database.engine.begin() as conn:
            conn.execute(text("UPDATE payments SET method = 'pigeon' WHERE payment_id = 'pay-0'"))
        with patch.object(payouts_module, "BATCH", 2):  # 20 owed a page, 4 paid a sweep
            for _ in range(math.ceil(24 / 4) + 1):
                outbox.dispatcher.sweep()
    paid = [repos.payments.for_task(f"task-{n}") for n in range(1, 25)]
    assert all(p.state is PaymentState.SUCCEEDED for (p,) in paid)


def test_in_flight_payments_after_a_full_page_of_stuck_ones_are_looked_up(
    outbox: Outbox,
) -> None:
    for n in range(5):
        flying = outbox.repos.payments.upsert(start_attempt(outbox.enqueue(n), START))
        if n < 2:  # BATCH 2: the in-flight page holds 2
            outbox.treasury.stuck.add(flying.payment_hash)
    with patch.object(payouts_module, "BATCH", 2):
        for _ in range(math.ceil(5 / 2) + 1):
            outbox.dispatcher.sweep()
    assert outbox.states(5) == [PaymentState.IN_FLIGHT] * 2 + [PaymentState.SUCCEEDED] * 3


def test_a_payment_whose_step_fails_holds_back_no_other_and_is_logged_once(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    broken = outbox.repos.payments.upsert(start_attempt(outbox.enqueue(0), START))
    outbox.treasury.unreadable.add(broken.payment_hash)  # in flight: looked at first each time
    for n in range(1, 4):
        outbox.enqueue(n)
    with caplog.at_level("WARNING", logger="owm_adapters.services.payouts"):
        for _ in range(3):
            outbox.dispatcher.sweep()
    assert outbox.states(4) == [PaymentState.IN_FLIGHT] + [PaymentState.SUCCEEDED] * 3
    (line,) = [r for r in caplog.records if "pay-0" in r.getMessage()]
    assert "ValueError" in line.getMessage() and line.exc_info is not None
    outbox.treasury.unreadable.clear()  # mended: the next sweep settles it
    outbox.dispatcher.sweep()
    assert outbox.states(1) == [PaymentState.SUCCEEDED]


def test_due_payments_past_what_one_sweep_acts_on_are_acted_on_by_the_next(
    outbox: Outbox,
) -> None:
    for n in range(9):
        outbox.enqueue(n)
    with patch.object(payouts_module, "BATCH", 2):
        acted = [outbox.dispatcher.sweep() for _ in range(3)]
    assert acted == [4, 4, 1]
    assert outbox.states(9) == [PaymentState.SUCCEEDED] * 9


def a_settled_task(n: int) -> Task:
    request = TaskRequest(f"t{n}:0", "inference", "owm.inference.text", 1, Tier.T1, 0, 0, False,
                          40_000)
    return attrs.evolve(Task(request), state=TaskState.SETTLED, node_id="node-n1",
                        price_msat=40_000)


@given(count=st.integers(0, 30), limit=st.integers(1, 6), paid=st.sets(st.integers(0, 29)))
@settings(max_examples=60, deadline=None)
def test_every_settled_task_without_a_reward_is_found_within_ceil_n_over_limit_plus_one_runs(
    count: int, limit: int, paid: set[int]
) -> None:
    repos = memory_repositories()
    for n in range(count):
        task = a_settled_task(n)
        repos.tasks.add(task)
        if n in paid:
            repos.payments.upsert(RewardPayment(
                payment_id=reward_payment_id(task.task_id, "node-n1"), task_id=task.task_id,
                node_id="node-n1", amount_msat=40_000, payment_hash=f"{n:064x}",
                created_at=START, updated_at=START,
            ))  # fmt: skip
    dispatcher = PayoutDispatcher(repos, None, None, StepClock())  # type: ignore[arg-type]
    found = sum(dispatcher.reconcile(limit) for _ in range(math.ceil(count / limit) + 1))
    assert found == count - len({n for n in paid if n < count})
