"""What an economy simulation is run with: population, behaviours, prices, rules' settings.

A run is a pure function of its :class:`EconomyConfig` (the seed included): the same config
gives the same figures, whether run alone, in a sweep, sequentially or on Ray.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

import attrs

from owm_core.errors import InvalidValue
from owm_core.nodes.tiers import StakeRequirements

#: The simulated clock starts here (2026-01-01T00:00:00Z), one step per simulated day.
EPOCH = 1_767_225_600
DAY_S = 86_400


def digest(*parts: object) -> str:
    """SHA-256 hex of ``parts``: the simulator's deterministic ids, keys and output hashes."""
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


class Behaviour(enum.Enum):
    """How one simulated node (or client) acts; every node is one of these."""

    HONEST = "honest"
    #: One operator with several node identities behind one stake channel; it tries to
    #: register them all and files fake slashing signals against honest nodes.
    SYBIL = "sybil"
    #: Does not compute: commits to a made-up output (commit–reveal leaves nothing to copy).
    LAZY = "lazy"
    #: Sends poisoned updates in FL rounds (honest on ordinary tasks).
    POISONER = "poisoner"
    #: Colludes with the other colluders: all of them return one agreed wrong output.
    COLLUDER = "colluder"
    #: Goes offline at bad moments: after taking a task, and closes its stake channel now and
    #: then (reopening it later, or not).
    FLAKY = "flaky"
    #: A client that submits tasks without paying for them.
    FREE_RIDER = "free_rider"


NODE_ADVERSARIES = (
    Behaviour.SYBIL, Behaviour.LAZY, Behaviour.POISONER, Behaviour.COLLUDER, Behaviour.FLAKY,
)


def _share(_instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidValue(attribute.name, f"must be a share in [0, 1], got {value!r}")


def _positive(_instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidValue(attribute.name, f"must be an integer ≥ 1, got {value!r}")


def _non_negative(_instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidValue(attribute.name, f"must be an integer ≥ 0, got {value!r}")


@attrs.frozen
class EconomyConfig:
    """One simulated world. Shares are of the node population (``free_rider_share`` of the
    clients); their sum over node behaviours is at most 1, the rest is honest.

    Money: task prices in msat (a replica's maximum price is drawn from
    ``[min_price_msat, max_price_msat]``), stakes and treasury in sat.
    """

    nodes: int = attrs.field(default=1_000, validator=_positive)
    days: int = attrs.field(default=365, validator=_positive)
    seed: int = attrs.field(default=0, validator=_non_negative)
    sybil_share: float = attrs.field(default=0.02, validator=_share)
    lazy_share: float = attrs.field(default=0.02, validator=_share)
    poisoner_share: float = attrs.field(default=0.02, validator=_share)
    colluder_share: float = attrs.field(default=0.0, validator=_share)
    flaky_share: float = attrs.field(default=0.05, validator=_share)
    free_rider_share: float = attrs.field(default=0.1, validator=_share)
    #: Identities each Sybil operator tries to register behind its one stake channel.
    sybil_identities: int = attrs.field(default=4, validator=_positive)
    #: Clients submitting tasks; 0: one per 20 nodes (at least 5).
    clients: int = attrs.field(default=0, validator=_non_negative)
    #: Tasks submitted per registered node per day, on average.
    tasks_per_node_day: float = attrs.field(default=0.3, validator=_share)
    min_price_msat: int = attrs.field(default=20_000, validator=_positive)
    max_price_msat: int = attrs.field(default=200_000, validator=_positive)
    redundancy: int = attrs.field(default=3, validator=_positive)
    fee_ppm: int = attrs.field(default=50_000, validator=_non_negative)
    t1_stake_sats: int = attrs.field(default=100_000, validator=_positive)
    t2_stake_sats: int = attrs.field(default=500_000, validator=_positive)
    t3_stake_sats: int = attrs.field(default=2_000_000, validator=_positive)
    #: Shares of tier 2 and tier 3 hardware among nodes (the rest is tier 1).
    t2_share: float = attrs.field(default=0.25, validator=_share)
    t3_share: float = attrs.field(default=0.05, validator=_share)
    #: Chance per day that a flaky node is offline, and that it closes its stake channel.
    flaky_offline_chance: float = attrs.field(default=0.3, validator=_share)
    flaky_close_chance: float = attrs.field(default=0.02, validator=_share)
    #: An FL round every this many days, with at most this many participants.
    fl_every_days: int = attrs.field(default=7, validator=_positive)
    fl_participants: int = attrs.field(default=20, validator=_positive)
    fl_price_msat: int = attrs.field(default=100_000, validator=_positive)
    #: The mining pool opens on this day; this share of tier 2/3 nodes mines in it.
    pool_start_day: int = attrs.field(default=90, validator=_non_negative)
    miner_share: float = attrs.field(default=0.3, validator=_share)
    #: A treasury grant proposal every this many days, requesting this many sat.
    grant_every_days: int = attrs.field(default=30, validator=_positive)
    grant_sat: int = attrs.field(default=500_000, validator=_positive)
    #: What the treasury holds on day 0, in sat.
    genesis_treasury_sat: int = attrs.field(default=100_000_000, validator=_non_negative)

    def __attrs_post_init__(self) -> None:
        node_shares = (self.sybil_share + self.lazy_share + self.poisoner_share
                       + self.colluder_share + self.flaky_share)
        if node_shares > 1:
            raise InvalidValue("shares", f"node behaviour shares sum to {node_shares:.3f} > 1")
        if self.min_price_msat > self.max_price_msat:
            raise InvalidValue("min_price_msat", "must be ≤ max_price_msat")
        if self.t2_share + self.t3_share > 1:
            raise InvalidValue("t2_share", "t2_share + t3_share must be ≤ 1")
        StakeRequirements(self.t1_stake_sats, self.t2_stake_sats, self.t3_stake_sats)

    @property
    def client_count(self) -> int:
        """How many clients submit tasks."""
        return self.clients or max(5, self.nodes // 20)

    @property
    def stake_requirements(self) -> StakeRequirements:
        """The stake minimum of every tier (SRS-STAKE-01)."""
        return StakeRequirements(self.t1_stake_sats, self.t2_stake_sats, self.t3_stake_sats)

    def share_of(self, behaviour: Behaviour) -> float:
        """The configured share of ``behaviour`` (nodes; clients for free riders)."""
        return float(getattr(self, f"{behaviour.value}_share"))

    def as_dict(self) -> dict[str, Any]:
        """Every setting as plain data (for ``--json`` and the report)."""
        return attrs.asdict(self)
