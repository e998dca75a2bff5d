"""The stake manager's slashing use case with its I/O (spec 4.12.3).

Requirements: SRS-STAKE-04..07, SRS-SEC-11/13/14, SRS-LN-12/13.

:class:`SlashingService` collects misbehaviour signals (FL anomaly scoring, fake-proof
detection) and maintainer acknowledgement envelopes, asks the core
:class:`~owm_core.stake.slashing.SlashingPolicy` whether they suffice, and carries a decision out:

1. append a hash-chained log entry signed by the coordinator key (SRS-LN-13, SRS-STAKE-06);
   it is what GET /v1/network/slashing-log publishes;
2. mark the stake slashed (30-day cooldown, SRS-STAKE-07), suspend the node and set its
   reliability to 0 (SRS-SEC-11);
3. forfeit the node's unpaid rewards: each of its payments still owed (pending or failed) is
   closed as failed with the error :data:`~owm_core.payments.records.FORFEIT_ERROR`
   (:func:`owm_core.payments.records.forfeit`) and a failed attempt is logged (SRS-LN-05). The
   payment
   dispatcher never acts on those again (``owm_core.payments.outbox.due_at`` is None for them); a
   payment already in flight cannot be recalled and is left alone;
4. force-close the stake channel through a *separate* Lightning handle that holds the
   force-close credential (SRS-SEC-13, SRS-STAKE-05); the payment handle cannot force close.

Each step is idempotent, so carrying out the same decision again (a retry after a crash, a
fourth signal) neither logs twice nor closes twice.

Durability: signals and acknowledgements are stored (``Repositories.slashing_evidence``) before
they are considered, and a decision is written before it is carried out and marked finished
after (write-ahead). A coordinator restarted at any point loses no signal and no
acknowledgement, and :meth:`SlashingService.resume` (run when the coordinator starts, then
every :data:`RESUME_PERIOD_S`) finishes an interrupted decision instead of deciding again, so
nobody is slashed twice. Evidence a decision used is closed and never counts again.

Feeds (wired by ``owm_adapters.bootstrap.coordinator.build_coordinator``):

* :class:`FakeProofDetector`, a settlement listener of the task market: a replica forfeited
  because it lost redundant verification or a spot check (:func:`owm_core.stake.slashing.
  fake_proof_signal`) becomes a ``fake_proof`` signal whose evidence is the SHA-256 of the
  node's signed proof envelope;
* FL anomaly signals through :meth:`SlashingService.report`, the FL round service's signal sink;
* maintainer acknowledgements through :meth:`SlashingService.acknowledge`
  (``POST /v1/slashing/acknowledgements``, ``owm slashing ack --api``);
* maintainers' reversal statements on an upheld appeal through
  ``SlashingService.reversals`` (``POST /v1/slashing/reversals``,
  ``owm slashing reverse --api``; :mod:`owm_adapters.services.slashing_reversals`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

import attrs

from owm_adapters.services.slashing_reversals import SlashingReversals
from owm_adapters.services.sweep_cursor import SweepCursor
from owm_adapters.services.workers import Loop
from owm_core.coordination.stakes import reporter_stakes
from owm_core.coordination.tasks import siblings, task_id_of
from owm_core.errors import (
    ChannelNotFound,
    DomainError,
    InvalidValue,
    NotAMaintainer,
    NotFound,
    PolicyViolation,
    must_exist,
)
from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    from_bytes,
    open_body,
    sha256_hex,
    to_bytes,
    verify,
)
from owm_core.identity.keys import Identity
from owm_core.market.tasks import Settlement, SettlementKind, TaskState
from owm_core.nodes.registry import Node
from owm_core.nodes.tiers import StakeRequirements, Tier
from owm_core.payments.records import (
    FORFEIT_ERROR,
    AttemptOutcome,
    PaymentState,
    attempt_record,
    forfeit,
    is_forfeited,
)
from owm_core.ports.clock import Clock
from owm_core.ports.lightning import ForceCloser
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import Stake, StakePolicy, StakeStatus
from owm_core.stake.reporters import ReporterStake, counted_signals, named_by_peers
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingPolicy,
    SlashingReason,
    SlashingSignal,
    SlashingTarget,
    append_to_log,
    fake_proof_signal,
)

log = logging.getLogger(__name__)

MAX_FORFEIT_SCAN = 10_000
RESUME_PERIOD_S = 60.0
"""How often a running coordinator retries unfinished decisions and open cases."""
MAX_OPEN_CASES = 500
"""Open cases one resume reconsiders: the next page after its cursor."""
__all__ = [
    "FORFEIT_ERROR",
    "AckReceipt",
    "FakeProofDetector",
    "PendingCase",
    "SlashingOutcome",
    "SlashingService",
    "is_forfeited",
    "proof_evidence_hash",
]


@attrs.frozen
class SlashingOutcome:
    """What carrying out a decision did (``False``/0: already done before)."""

    decision: SlashingDecision
    entry: SlashingLogEntry
    logged: bool
    stake_slashed: bool
    forfeited_msat: int
    closing_txid: str | None


@attrs.frozen
class Backing:
    """Distinct configured maintainers who acknowledged ``slash`` for one evidence and reason."""

    evidence_hash: str
    reason: str
    maintainers: tuple[str, ...]


@attrs.frozen
class PendingCase:
    """A node with open slashing evidence and no decision yet (GET /v1/slashing/pending).

    ``waiting_for`` is ``signals`` (tier 1: more distinct reporters needed) or
    ``acknowledgements`` (tier 2/3: ``quorum`` maintainers must back one evidence hash).
    """

    node_id: str
    tier: Tier
    channel_id: str
    waiting_for: str
    needed: int
    signals: tuple[SlashingSignal, ...]
    acknowledgements: tuple[Envelope, ...]
    backing: tuple[Backing, ...]


@attrs.frozen
class AckReceipt:
    """What submitting one acknowledgement did (the HTTP answer)."""

    acknowledgement: MaintainerAcknowledgement
    signer: str
    recorded: bool
    backing: Backing
    quorum: int
    outcome: SlashingOutcome | None
    slashed: bool


def proof_evidence_hash(envelope: Envelope) -> str:
    """The evidence hash of a task proof: SHA-256 hex of its canonical signed envelope bytes."""
    return sha256_hex(to_bytes(envelope))


def _policy_for(coordinator: Identity, policy: SlashingPolicy) -> None:
    """Acknowledgements are signed for this coordinator (SRS-SEC-03): the policy that counts
    them must name its key."""
    if policy.coordinator_key != coordinator.public_key_hex:
        raise ValueError("the slashing policy's coordinator_key is not this coordinator's")


@attrs.define
class SlashingService:
    """Signals and acknowledgements in, slashing decisions carried out (module docstring)."""

    repositories: Repositories
    force_closer: ForceCloser
    coordinator: Identity
    clock: Clock
    policy: SlashingPolicy = attrs.field(validator=lambda s, _a, p: _policy_for(s.coordinator, p))
    stake_policy: StakePolicy = attrs.field(factory=StakePolicy)
    #: A tier-1 reporter counts only with this much of its own balance in its stake channel.
    min_reporter_balance_sat: int = StakeRequirements().for_tier(Tier.T1).min_sats
    #: A store shared by several coordinators: see :attr:`decides` (SRS-COORD-05).
    shared: bool = False
    resume_period_s: float = RESUME_PERIOD_S
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _loop: Loop = attrs.field(init=False)
    _cases: SweepCursor[str] = attrs.field(factory=lambda: SweepCursor(""), init=False)
    #: Maintainers' reversal statements on upheld appeals (``slashing_reversals``), same lock.
    reversals: SlashingReversals = attrs.field(init=False, default=attrs.Factory(
        lambda s: SlashingReversals(s.repositories, s.coordinator, s.clock, s.policy, s._lock),
        takes_self=True))  # fmt: skip

    @_loop.default
    def _resume_loop(self) -> Loop:
        return Loop("owm-slashing", self.resume, RESUME_PERIOD_S)

    @property
    def coordinator_public_key(self) -> str:
        """The key that verifies the log (``owm slashing-log verify --coordinator-key``)."""
        return self.coordinator.public_key_hex

    # -- input -------------------------------------------------------------------------------

    def report(self, signals: Iterable[SlashingSignal]) -> list[SlashingOutcome]:
        """Store misbehaviour signals (SRS-STAKE-04) and carry out any decision they complete.

        A signal about a node with no stake on record (e.g. an FL client that is not a
        registered node) is dropped with a warning; the others are kept.
        """
        evidence = self.repositories.slashing_evidence
        touched: list[str] = []
        with self._lock:
            for signal in signals:
                if not isinstance(signal, SlashingSignal):
                    raise InvalidValue("signal", "must be a SlashingSignal")
                try:
                    self.target_of(signal.node_id)
                except NotFound:
                    log.warning("slashing signal about %s, which has no stake", signal.node_id)
                    continue
                evidence.add_signal(signal)
                if signal.node_id not in touched:
                    touched.append(signal.node_id)
            outcomes: list[SlashingOutcome] = []
            if not self.decides:
                return outcomes
            for node_id in touched:
                outcome = self.consider(node_id)
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    def acknowledge(self, raw: bytes | Envelope) -> SlashingOutcome | None:
        """Record one maintainer acknowledgement envelope (SRS-SEC-14); slash once quorate."""
        return self.submit_acknowledgement(raw).outcome

    def submit_acknowledgement(self, raw: bytes | Envelope) -> AckReceipt:
        """Record one maintainer acknowledgement envelope (SRS-SEC-14); slash once quorate.

        The envelope must be a verified ``maintainer_ack`` (else InvalidValue/SignatureInvalid)
        from a configured maintainer key (else :class:`NotAMaintainer`) about a staked node
        (else NotFound) of tier 2 or 3 (else PolicyViolation: tier 1 is decided by signals);
        anything else is refused here, so a maintainer learns at once that it did not count.
        The same envelope twice is stored once.
        """
        envelope = from_bytes(raw) if isinstance(raw, bytes) else raw
        if envelope.kind is not EnvelopeKind.MAINTAINER_ACK:
            raise InvalidValue("kind", "must be maintainer_ack")
        verify(envelope, audience=self.coordinator.public_key_hex)
        if envelope.signer not in self.policy.maintainer_keys:
            raise NotAMaintainer(f"{envelope.signer} is not a configured maintainer key "
                                 "([stake] maintainer_keys)")
        body = open_body(envelope)
        if not isinstance(body, MaintainerAcknowledgement):
            raise InvalidValue("body", "must hold a maintainer acknowledgement")
        if body.reason not in {r.value for r in SlashingReason}:
            raise InvalidValue("body.reason", "is not a slashing reason")
        node_id = body.node_id
        evidence = self.repositories.slashing_evidence
        with self._lock:
            target, _node, stake = self.target_of(node_id)
            if target.tier is Tier.T1:
                raise PolicyViolation("tier 1 nodes are slashed by independent signals; "
                                      "acknowledgements are for tier 2 and 3 (SRS-STAKE-04)")
            already = stake.status is StakeStatus.SLASHED
            recorded = False
            if not already:
                recorded = evidence.add_acknowledgement(node_id, envelope, self.clock.now())
            backing = self._backing(node_id, body.evidence_hash, body.reason)
            outcome = self.consider(node_id) if self.decides else None
        return AckReceipt(
            acknowledgement=body,
            signer=envelope.signer,
            recorded=recorded,
            backing=backing,
            quorum=self.policy.maintainer_quorum,
            outcome=outcome,
            slashed=already or outcome is not None,
        )

    def _backing(self, node_id: str, evidence_hash: str, reason: str) -> Backing:
        signers = {
            e.signer
            for e, ack in self._open_acks(node_id)
            if ack.evidence_hash == evidence_hash
            and ack.reason == reason
            and ack.verdict is AckVerdict.SLASH
            and e.signer in self.policy.maintainer_keys
        }
        return Backing(evidence_hash, reason, tuple(sorted(signers)))

    def _open_acks(self, node_id: str) -> list[tuple[Envelope, MaintainerAcknowledgement]]:
        found = []
        for envelope in self.repositories.slashing_evidence.open_acknowledgements(node_id):
            body = open_body(envelope)
            if isinstance(body, MaintainerAcknowledgement):
                found.append((envelope, body))
        return found

    # -- what is waiting ---------------------------------------------------------------------

    def pending(self, limit: int = 100) -> list[PendingCase]:
        """Nodes with open evidence and no decision yet, oldest evidence first."""
        evidence = self.repositories.slashing_evidence
        cases = []
        for node_id in evidence.open_node_ids(limit):
            try:
                target, _node, stake = self.target_of(node_id)
            except NotFound:
                continue
            if stake.status is StakeStatus.SLASHED:
                continue
            signals = tuple(self.policy.recent(evidence.open_signals(node_id), self.clock.now()))
            acks = self._open_acks(node_id)
            keys = sorted({(a.evidence_hash, a.reason) for _e, a in acks})
            backing = tuple(self._backing(node_id, h, r) for h, r in keys)
            by_signals = target.tier is Tier.T1
            cases.append(
                PendingCase(
                    node_id=node_id,
                    tier=target.tier,
                    channel_id=target.channel_id,
                    waiting_for="signals" if by_signals else "acknowledgements",
                    needed=(
                        self.policy.tier1_distinct_reporters
                        if by_signals
                        else self.policy.maintainer_quorum
                    ),
                    signals=signals,
                    acknowledgements=tuple(e for e, _a in acks),
                    backing=backing,
                )
            )
        return cases

    # -- decision ----------------------------------------------------------------------------

    def target_of(self, node_id: str) -> tuple[SlashingTarget, Node, Stake]:
        """The node as its registration record describes it (tier, stake channel, SRS-STAKE-05)."""
        node = must_exist(self.repositories.nodes.get(node_id), f"no node {node_id}")
        stake = self.repositories.stakes.get(node.public_key)
        if stake is None or stake.channel is None:
            raise NotFound(f"node {node_id} has no stake channel on record")
        target = SlashingTarget(
            node_id=node_id, tier=stake.tier, channel_id=stake.channel.channel_point
        )
        return target, node, stake

    def consider(self, node_id: str) -> SlashingOutcome | None:
        """Ask the policy about ``node_id`` now; carry out the decision if there is one.

        An unfinished decision about the node is finished first (never a second one). A node
        already slashed is not slashed again during its cooldown: new evidence about it is
        closed unused.
        """
        evidence = self.repositories.slashing_evidence
        with self._lock:
            for unfinished in evidence.unfinished_decisions():
                if unfinished.node_id == node_id:
                    return self._finish(unfinished)
            target, _node, stake = self.target_of(node_id)
            now = self.clock.now()
            if stake.status is StakeStatus.SLASHED:
                evidence.close_evidence(node_id, now)
                return None
            signals = evidence.open_signals(node_id)
            if target.tier is Tier.T1:
                signals = stake_backed(self.repositories, target, stake, signals,
                                       self.min_reporter_balance_sat)
            decision = self.policy.evaluate(
                target, signals, evidence.open_acknowledgements(node_id), now
            )
            if decision is None:
                return None
            return self._finish(evidence.begin_decision(decision))

    def _finish(self, decision: SlashingDecision) -> SlashingOutcome:
        outcome = self.carry_out(decision)
        self.repositories.slashing_evidence.finish_decision(decision.node_id, self.clock.now())
        return outcome

    def resume(self) -> list[SlashingOutcome]:
        """Finish decisions a crash interrupted, then reconsider the open cases (e.g. after a
        restart, once a force close that failed can succeed, or evidence another coordinator
        stored, SRS-COORD-05). Failures are logged and retried on the next call.

        Each call reconsiders the next :data:`MAX_OPEN_CASES` cases after the last one it
        looked at (by node id, from the start again at the end): cases whose evidence never
        adds up to a decision stay open, and would otherwise keep every later case from being
        decided (SRS-STAKE-04); each is reconsidered within ``ceil(open / MAX_OPEN_CASES) + 1``
        calls."""
        outcomes: list[SlashingOutcome] = []
        evidence = self.repositories.slashing_evidence
        with self._lock:
            node_ids = [d.node_id for d in evidence.unfinished_decisions()]
            page = self._cases.page(evidence.open_node_ids_after, _node_id, MAX_OPEN_CASES)
            node_ids += [n for n in page if n not in node_ids]
            for node_id in node_ids:
                try:
                    outcome = self.consider(node_id)
                except NotFound:
                    continue
                except Exception:
                    log.exception("slashing case of %s could not be finished; will retry", node_id)
                    continue
                if outcome is not None:
                    outcomes.append(outcome)
        return outcomes

    # -- running beside the coordinator --------------------------------------------------------

    @property
    def decides(self) -> bool:
        """Whether this coordinator decides now: on a shared store only while it leads the
        ``slashing`` job (the others store evidence for the leader's next resume)."""
        return not self.shared or self._loop.running

    def start(self, period_s: float | None = None) -> None:
        """Resume at once, then every ``period_s`` (``resume_period_s``) s in a thread."""
        self._loop.period_s = self.resume_period_s if period_s is None else period_s
        self._loop.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the resume thread (a decision under way finishes first)."""
        self._loop.stop(timeout_s)

    def carry_out(self, decision: SlashingDecision) -> SlashingOutcome:
        """Log, slash the stake, zero reputation, forfeit rewards, force-close: each once."""
        with self._lock:
            entry, logged = self._log(decision)
            slashed = self._slash_stake(decision)
            forfeited = forfeit_rewards(self.repositories, decision.node_id, self.clock.now())
            txid = self._force_close(decision.channel_id)
        log.warning("node %s slashed (%s); log entry %d; channel %s", decision.node_id,
                    decision.reason.value, entry.index, decision.channel_id, extra={
                        "node_id": decision.node_id, "log_index": entry.index})
        return SlashingOutcome(decision, entry, logged, slashed, forfeited, txid)

    def _log(self, decision: SlashingDecision) -> tuple[SlashingLogEntry, bool]:
        log_repo = self.repositories.slashing_log
        for existing in log_repo.entries(0, None):
            if isinstance(existing, SlashingLogEntry) and (
                existing.node_id, existing.evidence_hash, existing.reason
            ) == (
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

    def _force_close(self, channel_point: str) -> str | None:
        """Force-close once; a channel no longer open counts as done (SRS-STAKE-05)."""
        try:
            return self.force_closer.force_close(channel_point)
        except ChannelNotFound:
            return None


def forfeit_rewards(repositories: Repositories, node_id: str, now: int) -> int:
    """Forfeit the slashed node's unpaid rewards (pending or failed) and log each as a failed
    attempt; returns the msat forfeited (SRS-SEC-11). A payment in flight is left alone."""
    payments = repositories.payments
    total = 0
    # the store picks the unpaid ones: the cap counts those, not every payment the node had
    unpaid = (PaymentState.PENDING, PaymentState.FAILED)
    for payment in payments.for_node(node_id, MAX_FORFEIT_SCAN, states=unpaid):
        if is_forfeited(payment):
            continue
        closed = forfeit(payment, now)
        payments.upsert(closed)
        payments.log_attempt(attempt_record(closed, AttemptOutcome.FAILED, now))
        total += payment.amount_msat
    return total


def stake_backed(
    repositories: Repositories,
    target: SlashingTarget,
    stake: Stake,
    signals: Sequence[SlashingSignal],
    min_own_balance_sat: int,
) -> list[SlashingSignal]:
    """The tier-1 signals that count, one reporter per distinct stake channel (SRS-STAKE-04).

    Reporters are registered nodes with a live stake holding ``min_own_balance_sat`` of their
    own; tasks, rounds, strangers and the target's own channel count for nothing
    (:func:`owm_core.stake.reporters.counted_signals`), so identities sharing one channel
    count once and a Sybil with fewer stakes than the threshold cannot frame a node.
    """
    stakes = reporter_stakes(repositories, (s.reporter for s in signals))
    if stake.channel is not None:
        stakes[target.node_id] = ReporterStake(
            target.node_id, stake.channel.channel_point, stake.channel.own_balance_sat
        )
    return counted_signals(target.node_id, signals, stakes, min_own_balance_sat)


class FakeProofDetector:
    """A settlement listener of the task market that turns lost verifications into signals.

    A forfeited replica whose task was settled for another node with a different output hash
    (minority in redundant verification, or contradicted by a spot check) becomes a
    ``fake_proof`` :class:`SlashingSignal` (:func:`owm_core.stake.slashing.fake_proof_signal`;
    SRS-SEC-11, SRS-STAKE-04), reported once per sibling that won the verification (those
    nodes are its reporters, :func:`owm_core.stake.reporters.named_by_peers`) to ``sink``
    (normally ``SlashingService.report``).
    """

    def __init__(
        self,
        repositories: Repositories,
        clock: Clock,
        sink: Callable[[Sequence[SlashingSignal]], object],
    ) -> None:
        self.repositories = repositories
        self.clock = clock
        self.sink = sink

    def __call__(self, settlement: Settlement) -> None:
        """Look at one settlement; report a signal if it is a lost verification."""
        if settlement.kind is not SettlementKind.FORFEIT:
            return
        try:
            task_id = task_id_of(settlement.task_id)
        except DomainError:
            return
        proof = self.repositories.proofs.get(settlement.task_id, settlement.node_id)
        if proof is None:
            return
        replicas = siblings(self.repositories, task_id)
        signal = fake_proof_signal(
            task_id, replicas, settlement.node_id, proof_evidence_hash(proof), self.clock.now()
        )
        if signal is not None:
            log.warning(
                "node %s lost the verification of task %s: fake_proof signal",
                settlement.node_id, task_id,
            )
            winners = [r.node_id or "" for r in replicas if r.state is TaskState.SETTLED]
            self.sink(named_by_peers([signal], winners))


def _node_id(node_id: str) -> str:
    return node_id
