"""Slashing: when a staked node is punished, what follows, and the tamper-evident public log.

This module owns the slashing rules of the stake manager (SRS-STAKE-04, SRS-STAKE-06,
SRS-STAKE-07, SRS-SEC-11, SRS-SEC-14, SRS-LN-13):

* **Tier 1** nodes are slashed automatically once :class:`SlashingSignal` values from **3
  distinct reporters** (anomaly detectors, validators, sources) name the node. The same
  reporter reporting three times counts once; a node cannot report itself. Maintainer
  acknowledgements play no part for tier 1.
* **Signals expire.** Only signals raised within the last ``signal_window_s`` (default
  :data:`SIGNAL_WINDOW_S`, 7 days) count (:func:`recent_signals`). SRS-STAKE-04 asks for 3
  independent signals and states no window; without one, accusations that never expire let
  independent Sybil operators rotating their targets eventually coincide on one honest node
  (docs/simulation.md, behaviour 3). Seven days is this project's choice, not the spec's
  (docs/configuration.md, ``[stake] signal_window_s``): long enough for three peers to see
  genuine misbehaviour, short enough that stray accusations do not pile up over months.
* **Tier 2 and 3** nodes are slashed only when **2 distinct maintainers** have each signed a
  :class:`~owm_core.identity.envelopes.MaintainerAcknowledgement` envelope with verdict ``slash``
  for
  the same node, evidence hash and reason. Each envelope must verify and its signer must be in
  the configured maintainer key set. Signals alone never slash tier 2/3, however many.
* A :class:`SlashingDecision` always carries the same consequences: force-close the stake
  channel (SRS-STAKE-05, SRS-LN-12), suspend the node, start a 30-day re-registration cooldown
  for its key (SRS-STAKE-07), forfeit its unpaid rewards and set its reputation to 0
  (SRS-SEC-11).

* **Fake proofs** found by task verification (:func:`fake_proof_signal`): a node whose replica
  lost the redundant majority vote, or was contradicted by a trusted spot check, is reported
  with reason ``FAKE_PROOF``; each verified task is its own reporter (``verify:<task id>``).

Why a force close is not enough: a Lightning force close (BOLT #5) does **not** confiscate the
closing party's funds. The node's balance is returned to it after its ``to_self_delay``
(a few days at most) minus on-chain fees; no penalty transaction applies, since the node did
not publish a revoked state. The economic penalty of slashing is therefore the delay, the
fees, the forfeited unpaid rewards, the lost reputation and the 30-day exclusion, not the stake.

The slashing log is a hash chain of :class:`SlashingLogEntry` values. Each entry holds its
``index``, the previous entry's hash (``prev_hash``; :data:`GENESIS_HASH` for the first), the
pseudonymous node id, channel id, reason, evidence hash and timestamp. An entry's hash is the
SHA-256 hex of the canonical encoding (see :mod:`owm_core.identity.envelopes`) of those fields; the
coordinator signs ``b"owm/slashing-log/v1\\x00" + canonical(fields)``. :func:`verify_log`
finds the first edited, removed, inserted or reordered entry; a removal at the *end* of the
log is only visible against a head hash known from elsewhere (``expected_head``), e.g. one
published or timestamped earlier.

An upheld appeal appends a :class:`SlashingReversalEntry` to the same chain (who may reverse
what: :mod:`owm_core.stake.reversals`). It is told apart by its ``reverses`` field, so slashing
entries keep exactly their fields, encoding and hash; :func:`verify_log` also checks that each
reversal names an earlier, unreversed slashing of the same node (:func:`reversal_problem`).
"""

from __future__ import annotations

import enum
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import attrs

