"""The funding sweep walks every open escrow and every open top-up, a page at a time: rows that
can never be closed (their reconciliation fails, their invoice cannot be looked up) do not hide
the rows stored after them, however many there are.

The sweep's page size is patched small so a few rows show what 1,000 would in production.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from unittest.mock import patch

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services.coordinator import funding as funding_module
from owm_adapters.services.coordinator.funding import NETWORK, TaskFunding
from owm_adapters.services.coordinator.shared import (
    NETWORK_BUDGET,
    ClientGuards,
    FundingConfig,
    ServiceConfig,
)
from owm_adapters.storage.memory import memory_repositories
from owm_core.coordination.endings import end_task
from owm_core.coordination.tasks import submit_task
from owm_core.errors import LightningUnavailable, StoreUnavailable
from owm_core.market.funding import TopUp
from owm_core.market.tasks import TaskRequest, VerificationPolicy
from owm_core.nodes.tiers import Tier
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.ports.repositories import Repositories
from tests.server.harness import COORDINATOR_KEY, StepClock

T0 = 1_800_000_000
POLICY = VerificationPolicy(redundancy=1)
CONFIG = FundingConfig(
    max_price_msat=10_000, budgets_msat={NETWORK_BUDGET: 10**12}, period_s=10**6, task_ttl_s=60,
)



@attrs.define
class Treasury:
    """Every top-up invoice is paid; the ones in ``unreachable`` cannot be looked up."""

    unreachable: set[str] = attrs.Factory(set)

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        if payment_hash in self.unreachable:
            raise LightningUnavailable("the treasury's node does not answer for this invoice")
        return Invoice(f"lnbcrt{payment_hash[-4:]}", payment_hash, 1_000, 3_600, T0,
                       InvoiceState.SETTLED)


@attrs.define
class Desk:
    """A coordinator's funding books over the in-memory store, and the market's ending of an
    overdue task, which fails for the task ids in ``stuck``."""

    clock: StepClock = attrs.Factory(StepClock)
    treasury: Treasury = attrs.Factory(Treasury)
    repos: Repositories = attrs.Factory(memory_repositories)
    stuck: set[str] = attrs.Factory(set)
    sweeps: int = 0
    funding: TaskFunding = attrs.field(init=False)

    @funding.default
    def _books(self) -> TaskFunding:
        return TaskFunding(
            self.repos, self.treasury, self.clock, CONFIG, POLICY,  # type: ignore[arg-type]
            ClientGuards.sized_by(ServiceConfig(funding=CONFIG)),
            coordinator_key=COORDINATOR_KEY.public_key_hex,
        )

    def submit(self, task_id: str) -> None:
        request = TaskRequest(
            task_id=task_id, task_type="inference", input_schema_id="s", input_schema_version=1,
            min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False,
            max_price_msat=1_000,
        )
        with self.repos.atomic():
            submit_task(self.repos, request, POLICY)
            self.funding.open_escrow(NETWORK, request)

    def sweep(self) -> None:
        self.sweeps += 1
        self.funding.sweep(float(self.sweeps * 10), self.end_overdue)

    def end_overdue(self, task_id: str) -> None:
        if task_id in self.stuck:
            raise StoreUnavailable("this task's rows cannot be written")
        end_task(self.repos, task_id, self.clock.now(), POLICY, b"seed", overdue=True)

    def open_escrows(self) -> set[str]:
        return {e.task_id for _, e in self.repos.funding.open_escrows(limit=10**6)}


def top_up(n: int) -> TopUp:
    return TopUp(f"{n:064x}", f"{n:064x}", 1_000, f"lnbcrt{n}", T0, T0 + 3_600)


@given(
    count=st.integers(0, 25), limit=st.integers(1, 6),
    stuck=st.sets(st.integers(0, 24)),
)
@settings(max_examples=60, deadline=None)
def test_every_open_escrow_is_reconciled_within_ceil_n_over_limit_plus_one_sweeps(
    count: int, limit: int, stuck: set[int]
) -> None:
    desk = Desk()
    for n in range(count):
        desk.submit(f"t{n}")
    desk.stuck = {f"t{n}" for n in stuck if n < count}
    desk.clock.advance(CONFIG.task_ttl_s)  # every task is overdue: ending it closes its escrow
    with patch.object(funding_module, "SWEEP_LIMIT", limit):
        for _ in range(math.ceil(count / limit) + 1):
            desk.sweep()
    assert desk.open_escrows() == desk.stuck


def test_escrows_after_a_full_page_of_stuck_ones_are_refunded_within_a_few_sweeps() -> None:
    desk = Desk()
    for n in range(10):
        desk.submit(f"t{n}")
    desk.stuck = {"t0", "t1", "t2"}  # the oldest, a whole page: the old sweep saw only them
    desk.clock.advance(CONFIG.task_ttl_s)
    with patch.object(funding_module, "SWEEP_LIMIT", 3):
        for _ in range(5):
            desk.sweep()
    assert desk.open_escrows() == {"t0", "t1", "t2"}


def sweeps_until_credited(desk: Desk, count: int, limit: int) -> Iterator[int]:
    """How many top-ups are credited after each sweep."""
    with patch.object(funding_module, "SWEEP_LIMIT", limit):
        for _ in range(math.ceil(count / limit) + 1):
            desk.funding.credit_paid_top_ups()
            yield sum(
                1 for n in range(count) if desk.repos.funding.balance(top_up(n).public_key)
            )


@given(count=st.integers(0, 25), limit=st.integers(1, 6), stuck=st.sets(st.integers(0, 24)))
@settings(max_examples=60, deadline=None)
def test_every_paid_top_up_is_credited_within_ceil_n_over_limit_plus_one_sweeps(
    count: int, limit: int, stuck: set[int]
) -> None:
    desk = Desk()
    for n in range(count):
        desk.repos.funding.add_top_up(top_up(n))
    desk.treasury.unreachable = {top_up(n).payment_hash for n in stuck}
    credited = list(sweeps_until_credited(desk, count, limit))
    assert credited[-1] == count - len({n for n in stuck if n < count})
    assert {t.payment_hash for t in desk.repos.funding.open_top_ups(limit=10**6)} == {
        top_up(n).payment_hash for n in stuck if n < count
    }


def test_top_ups_after_a_full_page_of_unreachable_invoices_are_credited() -> None:
    desk = Desk()
    for n in range(7):
        desk.repos.funding.add_top_up(top_up(n))
    desk.treasury.unreachable = {top_up(n).payment_hash for n in range(3)}
    assert list(sweeps_until_credited(desk, 7, 3)) == [0, 3, 4, 4]
