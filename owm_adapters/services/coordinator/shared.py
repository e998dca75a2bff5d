"""What the parts of one coordinator process share: tuning, the observer, the replay guards.

The registrar, the heartbeat ingest and the task market (:mod:`.registrar`, :mod:`.heartbeats`,
:mod:`.market`) each own their locks; the nodes' replay guard is the one piece of state two of
them use (heartbeat and manifest envelopes, rejection envelopes), so it carries its own lock
here. Task clients' envelopes (balance requests, task submissions, output requests) go to
:class:`ClientGuards`, never to the nodes' guard: a submitter key costs nothing to make, so
no number of them may refuse a registered node's heartbeat (SRS-SEC-03).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Protocol

import attrs

from owm_core.coordination.reveals import RevealWindows
from owm_core.identity.envelopes import Envelope, NonceLedger, ReplayGuard
from owm_core.identity.keys import node_id_from_public_key
from owm_core.market.funding import DEFAULT_FEE_PPM, DEFAULT_PERIOD_S, Balance, FundingRules
from owm_core.market.streams import STREAM_FRESH_S, STREAM_REFRESH_S
from owm_core.market.tasks import VerificationPolicy
from owm_core.nodes.registry import Liveness
from owm_core.nodes.tiers import StakeRequirements
from owm_core.stake.channel import Stake, StakePolicy

DEFAULT_ASSIGNMENT_TIMEOUT_S = 600
DEFAULT_QUEUE_TIMEOUT_S = 3_600
DEFAULT_TICK_S = 0.2
DEFAULT_FLUSH_S = 0.05
DEFAULT_BATCH_MAX = 5_000
NETWORK_BUDGET = "network"
QUERY_BUDGET = "queries"
DEFAULT_MAX_PRICE_MSAT = 100_000_000
"""100 000 sat per replica unless ``[funding] max_price_msat`` says otherwise."""
DEFAULT_NETWORK_BUDGET_MSAT = 1_000_000_000
"""1 000 000 sat a day for FL rounds and operators' sample traffic."""
DEFAULT_QUERY_BUDGET_MSAT = 1_000_000_000
"""1 000 000 sat a day for the readers of conglomerate queries."""
TOP_UP_EXPIRY_S = 3_600
DEFAULT_TASK_TTL_S = 86_400
DEFAULT_MAX_OPEN_TOP_UPS = 10_000
"""Treasury invoices awaiting payment for top-ups, all keys together (keys are free)."""


@attrs.frozen
class FundingConfig:
    """The ``[funding]`` settings: the price cap, the treasury's share, the budgets per
    period, the operator keys whose tasks the network budget pays, and top-up limits."""

    max_price_msat: int = DEFAULT_MAX_PRICE_MSAT
    fee_ppm: int = DEFAULT_FEE_PPM
    period_s: int = DEFAULT_PERIOD_S
    budgets_msat: Mapping[str, int] = attrs.field(
        factory=lambda: {
            NETWORK_BUDGET: DEFAULT_NETWORK_BUDGET_MSAT,
            QUERY_BUDGET: DEFAULT_QUERY_BUDGET_MSAT,
        }
    )
    network_submitters: frozenset[str] = frozenset()
    max_top_up_msat: int = 10_000_000_000
    """The largest single top-up invoice: 10 M sat."""
    task_ttl_s: int = DEFAULT_TASK_TTL_S
    """How long a task may wait for nodes before it expires and its escrow is refunded."""
    top_up_expiry_s: int = TOP_UP_EXPIRY_S
    max_open_top_ups: int = DEFAULT_MAX_OPEN_TOP_UPS
    """Unpaid, unexpired top-up invoices of every key together; more are refused."""

    def rules(self, budget: str = NETWORK_BUDGET) -> FundingRules:
        """The core rules with the period budget of ``budget`` (0 if it has none)."""
        return FundingRules(
            max_price_msat=self.max_price_msat,
            period_budget_msat=self.budgets_msat.get(budget, 0),
            fee_ppm=self.fee_ppm,
            period_s=self.period_s,
        )


