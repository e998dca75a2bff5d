"""Work the treasury pays for: FL rounds with anomaly signals, the mining pool's FPPS, and
treasury grants through governance (SRS-SEC-05, SRS-POOL-04/07/08, SRS-GOV-02..06, SRS-LN-09).

* **FL rounds** are network tasks: ``fund_network_task`` draws the escrow from the day's
  treasury budget; participants' updates (small vectors: honest ones near a common direction,
  poisoners' sign-flipped and scaled) are aggregated with the coordinate-wise median,
  ``score_updates`` flags outliers and ``slashing_signals`` + ``named_by_peers`` name the
  unflagged participants as reporters. Unflagged participants are paid like task replicas.
* **The pool** credits each miner's day of shares with ``credit_share`` (FPPS) and pays due
  balances with ``plan_payout_batch`` as far as ``pay_within_floor`` lets them (the treasury
  never below ``treasury_floor_sat``; the rest stays owed, oldest paid first, once funds
  allow); blocks are found with the probability the shares' difficulty gives. No pool server
  runs: a miner-day is one share of its summed difficulty.
* **Governance**: a treasury grant proposal every ``grant_every_days``; after its comment
  period it is closed, decided (accepted when the treasury can pay it), acknowledged by the
  multisig holders it needs and executed with ``execute`` (enough holder signatures).
"""

from __future__ import annotations

import random
from fractions import Fraction

import attrs
import torch

from owm_adapters.sim.economy.actors import Agent
from owm_adapters.sim.economy.config import Behaviour, EconomyConfig, digest
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.sim.economy.payouts import Books, PaidWork
from owm_core.coordination.tasks import credit
from owm_core.errors import PolicyViolation
from owm_core.fl.aggregation import median
from owm_core.fl.anomaly import AnomalyScore, score_updates, slashing_signals
from owm_core.governance.proposals import (
    Proposal,
    ProposalStatus,
    ProposalType,
    TreasuryConfig,
    acknowledge,
    close_comments,
    decide,
    execute,
    submit_proposal,
)
from owm_core.market.funding import (
    FundingRules,
    PeriodBudget,
    close_escrow,
    fund_network_task,
    settle_replica,
)
from owm_core.market.tasks import Settlement, SettlementKind
from owm_core.pool.fpps import (
    FppsTerms,
    MinerAccount,
    credit_share,
    exact_share_value,
    plan_payout_batch,
)
from owm_core.pool.treasury_floor import Owed, pay_within_floor
from owm_core.stake.reporters import named_by_peers

FL_DIMENSION = 64
#: Today's subsidy and a typical fee total; the network difficulty of late 2025.
POOL_TERMS = FppsTerms(block_subsidy_sat=312_500_000, expected_fees_sat=15_000_000,
                       network_difficulty=Fraction(150 * 10**12))
#: One miner-day of shares: its summed difficulty is drawn from this range.
MINER_DAY_DIFFICULTY = (10**9, 10**10)


