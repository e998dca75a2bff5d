"""Miners' FPPS credits paid over Lightning through the payout outbox: at 10,000 sat, an hour
after the previous payout, or at the next sweep after the pool finds a block (so within 60 min
of it), to the node's own Lightning node, exactly once per payout, across a
restart of the sweep, the treasury's 20 % in the same batch (SRS-POOL-04/07/08, SRS-LN-08/14)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import attrs
import pytest

from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.lightning.node_invoices import NodeInvoiceSource
from owm_adapters.services import pool_payouts
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_adapters.services.pool_payouts import FppsFunds, PoolPayouts
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.nodes.registry import LnNodeUri
from owm_core.payments.records import RewardPayment
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.fpps import TREASURY_CREDIT_ID, MinerCredit, fpps_payout_ids
from tests.core.nodes.test_registry import make_node
from tests.server.harness import StepClock
from tests.services.payout_history import settled_payouts

T0 = 1_800_000_000
MINER = "n" + "7" * 40


@attrs.define
class Stage:
    repos: MemoryRepositories
    ledger: SimLedger
    clock: StepClock
    payouts: PoolPayouts
    dispatcher: PayoutDispatcher
    miner_ln: str
    treasury_ln: str

    def credit(self, msat: int) -> None:
        old = self.repos.miner_credits.get(MINER)
        total = msat + (old.credited_msat if old is not None else 0)
        self.repos.miner_credits.put(MinerCredit(MINER, total, "1/3", self.clock.now()))

    def held_sat(self) -> int:
        """What the miner's Lightning node holds in its channel with the treasury."""
        (channel,) = self.ledger.lightning("miner").channels_with(self.treasury_ln)
        return channel.local_balance_sat


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    clock = StepClock(T0)
    repos = memory_repositories()
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    treasury_key, miner_ln = ledger.add_node("treasury"), ledger.add_node("miner")
    ledger.open_channel(treasury_key, miner_ln, 100_000_000)
    uri = LnNodeUri.parse(f"{miner_ln}@127.0.0.1:9735")
    repos.nodes.add(make_node(node_id=MINER, ln_node_uri=uri, registered_at=T0, last_heartbeat=T0))
    dispatcher = PayoutDispatcher(repos, ledger.lightning("treasury"), LedgerInvoiceSource(ledger),
                                  clock)  # fmt: skip
    yield Stage(repos, ledger, clock, PoolPayouts(repos, clock, dispatcher), dispatcher, miner_ln,
                treasury_key)  # fmt: skip
    dispatcher.stop()


def test_a_balance_over_ten_thousand_sat_is_paid_to_the_nodes_lightning_node_once(
    stage: Stage,
) -> None:
    stage.credit(9_999_999)
    assert stage.payouts.sweep() == []  # 9,999 sat: under the threshold, the hour not over
    stage.credit(1)
    (payout,) = stage.payouts.sweep()
    assert payout.amount_msat == 10_000_000
    assert stage.payouts.sweep() == []  # enqueued: nothing more is owed
    assert PoolPayouts(stage.repos, stage.clock, stage.dispatcher).sweep() == []  # after a restart
    stage.dispatcher.sweep()
    assert stage.held_sat() == 10_000
    stage.payouts.sweep()
    stage.payouts.sweep()  # listed once, however often the sweep runs
    (listed,) = stage.repos.mining_payouts.recent()
    assert (listed.miner_id, listed.amount_sat) == (MINER, 10_000)
    assert listed.payment_hash == payout.payment_hash


def test_an_hour_after_the_last_payout_a_small_balance_is_paid_as_the_next_payout(
    stage: Stage,
) -> None:
    stage.credit(10_000_000)
    (first,) = stage.payouts.sweep()
    stage.credit(1_500)
    assert stage.payouts.sweep() == []
    stage.clock.advance(3_600)
    (second,) = stage.payouts.sweep()
    assert second.amount_msat == 1_500 and second.payment_id != first.payment_id
    stage.dispatcher.sweep()
    assert stage.held_sat() == 10_001  # 10,001.5 sat, shown in whole sat


def test_a_miner_paid_more_often_than_the_payout_window_is_paid_each_time_after(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_payouts, "MAX_PAYOUTS", 3)
    settled_payouts(stage.repos, functools.partial(fpps_payout_ids, MINER), 4, 10_000_000, T0)
    stage.credit(4 * 10_000_000)
    stage.payouts.sweep()  # the past payouts are listed
    stage.credit(10_000_000)
    (first,) = stage.payouts.sweep()
    stage.credit(12_000_000)
    (second,) = stage.payouts.sweep()
    assert (first.amount_msat, second.amount_msat) == (10_000_000, 12_000_000)
    assert second.payment_id != first.payment_id
    assert stage.payouts.sweep() == []
    stage.dispatcher.sweep()
    assert stage.held_sat() == 22_000
    stage.payouts.sweep()
    listed = stage.repos.mining_payouts.recent(10)
    assert sorted(p.amount_sat for p in listed) == [10_000] * 5 + [12_000]


