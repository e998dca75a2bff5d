"""Slashing in a run: the coordinator's own ``SlashingService`` over the memory store, with
two simulated maintainers who acknowledge tier-2/3 cases (SRS-STAKE-04..07, SRS-SEC-14).

Signals go to ``SlashingService.report``, which counts stake-backed reporters
(``stake_backed``), asks ``SlashingPolicy`` and carries a decision out (hash-chained signed log
entry, stake slashed with its cooldown, reputation 0, owed rewards forfeited, stake channel
force-closed through the channel book). Tier 2/3 need two maintainers' signed
``MaintainerAcknowledgement`` envelopes: the simulated maintainers sign one when the open
signals about a node come from at least three distinct stake channels (the same bar tier 1
meets automatically); that judgement is the model's assumption, not a rule of the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs

from owm_adapters.services.slashing import SlashingOutcome, SlashingService, stake_backed
from owm_adapters.sim.economy.ledger import ChannelBook
from owm_adapters.storage.memory import MemoryRepositories
from owm_core.errors import NotFound
from owm_core.identity.envelopes import (
    AckVerdict,
    EnvelopeKind,
    MaintainerAcknowledgement,
    seal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingPolicy, SlashingSignal

REPORTER_BAR = 3


@attrs.define
class SimClock:
    """The simulated clock the services read (the ``Clock`` port)."""

    now_s: int

    def now(self) -> int:
        """Simulated POSIX seconds."""
        return self.now_s

    def monotonic_ms(self) -> int:
        """Simulated milliseconds (the simulation never waits)."""
        return self.now_s * 1000


def _identity(name: str, seed: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"{name}\x00{seed}".encode()).digest())


@attrs.define
class Slashing:
    """The slashing service of a run, its maintainers and what it decided."""

    repositories: MemoryRepositories
    book: ChannelBook
    clock: SimClock
    seed: int
    on_outcome: Callable[[SlashingOutcome, list[SlashingSignal]], None]
    service: SlashingService = attrs.field(init=False)
    maintainers: tuple[Identity, Identity] = attrs.field(init=False)
    reports: dict[str, list[SlashingSignal]] = attrs.field(factory=dict)
    _nonce: int = 0

    def __attrs_post_init__(self) -> None:
        self.maintainers = (_identity("maintainer-1", self.seed),
                            _identity("maintainer-2", self.seed))
        coordinator = _identity("coordinator", self.seed)
        policy = SlashingPolicy(maintainer_keys={m.public_key_hex for m in self.maintainers},
                                coordinator_key=coordinator.public_key_hex)
        self.service = SlashingService(
            repositories=self.repositories,
            force_closer=self.book, coordinator=coordinator,
            clock=self.clock, policy=policy,
        )

    @property
    def coordinator_public_key(self) -> str:
        """The key that signs the slashing log."""
        return self.service.coordinator_public_key

    def report(self, signals: list[SlashingSignal]) -> None:
        """Hand signals to the service; let the maintainers look at tier-2/3 targets."""
        for signal in signals:
            self.reports.setdefault(signal.node_id, []).append(signal)
        for outcome in self.service.report(signals):
            self.on_outcome(outcome, self.reports.pop(outcome.decision.node_id, []))
        for node_id in sorted({s.node_id for s in signals}):
            self._review(node_id)

    def _review(self, node_id: str) -> None:
        try:
            target, _node, stake = self.service.target_of(node_id)
        except NotFound:
            return
        if target.tier is Tier.T1 or not stake.live:
            return
        open_signals = self.service.policy.recent(
            self.repositories.slashing_evidence.open_signals(node_id), self.clock.now())
        counted = stake_backed(self.repositories,
                               target, stake, list(open_signals),
                               self.service.min_reporter_balance_sat)
        if len({s.reporter for s in counted}) < REPORTER_BAR:
            return
        evidence = hashlib.sha256("".join(sorted(s.evidence_hash for s in counted)).encode())
        ack = MaintainerAcknowledgement(node_id=node_id, evidence_hash=evidence.hexdigest(),
                                        reason=counted[0].reason.value, verdict=AckVerdict.SLASH)
        for maintainer in self.maintainers:
            self._nonce += 1
            envelope = seal(maintainer, EnvelopeKind.MAINTAINER_ACK, ack,
                            f"{self._nonce:032x}", self.clock.now(),
                            audience=self.service.coordinator_public_key)
            receipt = self.service.submit_acknowledgement(envelope)
            if receipt.outcome is not None:
                self.on_outcome(receipt.outcome, self.reports.pop(node_id, []))
