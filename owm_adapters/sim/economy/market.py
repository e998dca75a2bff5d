"""Tasks from clients with budgets: admission, funding, matching, redundant verification,
settlement and rewards, one task at a time through the real market rules.

Per task (data flow 3): candidate offers from eligible nodes → ``match`` (capability, tier,
resources, price; lowest ask, then the reliability-weighted lottery) → the client's prepaid
``Balance`` is debited ``escrow_required_msat`` and the escrow opened by ``fund_client_task``
(a free rider, who pays nothing, is refused there) → each replica ``submit`` → ``assign`` →
``commit`` → ``complete`` (or ``time_out`` and reassignment when a flaky node vanishes, or
``abandon``) → ``verify_outcome`` → ``record_verdict`` → ``settle`` → ``credit`` (reliability)
→ ``settle_replica`` / ``close_escrow`` / ``refund_to_balance`` → the reward outbox, and
``fake_proof_signal`` + ``named_by_peers`` for the slashing service.

Simplification: the candidates are a random sample of eligible nodes (three times the
redundancy), not every node, so that a task costs the same at 100 or 100,000 nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from owm_adapters.sim.economy.actors import HARDWARE, Agent, Client
from owm_adapters.sim.economy.config import Behaviour, digest
from owm_adapters.sim.economy.payouts import PaidWork
from owm_core.coordination.tasks import credit
from owm_core.errors import DomainError, NoMatch
from owm_core.market.funding import (
    Balance,
    Escrow,
    FundingRules,
    Payer,
    close_escrow,
    credit_balance,
    debit_balance,
    escrow_required_msat,
    fund_client_task,
    refund_to_balance,
    settle_replica,
)
from owm_core.market.tasks import (
    Match,
    NodeOffer,
    Settlement,
    SettlementKind,
    Task,
    TaskRequest,
    TaskState,
    VerificationPolicy,
    abandon,
    assign,
    commit,
    complete,
    match,
    record_verdict,
    settle,
    submit,
    time_out,
    verify_outcome,
)
from owm_core.nodes.tiers import Tier
from owm_core.stake.reporters import named_by_peers
from owm_core.stake.slashing import SlashingSignal, fake_proof_signal

TASK_TYPE = "inference"
#: Shares of tasks asking for tier 1, 2, 3 hardware.
TIER_DEMAND = ((Tier.T1, 0.7), (Tier.T2, 0.25), (Tier.T3, 0.05))
#: A client tops its balance up by this many tasks' escrow at a time.
TOP_UP_TASKS = 50


@attrs.define
class Market(PaidWork):
    """The task market of one run."""

    rules: FundingRules = attrs.field(init=False)
    policy: VerificationPolicy = attrs.field(init=False)
    _offers: dict[str, tuple[int, NodeOffer]] = attrs.field(factory=dict)
    counts: dict[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        self.rules = FundingRules(max_price_msat=self.config.max_price_msat,
                                  period_budget_msat=0, fee_ppm=self.config.fee_ppm)
        self.policy = VerificationPolicy(redundancy=self.config.redundancy)

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def day(self, day: int, now: int, clients: Sequence[Client],
            eligible: dict[int, list[Agent]]) -> None:
        """Today's tasks: ``tasks_per_node_day`` × eligible nodes, spread over the clients."""
        expected = self.config.tasks_per_node_day * len(eligible.get(1, ()))
        count = int(expected) + (1 if self.rng.random() < expected % 1 else 0)
        by_id = {a.node_id: a for a in eligible.get(1, ())}
        for n in range(count):
            client = clients[self.rng.randrange(len(clients))]
            self.run_task(f"t{day}-{n}", client, eligible, by_id, now)

    def _request(self, task_id: str) -> TaskRequest:
        draw, tier = self.rng.random(), Tier.T1
        for candidate, share in TIER_DEMAND:
            if draw < share:
                tier = candidate
                break
            draw -= share
        vram = 0 if tier is Tier.T1 else HARDWARE[tier][0] // 2
        return TaskRequest(
            task_id=task_id, task_type=TASK_TYPE, input_schema_id="sim", input_schema_version=1,
            min_tier=tier, min_vram_mb=vram, min_ram_mb=4_096, gpu_required=vram > 0,
            max_price_msat=self.rng.randint(self.config.min_price_msat,
                                            self.config.max_price_msat),
        )

    def _offer(self, agent: Agent) -> NodeOffer:
        node = self.repositories.nodes.get(agent.node_id)
        assert node is not None
        cached = self._offers.get(agent.node_id)
        if cached is not None and cached[0] == node.reliability_ppm:
            return cached[1]
        offer = NodeOffer(
            node_id=agent.node_id, capabilities=frozenset({TASK_TYPE}), tier=agent.tier,
            has_gpu=agent.tier is not Tier.T1, vram_mb=node.vram_mb, ram_mb=node.ram_mb,
            ask_msat=agent.ask_msat, reliability_ppm=node.reliability_ppm,
        )
        self._offers[agent.node_id] = (node.reliability_ppm, offer)
        return offer

    def _matches(self, request: TaskRequest, pool: list[Agent]) -> list[Match]:
        size = min(len(pool), 3 * self.config.redundancy)
        candidates = self.rng.sample(pool, size) if size else []
        try:
            return match(request, [self._offer(a) for a in candidates])
        except NoMatch:
            return []

    def _fund(self, task_id: str, client: Client, price_msat: int) -> Escrow | None:
        replicas = self.config.redundancy
        if client.behaviour is Behaviour.FREE_RIDER:
            try:
                return fund_client_task(task_id, price_msat, replicas, 0, self.rules,
                                        funder=client.key)
            except DomainError:
                self._count("refused_unfunded")
                return None
        funding = self.repositories.funding
        required = escrow_required_msat(price_msat, replicas, Payer.CLIENT, self.rules)
        balance = funding.balance(client.key) or Balance(client.key)
        if balance.available_msat < required:
            balance = credit_balance(balance, TOP_UP_TASKS * required)
            self.books.collected_msat += TOP_UP_TASKS * required
        funding.save_balance(debit_balance(balance, required, task_id))
        return fund_client_task(task_id, price_msat, replicas, required, self.rules,
                                funder=client.key)

    def run_task(self, task_id: str, client: Client, eligible: dict[int, list[Agent]],
                 by_id: dict[str, Agent], now: int) -> None:
        """One task from submission to settlement (see the module docstring)."""
        request = self._request(task_id)
        matches = self._matches(request, eligible.get(request.min_tier.rank, []))
        if len(matches) < self.config.redundancy:
            self._count("refused_no_match")
            return
        escrow = self._fund(task_id, client, request.max_price_msat)
        if escrow is None:
            return
        self._count("tasks")
        replicas = self._execute(request, matches, by_id, now)
        self._settle(task_id, escrow, replicas, by_id, client, now)

    def _execute(self, request: TaskRequest, matches: list[Match], by_id: dict[str, Agent],
                 now: int) -> list[Task]:
        spare = matches[self.config.redundancy:]
        done = []
        for chosen in matches[: self.config.redundancy]:
            task = assign(submit(request), chosen, now)
            agent = by_id[chosen.node_id]
            while agent.behaviour is Behaviour.FLAKY and self.rng.random() < (
                    self.config.flaky_offline_chance):
                task = time_out(task, task.deadline_at + 1 if task.deadline_at else now)
                self._count("timed_out")
                if not spare:
                    break
                chosen = spare.pop(0)
                task, agent = assign(task, chosen, now), by_id[chosen.node_id]
            if task.state is TaskState.TIMED_OUT:
                done.append(abandon(task))
                continue
            done.append(complete(commit(task, now), self._output(request.task_id, agent), now))
        return done

    @staticmethod
    def _output(task_id: str, agent: Agent) -> str:
        if agent.behaviour is Behaviour.LAZY:
            return digest("guess", task_id, agent.node_id)
        if agent.behaviour is Behaviour.COLLUDER:
            return digest("agreed", task_id)
        return digest("output", task_id)

    def _settle(self, task_id: str, escrow: Escrow, replicas: list[Task],
                by_id: dict[str, Agent], client: Client, now: int) -> None:
        completed = [t for t in replicas if t.state is TaskState.COMPLETED]
        results = {t.node_id: t.output_hash for t in completed if t.node_id and t.output_hash}
        final = [t for t in replicas if t.state is not TaskState.COMPLETED]
        settlements: list[Settlement] = []
        if results:
            verdict = verify_outcome(self.policy, task_id, results, seed=b"sim")
            for task in completed:
                task, settlement = settle(record_verdict(task, verdict))
                final.append(task)
                settlements.append(settlement)
        for index, settlement in enumerate(settlements):
            credit(self.repositories, settlement)
            if settlement.kind is SettlementKind.SETTLE:
                owed = min(settlement.amount_msat, escrow.price_msat)
                escrow, payout = settle_replica(escrow, f"{task_id}:{index}", owed)
                self.books.task_shares_msat += payout.treasury_share_msat
                self.outbox.enqueue(task_id, by_id[settlement.node_id], owed, now)
        escrow, refund = close_escrow(escrow)
        if refund:
            funding = self.repositories.funding
            balance = funding.balance(client.key)
            assert balance is not None
            funding.save_balance(refund_to_balance(balance, refund))
        self._signals(task_id, final, settlements, now)

    def _signals(self, task_id: str, final: list[Task], settlements: list[Settlement],
                 now: int) -> None:
        winners = [s.node_id for s in settlements if s.kind is SettlementKind.SETTLE]
        signals: list[SlashingSignal] = []
        for settlement in settlements:
            if settlement.kind is SettlementKind.FORFEIT:
                found = fake_proof_signal(task_id, final, settlement.node_id,
                                          digest("proof", task_id, settlement.node_id), now)
                if found is not None:
                    signals += named_by_peers([found], winners)
        if signals:
            self._count("fake_proof_signals")
            self.report(signals)