def found_block(stage: Stage, i: int) -> None:
    """The pool accepts a share that is a block now (as MiningPool.judge records it)."""
    share = AcceptedShare(MINER, 1, Fraction(1), f"{i:064x}", is_block=True)
    stage.repos.shares.add(share, stage.clock.now())


def test_a_block_found_makes_every_balance_owed_paid_over_lightning_within_the_hour(
    stage: Stage,
) -> None:
    stage.clock.advance(600)
    stage.credit(10_000_000)
    (first,) = stage.payouts.sweep()  # at the threshold: paid, the hour starts again
    stage.dispatcher.sweep()
    stage.clock.advance(60)
    stage.credit(5_000)  # 5 sat: far under the threshold, the hour not over
    assert stage.payouts.sweep() == []
    found_block(stage, 1)
    block_at = stage.clock.now()
    stage.clock.advance(60)  # the next sweep (every minute)
    (second,) = stage.payouts.sweep()
    assert second.amount_msat == 5_000 and second.payment_id != first.payment_id
    stage.dispatcher.sweep()
    assert stage.held_sat() == 10_005
    paid = stage.repos.payments.get(second.payment_hash)
    assert paid is not None and paid.settled and paid.updated_at - block_at < 3_600  # SRS-PERF-12
    stage.credit(3_000)
    stage.clock.advance(60)
    assert stage.payouts.sweep() == []  # the block was paid for; the new 3 sat wait
    found_block(stage, 2)
    stage.clock.advance(1)
    (third,) = stage.payouts.sweep()
    assert third.amount_msat == 3_000


def test_less_than_a_satoshi_is_never_sent_and_an_unregistered_miner_is_not_paid(
    stage: Stage,
) -> None:
    stage.credit(999)
    stage.clock.advance(10 * 3_600)
    assert stage.payouts.sweep() == []
    stage.repos.miner_credits.put(MinerCredit("n" + "8" * 40, 50_000_000, "0/1", T0))
    assert stage.payouts.sweep() == []


def with_treasury_node(stage: Stage, miner_msat: int, cut_msat: int) -> str:
    """Credit the miner and the treasury's cut; the treasury's receiving node (its pubkey)."""
    cold = stage.ledger.add_node("pool-treasury")
    stage.ledger.open_channel(stage.treasury_ln, cold, 10_000_000)
    stage.credit(miner_msat)
    stage.repos.miner_credits.put(MinerCredit(TREASURY_CREDIT_ID, cut_msat, "0/1", T0))
    return cold


class CrashBeforeTreasury:
    """The outbox, with the process dying as the treasury's payment is about to be enqueued."""

    def __init__(self, inner: PayoutDispatcher) -> None:
        self.inner = inner

    def enqueue_to(
        self, payee: str, payment_id: str, task_id: str, amount_msat: int, memo: str
    ) -> RewardPayment:
        if task_id.startswith(f"fpps:{TREASURY_CREDIT_ID}:"):
            raise RuntimeError("power cut")
        return self.inner.enqueue_to(payee, payment_id, task_id, amount_msat, memo)


def test_the_treasurys_20_percent_is_paid_in_the_miners_batch_exactly_once_across_a_crash(
    stage: Stage,
) -> None:
    cold = with_treasury_node(stage, 10_000_000, 2_500_000)
    crashing = PoolPayouts(stage.repos, stage.clock, CrashBeforeTreasury(stage.dispatcher),
                           treasury_destination=cold)  # fmt: skip
    with pytest.raises(RuntimeError, match="power cut"):
        crashing.sweep()  # the miner's payout is enqueued, the treasury's is not
    restarted = PoolPayouts(stage.repos, stage.clock, stage.dispatcher, treasury_destination=cold)
    stage.clock.advance(60)
    (cut,) = restarted.sweep()  # the miner is paid already; the treasury's cut joins its batch
    assert (cut.node_id, cut.amount_msat) == (cold, 2_500_000)
    assert restarted.sweep() == [] and restarted.sweep() == []  # once
    stage.repos.miner_credits.put(MinerCredit(TREASURY_CREDIT_ID, 3_000_000, "0/1", T0))
    assert restarted.sweep() == []  # owed again, but no miner batch to join yet
    stage.dispatcher.sweep()
    restarted.sweep()
    assert stage.held_sat() == 10_000
    (channel,) = stage.ledger.lightning("pool-treasury").channels_with(stage.treasury_ln)
    assert channel.local_balance_sat == 2_500
    listed = {(p.miner_id, p.amount_sat) for p in stage.repos.mining_payouts.recent()}
    assert listed == {(MINER, 10_000), (None, 2_500)}


