"""Miners' FPPS credits paid over Lightning through the payout outbox (SRS-POOL-07, SRS-LN-14).

:class:`PoolPayouts` is the sweep a worker runs every ``period_s``: for every miner with a
credit (:class:`~owm_core.pool.fpps.MinerCredit`, written by the pool as shares are accepted)
whose node is registered, what is owed — everything credited minus everything already enqueued
— is paid to the node's Lightning node when :func:`owm_core.pool.fpps.payout_due` says so
(10,000 sat, or an hour after the previous payout, or after registration, for the first, or
whatever is owed once the pool has found a block since the miner's previous payout: so FPPS
rewards leave within one sweep period, far inside 60 minutes, of every block the pool finds —
SRS-LN-14, SRS-PERF-12). Each
payout is the miner's ``n``-th under a deterministic outbox id
(:func:`owm_core.pool.fpps.fpps_payout_ids`), ``n`` counting every payout the miner has had
(:class:`~owm_adapters.services.payout_sweeps.PayoutTally`): a sweep repeated after a crash
finds the record and pays nothing twice; the outbox
(:class:`~owm_adapters.services.payouts.PayoutDispatcher`) pays it exactly once (SRS-LN-08).

The treasury's 20 % of every share (SRS-POOL-08) accrues in the credit row
:data:`~owm_core.pool.fpps.TREASURY_CREDIT_ID` as shares are accepted. When the pool is given a
``treasury_destination`` (``[pool] treasury_node``: the Lightning node, or an invoice, that
receives the cut), every sweep that pays miners also enqueues what the treasury is owed, under
its own deterministic ids: the treasury's payment joins the batch of any miner payout made
after the treasury's previous payment, so a crash between the miners' payments and the
treasury's is made good by the next sweep, and nothing is paid twice. Without a destination
the cut stays where the pool's coinbase put it, with the pool.

With :class:`FppsFunds` (``[pool] fpps_reserve_sat`` ≥ 0) a sweep never takes the pool's FPPS
funds below ``[pool] treasury_floor_sat``: the funds are measured as the reserve the treasury
set aside for FPPS, plus every block the pool has found (as its stored shares record) at
``block_value_sat``, minus every FPPS payout ever enqueued to miners (the outbox records,
rounded up to the sat). The due balances that do not fit wait, still credited, and are paid
oldest first (:func:`owm_core.pool.treasury_floor.pay_within_floor`) once a block brings the
funds; the treasury's own cut is not held back by the floor (it goes to the treasury).

Once the outbox has paid one, the sweep lists it in ``mining_payouts`` (the public payout
list, ``GET /v1/mining/payouts`` and the dashboard: SRS-POOL-10), once per payment hash; the
treasury's with no miner.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import operator

import attrs

from owm_adapters.services.payout_sweeps import PayoutSweep, PayoutTally, every_payee
from owm_core.errors import Conflict
from owm_core.payments.records import RewardPayment
from owm_core.pool.fpps import (
    TREASURY_CREDIT_ID,
    MinerAccount,
    MinerCredit,
    PayoutPolicy,
    fpps_payout_ids,
    payout_due,
)
from owm_core.pool.stats import MiningPayout
from owm_core.pool.treasury_floor import Owed, pay_within_floor

log = logging.getLogger(__name__)

_MINER = operator.attrgetter("miner_id")

MAX_PAYOUTS = 100_000
"""How many of a payee's newest public payouts a sweep reads to see which are listed."""


