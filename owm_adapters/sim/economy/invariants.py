"""The invariants an economy run checks after every simulated day, and what each protects.

Each check reads the run's state (the memory store, the channel book, the books) and returns
the violations it finds; :func:`check_day` raises :class:`InvariantViolated` with the first,
naming the step (day), the actors and what broke. The engine adds a minimal reproduction.

* ``sats-conserved``: collected + budget drawn = paid + fees + treasury income from tasks +
  network refunds + pending (client balances, owed rewards; every escrow is closed within
  its day, so none is open at a check), exact in msat.
  Protects against money created or lost by any rule or by their composition.
* ``stake-verified``: every node eligible for work has an active stake bound to its channel,
  and that channel is open or was verified within the re-verification period (a channel
  closed since is seen at the next re-verification, SRS-STAKE-02). Protects against unstaked
  nodes earning (SRS-STAKE-01/02).
* ``slashing-justified``: a tier-1 slash is backed by signals from three distinct stake
  channels of nodes that did report the target; a tier-2/3 slash by two configured
  maintainers. Protects against slashing without its evidence (SRS-STAKE-04, SRS-SEC-14).
* ``no-honest-slashed``: no honest node is ever slashed. Protects honest operators' stake.
* ``fpps-formula``: every FPPS credit is within 1 sat of the exact formula (SRS-POOL-04).
* ``paid-once``: no payment hash is paid twice and no node is paid more than it earned
  (SRS-LN-04).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import attrs

from owm_adapters.services.slashing import SlashingOutcome
from owm_adapters.sim.economy.actors import Agent, Client
from owm_adapters.sim.economy.config import Behaviour
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.sim.economy.network_work import Pool
from owm_adapters.sim.economy.payouts import Books, Outbox
from owm_adapters.sim.economy.registry import Registry
from owm_adapters.sim.economy.slashing import SimClock
from owm_adapters.storage.memory import MemoryRepositories
from owm_core.nodes.tiers import Tier
from owm_core.stake.channel import StakeStatus
from owm_core.stake.reporters import CHANNEL_REPORTER_PREFIX
from owm_core.stake.slashing import SlashingSignal


@attrs.frozen
class Violation:
    """One broken invariant: which, on what day, who was involved, and how it shows."""

    invariant: str
    day: int
    actors: tuple[str, ...]
    detail: str


class Observed(Protocol):
    """What the checks read of a world (``World`` is one)."""

    repositories: MemoryRepositories
    book: ChannelBook
    books: Books
    clock: SimClock
    agents: list[Agent]
    clients: list[Client]
    outbox: Outbox
    registry: Registry
    pool: Pool


class InvariantViolated(Exception):
    """A run stopped on a broken invariant; ``reproduction`` is filled in by the engine."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(f"day {violation.day}: {violation.invariant}: {violation.detail}")
        self.violation = violation
        self.reproduction: str | None = None


def conservation(world: Observed, day: int) -> Iterable[Violation]:
    """sats-conserved (see the module docstring)."""
    books = world.books
    funding = world.repositories.funding
    balances = 0
    for client in world.clients:
        balance = funding.balance(client.key)
        balances += 0 if balance is None else balance.available_msat
    pending = balances + world.outbox.pending_msat()
    paid = world.book.paid_msat - books.miner_payouts_msat
    income = books.task_shares_msat + books.withheld_msat + books.forfeited_msat
    fees = world.book.fees_msat
    left = books.collected_msat + books.budget_drawn_msat
    right = paid + fees + income + books.network_refunds_msat + pending
    if left != right:
        yield Violation("sats-conserved", day, (), f"collected + budget = {left} msat but paid "
                        f"+ fees + treasury + pending = {right} msat ({right - left:+d})")


def stakes(world: Observed, day: int) -> Iterable[Violation]:
    """stake-verified (see the module docstring)."""
    repositories = world.repositories
    for agent in world.registry.eligible.get(1, ()):
        stake = repositories.stakes.get(agent.public_key)
        channel = None if stake is None else stake.channel
        ok = bool(stake is not None and stake.status is StakeStatus.ACTIVE and channel is not None
              and repositories.channel_bindings.node_of(channel.channel_point) == agent.node_id
              and (world.book.is_open(channel.channel_point)
                   or (stake.next_verification_at or 0) > world.clock.now_s))
        if not ok:
            state = "none" if stake is None else stake.status.value
            yield Violation("stake-verified", day, (agent.node_id,),
                            f"eligible for work with stake {state} and no open bound channel")


def slashing(outcome: SlashingOutcome, reports: list[SlashingSignal], agent: Agent | None,
             maintainer_keys: frozenset[str], channels_of: dict[str, str],
             day: int, behaviour_of: Mapping[str, str] | None = None) -> Iterable[Violation]:
    """slashing-justified and no-honest-slashed, for one carried-out decision.

    A slashed honest node is named first among the actors, then the reporters whose stake
    channels backed the decision (every reporter for a tier-2/3 decision), each with its
    behaviour in the detail when ``behaviour_of`` knows it: who framed whom."""
    decision = outcome.decision
    actors = (decision.node_id, *decision.supporters)
    backing = {s.removeprefix(CHANNEL_REPORTER_PREFIX) for s in decision.supporters}
    if agent is not None and agent.behaviour is Behaviour.HONEST:
        behind = sorted({s.reporter for s in reports
                         if decision.tier is not Tier.T1 or channels_of.get(s.reporter) in backing})
        known = behaviour_of or {}
        named = ", ".join(f"{r} ({known.get(r, 'unknown')})" for r in behind) or "nobody"
        yield Violation("no-honest-slashed", day, (decision.node_id, *behind),
                        f"honest node {decision.node_id} slashed for {decision.reason.value} "
                        f"on the reports of {named}")
    if decision.tier is Tier.T1:
        reported = {channels_of.get(s.reporter) for s in reports} - {None}
        if len(backing) < 3 or not backing <= reported:
            yield Violation("slashing-justified", day, actors,
                            f"tier-1 slash backed by {sorted(backing)}, reporters' channels "
                            f"{sorted(c for c in reported if c)}")
    elif len(set(decision.supporters)) < 2 or not set(decision.supporters) <= maintainer_keys:
        yield Violation("slashing-justified", day, actors,
                        f"tier-{decision.tier.rank} slash without two maintainers' acks")


def payments(world: Observed, day: int) -> Iterable[Violation]:
    """paid-once and fpps-formula (see the module docstring)."""
    book = world.book
    if book.duplicate_payments:
        yield Violation("paid-once", day, (), f"{book.duplicate_payments} payment hashes were "
                        "sent again")
    for agent in world.agents:
        if agent.paid_msat > agent.earned_msat:
            yield Violation("paid-once", day, (agent.node_id,),
                            f"paid {agent.paid_msat} msat of {agent.earned_msat} earned")
    for miner, difficulty, credited in world.pool.off_formula:
        yield Violation("fpps-formula", day, (miner,),
                        f"difficulty {difficulty} credited {credited} sat, off the formula")


def check_day(world: Observed, day: int) -> None:
    """Raise :class:`InvariantViolated` with the first violation found after ``day``."""
    for check in (conservation, stakes, payments):
        for violation in check(world, day):
            raise InvariantViolated(violation)