def test_with_a_treasury_node_one_sweep_pays_the_miners_and_the_treasurys_cut_together(
    stage: Stage,
) -> None:
    cold = with_treasury_node(stage, 12_000_000, 3_000_000)
    payouts = PoolPayouts(stage.repos, stage.clock, stage.dispatcher, treasury_destination=cold)
    miner, cut = payouts.sweep()
    assert (miner.amount_msat, cut.amount_msat) == (12_000_000, 3_000_000)  # 80 % and 20 %
    assert cut.created_at == miner.created_at


def test_without_a_treasury_node_the_cut_is_not_sent(stage: Stage) -> None:
    stage.credit(10_000_000)
    stage.repos.miner_credits.put(MinerCredit(TREASURY_CREDIT_ID, 2_500_000, "0/1", T0))
    (only,) = stage.payouts.sweep()
    assert only.node_id == stage.miner_ln


def test_with_too_little_in_the_treasury_payouts_wait_and_are_paid_once_after_a_block(
    stage: Stage,
) -> None:
    funds = FppsFunds(reserve_sat=12_000, block_value_sat=50_000, floor_sat=3_000)
    payouts = PoolPayouts(stage.repos, stage.clock, stage.dispatcher, funds=funds)
    stage.credit(10_000_000)  # 10,000 sat due, but 12,000 − 10,000 < the 3,000 floor
    assert payouts.sweep() == []
    stage.clock.advance(7_200)  # hours pass: still due, still waiting, still credited
    assert payouts.sweep() == []
    assert stage.repos.miner_credits.get(MINER).credited_msat == 10_000_000  # type: ignore[union-attr]
    found_block(stage, 1)  # the block brings 50,000 sat
    stage.clock.advance(60)
    (paid,) = payouts.sweep()
    assert paid.amount_msat == 10_000_000
    assert payouts.sweep() == []  # paid once
    stage.dispatcher.sweep()
    assert stage.held_sat() == 10_000


def test_a_payout_that_fits_above_the_floor_is_not_held_back(stage: Stage) -> None:
    funds = FppsFunds(reserve_sat=13_000, block_value_sat=0, floor_sat=3_000)
    payouts = PoolPayouts(stage.repos, stage.clock, stage.dispatcher, funds=funds)
    stage.credit(10_000_000)
    (paid,) = payouts.sweep()  # 13,000 − 10,000 = the floor exactly
    assert paid.amount_msat == 10_000_000
    stage.credit(1_000)
    stage.clock.advance(3_600)  # the next 1 sat is due after the hour but would cross it
    assert payouts.sweep() == []


def test_a_miner_whose_node_has_no_invoice_yet_holds_back_no_other_payout(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """With the invoice source production runs (each registered node hands in its own
    invoice when asked), one sweep asks every due miner's node at once, and a miner whose
    node stays silent keeps neither the others nor the treasury's cut (which joins their
    batch) waiting (SRS-LN-14: within the hour of a block, whatever the number of miners)."""
    silent = "n" + "1" * 40  # first by id: the sweep meets it before the others
    silent_ln = stage.ledger.add_node("silent")
    stage.ledger.open_channel(stage.treasury_ln, silent_ln, 100_000_000)
    uri = LnNodeUri.parse(f"{silent_ln}@127.0.0.1:9735")
    stage.repos.nodes.add(make_node(node_id=silent, ln_node_uri=uri, registered_at=T0,
                                    last_heartbeat=T0, public_key="ab" * 32))  # fmt: skip
    stage.repos.miner_credits.put(MinerCredit(silent, 12_000_000, "0/1", T0))
    cold = with_treasury_node(stage, 12_000_000, 6_000_000)
    asked = NodeInvoiceSource(stage.repos, stage.clock, coordinator_key="00" * 32)
    dispatcher = PayoutDispatcher(stage.repos, stage.ledger.lightning("treasury"), asked,
                                  stage.clock)  # fmt: skip
    payouts = PoolPayouts(stage.repos, stage.clock, dispatcher, treasury_destination=cold)
    paid: list[RewardPayment] = []
    with caplog.at_level("INFO", logger="owm_adapters.services.pool_payouts"):
        for _ in range(3):
            paid += payouts.sweep()
            for request in stage.repos.payout_requests.waiting():  # all but the silent answer
                if request.payee_pubkey != silent_ln:
                    invoice = stage.ledger.create_invoice(
                        request.payee_pubkey, request.amount_msat, request.memo, request.expiry_s
                    )
                    stage.repos.payout_requests.hand_in(request.payment_id, invoice)
    assert {(p.node_id, p.amount_msat) for p in paid} == {(stage.miner_ln, 12_000_000),
                                                          (cold, 6_000_000)}  # fmt: skip
    assert {p.payee_pubkey for p in stage.repos.payout_requests.waiting()} == {silent_ln}
    waits = [r for r in caplog.records if "FPPS payout of " + silent in r.getMessage()]
    assert len(waits) == 1  # three sweeps, one line while the reason stays the same
    dispatcher.stop()
