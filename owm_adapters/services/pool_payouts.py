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
(:func:`owm_core.pool.fpps.fpps_payout_ids`): a sweep repeated after a crash finds the record
and pays nothing twice; the outbox (:class:`~owm_adapters.services.payouts.PayoutDispatcher`)
pays it exactly once (SRS-LN-08).

The treasury's 20 % of every share (SRS-POOL-08) accrues in the credit row
:data:`~owm_core.pool.fpps.TREASURY_CREDIT_ID` as shares are accepted. When the pool is given a
``treasury_destination`` (``[pool] treasury_node``: the Lightning node, or an invoice, that
receives the cut), every sweep that pays miners also enqueues what the treasury is owed, under
its own deterministic ids: the treasury's payment joins the batch of any miner payout made
after the treasury's previous payment, so a crash between the miners' payments and the
treasury's is made good by the next sweep, and nothing is paid twice. Without a destination
the cut stays where the pool's coinbase put it, with the pool.

Once the outbox has paid one, the sweep lists it in ``mining_payouts`` (the public payout
list, ``GET /v1/mining/payouts`` and the dashboard: SRS-POOL-10), once per payment hash; the
treasury's with no miner.
"""

from __future__ import annotations

import logging

from owm_adapters.services.data_payouts import EnqueuesPayouts
from owm_adapters.services.workers import Loop
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
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)

MAX_PAYOUTS = 100_000


def payouts_of(repositories: Repositories, miner_id: str) -> list[RewardPayment]:
    """The outbox records of ``miner_id``'s FPPS payouts, in order."""
    found: list[RewardPayment] = []
    for n in range(MAX_PAYOUTS):
        payment_id, task_id = fpps_payout_ids(miner_id, n)
        records = [p for p in repositories.payments.for_task(task_id) if p.payment_id == payment_id]
        if not records:
            break
        found.extend(records)
    return found


class PoolPayouts:
    """The FPPS payout sweep (see the module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        clock: Clock,
        payouts: EnqueuesPayouts,
        policy: PayoutPolicy | None = None,
        period_s: float = 60.0,
        treasury_destination: str = "",
    ) -> None:
        self._repositories = repositories
        self._clock = clock
        self._payouts = payouts
        self.policy = policy or PayoutPolicy()
        self._treasury = treasury_destination
        self._loop = Loop("pool-payouts", self.sweep, period_s)

    def sweep(self) -> list[RewardPayment]:
        """Enqueue the payouts due now, the treasury's cut with them; the ones enqueued."""
        now = self._clock.now()
        enqueued: list[RewardPayment] = []
        latest = -1  # when the newest miner payout was enqueued
        treasury: MinerCredit | None = None
        block_at = self._repositories.shares.latest_block_at()
        for credit in self._repositories.miner_credits.list():
            if credit.miner_id == TREASURY_CREDIT_ID:
                treasury = credit
                continue
            paid, last = self._pay_if_due(credit, now, block_at)
            latest = max(latest, last)
            if paid is not None:
                enqueued.append(paid)
        if treasury is not None:
            cut = self._pay_treasury(treasury, latest)
            enqueued.extend([cut] if cut is not None else [])
        return enqueued

    def _pay_if_due(
        self, credit: MinerCredit, now: int, block_at: int | None
    ) -> tuple[RewardPayment | None, int]:
        """The payout enqueued (if due; a block found at ``block_at`` since the miner's last
        payout makes any balance due) and when the miner's newest payout was enqueued."""
        node = self._repositories.nodes.get(credit.miner_id)
        if node is None:
            return None, -1
        done = payouts_of(self._repositories, credit.miner_id)
        self._list_paid(credit.miner_id, done)
        owed = credit.credited_msat - sum(p.amount_msat for p in done)
        last = max((p.created_at for p in done), default=node.registered_at)
        account = MinerAccount(credit.miner_id, node.ln_node_uri.pubkey, max(owed, 0) // 1000, last)
        if not payout_due(account, now, self.policy, last_block_at=block_at):
            return None, max((p.created_at for p in done), default=-1)
        payment_id, task_id = fpps_payout_ids(credit.miner_id, len(done))
        payment = self._payouts.enqueue_to(
            node.ln_node_uri.pubkey, payment_id, task_id, owed, f"OWM pool FPPS {credit.miner_id}"
        )
        log.info("FPPS payout of %s: %d msat enqueued as %s", credit.miner_id, owed,
                 payment.payment_hash)  # fmt: skip
        return payment, payment.created_at

    def _pay_treasury(self, credit: MinerCredit, latest_miner_payout: int) -> RewardPayment | None:
        """The treasury's owed cut, enqueued when a miner payout was made after the treasury's
        previous payment (the same batch, or the one a crash interrupted: SRS-POOL-08)."""
        if not self._treasury:
            return None
        done = payouts_of(self._repositories, TREASURY_CREDIT_ID)
        self._list_paid(None, done)
        owed = credit.credited_msat - sum(p.amount_msat for p in done)
        previous = max((p.created_at for p in done), default=-1)
        if owed < 1000 or latest_miner_payout <= previous:
            return None
        payment_id, task_id = fpps_payout_ids(TREASURY_CREDIT_ID, len(done))
        payment = self._payouts.enqueue_to(
            self._treasury, payment_id, task_id, owed, "OWM pool treasury cut"
        )
        log.info("pool treasury cut: %d msat enqueued as %s", owed, payment.payment_hash)
        return payment

    def _list_paid(self, miner_id: str | None, done: list[RewardPayment]) -> None:
        listed = {p.payment_hash for p in self._repositories.mining_payouts.recent(
            MAX_PAYOUTS, miner_id=miner_id)}  # fmt: skip
        for payment in done:
            if payment.settled and payment.payment_hash not in listed:
                self._repositories.mining_payouts.add(MiningPayout(
                    paid_at=payment.updated_at, amount_sat=max(payment.amount_msat // 1000, 1),
                    payment_hash=payment.payment_hash, miner_id=miner_id,
                ))  # fmt: skip

    def start(self) -> None:
        """Start the sweep's worker thread."""
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it."""
        self._loop.stop(timeout_s)