@attrs.define
class ServiceConfig:
    """Tuning of one coordinator process (from ``[tasks]`` and defaults)."""

    verification: VerificationPolicy = attrs.field(factory=VerificationPolicy)
    assignment_timeout_s: int = DEFAULT_ASSIGNMENT_TIMEOUT_S
    #: How long a submitted task may wait for a node to take one of its replicas before it
    #: expires (SRS-COORD-02): work nobody takes leaves the market.
    queue_timeout_s: int = DEFAULT_QUEUE_TIMEOUT_S
    #: How long a round's commit and reveal phases stay open (commit–reveal, SRS-SEC-11).
    reveal_windows: RevealWindows = attrs.field(factory=RevealWindows)
    liveness: Liveness = attrs.field(factory=Liveness)
    stake_requirements: StakeRequirements = attrs.field(factory=StakeRequirements)
    tick_s: float = DEFAULT_TICK_S
    heartbeat_flush_s: float = DEFAULT_FLUSH_S
    heartbeat_batch_max: int = DEFAULT_BATCH_MAX
    stake_check_s: float = 60.0
    #: Re-verification period, degraded grace and cooldown (SRS-STAKE-02/03/07).
    stake_policy: StakePolicy = attrs.field(factory=StakePolicy)
    #: Nonces the replay guard holds in all, and per registered key (SRS-SEC-03); the same
    #: bounds hold for paying clients' guard (:class:`ClientGuards`).
    replay_max_entries: int = 1_000_000
    replay_max_per_key: int = 3_000
    #: Nonces of submitter keys that never paid (fresh sponsors, strangers), in all and per
    #: key: their own guard, whose fullness refuses only them (:class:`ClientGuards`).
    newcomer_replay_max_entries: int = 100_000
    newcomer_replay_max_per_key: int = 20
    #: Several coordinators share the store (PostgreSQL, SRS-COORD-05): the replay guards
    #: and rate limits also record in the store, so they hold across coordinators.
    shared_state: bool = False
    #: With ``shared_state``: how often this coordinator confirms the records of the task
    #: streams it holds, and how long a record not confirmed still counts (SRS-COORD-05).
    stream_refresh_s: float = float(STREAM_REFRESH_S)
    stream_fresh_s: int = STREAM_FRESH_S
    #: Who pays for tasks: price cap, treasury share, budgets, operator keys (``[funding]``).
    funding: FundingConfig = attrs.field(factory=FundingConfig)


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
    def sized_by(cls, config: ServiceConfig, ledger: NonceLedger | None = None) -> LockedGuard:
        """A guard holding at most ``config``'s nonces in all and per registered key; with a
        ``ledger``, nonces are also claimed there (shared by every coordinator)."""
        return cls(
            ReplayGuard(
                max_entries=config.replay_max_entries,
                max_per_signer=config.replay_max_per_key,
                ledger=ledger,
            )
        )


@attrs.define
class ClientGuards:
    """The replay guards of task clients' envelopes, apart from the nodes' (SRS-SEC-03).

    A submitter key need not be a registered node (sponsors fund balances) and costs nothing
    to make, so its nonces never enter the guard heartbeats use. Among clients, a key that
    paid the treasury (a balance credited by a paid invoice) or an operator key of
    ``[funding] network_submitters`` is *paying* and uses a guard sized like the nodes'; every
    other key (a sponsor's first balance request, a stranger's) is a *newcomer*, in a smaller
    guard with a small per-key bound. A flood of fresh keys fills only the newcomers' guard:
    new sponsors wait (their requests are refused :class:`~owm_core.errors.ReplayGuardFull`, a
    rate limit saying when a nonce ages out of the window), paying clients and nodes are
    served as before.
    """

    paying: LockedGuard
    newcomers: LockedGuard
    trusted: frozenset[str] = frozenset()

    @classmethod
    def sized_by(cls, config: ServiceConfig, ledger: NonceLedger | None = None) -> ClientGuards:
        """The two guards with ``config``'s bounds; with a ``ledger``, nonces are also claimed
        there (shared by every coordinator, SRS-COORD-05)."""
        newcomers = ReplayGuard(
            max_entries=config.newcomer_replay_max_entries,
            max_per_signer=config.newcomer_replay_max_per_key,
            ledger=ledger,
        )
        return cls(
            LockedGuard.sized_by(config, ledger),
            LockedGuard(newcomers),
            config.funding.network_submitters,
        )

    def accept(self, envelope: Envelope, balance: Balance | None, now: int) -> None:
        """Record a verified client envelope whose signer holds ``balance`` (None: none), in
        the paying clients' guard or the newcomers'; ``ReplayRejected`` (a replay) or
        ``ReplayGuardFull`` (no room now: retry later) as the guard says."""
        paying = envelope.signer in self.trusted or (
            balance is not None and balance.funded_msat > 0
        )
        locked = self.paying if paying else self.newcomers
        with locked.lock:
            locked.guard.accept(envelope, now)


def stake_node_id(stake: Stake) -> str:
    """The node id of a stake's public key."""
    return node_id_from_public_key(stake.public_key)
