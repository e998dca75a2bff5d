"""The money side of a run: the books every invariant reads, and the reward outbox.

Rewards follow the coordinator's path (SRS-LN-04/05): a settled replica earns
``reward_amount_msat(price, reliability, stake bonus)`` (capped at the price the escrow released,
as for the coordinator's payouts); the outbox record (``RewardPayment``, id
``reward_payment_id``) is stored in the memory payment store, which refuses a second record
for the same id; the day's dispatcher pass decides each due record with ``outbox.decide`` and
books the answer with ``outbox.after_pay``. A payment to an offline node fails and is retried
after the outbox backoff (the next day here); a slash forfeits what is still owed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import attrs

from owm_adapters.sim.economy.actors import Agent
from owm_adapters.sim.economy.config import EconomyConfig
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.storage.memory import MemoryRepositories
from owm_core.payments.outbox import Action, after_pay, decide, reward_amount_msat
from owm_core.payments.outbox import reward_payment_id as payment_id_of
from owm_core.payments.records import PaymentState, RewardPayment, is_forfeited
from owm_core.stake.slashing import SlashingSignal

BPS = 10_000


@attrs.define
class Books:
    """Every msat that entered or left the task economy and the treasury, counted at the
    event that moved it (the conservation invariant compares these with the stores' state)."""

    genesis_msat: int
    collected_msat: int = 0
    budget_drawn_msat: int = 0
    task_shares_msat: int = 0
    withheld_msat: int = 0
    forfeited_msat: int = 0
    network_refunds_msat: int = 0
    pool_income_msat: int = 0
    miner_payouts_msat: int = 0
    grants_msat: int = 0

    @property
    def treasury_msat(self) -> int:
        """What the treasury holds now."""
        return (self.genesis_msat + self.task_shares_msat + self.withheld_msat
                + self.forfeited_msat + self.network_refunds_msat + self.pool_income_msat
                - self.budget_drawn_msat - self.miner_payouts_msat - self.grants_msat)


@attrs.define
class Outbox:
    """Reward payments owed to nodes and the daily dispatcher pass over them."""

    repositories: MemoryRepositories
    book: ChannelBook
    books: Books
    owed: dict[str, Agent] = attrs.field(factory=dict)
    enqueued_msat: int = 0

    def enqueue(self, task_id: str, agent: Agent, price_msat: int, now: int) -> int:
        """Record the reward of one settled replica (SRS-LN-04); returns its msat."""
        node = self.repositories.nodes.get(agent.node_id)
        stake = self.repositories.stakes.get(agent.public_key)
        assert node is not None
        bonus = stake.bonus_bps if stake is not None else BPS
        amount = reward_amount_msat(price_msat, node.reliability_ppm, bonus)
        self.books.withheld_msat += price_msat - amount
        if amount <= 0:
            return 0
        payment_id = payment_id_of(task_id, agent.node_id)
        payment_hash = hashlib.sha256(payment_id.encode()).hexdigest()
        self.repositories.payments.upsert(RewardPayment(
            payment_id=payment_id, task_id=task_id, node_id=agent.node_id, amount_msat=amount,
            payment_hash=payment_hash, created_at=now, updated_at=now,
        ))
        self.owed[payment_hash] = agent
        self.enqueued_msat += amount
        agent.earned_msat += amount
        return amount

    def dispatch(self, now: int) -> None:
        """Pay every due record once (decide → pay → after_pay), as the dispatcher does."""
        payments = self.repositories.payments
        for payment_hash, agent in list(self.owed.items()):
            payment = payments.get(payment_hash)
            if payment is None or payment.settled or is_forfeited(payment):
                del self.owed[payment_hash]
                continue
            decision = decide(payment, None, now)
            if decision.action is not Action.SEND:
                continue
            result = self.book.pay(payment_hash, payment.amount_msat,
                                   reachable=agent.online and agent.registered)
            done = payments.upsert(after_pay(decision.payment, result, now))
            if done.state is PaymentState.SUCCEEDED:
                agent.paid_msat += done.amount_msat
                del self.owed[payment_hash]

    def pending_msat(self) -> int:
        """What the outbox still owes: records neither paid nor forfeited."""
        total = 0
        for payment_hash in self.owed:
            payment = self.repositories.payments.get(payment_hash)
            if payment is not None and not payment.settled and not is_forfeited(payment):
                total += payment.amount_msat
        return total


@attrs.define
class PaidWork:
    """What the market and the FL rounds share: settings, store, outbox, books, the run's
    random source, and where slashing signals go."""

    config: EconomyConfig
    repositories: MemoryRepositories
    outbox: Outbox
    books: Books
    rng: random.Random
    report: Callable[[list[SlashingSignal]], None]