from owm_core import fields
from owm_core.errors import DomainError, InvalidValue, PolicyViolation
from owm_core.identity.chained_log import GENESIS_HASH as GENESIS_HASH
from owm_core.identity.chained_log import (
    LogVerification,
    SignedLogEntry,
    chain_position,
    verify_chain,
)
from owm_core.identity.chained_log import check_next_entry as check_next_entry
from owm_core.identity.envelopes import (
    AckVerdict,
    Envelope,
    EnvelopeKind,
    MaintainerAcknowledgement,
    canonical_bytes,
    open_body,
    parse_canonical_json,
    sha256_hex,
    verify,
)
from owm_core.identity.keys import Identity, parse_node_id, parse_public_key
from owm_core.market.tasks import Task, TaskState
from owm_core.nodes.tiers import Tier

COOLDOWN_S = 30 * 24 * 3600
SIGNAL_WINDOW_S = 7 * 24 * 3600
TIER1_DISTINCT_REPORTERS = 3
MAINTAINER_QUORUM = 2
LOG_DOMAIN = b"owm/slashing-log/v1\x00"
VERIFICATION_REPORTER_PREFIX = "verify:"

_REPORTER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
_CHANNEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_x-]{0,127}")


class SlashingReason(enum.Enum):
    """Why a node is slashed (SRS-SEC-11 names the first two)."""

    POISONED_UPDATE = "poisoned_update"
    FAKE_PROOF = "fake_proof"
    FABRICATED_SHARES = "fabricated_shares"
    EQUIVOCATION = "equivocation"
    PROTOCOL_ABUSE = "protocol_abuse"


class Consequence(enum.Enum):
    """What the stake manager must do once a node is slashed."""

    FORCE_CLOSE_CHANNEL = "force_close_channel"
    SUSPEND_NODE = "suspend_node"
    START_COOLDOWN = "start_cooldown"
    FORFEIT_UNPAID_REWARDS = "forfeit_unpaid_rewards"
    ZERO_REPUTATION = "zero_reputation"


