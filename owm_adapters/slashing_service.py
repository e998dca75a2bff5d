"""The stake manager's slashing use case with its I/O (spec 4.12.3).

Requirements: SRS-STAKE-04..07, SRS-SEC-11/13/14, SRS-LN-12/13.

:class:`SlashingService` collects misbehaviour signals (FL anomaly scoring, fake-proof
detection) and maintainer acknowledgement envelopes, asks the core
:class:`~owm_core.slashing.SlashingPolicy` whether they suffice, and carries a decision out:

1. append a hash-chained log entry signed by the coordinator key (SRS-LN-13, SRS-STAKE-06);
   it is what GET /v1/network/slashing-log publishes;
2. mark the stake slashed (30-day cooldown, SRS-STAKE-07), suspend the node and set its
   reliability to 0 (SRS-SEC-11);
3. forfeit the node's unpaid rewards: each of its payments still owed (pending or failed) is
   closed as failed with the error :data:`~owm_core.payments.FORFEIT_ERROR`
   (:func:`owm_core.payments.forfeit`) and a failed attempt is logged (SRS-LN-05). The payment
   dispatcher never acts on those again (``owm_core.payouts.due_at`` is None for them); a
   payment already in flight cannot be recalled and is left alone;
4. force-close the stake channel through a *separate* Lightning handle that holds the
   force-close credential (SRS-SEC-13, SRS-STAKE-05); the payment handle cannot force close.

Each step is idempotent, so carrying out the same decision again (a retry after a crash, a
fourth signal) neither logs twice nor closes twice. Signals and acknowledgements wait in this
process's memory until a decision; the durable record is the log and the stake.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import attrs

from owm_adapters import keystore
from owm_adapters.settings import ConfigError, CoordinatorSettings
from owm_core.envelopes import (
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    from_bytes,
    open_body,
    verify,
)
from owm_core.errors import ChannelNotFound, InvalidValue, NotFound, SignatureInvalid
from owm_core.identity import Identity
from owm_core.payments import (
    FORFEIT_ERROR,
    AttemptOutcome,
    PaymentState,
    attempt_record,
    forfeit,
    is_forfeited,
)
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import Lightning
from owm_core.ports.repositories import Repositories
from owm_core.registry import Node
from owm_core.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingPolicy,
    SlashingSignal,
    SlashingTarget,
    append_to_log,
)
from owm_core.stake import Stake, StakePolicy, StakeStatus

log = logging.getLogger(__name__)

MAX_FORFEIT_SCAN = 10_000
__all__ = [
    "FORFEIT_ERROR",
    "SlashingOutcome",
    "SlashingService",
    "is_forfeited",
    "slashing_service_from",
]


def load_coordinator_identity(path: str) -> Identity:
    """The coordinator's signing key (``[coordinator] signing_key_path``, SRS-LN-13)."""
    return keystore.load_identity(Path(path).expanduser())


@attrs.frozen
class SlashingOutcome:
    """What carrying out a decision did (``False``/0: already done before)."""

    decision: SlashingDecision
    entry: SlashingLogEntry
    logged: bool
    stake_slashed: bool
    forfeited_msat: int
    closing_txid: str | None