@attrs.define
class FlRounds(PaidWork):
    """FL rounds as network tasks."""

    budget: PeriodBudget = attrs.field(factory=lambda: PeriodBudget(0))
    rounds: int = 0
    flagged: int = 0

    def run(self, day: int, now: int, eligible: list[Agent]) -> None:
        """One round among up to ``fl_participants`` eligible nodes (at least 5)."""
        count = min(len(eligible), self.config.fl_participants)
        if count < 5:
            return
        chosen = sorted(self.rng.sample(eligible, count), key=lambda a: a.node_id)
        price = self.config.fl_price_msat
        rules = FundingRules(max_price_msat=price, period_budget_msat=price * count)
        round_id = f"fl{day}"
        try:
            self.budget, escrow = fund_network_task(self.budget, round_id, price, count, now,
                                                    rules, funder="fl-budget")
        except PolicyViolation:
            return
        self.books.budget_drawn_msat += escrow.funded_msat
        self.rounds += 1
        scores = self._scores(day, chosen)
        ids = [a.node_id for a in chosen]
        signals = list(slashing_signals(scores, ids, [digest("update", round_id, i) for i in ids],
                                        reporter=f"fl-round-{round_id}", now=now))
        flagged = {s.node_id for s in signals}
        self.flagged += len(flagged)
        for index, agent in enumerate(chosen):
            paid = agent.node_id not in flagged
            kind = SettlementKind.SETTLE if paid else SettlementKind.FORFEIT
            credit(self.repositories, Settlement(round_id, agent.node_id, kind, price if paid
                                                 else 0))
            if paid:
                escrow, _payout = settle_replica(escrow, f"{round_id}:{index}")
                self.outbox.enqueue(round_id, agent, price, now)
        escrow, refund = close_escrow(escrow)
        self.books.network_refunds_msat += refund
        if signals:
            self.report(named_by_peers(signals, ids))

    def _scores(self, day: int, chosen: list[Agent]) -> tuple[AnomalyScore, ...]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + day)
        direction = torch.randn(FL_DIMENSION, generator=generator)
        rows = []
        for agent in chosen:
            noise = 0.1 * torch.randn(FL_DIMENSION, generator=generator)
            if agent.behaviour is Behaviour.POISONER:
                rows.append(-5.0 * direction + noise)
            else:
                rows.append(direction + noise)
        updates = torch.stack(rows)
        aggregate = median(updates, f=max(0, (len(rows) - 1) // 4))
        return score_updates(updates, aggregate.update)


@attrs.define
class Pool:
    """The mining pool: FPPS credits, payouts, blocks (money in sat, booked in msat)."""

    config: EconomyConfig
    book: ChannelBook
    books: Books
    rng: random.Random
    accounts: dict[str, MinerAccount] = attrs.field(factory=dict)
    treasury_owed_sat: int = 0
    blocks: int = 0
    batches: int = 0
    #: (miner id, difficulty, credited sat) of credits off the formula by 1 sat or more.
    off_formula: list[tuple[str, int, int]] = attrs.field(factory=list)

    def day(self, now: int, miners: list[Agent]) -> None:
        """Credit each mining node's day of shares, find blocks, pay who is due."""
        total = 0
        for agent in miners:
            difficulty = self.rng.randint(*MINER_DAY_DIFFICULTY)
            total += difficulty
            credited = credit_share(POOL_TERMS, difficulty)
            exact = exact_share_value(POOL_TERMS, difficulty)
            if not 0 <= exact - credited.miner_sat < 1:
                self.off_formula.append((agent.node_id, difficulty, credited.miner_sat))
            self.treasury_owed_sat += credited.treasury_sat
            account = self.accounts.get(agent.node_id) or MinerAccount(
                agent.node_id, agent.ln_pubkey, 0, now)
            self.accounts[agent.node_id] = attrs.evolve(
                account, balance_sat=account.balance_sat + credited.miner_sat)
        chance = Fraction(total) / POOL_TERMS.network_difficulty
        if total and self.rng.random() < chance:
            self.blocks += 1
            reward = POOL_TERMS.block_subsidy_sat + POOL_TERMS.expected_fees_sat
            self.books.pool_income_msat += reward * 1000
        self._pay(now)

    def _pay(self, now: int) -> None:
        batch = plan_payout_batch(self.accounts.values(), self.treasury_owed_sat,
                                  self.book.treasury_pubkey, now)
        if batch.is_empty:
            return
        due = [Owed(p.miner_id or "", p.amount_sat, self.accounts[p.miner_id or ""].last_payout_at)
               for p in batch.miner_payments]
        fits = {o.key for o in pay_within_floor(due, self.books.treasury_msat // 1000,
                                                self.config.treasury_floor_sat)}
        if not fits:
            return  # every balance stays owed until the treasury can pay (a block, say)
        self.batches += 1
        for payment in batch.miner_payments:
            assert payment.miner_id is not None
            if payment.miner_id not in fits:
                continue
            self.book.pay(digest("pool", payment.miner_id, self.batches),
                          payment.amount_sat * 1000, True)
            self.books.miner_payouts_msat += payment.amount_sat * 1000
            self.accounts[payment.miner_id] = attrs.evolve(
                self.accounts[payment.miner_id], balance_sat=0, last_payout_at=now)
        if batch.treasury_payment is not None:
            self.treasury_owed_sat = 0


@attrs.define
class Governance:
    """Treasury grants through proposals and the 5-holder multisig."""

    config: EconomyConfig
    books: Books
    holders: tuple[str, ...] = attrs.field(init=False)
    treasury: TreasuryConfig = attrs.field(init=False)
    proposals: list[Proposal] = attrs.field(factory=list)
    executed: int = 0
    rejected: int = 0

    def __attrs_post_init__(self) -> None:
        self.holders = tuple("02" + digest("holder", self.config.seed, i) for i in range(5))
        self.treasury = TreasuryConfig(holders=frozenset(self.holders))

    def day(self, day: int, now: int) -> None:
        """Submit a grant on schedule; close, decide and execute those whose period ended."""
        if day % self.config.grant_every_days == 0:
            self.proposals.append(submit_proposal(
                proposal_id=f"grant-{day}", author="sim", title="Grant",
                description="A simulated grant.", proposal_type=ProposalType.TREASURY,
                implementation_plan="Pay the grantee.", now=now,
                requested_sat=self.config.grant_sat))
        waiting = []
        for proposal in self.proposals:
            if now < proposal.comment_deadline_at:
                waiting.append(proposal)
                continue
            self._conclude(close_comments(proposal, now))
        self.proposals = waiting

    def _conclude(self, proposal: Proposal) -> None:
        affordable = self.books.treasury_msat >= proposal.requested_sat * 1000
        proposal = decide(proposal, affordable)
        if proposal.status is not ProposalStatus.ACCEPTED:
            self.rejected += 1
            return
        for holder in self.holders:
            proposal = acknowledge(proposal, holder, self.treasury)
        execute(proposal, treasury=self.treasury, signers=self.holders[:3],
                txid=digest("grant", proposal.proposal_id))
        self.books.grants_msat += proposal.requested_sat * 1000
        self.executed += 1
