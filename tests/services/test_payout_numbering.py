"""Numbered payouts: however many payouts a data contributor or a miner has had, and wherever a
sweep dies between computing a payout and recording it, every credit is paid exactly once
(SRS 2.2, SRS-POOL-07, SRS-LN-04, SRS-LN-08)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from unittest import mock

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services import data_payouts, pool_payouts
from owm_adapters.services.data_payouts import DataCreditPayouts
from owm_adapters.services.payout_sweeps import numbered_payouts
from owm_adapters.services.pool_payouts import PoolPayouts
from owm_adapters.storage.memory import memory_repositories
from owm_core.knowledge.credit_payouts import DataPayee, payout_ids
from owm_core.knowledge.retrieval import DataCredit
from owm_core.nodes.registry import LnNodeUri
from owm_core.payments.records import RewardPayment
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
    its sweep (a new one each time: every sweep runs as if after a restart)."""

    ids: Callable[[int], tuple[str, str]]
    credit: Callable[[Repositories, int, int], None]
    sweep: Callable[[Repositories, StepClock, Outbox], object]
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
    sweep=lambda repos, clock, outbox: DataCreditPayouts(repos, clock, outbox).sweep(),
    enrol=lambda repos: repos.data_payees.put(DataPayee("alice", PAYEE_LN, T0)),
)
MINER_PAYEE = Payee(
    ids=functools.partial(fpps_payout_ids, MINER),
    credit=_credit_miner,
    sweep=lambda repos, clock, outbox: PoolPayouts(repos, clock, outbox).sweep(),
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
            st.integers(1_000, 300_000), st.sampled_from([None, "before-record", "after-record"])
        ),
        max_size=8,
    ),
)
def test_each_credit_is_paid_exactly_once_after_any_number_of_payouts_and_any_crash(
    payee: Payee, past: int, steps: list[tuple[int, str | None]]
) -> None:
    clock = StepClock(T0)
    repos = memory_repositories()
    payee.enrol(repos)
    settled_payouts(repos, payee.ids, past, 1_000, T0, node_id=PAYEE_LN)
    credited = past * 1_000
    if past:
        payee.credit(repos, credited, T0)
    outbox = Outbox(repos, clock)
    with (
        mock.patch.object(data_payouts, "MAX_PAYOUTS_LISTED", WINDOW),
        mock.patch.object(pool_payouts, "MAX_PAYOUTS", WINDOW),
    ):
        for msat, dies in [*steps, (1_000, None)]:
            payee.credit(repos, msat, clock.now())
            credited += msat
            clock.advance(86_400)  # every balance of at least 1 sat is due
            outbox.dies = dies
            with contextlib.suppress(PowerCut):
                payee.sweep(repos, clock, outbox)
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