class SlashingService:
    """Signals and acknowledgements in, slashing decisions carried out (module docstring)."""

    def __init__(
        self,
        repositories: Repositories,
        force_closer: Lightning,
        coordinator: Identity,
        clock: Clock,
        policy: SlashingPolicy,
        stake_policy: StakePolicy | None = None,
    ) -> None:
        self.repositories = repositories
        self.force_closer = force_closer
        self.coordinator = coordinator
        self.clock = clock
        self.policy = policy
        self.stake_policy = stake_policy or StakePolicy()
        self._signals: dict[str, list[SlashingSignal]] = defaultdict(list)
        self._acks: dict[str, list[Envelope]] = defaultdict(list)
        self._lock = threading.RLock()

    @property
    def coordinator_public_key(self) -> str:
        """The key that verifies the log (``owm slashing-log verify --coordinator-key``)."""
        return self.coordinator.public_key_hex

    # -- input -------------------------------------------------------------------------------

    def report(self, signals: Iterable[SlashingSignal]) -> list[SlashingOutcome]:
        """Record misbehaviour signals (SRS-STAKE-04) and carry out any decision they complete."""
        touched: list[str] = []
        with self._lock:
            for signal in signals:
                if not isinstance(signal, SlashingSignal):
                    raise InvalidValue("signal", "must be a SlashingSignal")
                self._signals[signal.node_id].append(signal)
                if signal.node_id not in touched:
                    touched.append(signal.node_id)
            outcomes = []
            for node_id in touched:
                try:
                    outcome = self.consider(node_id)
                except NotFound:  # e.g. an FL client that is not a registered, staked node
                    log.warning("slashing signal about %s, which has no stake on record", node_id)
                    continue
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def acknowledge(self, raw: bytes | Envelope) -> SlashingOutcome | None:
        """Record one maintainer acknowledgement envelope (SRS-SEC-14); slash once quorate.

        The envelope must be a verified ``maintainer_ack`` from a configured maintainer key;
        anything else is refused here, so a maintainer learns at once that it did not count.
        """
        envelope = from_bytes(raw) if isinstance(raw, bytes) else raw
        if envelope.kind is not EnvelopeKind.MAINTAINER_ACK:
            raise InvalidValue("envelope", "must be a maintainer_ack envelope")
        verify(envelope)
        if envelope.signer not in self.policy.maintainer_keys:
            raise SignatureInvalid("the acknowledgement is not signed by a maintainer key")
        body = open_body(envelope)
        if not isinstance(body, MaintainerAcknowledgement):
            raise InvalidValue("envelope", "must hold a maintainer acknowledgement")
        node_id = body.node_id
        with self._lock:
            if all(e.signature != envelope.signature for e in self._acks[node_id]):
                self._acks[node_id].append(envelope)
            return self.consider(node_id)

    # -- decision ----------------------------------------------------------------------------

    def target_of(self, node_id: str) -> tuple[SlashingTarget, Node, Stake]:
        """The node as its registration record describes it (tier, stake channel, SRS-STAKE-05)."""
        node = self.repositories.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no node {node_id}")
        stake = self.repositories.stakes.get(node.public_key)
        if stake is None or stake.channel is None:
            raise NotFound(f"node {node_id} has no stake channel on record")
        target = SlashingTarget(
            node_id=node_id, tier=stake.tier, channel_id=stake.channel.channel_point
        )
        return target, node, stake

    def consider(self, node_id: str) -> SlashingOutcome | None:
        """Ask the policy about ``node_id`` now; carry out the decision if there is one.

        A node already slashed is not slashed again for new evidence during its cooldown.
        """
        with self._lock:
            target, _node, stake = self.target_of(node_id)
            if stake.status is StakeStatus.SLASHED:
                return None
            decision = self.policy.evaluate(
                target,
                self._signals.get(node_id, ()),
                self._acks.get(node_id, ()),
                self.clock.now(),
            )
            if decision is None:
                return None
            outcome = self.carry_out(decision)
            self._signals.pop(node_id, None)
            self._acks.pop(node_id, None)
            return outcome

    def carry_out(self, decision: SlashingDecision) -> SlashingOutcome:
        """Log, slash the stake, zero reputation, forfeit rewards, force-close: each once."""
        with self._lock:
            entry, logged = self._log(decision)
            slashed = self._slash_stake(decision)
            forfeited = self._forfeit(decision.node_id)
            txid = self._force_close(decision.channel_id)
        log.warning(
            "node %s slashed (%s); log entry %d; channel %s",
            decision.node_id, decision.reason.value, entry.index, decision.channel_id,
        )
        return SlashingOutcome(decision, entry, logged, slashed, forfeited, txid)

    def _log(self, decision: SlashingDecision) -> tuple[SlashingLogEntry, bool]:
        log_repo = self.repositories.slashing_log
        for existing in log_repo.entries(0, None):
            if (existing.node_id, existing.evidence_hash, existing.reason) == (
                decision.node_id, decision.evidence_hash, decision.reason,
            ):
                return existing, False
        entry = append_to_log(self.coordinator, log_repo.latest(), decision)
        log_repo.append(entry)
        return entry, True

    def _slash_stake(self, decision: SlashingDecision) -> bool:
        _target, node, stake = self.target_of(decision.node_id)
        changed = False
        with self.repositories.atomic():
            if stake.status is not StakeStatus.SLASHED:
                now = max(decision.decided_at, stake.changed_at)
                self.repositories.stakes.save(stake.slashed(now, self.stake_policy))
                changed = True
            if node.reliability_ppm != 0 or not node.suspended:
                self.repositories.nodes.save(attrs.evolve(node, reliability_ppm=0, suspended=True))
        return changed

    def _forfeit(self, node_id: str) -> int:
        payments = self.repositories.payments
        total = 0
        now = self.clock.now()
        for payment in payments.for_node(node_id, MAX_FORFEIT_SCAN):
            if payment.state not in (PaymentState.PENDING, PaymentState.FAILED):
                continue
            if is_forfeited(payment):
                continue
            closed = forfeit(payment, now)
            payments.upsert(closed)
            payments.log_attempt(attempt_record(closed, AttemptOutcome.FAILED, now))
            total += payment.amount_msat
        return total

    def _force_close(self, channel_point: str) -> str | None:
        """Force-close once; a channel no longer open counts as done (SRS-STAKE-05)."""
        try:
            return self.force_closer.force_close(channel_point)
        except ChannelNotFound:
            return None


def slashing_service_from(
    settings: CoordinatorSettings,
    repositories: Repositories,
    clock: Clock,
    *,
    force_closer: Lightning | None = None,
    coordinator: Identity | None = None,
) -> SlashingService:
    """The slashing service for ``settings`` (composition, like ``bootstrap``).

    The force-close handle is built separately from the payment handle, with the force-close
    credential (SRS-SEC-13): for the embedded ledger, the treasury node with
    ``force_close_allowed``. For LND/CLN pass ``LndLightning(force_close_macaroon=...)`` /
    ``ClnLightning(force_close_socket_path=...)`` as ``force_closer``. The coordinator key is
    read from ``[coordinator] signing_key_path`` (``owm-coordinator init``).
    """
    if force_closer is None:
        if settings.lightning.backend != "embedded":
            raise ConfigError("pass a force-close Lightning handle for this backend")
        from owm_adapters.bootstrap import LIGHTNING_FILE, data_dir_of
        from owm_adapters.sim_ln import SimLedger

        ledger = SimLedger(data_dir_of(settings) / LIGHTNING_FILE)
        ledger.add_node(settings.lightning.treasury_alias)
        force_closer = ledger.lightning(settings.lightning.treasury_alias, force_close_allowed=True)
    identity = coordinator or load_coordinator_identity(settings.coordinator.signing_key_path)
    stake = settings.stake
    return SlashingService(
        repositories,
        force_closer,
        identity,
        clock,
        SlashingPolicy(maintainer_keys=stake.maintainer_keys),
        StakePolicy(reverify_period_s=stake.reverify_period_s, grace_period_s=stake.grace_period_s),
    )
