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
    SYBIL = "sybil"
    LAZY = "lazy"
    POISONER = "poisoner"
    COLLUDER = "colluder"
    FLAKY = "flaky"
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


def _flag(_instance: Any, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise InvalidValue(attribute.name, f"must be true or false, got {value!r}")


def _setting(default: Any, validator: Any, help_text: str) -> Any:
    """A setting with its ``--option`` help text (``owm sim economy`` builds its options from
    these, so every setting can be given on the command line and replayed)."""
    return attrs.field(default=default, validator=validator, metadata={"help": help_text})


@attrs.frozen
class EconomyConfig:
    """One simulated world. Shares are of the node population (``free_rider_share`` of the
    clients); their sum over node behaviours is at most 1, the rest is honest.

    Money: task prices in msat (a replica's maximum price is drawn from
    ``[min_price_msat, max_price_msat]``), stakes and treasury in sat.
    """

    nodes: int = _setting(1_000, _positive,
        "Node identities in the simulated network.")
    days: int = _setting(365, _positive,
        "Simulated days (one step per day).")
    seed: int = _setting(0, _non_negative,
        "Seed of the world (same seed and options, same figures).")
    sybil_share: float = _setting(0.02, _share,
        "Share of nodes that are Sybil identities (several behind one stake channel).")
    lazy_share: float = _setting(0.02, _share,
        "Share of nodes that return made-up outputs instead of computing.")
    poisoner_share: float = _setting(0.02, _share,
        "Share of nodes that send poisoned FL updates.")
    colluder_share: float = _setting(0.0, _share,
        "Share of nodes that agree on one wrong output with the other colluders.")
    flaky_share: float = _setting(0.05, _share,
        "Share of nodes that go offline after taking tasks and close their stake.")
    free_rider_share: float = _setting(0.1, _share,
        "Share of clients that submit tasks without paying.")
    sybil_identities: int = _setting(4, _positive,
        "Identities each Sybil operator registers behind its one stake channel.")
    sybil_rotate_targets: bool = _setting(False, _flag,
        "Sybil operators accuse a new random honest node each week instead of keeping one victim.")
    clients: int = _setting(0, _non_negative,
        "Clients submitting tasks (0: one per 20 nodes, at least 5).")
    tasks_per_node_day: float = _setting(0.2, _share,
        "Tasks submitted per eligible node per day.")
    min_price_msat: int = _setting(20_000, _positive,
        "Lowest maximum price per replica a client offers, in msat.")
    max_price_msat: int = _setting(200_000, _positive,
        "Highest maximum price per replica a client offers, in msat (the funding cap).")
    redundancy: int = _setting(3, _positive,
        "Nodes that run each task (redundant verification, majority wins).")
    fee_ppm: int = _setting(50_000, _non_negative,
        "Treasury share of each settled client replica, in parts per million.")
    t1_stake_sats: int = _setting(100_000, _positive,
        "Tier-1 stake minimum in sat.")
    t2_stake_sats: int = _setting(500_000, _positive,
        "Tier-2 stake minimum in sat.")
    t3_stake_sats: int = _setting(2_000_000, _positive,
        "Tier-3 stake minimum in sat.")
    t2_share: float = _setting(0.25, _share,
        "Share of nodes with tier-2 hardware.")
    t3_share: float = _setting(0.05, _share,
        "Share of nodes with tier-3 hardware.")
    flaky_offline_chance: float = _setting(0.3, _share,
        "Chance per day (and per task taken) that a flaky node is offline.")
    flaky_close_chance: float = _setting(0.02, _share,
        "Chance per day that a flaky node closes its stake channel.")
    fl_every_days: int = _setting(7, _positive,
        "Days between FL rounds.")
    fl_participants: int = _setting(20, _positive,
        "Most participants of an FL round.")
    fl_price_msat: int = _setting(100_000, _positive,
        "What an FL round pays each unflagged participant, in msat.")
    pool_start_day: int = _setting(90, _non_negative,
        "Day the mining pool opens.")
    miner_share: float = _setting(0.3, _share,
        "Share of tier-2/3 nodes that mine in the pool.")
    treasury_floor_sat: int = _setting(0, _non_negative,
        "FPPS payouts never take the treasury below this (sat); the rest waits.")
    grant_every_days: int = _setting(30, _positive,
        "Days between treasury grant proposals.")
    grant_sat: int = _setting(500_000, _positive,
        "Sat each grant proposal requests.")
    genesis_treasury_sat: int = _setting(100_000_000, _non_negative,
        "Sat in the treasury on day 0.")

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
