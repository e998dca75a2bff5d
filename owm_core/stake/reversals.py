"""Reversing a slashing once an appeal is upheld: who may, what, and only once.

docs/slashing.md ("Appeals"): an appeal against slashing-log entry *i* is reviewed by at least
two maintainers *not* among those who acknowledged that slashing; if they uphold it, each signs
a ``slashing_reversal`` statement (:class:`~owm_core.identity.envelopes.SlashingReversal`,
naming the log index and the node) and the coordinator appends a
:class:`~owm_core.stake.slashing.SlashingReversalEntry` to the same hash-chained log, lifts the
node's cooldown (SRS-STAKE-07) and re-issues its forfeited rewards (SRS-SEC-11).

This module holds the rule, as pure functions over the log as read:

* :func:`check_statement` judges one statement as it arrives (so a maintainer learns at once
  that it cannot count): it must verify, come from a configured maintainer key
  (:class:`~owm_core.errors.NotAMaintainer`), not from one who acknowledged the slashing
  (:class:`~owm_core.errors.AcknowledgerMayNotReverse`), and name an entry that is a slashing
  of that node, not reversed already and not superseded by a later slashing of the same node
  (:class:`~owm_core.errors.ReversalRefused`; a later slashing forfeited and cooled down
  anew, so only the latest one of a node can be reversed).
* :func:`authorise` counts the statements about one entry: at least ``quorum`` (2) distinct
  maintainers, each passing :func:`check_statement`; the same maintainer twice counts once.
* :func:`reversal_entry` builds the signed log entry the authorisation calls for.

And how anyone outside the coordinator checks a reversal entry of the public log against the
statements behind it (docs/slashing.md, "Checking a reversal's statements"):

* the coordinator publishes, at ``GET /v1/slashing/reversals/{log_index}``, exactly the
  statements the authorisation counted (:attr:`ReversalAuthorisation.statements`): it records
  which ones in the transaction that appends the entry
  (``SlashingEvidenceRepository.count_reversal_statements``), so a statement stored later is
  never published in place of one the entry's ``statement_hash`` covers.
* :func:`statements_problem` says what is wrong with those statements for the entry: a hash
  other than ``statement_hash``, a signature that does not verify, a statement naming another
  entry or node, signers other than the entry's ``maintainers``, or (given the maintainer key
  set) a signer who is no maintainer. :func:`verify_reversal_statements` applies it to every
  reversal entry of a log (``owm slashing-log verify``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from owm_core.errors import (
    AcknowledgerMayNotReverse,
    DomainError,
    InvalidValue,
    NotAMaintainer,
    ReversalRefused,
    SignatureInvalid,
)
from owm_core.identity.chained_log import LogVerification, chain_position
from owm_core.identity.envelopes import (
    Envelope,
    EnvelopeKind,
    SlashingReversal,
    open_body,
    sha256_hex,
    to_bytes,
    verify,
)
from owm_core.identity.keys import Identity
from owm_core.stake.slashing import (
    MAINTAINER_QUORUM,
    SlashingLogEntry,
    SlashingLogRecord,
    SlashingReversalEntry,
    statement_digest,
)


@attrs.frozen
class ReversalCase:
    """What statements about one slashing-log entry are judged against.

    ``log`` is the whole slashing log as read (index order); ``maintainer_keys`` the configured
    maintainers (SRS-SEC-14); ``acknowledged_by`` the keys that acknowledged the slashing of
    the entry (its decision's supporters: nobody for a tier-1 slashing decided by signals);
    ``coordinator_key`` the public key of the coordinator judging, which statements must be
    signed for (SRS-SEC-03).
    """

    log: Sequence[SlashingLogRecord]
    maintainer_keys: frozenset[str]
    acknowledged_by: frozenset[str]
    coordinator_key: str
    quorum: int = MAINTAINER_QUORUM


@attrs.frozen
class ReversalAuthorisation:
    """Enough statements to reverse ``slashed``: the distinct ``maintainers`` who signed them
    and one ``statements`` envelope each (in maintainer order)."""

    slashed: SlashingLogEntry
    maintainers: tuple[str, ...]
    statements: tuple[Envelope, ...]

    @property
    def statement_hash(self) -> str:
        """SHA-256 of the sorted set of the statements' hashes (the entry's ``statement_hash``)."""
        return statements_hash(self.statements)


def reversal_of(log: Sequence[SlashingLogRecord], index: int) -> SlashingReversalEntry | None:
    """The entry of ``log`` that reversed slashing entry ``index``, if any."""
    for entry in log:
        if isinstance(entry, SlashingReversalEntry) and entry.reverses == index:
            return entry
    return None


def slashed_entry(case: ReversalCase, index: int, node_id: str) -> SlashingLogEntry:
    """The slashing entry ``index`` of ``node_id`` that may still be reversed, or the
    :class:`ReversalRefused` saying why not (wrong index or node, reversed, superseded)."""
    entry = next((e for e in case.log if e.index == index), None)
    if entry is None:
        raise ReversalRefused(f"the slashing log has no entry {index}")
    if not isinstance(entry, SlashingLogEntry):
        raise ReversalRefused(f"slashing-log entry {index} is a reversal, not a slashing")
    if entry.node_id != node_id:
        raise ReversalRefused(f"slashing-log entry {index} is about {entry.node_id}, not {node_id}")
    done = reversal_of(case.log, index)
    if done is not None:
        raise ReversalRefused(
            f"slashing-log entry {index} was already reversed by entry {done.index}"
        )
    later = [
        e.index for e in case.log
        if isinstance(e, SlashingLogEntry) and e.node_id == node_id and e.index > index
    ]  # fmt: skip
    if later:
        raise ReversalRefused(
            f"{node_id} was slashed again at entry {later[-1]}; only its latest slashing "
            "can be reversed"
        )
    return entry


def check_statement(case: ReversalCase, envelope: Envelope) -> SlashingReversal:
    """The statement ``envelope`` holds, if it may count towards a reversal (module docstring);
    otherwise the domain error saying why not."""
    if envelope.kind is not EnvelopeKind.SLASHING_REVERSAL:
        raise InvalidValue("kind", f"must be {EnvelopeKind.SLASHING_REVERSAL.value}")
    verify(envelope, audience=case.coordinator_key)
    if envelope.signer not in case.maintainer_keys:
        raise NotAMaintainer(
            f"{envelope.signer} is not a configured maintainer key ([stake] maintainer_keys)"
        )
    body = open_body(envelope)
    if not isinstance(body, SlashingReversal):
        raise InvalidValue("body", "must hold a slashing reversal")
    slashed_entry(case, body.log_index, body.node_id)
    if envelope.signer in case.acknowledged_by:
        raise AcknowledgerMayNotReverse(
            f"{envelope.signer} acknowledged slashing-log entry {body.log_index}; an appeal is "
            "reviewed by maintainers who did not"
        )
    return body


def counted_statements(
    case: ReversalCase, index: int, node_id: str, statements: Iterable[Envelope]
) -> tuple[dict[str, Envelope], list[str]]:
    """The statements about entry ``index`` of ``node_id`` that count, one per maintainer (the
    same maintainer twice counts once), and why each one that cannot count was left out;
    statements about another entry or node are ignored."""
    counted: dict[str, Envelope] = {}
    left_out: list[str] = []
    for envelope in statements:
        try:
            body = check_statement(case, envelope)
        except DomainError as exc:
            left_out.append(f"{envelope.signer[:16]}…: {exc.message}")
            continue
        if (body.log_index, body.node_id) != (index, node_id):
            continue
        _keep_one(counted, envelope)
    return counted, left_out


def _keep_one(chosen: dict[str, Envelope], envelope: Envelope) -> None:
    """Keep one statement per signer: the one with the smallest signature (deterministic:
    the same stored statements always authorise the same reversal entry)."""
    known = chosen.get(envelope.signer)
    if known is None or envelope.signature < known.signature:
        chosen[envelope.signer] = envelope


def authorise(
    case: ReversalCase, index: int, node_id: str, statements: Iterable[Envelope]
) -> ReversalAuthorisation:
    """Authorise reversing slashing entry ``index`` of ``node_id`` with ``statements``, or
    raise the domain error that stops it: the entry's own refusal first, then
    :class:`ReversalRefused` when fewer than ``case.quorum`` distinct maintainers count
    (:func:`counted_statements`; those left out are named)."""
    slashed = slashed_entry(case, index, node_id)
    counted, left_out = counted_statements(case, index, node_id, statements)
    if len(counted) < case.quorum:
        why = f" (not counted: {'; '.join(left_out)})" if left_out else ""
        raise ReversalRefused(
            f"reversing slashing-log entry {index} needs {case.quorum} distinct maintainers "
            f"who did not acknowledge it, got {len(counted)}{why}"
        )
    maintainers = tuple(sorted(counted))
    return ReversalAuthorisation(slashed, maintainers, tuple(counted[m] for m in maintainers))


def reversal_entry(
    coordinator: Identity,
    previous: SlashingLogRecord | None,
    authorisation: ReversalAuthorisation,
    now: int,
) -> SlashingReversalEntry:
    """The next log entry, reversing ``authorisation.slashed``, chained to ``previous`` and
    signed by the coordinator key (SRS-LN-13); dated no earlier than ``previous``."""
    slashed = authorisation.slashed
    at = now if previous is None else max(now, previous.at)
    return SlashingReversalEntry(
        **chain_position(previous),
        reverses=slashed.index,
        node_id=slashed.node_id,
        channel_id=slashed.channel_id,
        reason=slashed.reason,
        maintainers=authorisation.maintainers,
        statement_hash=authorisation.statement_hash,
        at=at,
    ).signed(coordinator)


# --- checking a published reversal against its statements ---------------------------------


def statements_hash(statements: Iterable[Envelope]) -> str:
    """The ``statement_hash`` of ``statements``: SHA-256 of the sorted set of the SHA-256 of
    each canonical envelope (:func:`~owm_core.identity.envelopes.to_bytes`)."""
    return statement_digest(sha256_hex(to_bytes(e)) for e in statements)


def _names_entry(envelope: Envelope, entry: SlashingReversalEntry) -> bool:
    """Whether ``envelope`` is a ``slashing_reversal`` statement about the slashing
    ``entry`` reverses (its log index and node)."""
    if envelope.kind is not EnvelopeKind.SLASHING_REVERSAL:
        return False
    try:
        body = open_body(envelope)
    except InvalidValue:
        return False
    return isinstance(body, SlashingReversal) and (body.log_index, body.node_id) == (
        entry.reverses, entry.node_id,
    )


def _statement_problem(
    envelope: Envelope, entry: SlashingReversalEntry, coordinator_key: str
) -> str | None:
    """Why one statement cannot back ``entry``, or None. A statement signed before envelopes
    named their coordinator (an unbound signature) still backs an entry it was logged for."""
    who = f"statement by {envelope.signer[:16]}…"
    try:
        verify(envelope, audience=coordinator_key, recorded=True)
    except SignatureInvalid:
        return f"{who}: signature does not verify"
    if not _names_entry(envelope, entry):
        return (
            f"{who}: is not a slashing_reversal of entry {entry.reverses} of {entry.node_id}"
        )
    return None


def statements_problem(
    entry: SlashingReversalEntry,
    statements: Sequence[Envelope],
    coordinator_key: str,
    maintainer_keys: frozenset[str] | None = None,
) -> str | None:
    """What is wrong with ``statements`` as the ones behind reversal ``entry``, or None.

    Each must verify (signed for the coordinator whose public key is ``coordinator_key``, the
    log's signer) and name the entry's log index (``reverses``) and node; their signers must
    be exactly the entry's ``maintainers``, one statement each; they must hash to its
    ``statement_hash``; with ``maintainer_keys`` (the configured maintainers, SRS-SEC-14) every
    signer must be one of them. Without it, the signers are only known to be the keys the
    coordinator-signed entry names.
    """
    for envelope in statements:
        problem = _statement_problem(envelope, entry, coordinator_key)
        if problem is not None:
            return problem
    signers = sorted(e.signer for e in statements)
    if signers != list(entry.maintainers):
        return (
            f"the statements' signers are not the entry's maintainers, one statement each "
            f"({len(signers)} statements, {len(entry.maintainers)} maintainers)"
        )
    if maintainer_keys is not None:
        outsiders = [s for s in signers if s not in maintainer_keys]
        if outsiders:
            return f"statement signer {outsiders[0]} is not a maintainer key"
    if statements_hash(statements) != entry.statement_hash:
        return "the statements do not hash to the entry's statement_hash"
    return None


def verify_reversal_statements(
    entries: Iterable[SlashingLogRecord],
    statements: Mapping[int, Sequence[Envelope]],
    coordinator_key: str,
    maintainer_keys: frozenset[str] | None = None,
) -> LogVerification:
    """Check every reversal entry of a slashing log against its statements (``statements``,
    keyed by the reversal entry's index; a missing key is a failure); the first bad entry.
    Run it on a log :func:`~owm_core.stake.slashing.verify_log` found intact."""
    for entry in entries:
        if not isinstance(entry, SlashingReversalEntry):
            continue
        behind = statements.get(entry.index)
        problem = (
            "its statements are not available"
            if behind is None
            else statements_problem(entry, behind, coordinator_key, maintainer_keys)
        )
        if problem is not None:
            return LogVerification(ok=False, index=entry.index, problem=problem)
    return LogVerification(ok=True)
