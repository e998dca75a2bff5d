"""The simulated population: nodes (with hardware tier, behaviour and keys) and clients."""

from __future__ import annotations

import random

import attrs

from owm_adapters.sim.economy.config import NODE_ADVERSARIES, Behaviour, EconomyConfig, digest
from owm_core.identity.keys import node_id_from_public_key
from owm_core.nodes.tiers import Tier

#: Hardware of each tier as the simulated nodes report it (MiB, Mbit/s).
HARDWARE = {
    Tier.T1: (8_192, 16_384, 100),
    Tier.T2: (24_576, 65_536, 500),
    Tier.T3: (81_920, 262_144, 1_000),
}


@attrs.define(slots=True, eq=False)
class Agent:
    """One node identity and what the simulation knows about it (its operator's choices).

    Compared by identity: two agents are never the same node."""

    index: int
    behaviour: Behaviour
    tier: Tier
    public_key: str
    node_id: str
    ln_pubkey: str
    ask_msat: int
    #: Sybil identities of one operator share this (their operator's index); else -1.
    operator: int = -1
    miner: bool = False
    registered: bool = False
    online: bool = True
    channel_point: str | None = None
    earned_msat: int = 0
    paid_msat: int = 0
    slashed: int = 0
    registered_on: int | None = None


@attrs.define(slots=True)
class Client:
    """A submitter of tasks with a prepaid balance (or a free rider without one)."""

    key: str
    behaviour: Behaviour


def _behaviours(config: EconomyConfig, rng: random.Random) -> list[Behaviour]:
    kinds: list[Behaviour] = []
    for behaviour in NODE_ADVERSARIES:
        kinds += [behaviour] * round(config.share_of(behaviour) * config.nodes)
    kinds = kinds[: config.nodes]
    kinds += [Behaviour.HONEST] * (config.nodes - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _tier(config: EconomyConfig, rng: random.Random) -> Tier:
    draw = rng.random()
    if draw < config.t3_share:
        return Tier.T3
    if draw < config.t3_share + config.t2_share:
        return Tier.T2
    return Tier.T1


def population(config: EconomyConfig, rng: random.Random) -> list[Agent]:
    """Every node identity of the run, drawn from ``rng``; Sybils grouped by operator."""
    agents = []
    sybils_seen = 0
    operator_tier: dict[int, Tier] = {}
    for index, behaviour in enumerate(_behaviours(config, rng)):
        public_key = digest("node", config.seed, index)
        tier = _tier(config, rng)
        operator = -1
        if behaviour is Behaviour.SYBIL:
            operator = sybils_seen // config.sybil_identities
            sybils_seen += 1
            tier = operator_tier.setdefault(operator, tier)
        spread = (config.max_price_msat - config.min_price_msat) * tier.rank // 4
        agents.append(Agent(
            index=index, behaviour=behaviour, tier=tier, public_key=public_key,
            node_id=node_id_from_public_key(public_key),
            ln_pubkey="02" + digest("ln", config.seed, operator if operator >= 0 else -index - 1),
            ask_msat=config.min_price_msat + rng.randint(0, spread) // 2,
            operator=operator,
            miner=tier is not Tier.T1 and rng.random() < config.miner_share,
        ))
    return agents


def clients(config: EconomyConfig, rng: random.Random) -> list[Client]:
    """The clients of the run; ``free_rider_share`` of them never pay."""
    count = config.client_count
    riders = round(config.free_rider_share * count)
    kinds = [Behaviour.FREE_RIDER] * riders + [Behaviour.HONEST] * (count - riders)
    rng.shuffle(kinds)
    return [Client(digest("client", config.seed, i), kind) for i, kind in enumerate(kinds)]
