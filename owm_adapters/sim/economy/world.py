"""One simulated world: its stores, population and services, advanced a day at a time.

:class:`World` wires the parts over one memory store (``memory_repositories()``), one
channel book and one seeded ``random.Random``; :meth:`World.step` runs a day in a fixed order
(registry, market, FL round, pool, governance, sybil reports, payouts) and records the day's
figures. The hypothesis state machine calls the same parts one action at a time.
"""

from __future__ import annotations

import hashlib
import random

import attrs

from owm_adapters.services.slashing import SlashingOutcome
from owm_adapters.sim.economy import invariants
from owm_adapters.sim.economy.actors import Agent, Client, clients, population
from owm_adapters.sim.economy.config import DAY_S, EPOCH, Behaviour, EconomyConfig
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.sim.economy.market import Market
from owm_adapters.sim.economy.network_work import FlRounds, Governance, Pool
from owm_adapters.sim.economy.payouts import Books, Outbox
from owm_adapters.sim.economy.registry import Registry
from owm_adapters.sim.economy.slashing import SimClock, Slashing
from owm_adapters.storage.memory import MemoryRepositories, memory_repositories
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingReason, SlashingSignal


@attrs.frozen
class SlashEvent:
    """One carried-out slashing decision, for the report."""

    day: int
    node_id: str
    tier: str
    behaviour: str
    reason: str


@attrs.define
class World:
    """A whole simulated network (see the module docstring)."""

    config: EconomyConfig
    rng: random.Random
    repositories: MemoryRepositories
    book: ChannelBook
    books: Books
    clock: SimClock
    agents: list[Agent]
    clients: list[Client]
    outbox: Outbox = attrs.field(init=False)
    registry: Registry = attrs.field(init=False)
    slashing: Slashing = attrs.field(init=False)
    market: Market = attrs.field(init=False)
    fl: FlRounds = attrs.field(init=False)
    pool: Pool = attrs.field(init=False)
    governance: Governance = attrs.field(init=False)
    day: int = 0
    slashes: list[SlashEvent] = attrs.field(factory=list)
    series: dict[str, list[int]] = attrs.field(factory=dict)
    check: bool = True
    _by_node: dict[str, Agent] = attrs.field(factory=dict)
    _victims: dict[int, Agent] = attrs.field(factory=dict)

    @classmethod
    def create(cls, config: EconomyConfig, *, check: bool = True) -> World:
        """A world on day 0: nobody registered yet, the treasury at its genesis amount."""
        rng = random.Random(config.seed)  # noqa: S311 - a seeded, reproducible world
        agents = population(config, rng)
        treasury = "03" + hashlib.sha256(f"treasury\x00{config.seed}".encode()).hexdigest()
        return cls(config=config, rng=rng, repositories=memory_repositories(),
                   book=ChannelBook(treasury), books=Books(config.genesis_treasury_sat * 1000),
                   clock=SimClock(EPOCH), agents=agents, clients=clients(config, rng),
                   check=check)

    def __attrs_post_init__(self) -> None:
        self._by_node = {a.node_id: a for a in self.agents}
        self.outbox = Outbox(self.repositories, self.book, self.books)
        self.registry = Registry(self.config, self.repositories, self.book, self.agents,
                                 self.rng)
        self.slashing = Slashing(self.repositories, self.book, self.clock, self.config.seed,
                                 self._slashed)
        self.market = Market(self.config, self.repositories, self.outbox, self.books,
                             self.rng, self.slashing.report)
        self.fl = FlRounds(self.config, self.repositories, self.outbox, self.books, self.rng,
                           self.slashing.report)
        self.pool = Pool(self.config, self.book, self.books, self.rng)
        self.governance = Governance(self.config, self.books)

    @property
    def now(self) -> int:
        """Simulated POSIX seconds at the current step."""
        return EPOCH + self.day * DAY_S

    def step(self) -> None:
        """Run one simulated day, then check every invariant (when ``check``)."""
        now = self.now
        self.clock.now_s = now
        self.registry.day(self.day, now)
        eligible = self.registry.eligible
        self.market.day(self.day, now, self.clients, eligible)
        if self.day % self.config.fl_every_days == self.config.fl_every_days - 1:
            self.fl.run(self.day, now, eligible.get(1, []))
        if self.day >= self.config.pool_start_day:
            self.pool.day(now, [a for a in eligible.get(2, []) if a.miner])
        self.governance.day(self.day, now)
        if self.day % 7 == 3:
            self.sybil_reports(now)
        self.outbox.dispatch(now)
        self._record(eligible)
        if self.check:
            invariants.check_day(self, self.day)
        self.day += 1

    def sybil_reports(self, now: int) -> None:
        """Each Sybil operator accuses an honest tier-1 node from all its identities: the same
        victim while it stays eligible, or a fresh random one each week with
        ``sybil_rotate_targets``."""
        honest = [a for a in self.registry.eligible.get(1, [])
                  if a.behaviour is Behaviour.HONEST and a.tier is Tier.T1]
        operators: dict[int, list[Agent]] = {}
        for agent in self.agents:
            if agent.behaviour is Behaviour.SYBIL:
                operators.setdefault(agent.operator, []).append(agent)
        signals = []
        for operator, identities in sorted(operators.items()):
            if not honest or not any(a.registered for a in identities):
                continue
            target = self._victims.get(operator)
            if self.config.sybil_rotate_targets or target not in honest:
                target = honest[self.rng.randrange(len(honest))]
                self._victims[operator] = target
            evidence = hashlib.sha256(f"sybil\x00{operator}\x00{now}".encode()).hexdigest()
            signals += [SlashingSignal(target.node_id, a.node_id, SlashingReason.PROTOCOL_ABUSE,
                                       evidence, now) for a in identities]
        if signals:
            self.slashing.report(signals)

    def _slashed(self, outcome: SlashingOutcome, reports: list[SlashingSignal]) -> None:
        decision = outcome.decision
        agent = self._by_node.get(decision.node_id)
        self.books.forfeited_msat += outcome.forfeited_msat
        if agent is not None:
            agent.slashed += 1
            agent.registered = False
            agent.channel_point = None
            for eligible in self.registry.eligible.values():
                if agent in eligible:
                    eligible.remove(agent)
        self.slashes.append(SlashEvent(self.day, decision.node_id, decision.tier.value,
                                       agent.behaviour.value if agent else "unknown",
                                       decision.reason.value))
        if not self.check:
            return
        channels: dict[str, str] = {}
        for signal in reports:
            reporter = self._by_node.get(signal.reporter)
            channel = None if reporter is None else self._channel_of(reporter)
            if channel is not None:
                channels[signal.reporter] = channel
        keys = frozenset(m.public_key_hex for m in self.slashing.maintainers)
        behaviours = {s.reporter: self._by_node[s.reporter].behaviour.value for s in reports
                      if s.reporter in self._by_node}
        for violation in invariants.slashing(outcome, reports, agent, keys, channels, self.day,
                                             behaviours):
            raise invariants.InvariantViolated(violation)

    def _channel_of(self, agent: Agent) -> str | None:
        stake = self.repositories.stakes.get(agent.public_key)
        return None if stake is None or stake.channel is None else stake.channel.channel_point

    def _record(self, eligible: dict[int, list[Agent]]) -> None:
        figures = {
            "treasury_msat": self.books.treasury_msat,
            "eligible_nodes": len(eligible.get(1, [])),
            "slashes": sum(1 for s in self.slashes if s.day == self.day),
            "tasks": self.market.counts.get("tasks", 0),
        }
        for name, value in figures.items():
            self.series.setdefault(name, []).append(value)