def _node_id(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_node_id(value, attribute.name)


_REPORTER = fields.matches(_REPORTER_RE, "a reporter id ([A-Za-z0-9._:@-], at most 128)")
_CHANNEL = fields.matches(_CHANNEL_RE, "a channel id (short id or txid:index)")
_REASON = fields.instance_of(SlashingReason)


def _to_reason(value: object) -> object:
    return fields.to_enum(SlashingReason, "reason", value)


@attrs.frozen
class SlashingSignal:
    """One reporter's claim that a node misbehaved, backed by evidence (SRS-STAKE-04)."""

    node_id: str = attrs.field(validator=_node_id)
    reporter: str = attrs.field(validator=_REPORTER)
    reason: SlashingReason = attrs.field(converter=_to_reason, validator=_REASON)
    evidence_hash: str = attrs.field(validator=fields.hex_digest(32))
    at: int = attrs.field(validator=fields.timestamp())


def _to_tier(value: object) -> object:
    return fields.to_enum(Tier, "tier", value)


@attrs.frozen
class SlashingTarget:
    """The node a case is about, as its registration record describes it (SRS-STAKE-05)."""

    node_id: str = attrs.field(validator=_node_id)
    tier: Tier = attrs.field(converter=_to_tier, validator=fields.instance_of(Tier))
    channel_id: str = attrs.field(validator=_CHANNEL)


ALL_CONSEQUENCES = frozenset(Consequence)


@attrs.frozen
class SlashingDecision:
    """A confirmed slashing and everything it entails (SRS-STAKE-04/07, SRS-SEC-11)."""

    node_id: str = attrs.field(validator=_node_id)
    channel_id: str = attrs.field(validator=_CHANNEL)
    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    reason: SlashingReason = attrs.field(validator=_REASON)
    evidence_hash: str = attrs.field(validator=fields.hex_digest(32))
    decided_at: int = attrs.field(validator=fields.timestamp())
    supporters: tuple[str, ...] = attrs.field(validator=fields.instance_of(tuple))
    consequences: frozenset[Consequence] = attrs.field(default=ALL_CONSEQUENCES)
    cooldown_s: int = attrs.field(default=COOLDOWN_S, validator=fields.integer(minimum=0))

    @property
    def cooldown_until(self) -> int:
        """POSIX second from which the node's key may register again (SRS-STAKE-07)."""
        return self.decided_at + self.cooldown_s

    def cooldown_active(self, now: int) -> bool:
        """Whether registration from this node's key must still be refused at ``now``."""
        return now < self.cooldown_until


def recent_signals(
    signals: Iterable[SlashingSignal], now: int, window_s: int = SIGNAL_WINDOW_S
) -> list[SlashingSignal]:
    """The signals that still count at ``now``: raised less than ``window_s`` seconds before it.

    A signal at ``now - window_s`` or earlier has expired and never contributes to a decision
    (SRS-STAKE-04, module docstring); signals stamped later than ``now`` are kept as they are.
    """
    horizon = now - window_s
    return [s for s in signals if s.at > horizon]


def _key_set(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(keys)


def _evidence_digest(hashes: Iterable[str]) -> str:
    return sha256_hex(canonical_bytes(sorted(set(hashes))))


@attrs.frozen
class SlashingPolicy:
    """The slashing thresholds and the maintainers whose acknowledgements count (SRS-SEC-14),
    signed for this coordinator, whose public key is ``coordinator_key`` (SRS-SEC-03)."""

    maintainer_keys: frozenset[str] = attrs.field(converter=_key_set)
    coordinator_key: str = attrs.field(kw_only=True)
    tier1_distinct_reporters: int = attrs.field(
        default=TIER1_DISTINCT_REPORTERS, validator=fields.integer(minimum=1)
    )
    maintainer_quorum: int = attrs.field(
        default=MAINTAINER_QUORUM, validator=fields.integer(minimum=1)
    )
    cooldown_s: int = attrs.field(default=COOLDOWN_S, validator=fields.integer(minimum=0))
    #: Signals older than this many seconds at decision time never count (:func:`recent_signals`).
    signal_window_s: int = attrs.field(
        default=SIGNAL_WINDOW_S, validator=fields.integer(minimum=1)
    )

    @maintainer_keys.validator
    def _check_keys(self, attribute: attrs.Attribute[Any], value: frozenset[str]) -> None:
        for key in value:
            parse_public_key(key, attribute.name)

    @coordinator_key.validator
    def _check_coordinator(self, attribute: attrs.Attribute[Any], value: str) -> None:
        parse_public_key(value, attribute.name)

    def recent(self, signals: Iterable[SlashingSignal], now: int) -> list[SlashingSignal]:
        """The ``signals`` that still count at ``now`` under this policy's window."""
        return recent_signals(signals, now, self.signal_window_s)

    def evaluate(
        self,
        target: SlashingTarget,
        signals: Iterable[SlashingSignal],
        acknowledgements: Iterable[Envelope],
        now: int,
    ) -> SlashingDecision | None:
        """The decision the evidence supports for ``target`` at ``now``, or None if not enough."""
        try:
            return self.decide(target, signals, acknowledgements, now)
        except PolicyViolation:
            return None

    def decide(
        self,
        target: SlashingTarget,
        signals: Iterable[SlashingSignal],
        acknowledgements: Iterable[Envelope],
        now: int,
    ) -> SlashingDecision:
        """Decide to slash ``target`` or raise :class:`PolicyViolation` saying what is missing.

        Tier 1: signals about ``target`` from ``tier1_distinct_reporters`` distinct reporters,
        counting only signals raised within ``signal_window_s`` before ``now``.
        Tier 2/3: verified ``slash`` acknowledgements for the same evidence and reason from
        ``maintainer_quorum`` distinct configured maintainers; invalid envelopes are ignored.
        """
        if target.tier is Tier.T1:
            return self._decide_by_signals(target, signals, now)
        return self._decide_by_acknowledgements(target, acknowledgements, now)

    def _decision(
        self,
        target: SlashingTarget,
        reason: SlashingReason,
        evidence_hash: str,
        supporters: Iterable[str],
        now: int,
    ) -> SlashingDecision:
        return SlashingDecision(
            node_id=target.node_id,
            channel_id=target.channel_id,
            tier=target.tier,
            reason=reason,
            evidence_hash=evidence_hash,
            decided_at=now,
            supporters=tuple(sorted(supporters)),
            cooldown_s=self.cooldown_s,
        )

    def _decide_by_signals(
        self, target: SlashingTarget, signals: Iterable[SlashingSignal], now: int
    ) -> SlashingDecision:
        relevant = [
            s
            for s in self.recent(signals, now)
            if s.node_id == target.node_id and s.reporter != target.node_id
        ]
        reporters = {s.reporter for s in relevant}
        if len(reporters) < self.tier1_distinct_reporters:
            raise PolicyViolation(
                f"tier 1 slashing needs signals from {self.tier1_distinct_reporters} distinct "
                f"reporters, got {len(reporters)}"
            )
        votes: dict[SlashingReason, set[str]] = defaultdict(set)
        for s in relevant:
            votes[s.reason].add(s.reporter)
        order = list(SlashingReason)
        reason = max(votes, key=lambda r: (len(votes[r]), -order.index(r)))
        evidence = _evidence_digest(s.evidence_hash for s in relevant)
        return self._decision(target, reason, evidence, reporters, now)

    def _decide_by_acknowledgements(
        self, target: SlashingTarget, acknowledgements: Iterable[Envelope], now: int
    ) -> SlashingDecision:
        backers: dict[tuple[str, SlashingReason], set[str]] = defaultdict(set)
        for envelope in acknowledgements:
            ack = self._counted_acknowledgement(envelope, target)
            if ack is not None:
                backers[(ack.evidence_hash, SlashingReason(ack.reason))].add(envelope.signer)
        quorate = sorted(
            (key for key, signers in backers.items() if len(signers) >= self.maintainer_quorum),
            key=lambda key: (key[0], key[1].value),
        )
        if not quorate:
            best = max((len(s) for s in backers.values()), default=0)
            raise PolicyViolation(
                f"tier {target.tier.value[1]} slashing needs {self.maintainer_quorum} "
                f"acknowledgements from distinct maintainers for the same evidence, got {best}"
            )
        evidence_hash, reason = quorate[0]
        return self._decision(target, reason, evidence_hash, backers[quorate[0]], now)

    def _counted_acknowledgement(
        self, envelope: Envelope, target: SlashingTarget
    ) -> MaintainerAcknowledgement | None:
        if envelope.kind is not EnvelopeKind.MAINTAINER_ACK:
            return None
        if envelope.signer not in self.maintainer_keys:
            return None
        try:
            # Stored acknowledgements, some taken before envelopes named their coordinator.
            verify(envelope, audience=self.coordinator_key, recorded=True)
            ack = open_body(envelope)
        except DomainError:
            return None
        if not isinstance(ack, MaintainerAcknowledgement):
            return None
        if ack.node_id != target.node_id or ack.verdict is not AckVerdict.SLASH:
            return None
        if ack.reason not in {r.value for r in SlashingReason}:
            return None
        return ack


# --- fake proofs found by task verification ------------------------------------------------


def fake_proof_signal(
    task_id: str, replicas: Sequence[Task], node_id: str, proof_hash: str, now: int
) -> SlashingSignal | None:
    """The ``FAKE_PROOF`` signal that verifying ``task_id`` raises against ``node_id``, if any.

    ``replicas`` are the task's replicas after its verdict (data flow 3). A signal is raised
    only when the node's replica was forfeited *and* another replica of the task was settled
    with a different output hash: the node lost a redundant majority vote, or a trusted
    spot-check re-execution disagreed with it (SRS-SEC-11). A task without a majority (every
    replica forfeited) raises none, since nobody can tell whose output was false.

    The evidence is ``proof_hash``, the SHA-256 of the node's signed proof envelope; the
    reporter is ``verify:<task_id>``, so each verified task is one independent signal and a
    tier-1 node is slashed after losing three (SRS-STAKE-04).
    """
    mine = [r for r in replicas if r.node_id == node_id and r.state is TaskState.FORFEITED]
    trusted = {
        r.output_hash
        for r in replicas
        if r.state is TaskState.SETTLED and r.node_id != node_id and r.output_hash
    }
    if not mine or not trusted:
        return None
    if all(r.output_hash in trusted for r in mine):
        return None
    return SlashingSignal(
        node_id=node_id,
        reporter=VERIFICATION_REPORTER_PREFIX + task_id,
        reason=SlashingReason.FAKE_PROOF,
        evidence_hash=proof_hash,
        at=now,
    )


# --- the public slashing log --------------------------------------------------------------


@attrs.frozen
class SlashingLogEntry(SignedLogEntry):
    """One published slashing, chained to the previous entry and signed (SRS-STAKE-06, LN-13);
    published at GET /v1/network/slashing-log as :meth:`~SignedLogEntry.to_dict`."""

    LOG: ClassVar[str] = "slashing log"
    DOMAIN: ClassVar[bytes] = LOG_DOMAIN

    index: int = attrs.field(validator=fields.integer(minimum=0))
    prev_hash: str = attrs.field(validator=fields.hex_digest(32))
    node_id: str = attrs.field(validator=_node_id)
    channel_id: str = attrs.field(validator=_CHANNEL)
    reason: SlashingReason = attrs.field(converter=_to_reason, validator=_REASON)
    evidence_hash: str = attrs.field(validator=fields.hex_digest(32))
    at: int = attrs.field(validator=fields.timestamp())
    signature: str = attrs.field(validator=fields.hex_digest(64))

    @classmethod
    def from_bytes(cls, data: bytes) -> SlashingLogEntry:
        """Parse one canonical-JSON entry strictly (no floats, no duplicate keys)."""
        return cls.from_dict(parse_canonical_json(data, "entry"))


def _to_maintainers(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


def _maintainers(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or list(value) != sorted(set(value)):
        raise InvalidValue(attribute.name, "must be distinct public keys in ascending order")
    for key in value:
        parse_public_key(key, attribute.name)


@attrs.frozen
class SlashingReversalEntry(SignedLogEntry):
    """A reversed slashing, chained and signed like every slashing-log entry (docs/slashing.md,
    "Appeals"; SRS-STAKE-06/07, SRS-LN-13).

    ``reverses`` is the index of the :class:`SlashingLogEntry` it reverses, whose ``node_id``,
    ``channel_id`` and ``reason`` it repeats; ``maintainers`` are the distinct maintainer keys
    whose ``slashing_reversal`` statements upheld the appeal and ``statement_hash`` the SHA-256
    of the sorted set of those statements' hashes (SHA-256 of each canonical envelope). Its
    published form is told apart from a slashing by its ``reverses`` field; slashing entries
    keep exactly their fields, so a log written before reversals existed verifies unchanged.
    """

    LOG: ClassVar[str] = "slashing log"
    DOMAIN: ClassVar[bytes] = LOG_DOMAIN

    index: int = attrs.field(validator=fields.integer(minimum=0))
    prev_hash: str = attrs.field(validator=fields.hex_digest(32))
    reverses: int = attrs.field(validator=fields.integer(minimum=0))
    node_id: str = attrs.field(validator=_node_id)
    channel_id: str = attrs.field(validator=_CHANNEL)
    reason: SlashingReason = attrs.field(converter=_to_reason, validator=_REASON)
    maintainers: tuple[str, ...] = attrs.field(converter=_to_maintainers, validator=_maintainers)
    statement_hash: str = attrs.field(validator=fields.hex_digest(32))
    at: int = attrs.field(validator=fields.timestamp())
    signature: str = attrs.field(validator=fields.hex_digest(64))

    def signed_fields(self) -> dict[str, Any]:
        """Every field but the signature; ``maintainers`` as a list (canonical JSON)."""
        return {**super().signed_fields(), "maintainers": list(self.maintainers)}


SlashingLogRecord = SlashingLogEntry | SlashingReversalEntry
"""One entry of the slashing log: a slashing or the reversal of one."""


def log_entry_from_dict(data: object) -> SlashingLogRecord:
    """Read one published slashing-log entry: a reversal when it has ``reverses``, else a
    slashing (unknown or missing fields raise ``InvalidValue``)."""
    if isinstance(data, dict) and "reverses" in data:
        return SlashingReversalEntry.from_dict(data)
    return SlashingLogEntry.from_dict(data)


def statement_digest(statement_hashes: Iterable[str]) -> str:
    """The ``statement_hash`` of a reversal: SHA-256 of the sorted set of statement hashes."""
    return _evidence_digest(statement_hashes)


def append_to_log(
    coordinator: Identity, previous: SlashingLogRecord | None, decision: SlashingDecision
) -> SlashingLogEntry:
    """The next log entry recording ``decision``, chained to ``previous`` and signed by the
    coordinator key (SRS-LN-13). Persisting it is the caller's job; every store checks the
    append with :func:`~owm_core.identity.chained_log.check_next_entry`."""
    return SlashingLogEntry(
        **chain_position(previous),
        node_id=decision.node_id,
        channel_id=decision.channel_id,
        reason=decision.reason,
        evidence_hash=decision.evidence_hash,
        at=decision.decided_at,
    ).signed(coordinator)


def signed_by(entry: SlashingLogRecord, coordinator_pubkey: str) -> bool:
    """Whether ``entry``'s signature is the coordinator key's over its fields (not the chain)."""
    return entry.signed_by(coordinator_pubkey)


def verify_log(
    entries: Iterable[SlashingLogRecord],
    coordinator_pubkey: str,
    expected_head: str | None = None,
) -> LogVerification:
    """Check a whole slashing log against the coordinator's key; report the first fault.

    Detects an edited entry (signature), a removed, inserted or reordered entry (index and
    ``prev_hash`` chain), and with ``expected_head`` (the last entry's hash, or
    :data:`GENESIS_HASH` for an empty log) a truncated or extended log. A reversal must name
    an earlier slashing of the same node (channel, reason) not reversed before, backed by at
    least :data:`MAINTAINER_QUORUM` maintainers (:func:`reversal_problem`).
    """
    parse_public_key(coordinator_pubkey, "coordinator_pubkey")
    seen: list[SlashingLogRecord] = []

    def problem_of(entry: SlashingLogRecord) -> str | None:
        if not entry.signed_by(coordinator_pubkey):
            return "signature does not verify: entry edited or forged"
        problem = None
        if isinstance(entry, SlashingReversalEntry):
            problem = reversal_problem(entry, seen)
        seen.append(entry)
        return problem

    return verify_chain(entries, problem_of, expected_head)


def reversal_problem(
    entry: SlashingReversalEntry, earlier: Sequence[SlashingLogRecord]
) -> str | None:
    """Why ``entry`` is no valid reversal given the ``earlier`` entries of the log, or None."""
    if entry.reverses >= len(earlier):
        return f"reversal references entry {entry.reverses}, which is not an earlier entry"
    target = earlier[entry.reverses]
    if not isinstance(target, SlashingLogEntry):
        return f"reversal references entry {entry.reverses}, which is not a slashing"
    if (target.node_id, target.channel_id, target.reason) != (
        entry.node_id, entry.channel_id, entry.reason,
    ):
        return f"reversal does not match slashing entry {entry.reverses} (node, channel, reason)"
    if any(isinstance(e, SlashingReversalEntry) and e.reverses == entry.reverses for e in earlier):
        return f"slashing entry {entry.reverses} is reversed twice"
    if len(entry.maintainers) < MAINTAINER_QUORUM:
        return f"reversal names fewer than {MAINTAINER_QUORUM} distinct maintainers"
    return None
