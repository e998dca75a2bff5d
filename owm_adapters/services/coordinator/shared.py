"""What the parts of one coordinator process share: tuning, the observer, the replay guard.

The registrar, the heartbeat ingest and the task market (:mod:`.registrar`, :mod:`.heartbeats`,
:mod:`.market`) each own their locks; the replay guard is the one piece of state two of them
use (heartbeat and manifest envelopes, rejection envelopes), so it carries its own lock here.
"""

from __future__ import annotations

import threading
from typing import Protocol

import attrs

from owm_core.identity.envelopes import ReplayGuard
from owm_core.identity.keys import node_id_from_public_key
from owm_core.market.tasks import VerificationPolicy
from owm_core.nodes.registry import Liveness
from owm_core.nodes.tiers import StakeRequirements
from owm_core.stake.channel import Stake, StakePolicy

DEFAULT_ASSIGNMENT_TIMEOUT_S = 600
DEFAULT_TICK_S = 0.2
DEFAULT_FLUSH_S = 0.05
DEFAULT_BATCH_MAX = 5_000


@attrs.define
class ServiceConfig:
    """Tuning of one coordinator process (from ``[tasks]`` and defaults)."""

    verification: VerificationPolicy = attrs.field(factory=VerificationPolicy)
    assignment_timeout_s: int = DEFAULT_ASSIGNMENT_TIMEOUT_S
    liveness: Liveness = attrs.field(factory=Liveness)
    stake_requirements: StakeRequirements = attrs.field(factory=StakeRequirements)
    tick_s: float = DEFAULT_TICK_S
    heartbeat_flush_s: float = DEFAULT_FLUSH_S
    heartbeat_batch_max: int = DEFAULT_BATCH_MAX
    stake_check_s: float = 60.0
    #: Re-verification period, degraded grace and cooldown (SRS-STAKE-02/03/07).
    stake_policy: StakePolicy = attrs.field(factory=StakePolicy)
    #: Nonces the replay guard holds in all, and per registered key (SRS-SEC-03).
    replay_max_entries: int = 1_000_000
    replay_max_per_key: int = 3_000


class CoordinatorObserver(Protocol):
    """What metrics want to hear about (registry size and task counts are polled instead)."""

    def heartbeats_accepted(self, count: int) -> None:
        """``count`` heartbeats passed verification."""
        ...

    def heartbeats_rejected(self, count: int) -> None:
        """``count`` heartbeats were refused (signature, replay, unknown node, stale manifest)."""
        ...

    def task_dispatched(self, latency_s: float) -> None:
        """A replica was pushed to a node ``latency_s`` after it became assignable."""
        ...


class NoObserver:
    """The observer of a coordinator nobody measures."""

    def heartbeats_accepted(self, count: int) -> None:
        """Ignored."""

    def heartbeats_rejected(self, count: int) -> None:
        """Ignored."""

    def task_dispatched(self, latency_s: float) -> None:
        """Ignored."""


@attrs.define
class Observed:
    """The current observer, swappable after construction (metrics bind late)."""

    current: CoordinatorObserver = attrs.field(factory=NoObserver)


@attrs.define
class LockedGuard:
    """The process's replay guard (SRS-SEC-03) and the lock every user takes around it."""

    guard: ReplayGuard = attrs.field(factory=ReplayGuard)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    @classmethod
    def sized_by(cls, config: ServiceConfig) -> LockedGuard:
        """A guard holding at most ``config``'s nonces in all and per registered key."""
        return cls(
            ReplayGuard(
                max_entries=config.replay_max_entries,
                max_per_signer=config.replay_max_per_key,
            )
        )


def stake_node_id(stake: Stake) -> str:
    """The node id of a stake's public key."""
    return node_id_from_public_key(stake.public_key)
