"""The bounty desk's lapse worker walks every waiting bounty, a page at a time (SRS-LN-08):
bounties that cannot lapse (claimed ones waiting for their merge, a sponsor's refund that
cannot be enqueued, an invoice the treasury's node cannot look up) never keep the others from
lapsing, however many of them there are.

The page size is patched small so a few bounties show what 1,000 would in production.
"""

from __future__ import annotations

import math
from collections import Counter
from contextlib import ExitStack
from unittest.mock import patch

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services import bounty_book, github_bounties
from owm_adapters.services.bounty_book import BountyBook, BountyTerms
from owm_adapters.services.github_bounties import BountyDesk
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import LightningUnavailable
from owm_core.governance.bounty_rules import Funding
from owm_core.governance.contributions import Bounty, BountyStatus, open_bounty
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.payments.outbox import bounty_refund_payment_id
from owm_core.payments.records import RewardPayment
from owm_core.ports.repositories import Repositories
from tests.server.harness import StepClock

T0 = 1_800_000_000
LAPSE_S = 86_400
SPONSOR = "02" + "ab" * 32
BROKEN_SPONSOR = "03" + "cd" * 32  # its refund cannot be enqueued

WAITS = "claimed, waiting for its merge"
ABANDONED = "open, nobody claimed it"
UNREFUNDABLE = "sponsored, nobody claimed it, refund refused"
UNPAID = "sponsor never paid"
UNKNOWN = "sponsor's invoice cannot be looked up"
KINDS = [WAITS, ABANDONED, UNREFUNDABLE, UNPAID, UNKNOWN]
LAPSES = {ABANDONED, UNPAID}



@attrs.define
class Treasury:
    """Sponsors' invoices, never paid; those in ``unknown`` cannot be looked up."""

    unknown: set[str] = attrs.Factory(set)

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        if payment_hash in self.unknown:
            raise LightningUnavailable("the treasury's node does not answer for this invoice")
        return Invoice("lnbcrt1", payment_hash, 1_000, 3_600, T0, InvoiceState.CANCELED)


@attrs.define
class Payouts:
    """The payout outbox: refunds to ``BROKEN_SPONSOR`` are refused."""

    refunds: list[str] = attrs.Factory(list)

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        if payee == BROKEN_SPONSOR:
            raise LightningUnavailable("the sponsor's node gives no invoice")
        self.refunds.append(payment_id)
        return None  # type: ignore[return-value]

    def bounty_merged(self, bounty_id: str, pr_ref: str, payee: str) -> RewardPayment:
        raise AssertionError("no pull request is merged here")


def a_bounty(n: int, kind: str) -> Bounty:
    bounty = open_bounty(
        bounty_id=f"bnt_{n:04d}", repository="owm-network/owm", issue_number=n + 1,
        title="fix it", amount_sat=1_000, created_by="github:maintainer", now=T0 + n,
    )  # fmt: skip
    sponsored = attrs.evolve(
        bounty, funding=Funding.SPONSOR, sponsor_payee=SPONSOR, sponsor_invoice_hash=f"{n:064x}"
    )
    return {
        WAITS: attrs.evolve(bounty, claimant="alice", claimant_payee=SPONSOR),
        ABANDONED: bounty,
        UNREFUNDABLE: attrs.evolve(sponsored, sponsor_payee=BROKEN_SPONSOR),
        UNPAID: attrs.evolve(sponsored, status=BountyStatus.FUNDING),
        UNKNOWN: attrs.evolve(sponsored, status=BountyStatus.FUNDING),
    }[kind]


@attrs.define
class Stage:
    kinds: list[str]
    clock: StepClock = attrs.Factory(StepClock)
    treasury: Treasury = attrs.Factory(Treasury)
    payouts: Payouts = attrs.Factory(Payouts)
    repos: Repositories = attrs.Factory(memory_repositories)
    desk: BountyDesk = attrs.field(init=False)

    @desk.default
    def _desk(self) -> BountyDesk:
        terms = BountyTerms(budget_sat=10**9, unclaimed_lapse_s=LAPSE_S)
        book = BountyBook(self.repos, self.clock, self.treasury, terms)  # type: ignore[arg-type]
        return BountyDesk(self.repos, book, self.payouts)

    def __attrs_post_init__(self) -> None:
        for n, kind in enumerate(self.kinds):
            self.repos.bounties.add(a_bounty(n, kind))
            if kind == UNKNOWN:
                self.treasury.unknown.add(f"{n:064x}")
        self.clock.advance(LAPSE_S + len(self.kinds))  # every abandoned or unpaid one is due

    def statuses(self) -> list[BountyStatus]:
        found = (self.repos.bounties.get(f"bnt_{n:04d}") for n in range(len(self.kinds)))
        return [b.status for b in found if b is not None]


def lapse_runs(stage: Stage, runs: int, limit: int) -> None:
    with ExitStack() as patched:
        for module in (bounty_book, github_bounties):
            patched.enter_context(patch.object(module, "LAPSE_BATCH", limit))
        for _ in range(runs):
            stage.desk.lapse()


@given(kinds=st.lists(st.sampled_from(KINDS), max_size=24), limit=st.integers(1, 5))
@settings(max_examples=60, deadline=None)
def test_every_due_bounty_lapses_within_ceil_n_over_limit_plus_one_runs(
    kinds: list[str], limit: int
) -> None:
    stage = Stage(kinds)
    waiting = Counter(BountyStatus.FUNDING if k in (UNPAID, UNKNOWN) else BountyStatus.OPEN
                      for k in kinds)
    lapse_runs(stage, math.ceil(max(waiting.values(), default=0) / limit) + 1, limit)
    for kind, status in zip(kinds, stage.statuses(), strict=True):
        if kind in LAPSES:
            assert status is BountyStatus.CANCELLED, kind
        else:
            assert status in (BountyStatus.OPEN, BountyStatus.FUNDING), kind


def test_abandoned_bounties_lapse_behind_a_full_page_of_claimed_newer_ones() -> None:
    stage = Stage([ABANDONED] * 6 + [WAITS] * 3)  # the newest three: all the old worker saw
    lapse_runs(stage, 4, limit=3)
    assert stage.statuses() == [BountyStatus.CANCELLED] * 6 + [BountyStatus.OPEN] * 3


def test_unpaid_sponsored_bounties_lapse_though_one_invoice_cannot_be_looked_up() -> None:
    stage = Stage([UNPAID, UNKNOWN, UNPAID])
    lapse_runs(stage, 1, limit=1_000)
    assert stage.statuses() == [
        BountyStatus.CANCELLED, BountyStatus.FUNDING, BountyStatus.CANCELLED,
    ]


def test_sponsors_are_refunded_though_one_refund_cannot_be_enqueued() -> None:
    stage = Stage([UNREFUNDABLE, ABANDONED, UNREFUNDABLE])
    refunded = attrs.evolve(a_bounty(3, UNREFUNDABLE), bounty_id="bnt_0003",
                            sponsor_payee=SPONSOR)
    stage.repos.bounties.add(refunded)
    lapse_runs(stage, 1, limit=1_000)
    assert stage.statuses() == [
        BountyStatus.OPEN, BountyStatus.CANCELLED, BountyStatus.OPEN,
    ]
    assert stage.repos.bounties.get("bnt_0003") == attrs.evolve(
        refunded, status=BountyStatus.REFUNDED
    )
    assert stage.payouts.refunds == [bounty_refund_payment_id("bnt_0003")]
