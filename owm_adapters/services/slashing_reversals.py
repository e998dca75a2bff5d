"""Reversing a slashing on appeal, with its I/O (docs/slashing.md, "Appeals").

Requirements: SRS-STAKE-06/07, SRS-SEC-11/14, SRS-LN-13.

:class:`SlashingReversals` takes maintainers' signed ``slashing_reversal`` statements
(``POST /v1/slashing/reversals``, ``owm slashing reverse --api``), judges each with the core
rule (:mod:`owm_core.stake.reversals`: a configured maintainer, not one who acknowledged the
slashing, naming the latest slashing of that node, not reversed before), stores it, and once
two distinct maintainers back the reversal carries it out **in one store transaction**:

1. append a :class:`~owm_core.stake.slashing.SlashingReversalEntry` to the slashing log, chained
   and signed by the coordinator key like every entry (SRS-LN-13), and record which stored
   statements it counted (the ones its ``statement_hash`` covers, which
   ``GET /v1/slashing/reversals/{log_index}`` publishes: a statement stored later, e.g. by a
   second coordinator on the same store, is never published in their place);
2. lift the cooldown: the slashed stake becomes ``deregistered`` (no cooldown), so the key may
   register again at once (SRS-STAKE-07); the force-closed channel stays closed, so the node
   registers with a channel, as any node does;
3. give the node the reliability a new registration gets (``RELIABILITY_INITIAL_PPM``) if it
   has less: the slashing zeroed it (SRS-SEC-11), its history before it is not restored;
4. re-issue its forfeited rewards: every payment the slashing forfeited is made payable again
   (:func:`~owm_core.payments.records.reinstate`), and the payment dispatcher pays it under its
   own payment hash like any failed payment.

Exactly once: the log entry and the effects commit together or not at all, and a second
reversal of the same entry is refused by the rule (the log, read again inside that transaction,
shows it reversed), so a crash, a retry or two coordinators on one store (the chain's append
rule lets one entry take each index) pay nothing twice. Statements that arrived before a crash
are stored: sending either again finishes the reversal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import attrs

from owm_core.errors import InvalidValue
from owm_core.identity.envelopes import Envelope, SlashingReversal, from_bytes, open_body
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import is_forfeited, reinstate
from owm_core.payments.rewards import RELIABILITY_INITIAL_PPM
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories
from owm_core.stake.channel import StakeStatus
from owm_core.stake.reversals import (
    ReversalCase,
    authorise,
    check_statement,
    counted_statements,
    reversal_entry,
)
from owm_core.stake.slashing import SlashingLogEntry, SlashingPolicy, SlashingReversalEntry

log = logging.getLogger(__name__)

MAX_REISSUE_SCAN = 10_000


@attrs.frozen
class ReversalOutcome:
    """What carrying out a reversal did: the new log entry, whether the cooldown was lifted
    (False: the stake was no longer slashed), and the forfeited payments re-issued."""

    entry: SlashingReversalEntry
    cooldown_lifted: bool
    reissued: int
    reissued_msat: int


@attrs.frozen
class ReversalReceipt:
    """What submitting one reversal statement did (the HTTP answer)."""

    statement: SlashingReversal
    signer: str
    recorded: bool
    maintainers: tuple[str, ...]
    quorum: int
    outcome: ReversalOutcome | None


@attrs.define
class SlashingReversals:
    """Maintainers' reversal statements in, upheld appeals carried out (module docstring)."""

    repositories: Repositories
    coordinator: Identity
    clock: Clock
    policy: SlashingPolicy
    lock: threading.RLock = attrs.field(factory=threading.RLock)

    def submit(self, raw: bytes | Envelope) -> ReversalReceipt:
        """Record one ``slashing_reversal`` statement; reverse the slashing once quorate.

        Refused before anything is stored: a malformed or forged envelope (InvalidValue,
        SignatureInvalid), a signer not among the maintainers (NotAMaintainer), a maintainer
        who acknowledged the slashing (AcknowledgerMayNotReverse), an entry that is no
        reversible slashing of that node (ReversalRefused). The same envelope twice is
        stored once.
        """
        envelope = from_bytes(raw) if isinstance(raw, bytes) else raw
        if not isinstance(envelope, Envelope):
            raise InvalidValue("envelope", "must be a slashing_reversal envelope")
        evidence = self.repositories.slashing_evidence
        with self.lock:
            case = self._case_for(envelope)
            body = check_statement(case, envelope)
            recorded = evidence.add_reversal_statement(
                body.log_index, envelope, self.clock.now()
            )
            statements = evidence.reversal_statements(body.log_index)
            counted, _left_out = counted_statements(
                case, body.log_index, body.node_id, statements
            )
            outcome = None
            if len(counted) >= case.quorum:
                outcome = self._carry_out(case, body, statements)
        return ReversalReceipt(
            statement=body,
            signer=envelope.signer,
            recorded=recorded,
            maintainers=tuple(sorted(counted)),
            quorum=case.quorum,
            outcome=outcome,
        )

    def _case_for(self, envelope: Envelope) -> ReversalCase:
        """The log and the slashing's acknowledgers the statement is judged against."""
        entries = list(self.repositories.slashing_log.entries(0, None))
        acknowledged_by: frozenset[str] = frozenset()
        try:
            body = open_body(envelope)
        except InvalidValue:
            body = None  # check_statement names the bad field
        if isinstance(body, SlashingReversal):
            slashed = next((e for e in entries if e.index == body.log_index), None)
            if isinstance(slashed, SlashingLogEntry):
                acknowledged_by = self._acknowledgers(slashed)
        return ReversalCase(
            log=entries,
            maintainer_keys=self.policy.maintainer_keys,
            acknowledged_by=acknowledged_by,
            coordinator_key=self.coordinator.public_key_hex,
            quorum=self.policy.maintainer_quorum,
        )

    def _acknowledgers(self, slashed: SlashingLogEntry) -> frozenset[str]:
        """The maintainers who acknowledged ``slashed``: its decision's supporters (a tier-1
        decision's supporters are reporters, not maintainers, and count as nobody)."""
        decision = self.repositories.slashing_evidence.decision_for(
            slashed.node_id, slashed.evidence_hash, slashed.reason.value
        )
        if decision is None or decision.tier is Tier.T1:
            return frozenset()
        return frozenset(decision.supporters)

    def _carry_out(
        self, case: ReversalCase, body: SlashingReversal, statements: Sequence[Envelope]
    ) -> ReversalOutcome:
        """Authorise against the log as it is inside the transaction (another coordinator on
        the same store may have reversed it meanwhile: ReversalRefused), then log (with the
        statements counted), lift the cooldown, restore reliability and re-issue forfeits, all
        in that one transaction."""
        repositories = self.repositories
        now = self.clock.now()
        with repositories.atomic():
            log_now = list(repositories.slashing_log.entries(0, None))
            authorisation = authorise(
                attrs.evolve(case, log=log_now), body.log_index, body.node_id, statements
            )
            slashed = authorisation.slashed
            entry = reversal_entry(
                self.coordinator, log_now[-1] if log_now else None, authorisation, now
            )
            repositories.slashing_log.append(entry)
            repositories.slashing_evidence.count_reversal_statements(
                [e.signature for e in authorisation.statements], entry.index
            )
            lifted = self._lift_cooldown(slashed.node_id, entry.at)
            count, total = self._reissue(slashed, entry.at)
        log.warning(
            "slashing of %s (log entry %d) reversed by entry %d; %d payments re-issued",
            slashed.node_id, slashed.index, entry.index, count,
            extra={"node_id": slashed.node_id, "log_index": entry.index},
        )
        return ReversalOutcome(entry, lifted, count, total)

    def _lift_cooldown(self, node_id: str, now: int) -> bool:
        node = self.repositories.nodes.get(node_id)
        if node is None:
            return False
        if node.reliability_ppm < RELIABILITY_INITIAL_PPM:
            self.repositories.nodes.save(
                attrs.evolve(node, reliability_ppm=RELIABILITY_INITIAL_PPM)
            )
        stake = self.repositories.stakes.get(node.public_key)
        if stake is None or stake.status is not StakeStatus.SLASHED:
            return False
        self.repositories.stakes.save(stake.reinstated(max(now, stake.changed_at)))
        return True

    def _reissue(self, slashed: SlashingLogEntry, now: int) -> tuple[int, int]:
        """Reinstate the payments this slashing forfeited (forfeited at or after it)."""
        payments = self.repositories.payments
        count = total = 0
        for payment in payments.for_node(slashed.node_id, MAX_REISSUE_SCAN):
            if not is_forfeited(payment) or payment.updated_at < slashed.at:
                continue
            payments.upsert(reinstate(payment, max(now, payment.updated_at)))
            count += 1
            total += payment.amount_msat
        return count, total
