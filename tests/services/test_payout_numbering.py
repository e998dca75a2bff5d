"""Numbered payouts: however many payouts a data contributor or a miner has had, and wherever a
sweep dies between computing a payout and recording it, every credit is paid exactly once
(SRS 2.2, SRS-POOL-07, SRS-LN-04, SRS-LN-08)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Collection, Sequence
from typing import Any
from unittest import mock

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services import data_payouts, pool_payouts
from owm_adapters.services.data_payouts import DataCreditPayouts
from owm_adapters.services.payout_sweeps import PAGE, PayoutSweep, PayoutTally, numbered_payouts
from owm_adapters.services.pool_payouts import PoolPayouts
from owm_adapters.storage.memory import memory_repositories
from owm_core.knowledge.credit_payouts import DataPayee, payout_ids
from owm_core.knowledge.retrieval import DataCredit
from owm_core.nodes.registry import LnNodeUri
from owm_core.payments.records import PaymentState, RewardPayment
from owm_core.pool.fpps import MinerCredit, fpps_payout_ids
from owm_core.ports.repositories import Repositories
from tests.core.nodes.test_registry import make_node
from tests.server.harness import StepClock
from tests.services.payout_history import settled_payouts

T0 = 1_800_000_000
PAYEE_LN = "02" + "ab" * 32
MINER = "n" + "7" * 40
WINDOW = 3  # the old listing limits (1,000 and 100,000), made small


class PowerCut(Exception):
    """The process dies."""


@attrs.define
class Outbox:
    """The payout outbox as the sweeps see it, idempotent by payment id (as
    ``PayoutDispatcher.enqueue_to``), in a process that may die just before or just after it
    records a payout."""

    repos: Repositories
    clock: StepClock
    dies: str | None = None

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        for existing in self.repos.payments.for_task(task_id):
            if existing.payment_id == payment_id:
                return existing
        if self.dies == "before-record":
            raise PowerCut
        now = self.clock.now()
        recorded = self.repos.payments.upsert(RewardPayment(
            payment_id=payment_id, task_id=task_id, node_id=payee, amount_msat=amount_msat,
            payment_hash=hashlib.sha256(payment_id.encode()).hexdigest(), created_at=now,
            updated_at=now,
        ))  # fmt: skip
        if self.dies == "after-record":
            raise PowerCut
        return recorded


@attrs.frozen
class Payee:
    """A data contributor or a miner: how its payouts are numbered, how it is credited, and
    its sweep (``sweeper`` makes one: a process's, which lives until the process ends)."""

    ids: Callable[[int], tuple[str, str]]
    credit: Callable[[Repositories, int, int], None]
    sweeper: Callable[[Repositories, StepClock, Outbox], PayoutSweep]
    enrol: Callable[[Repositories], None]


def _credit_contributor(repos: Repositories, msat: int, now: int) -> None:
    query_id = f"q{len(repos.data_credits.for_contributor('alice', 10**6))}"
    repos.data_credits.add(query_id, [DataCredit("alice", "ds-" + "a" * 24, msat, 1)], now)


def _credit_miner(repos: Repositories, msat: int, now: int) -> None:
    old = repos.miner_credits.get(MINER)
    total = msat + (old.credited_msat if old is not None else 0)
    repos.miner_credits.put(MinerCredit(MINER, total, "1/3", now))


def _register_miner(repos: Repositories) -> None:
    uri = LnNodeUri.parse(f"{PAYEE_LN}@127.0.0.1:9735")
    repos.nodes.add(make_node(node_id=MINER, ln_node_uri=uri, registered_at=T0,
                              last_heartbeat=T0))  # fmt: skip


CONTRIBUTOR = Payee(
    ids=functools.partial(payout_ids, "alice"),
    credit=_credit_contributor,
    sweeper=DataCreditPayouts,
    enrol=lambda repos: repos.data_payees.put(DataPayee("alice", PAYEE_LN, T0)),
)
MINER_PAYEE = Payee(
    ids=functools.partial(fpps_payout_ids, MINER),
    credit=_credit_miner,
    sweeper=PoolPayouts,
    enrol=_register_miner,
)


def _enqueued_msat(repos: Repositories) -> int:
    return sum(p.amount_msat for p in repos.payments.for_node(PAYEE_LN, limit=10**6))


@settings(max_examples=60, deadline=None)
@given(
    payee=st.sampled_from([CONTRIBUTOR, MINER_PAYEE]),
    past=st.integers(0, 3 * WINDOW),
    steps=st.lists(
        st.tuples(
            st.integers(1_000, 300_000),
            st.sampled_from([None, "before-record", "after-record"]),
            st.booleans(),
        ),
        max_size=8,
    ),
)
def test_each_credit_is_paid_exactly_once_after_any_number_of_payouts_and_any_crash(
    payee: Payee, past: int, steps: list[tuple[int, str | None, bool]]
) -> None:
    """A step's sweep may die (the process with it, or only the sweep, the process going on
    with what the sweep had read before) and the process may restart before a step."""
    clock = StepClock(T0)
    repos = memory_repositories()
    payee.enrol(repos)
    settled_payouts(repos, payee.ids, past, 1_000, T0, node_id=PAYEE_LN)
    credited = past * 1_000
    if past:
        payee.credit(repos, credited, T0)
    outbox = Outbox(repos, clock)
    sweep = payee.sweeper(repos, clock, outbox)
    with (
        mock.patch.object(data_payouts, "MAX_PAYOUTS_LISTED", WINDOW),
        mock.patch.object(pool_payouts, "MAX_PAYOUTS", WINDOW),
    ):
        for msat, dies, restart in [*steps, (1_000, None, False)]:
            if restart:
                sweep = payee.sweeper(repos, clock, outbox)
            payee.credit(repos, msat, clock.now())
            credited += msat
            clock.advance(86_400)  # every balance of at least 1 sat is due
            outbox.dies = dies
            with contextlib.suppress(PowerCut):
                sweep.sweep()
            assert _enqueued_msat(repos) <= credited  # never paid twice
        assert _enqueued_msat(repos) == credited  # the last sweep, undisturbed, paid the rest
    payouts = numbered_payouts(repos, payee.ids)
    assert len(payouts) == len(repos.payments.for_node(PAYEE_LN, limit=10**6))
    assert len({p.payment_id for p in payouts}) == len(payouts)


def test_a_payees_payouts_are_read_page_after_page_up_to_the_first_number_never_used() -> None:
    repos = memory_repositories()
    ids = functools.partial(payout_ids, "alice")
    stored = settled_payouts(repos, ids, 7, 1_000, T0)
    settled_payouts(repos, lambda n: ids(9 + n), 1, 1_000, T0)  # payout 9, after a gap
    assert numbered_payouts(repos, ids, page=2) == stored
    assert numbered_payouts(repos, ids, page=7) == stored
    assert numbered_payouts(repos, functools.partial(payout_ids, "bob"), page=2) == []


def _settled(payment: RewardPayment, now: int) -> RewardPayment:
    return attrs.evolve(payment, state=PaymentState.SUCCEEDED, attempts=1, updated_at=now)


@attrs.define
class CountedReads:
    """The payments store, counting the payout records the sweeps read."""

    store: Any
    rows: int = 0

    def with_payment_ids(self, payment_ids: Collection[str]) -> Sequence[RewardPayment]:
        found = self.store.with_payment_ids(payment_ids)
        self.rows += len(found)
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("payee", [CONTRIBUTOR, MINER_PAYEE], ids=["contributor", "miner"])
def test_a_sweep_reads_a_payees_whole_history_once_then_only_what_is_new_or_unsettled(
    payee: Payee,
) -> None:
    clock = StepClock(T0)
    repos = memory_repositories()
    payee.enrol(repos)
    settled_payouts(repos, payee.ids, 2_000, 1_000, T0, node_id=PAYEE_LN)
    payee.credit(repos, 2_000 * 1_000, T0)
    reads = CountedReads(repos.payments)
    repos = attrs.evolve(repos, payments=reads)
    outbox = Outbox(repos, clock)
    sweep = payee.sweeper(repos, clock, outbox)
    assert sweep.sweep() == []  # nothing owed
    assert reads.rows == 2_000
    payee.credit(repos, 5_000, clock.now())
    clock.advance(86_400)
    reads.rows = 0
    (paid,) = sweep.sweep()
    assert (paid.payment_id, paid.amount_msat) == (payee.ids(2_000)[0], 5_000)
    assert reads.rows == 0  # no new record yet: the one just enqueued is read next time
    reads.rows = 0
    assert sweep.sweep() == []
    assert reads.rows == 1  # the new payout, not yet settled
    repos.payments.upsert(_settled(paid, clock.now()))
    reads.rows = 0
    assert sweep.sweep() == []
    assert reads.rows == 1  # read again once, as it was unsettled
    reads.rows = 0
    assert sweep.sweep() == []
    assert reads.rows == 0
    assert len(numbered_payouts(repos, payee.ids)) == 2_001


def test_a_miners_payout_read_before_it_settled_is_listed_once_it_settles() -> None:
    clock = StepClock(T0)
    repos = memory_repositories()
    MINER_PAYEE.enrol(repos)
    sweep = PoolPayouts(repos, clock, Outbox(repos, clock))
    MINER_PAYEE.credit(repos, 20_000_000, T0)
    clock.advance(86_400)
    (paid,) = sweep.sweep()
    assert sweep.sweep() == [] and repos.mining_payouts.recent() == []
    repos.payments.upsert(_settled(paid, clock.now()))
    sweep.sweep()
    sweep.sweep()
    (listed,) = repos.mining_payouts.recent()
    assert (listed.payment_hash, listed.miner_id, listed.amount_sat) == (
        paid.payment_hash, MINER, 20_000,
    )


def test_more_unsettled_payouts_than_one_lookup_asks_for_are_all_read_again() -> None:
    repos = memory_repositories()
    ids = functools.partial(payout_ids, "alice")
    for n in range(2 * PAGE + 7):
        payment_id, task_id = ids(n)
        repos.payments.upsert(RewardPayment(
            payment_id=payment_id, task_id=task_id, node_id=PAYEE_LN, amount_msat=1_000,
            payment_hash=hashlib.sha256(payment_id.encode()).hexdigest(), created_at=T0 + n,
            updated_at=T0 + n,
        ))  # fmt: skip
    tally = PayoutTally()
    assert len(tally.read(repos, ids)) == 2 * PAGE + 7
    again = tally.read(repos, ids)
    assert [p.payment_id for p in again] == [ids(n)[0] for n in range(2 * PAGE + 7)]
    assert (tally.count, tally.enqueued_msat, tally.newest_at) == (
        2 * PAGE + 7, (2 * PAGE + 7) * 1_000, T0 + 2 * PAGE + 6,
    )
