"""Challenges, registration, deregistration and stakes of one coordinator process.

:class:`Registrar` owns the outstanding challenges (kept in the store, so every coordinator
on it shares them) and the registration rate limiters, under one lock (a threaded gRPC
server calls it concurrently); the rules are
:mod:`owm_core.coordination.registration`, :mod:`~owm_core.coordination.challenges` and
:mod:`~owm_core.coordination.stakes`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

import attrs

from owm_adapters.services.coordinator.shared import ServiceConfig, stake_node_id
from owm_adapters.services.sweep_failures import SweepFailures
from owm_core.access.ratelimit import SlidingWindowLimiter, Transport, registration_limit
from owm_core.coordination.challenges import Challenge, ChallengeBook, ChallengePurpose
from owm_core.coordination.registration import (
    Registered,
    Registration,
    deregister_node,
    node_status,
    register_node,
)
from owm_core.coordination.stakes import (
    StakeTerms,
    recheck_stake,
    reverify_due_stakes,
    stake_of,
    stake_terms,
)
from owm_core.errors import DomainError, InvalidTransition, InvalidValue, NotFound
from owm_core.identity.envelopes import CapabilityManifest
from owm_core.nodes.registry import Node, NodeStatus
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.stake.census import census
from owm_core.stake.channel import Stake, StakeStatus

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class Registrar:
    """Who may join, stay and leave: challenges, registration, stakes (SRS-SEC-03, 4.12)."""

    repositories: Repositories
    lightning: Lightning
    clock: Clock
    config: ServiceConfig
    _entropy: Callable[[int], bytes] = os.urandom
    #: This coordinator's public key: a manifest must be signed for it (SRS-SEC-03).
    coordinator_key: str = attrs.field(kw_only=True)
    # Shared by every coordinator on the store (SRS-COORD-05): a challenge issued here
    # may be answered at another coordinator; with ``shared_state`` the registration
    # limits count every coordinator's registrations too.
    _challenges: ChallengeBook = attrs.field(init=False)
    _limiters: dict[Transport, SlidingWindowLimiter] = attrs.field(init=False)
    _auth_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    #: The stakes a re-verification pass skipped, each logged once per failure.
    _stake_failures: SweepFailures = attrs.field(init=False, factory=lambda: SweepFailures(log))

    @_challenges.default
    def _shared_challenges(self) -> ChallengeBook:
        return ChallengeBook(store=self.repositories.challenges)

    @_limiters.default
    def _per_transport(self) -> dict[Transport, SlidingWindowLimiter]:
        ledger = self.repositories.rate_log if self.config.shared_state else None
        return {
            t: SlidingWindowLimiter(
                registration_limit(t), ledger=ledger, scope=f"registration/{t.value}"
            )
            for t in Transport
        }

    def challenge(self, public_key: str, purpose: str) -> Challenge:
        """Issue a one-use challenge for ``public_key`` and ``purpose`` (SRS-SEC-03)."""
        try:
            kind = ChallengePurpose(purpose)
        except ValueError:
            raise InvalidValue("purpose", "must be register, task_stream or deregister") from None
        with self._auth_lock:
            return self._challenges.issue(public_key, kind, self._entropy(32), self.clock.now())

    def redeem(
        self,
        public_key: str,
        purpose: ChallengePurpose,
        challenge_nonce: str,
        signature: str,
        details: Mapping[str, object],
    ) -> None:
        """Spend an answered challenge (raises when the answer does not check out)."""
        with self._auth_lock:
            self._challenges.redeem(
                public_key, purpose, challenge_nonce, signature, dict(details), self.clock.now()
            )

    def register(
        self,
        registration: Registration,
        *,
        challenge_nonce: str,
        signature: str,
        transport: Transport,
        client_ip: str | None,
    ) -> Registered:
        """Register a node (spec 4.12.2).

        See :func:`owm_core.coordination.registration.register_node`.
        """
        with self._auth_lock:
            return register_node(
                self.repositories,
                self.lightning,
                self._limiters[transport],
                self._challenges,
                registration,
                challenge_nonce=challenge_nonce,
                signature=signature,
                transport=transport,
                client_ip=client_ip,
                now=self.clock.now(),
                audience=self.coordinator_key,
                requirements=self.config.stake_requirements,
                policy=self.config.stake_policy,
            )

    def deregister(self, public_key: str, challenge_nonce: str, signature: str) -> Stake:
        """Leave cooperatively after an answered challenge (SRS-STAKE-08)."""
        now = self.clock.now()
        with self._auth_lock:
            self._challenges.redeem(
                public_key, ChallengePurpose.DEREGISTER, challenge_nonce, signature, {}, now
            )
        return deregister_node(self.repositories, public_key, now)

    def stake_terms(self, tier: str) -> StakeTerms:
        """What a node of ``tier`` must lock before registering (SRS-NODE-11); no auth needed."""
        return stake_terms(self.lightning, tier, self.config.stake_requirements)

    def stake_status(self, node_id: str | None, public_key: str | None) -> Stake:
        """The stake record of a node (spec 4.12)."""
        return stake_of(self.repositories, node_id, public_key)

    def status_of(self, node_id: str) -> NodeStatus:
        """online / offline / suspended for ``node_id`` now (spec §5.1)."""
        node = self.repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        stake = self.repositories.stakes.get(node.public_key)
        return node_status(node, stake, self.clock.now(), self.config.liveness)

    def registry_counts(self) -> dict[str, int]:
        """How many registered nodes are online, offline and suspended (metrics: one count
        query, :mod:`owm_core.stake.census`)."""
        silent_before = self.clock.now() - self.config.liveness.offline_after_s
        counts = census(self.repositories.nodes.presence(silent_before))
        return {status.value: count for status, count in counts.items()}

    def active_node(self, public_key: str) -> tuple[Node, CapabilityManifest]:
        """The node of ``public_key`` and its manifest, if its stake is active (spec 4.12.2).

        A pending stake is checked again first: its funding may have confirmed since.
        """
        stake = self.repositories.stakes.get(public_key)
        if stake is None:
            raise NotFound("no node is registered with this public key")
        if stake.status is StakeStatus.PENDING:
            stake = recheck_stake(
                self.repositories,
                self.lightning,
                stake,
                self.clock.now(),
                self.config.stake_requirements,
                self.config.stake_policy,
            )
        if stake.status is not StakeStatus.ACTIVE:
            raise InvalidTransition(f"stake is {stake.status.value}; tasks need an active stake")
        node_id = stake_node_id(stake)
        node = self.repositories.nodes.get(node_id)
        envelope = self.repositories.manifests.get(node_id)
        if node is None or envelope is None:
            raise NotFound("no node is registered with this public key")
        return node, CapabilityManifest.from_body(envelope.body)

    def reverify_stakes(self) -> list[Stake]:
        """Re-verify the stakes that are due (SRS-STAKE-02/03); return their new records. A
        stake whose re-check fails on its own is logged (again only when its failure changes)
        and retried next pass, while the pass goes on to the others."""
        return reverify_due_stakes(
            self.repositories,
            self.lightning,
            self.clock.now(),
            self.config.stake_requirements,
            self.config.stake_policy,
            skipped=self._skipped,
        )

    def _skipped(self, stake: Stake, error: DomainError) -> None:
        self._stake_failures.failed(stake.public_key, f"stake of node {stake_node_id(stake)} "
                                    f"not re-verified, retried next pass: {error.message}")