def _sat_up(msat: int) -> int:
    return -(-msat // 1000)


@attrs.frozen
class FppsFunds:
    """What the floor is measured against (module docstring): ``reserve_sat`` set aside by the
    treasury, ``block_value_sat`` per block the pool found, and the floor kept (SRS-POOL-07)."""

    reserve_sat: int
    block_value_sat: int
    floor_sat: int = 0


@attrs.frozen
class _Due:
    credit: MinerCredit
    destination: str
    number: int  # the payout's: how many the miner has had
    owed_msat: int
    since: int


@attrs.define(eq=False)
class PoolPayouts(PayoutSweep):
    """The FPPS payout sweep (see the module docstring)."""

    loop_name = "pool-payouts"
    policy: PayoutPolicy = attrs.Factory(PayoutPolicy)
    _treasury: str = attrs.field(default="", alias="treasury_destination")
    funds: FppsFunds | None = None

    def sweep(self) -> list[RewardPayment]:
        """Enqueue the payouts due now (within the floor), the treasury's cut with them; the
        ones enqueued."""
        now = self._clock.now()
        latest = -1  # when the newest miner payout was enqueued
        treasury: MinerCredit | None = None
        block_at = self._repositories.shares.latest_block_at()
        due: list[_Due] = []
        spent_msat = 0
        for credit in every_payee(self._repositories.miner_credits.list, _MINER):
            if credit.miner_id == TREASURY_CREDIT_ID:
                treasury = credit
                continue
            found, last, paid_msat = self._due(credit, now, block_at)
            latest, spent_msat = max(latest, last), spent_msat + paid_msat
            due.extend([found] if found is not None else [])
        enqueued = [p for d in self._within_floor(due, spent_msat) if (p := self._enqueue(d))]
        latest = max([latest, *(p.created_at for p in enqueued)])
        if treasury is not None:
            cut = self._pay_treasury(treasury, latest)
            enqueued.extend([cut] if cut is not None else [])
        return enqueued

    def _due(
        self, credit: MinerCredit, now: int, block_at: int | None
    ) -> tuple[_Due | None, int, int]:
        """The miner's balance if due now (a block found at ``block_at`` since the miner's last
        payout makes any balance due), when its newest payout was enqueued, and the msat of
        every payout enqueued to it."""
        node = self._repositories.nodes.get(credit.miner_id)
        if node is None:
            return None, -1, 0
        done = self._paid_read(credit.miner_id)
        owed = credit.credited_msat - done.enqueued_msat
        last = node.registered_at if done.newest_at is None else done.newest_at
        account = MinerAccount(credit.miner_id, node.ln_node_uri.pubkey, max(owed, 0) // 1000, last)
        newest = -1 if done.newest_at is None else done.newest_at
        if not payout_due(account, now, self.policy, last_block_at=block_at):
            return None, newest, done.enqueued_msat
        due = _Due(credit, node.ln_node_uri.pubkey, done.count, owed, last)
        return due, newest, done.enqueued_msat

    def _within_floor(self, due: list[_Due], spent_msat: int) -> list[_Due]:
        """The due balances the FPPS funds can pay without going below the floor, oldest
        first (all of them without :class:`FppsFunds`)."""
        funds = self.funds
        if funds is None:
            return due
        found = self._repositories.shares.blocks_since(0)
        balance = funds.reserve_sat + found * funds.block_value_sat - _sat_up(spent_msat)
        by_id = {d.credit.miner_id: d for d in due}
        owed = [Owed(d.credit.miner_id, _sat_up(d.owed_msat), d.since) for d in due]
        fits = pay_within_floor(owed, balance, funds.floor_sat)
        if len(fits) < len(due):
            log.info("FPPS: %d of %d due balances wait: funds %d sat, floor %d sat",
                     len(due) - len(fits), len(due), balance, funds.floor_sat)  # fmt: skip
        return [by_id[o.key] for o in fits]

    def _enqueue(self, due: _Due) -> RewardPayment | None:
        miner_id = due.credit.miner_id
        return self._enqueued(
            miner_id, f"FPPS payout of {miner_id}", due.destination,
            fpps_payout_ids(miner_id, due.number), due.owed_msat, f"OWM pool FPPS {miner_id}",
        )  # fmt: skip

    def _pay_treasury(self, credit: MinerCredit, latest_miner_payout: int) -> RewardPayment | None:
        """The treasury's owed cut, enqueued when a miner payout was made after the treasury's
        previous payment (the same batch, or the one a crash interrupted: SRS-POOL-08)."""
        if not self._treasury:
            return None
        done = self._paid_read(TREASURY_CREDIT_ID)
        owed = credit.credited_msat - done.enqueued_msat
        previous = -1 if done.newest_at is None else done.newest_at
        if owed < 1000 or latest_miner_payout <= previous:
            return None
        return self._enqueued(
            TREASURY_CREDIT_ID, "pool treasury cut", self._treasury,
            fpps_payout_ids(TREASURY_CREDIT_ID, done.count), owed, "OWM pool treasury cut",
        )  # fmt: skip

    def _paid_read(self, credit_id: str) -> PayoutTally:
        """The tally of ``credit_id``'s payouts (a miner's, or the treasury's), brought up to
        date, each settled payout among the records read listed once (SRS-POOL-10)."""
        first = credit_id not in self._tallies
        tally, read = self._payouts_read(credit_id, functools.partial(fpps_payout_ids, credit_id))
        self._list_paid(None if credit_id == TREASURY_CREDIT_ID else credit_id, read, first)
        return tally

    def _list_paid(
        self, miner_id: str | None, read: list[RewardPayment], whole_history: bool
    ) -> None:
        """List each settled payout in ``read``. A payout already listed is refused by the
        store; the first read of a whole history skips the newest :data:`MAX_PAYOUTS` listed
        ones up front instead of having each refused."""
        settled = [p for p in read if p.settled]
        if not settled:
            return
        listed = {p.payment_hash for p in self._repositories.mining_payouts.recent(
            MAX_PAYOUTS, miner_id=miner_id)} if whole_history else set()  # fmt: skip
        for payment in settled:
            if payment.payment_hash in listed:
                continue
            with contextlib.suppress(Conflict):
                self._repositories.mining_payouts.add(MiningPayout(
                    paid_at=payment.updated_at, amount_sat=max(payment.amount_msat // 1000, 1),
                    payment_hash=payment.payment_hash, miner_id=miner_id,
                ))  # fmt: skip
