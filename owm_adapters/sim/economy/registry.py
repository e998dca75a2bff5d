"""Registration with stake, heartbeats, liveness and stake re-verification, day by day.

Every decision is the real rule's: ``bound_stake_check`` (one channel, one node), ``Stake``'s
state machine (register, verified, reverified with its grace, slashed with its cooldown),
``recheck_stake`` / ``reverify_due_stakes`` over the channel book, the memory node store's
batched ``record_heartbeats`` and ``Node.status`` for liveness (SRS-STAKE-01..03,
SRS-NODE-04). Simulated time moves a day at a time: one heartbeat per online node-day stands
for the 1,440 a node sends in a day.
"""

from __future__ import annotations

import random

import attrs

from owm_adapters.sim.economy.actors import HARDWARE, Agent
from owm_adapters.sim.economy.config import Behaviour, EconomyConfig
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.storage.memory import MemoryRepositories
from owm_core.coordination.stakes import (
    bound_stake_check,
    recheck_stake,
    reverify_due_stakes,
    stake_channel_of,
)
from owm_core.errors import Conflict
from owm_core.nodes.registry import Liveness, LnNodeUri, Node, NodeStatus
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import Stake, StakeStatus

#: Liveness over simulated days: one heartbeat a day stands for the day's; a node that sent
#: none today (12 h of silence and more at the step) is offline.
DAILY_LIVENESS = Liveness(heartbeat_interval_s=43_200, missed_heartbeats=1)
#: A node refused registration (a Sybil's extra identity) tries again after this many days.
RETRY_DAYS = 30


@attrs.define
class Registry:
    """Who is registered, online and eligible for work today."""

    config: EconomyConfig
    repositories: MemoryRepositories
    book: ChannelBook
    agents: list[Agent]
    rng: random.Random
    refused: dict[str, int] = attrs.field(factory=dict)
    registrations: int = 0
    refused_registrations: int = 0
    channel_closures: int = 0
    #: Eligible agents by minimum tier rank (1: everyone, 3: tier 3 only).
    eligible: dict[int, list[Agent]] = attrs.field(factory=dict)

    def day(self, day: int, now: int) -> None:
        """One day: registrations, flaky behaviour, heartbeats, re-verification, eligibility."""
        for agent in self.agents:
            if not agent.registered and self.refused.get(agent.node_id, -1) <= day:
                self.register(agent, day, now)
        self._flaky(now)
        seen = {a.node_id: now for a in self.agents if a.registered and a.online}
        self.repositories.nodes.record_heartbeats(seen)
        self.reverify(now)

    def reverify(self, now: int) -> None:
        """Re-verify every due stake (SRS-STAKE-02/03), then who is eligible for work."""
        reverify_due_stakes(self.repositories, self.book, now, self.config.stake_requirements)
        self._eligibility(now)

    def register(self, agent: Agent, day: int, now: int) -> bool:
        """Register ``agent`` with a stake channel (SRS-STAKE-01); False when refused."""
        stakes = self.repositories.stakes
        previous = stakes.get(agent.public_key)
        if previous is not None and not previous.may_register(now):
            return False
        if not self.book.channels_with(agent.ln_pubkey):
            required = self.config.stake_requirements.for_tier(agent.tier).min_sats
            self.book.open_channel(agent.ln_pubkey, required * self.rng.choice((1, 1, 2, 4)))
        channels = [stake_channel_of(c) for c in self.book.channels_with(agent.ln_pubkey)]
        try:
            check = bound_stake_check(self.repositories, agent.node_id, agent.tier, channels,
                                      self.config.stake_requirements)
        except Conflict:
            self.refused_registrations += 1
            self.refused[agent.node_id] = day + RETRY_DAYS
            return False
        stake = Stake.register(agent.public_key, check, now, previous)
        stakes.save(stake)
        self._node_record(agent, now)
        stake = recheck_stake(self.repositories, self.book, stake, now,
                              self.config.stake_requirements)
        assert check.channel is not None
        agent.channel_point = check.channel.channel_point
        agent.registered = stake.live
        agent.registered_on = day
        self.registrations += 1
        return True

    def _node_record(self, agent: Agent, now: int) -> None:
        nodes = self.repositories.nodes
        existing = nodes.get(agent.node_id)
        if existing is not None:
            nodes.save(attrs.evolve(existing, suspended=False, last_heartbeat=now))
            return
        vram, ram, bandwidth = HARDWARE[agent.tier]
        nodes.add(Node(
            node_id=agent.node_id, public_key=agent.public_key,
            ln_node_uri=LnNodeUri(agent.ln_pubkey, "node.sim.invalid", 9735),
            tier=agent.tier, vram_mb=vram if agent.tier is not Tier.T1 else 0, ram_mb=ram,
            bandwidth_mbps=bandwidth, registered_at=now, last_heartbeat=now,
        ))

    def _flaky(self, now: int) -> None:
        chance = self.config.flaky_offline_chance
        for agent in self.agents:
            if agent.behaviour is not Behaviour.FLAKY or not agent.registered:
                continue
            agent.online = self.rng.random() >= chance
            point = agent.channel_point
            if point is not None and self.book.is_open(point):
                if self.rng.random() < self.config.flaky_close_chance:
                    self.book.close_channel(point)
                    self.channel_closures += 1
            elif self.rng.random() < 0.5:
                required = self.config.stake_requirements.for_tier(agent.tier).min_sats
                channel = self.book.open_channel(agent.ln_pubkey, required)
                agent.channel_point = channel.channel_point

    def _eligibility(self, now: int) -> None:
        """Eligible: registered, online by ``Node.status`` and holding an active stake."""
        eligible: dict[int, list[Agent]] = {1: [], 2: [], 3: []}
        nodes, stakes = self.repositories.nodes, self.repositories.stakes
        for agent in self.agents:
            if not agent.registered:
                continue
            stake = stakes.get(agent.public_key)
            if stake is None or not stake.live:
                agent.registered = False
                agent.channel_point = None
                continue
            node = nodes.get(agent.node_id)
            if node is None or node.status(now, DAILY_LIVENESS) is not NodeStatus.ONLINE:
                continue
            if stake.status is StakeStatus.ACTIVE:
                for rank in range(1, agent.tier.rank + 1):
                    eligible[rank].append(agent)
        self.eligible = eligible
