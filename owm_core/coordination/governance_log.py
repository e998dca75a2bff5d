"""The governance log: every governance action, hash-chained and signed by the coordinator.

Built like the slashing log (:mod:`owm_core.stake.slashing`, SRS-STAKE-06): an entry holds its
``index``, the previous entry's hash (``prev_hash``, :data:`GENESIS_HASH` for the first), the
``action``, the ``proposal_id``, the ``actor``, the signed ``statement`` itself (the
``governance_statement`` envelope, verbatim, as a dict; ``None`` when the actor proved itself
otherwise, e.g. holders' signatures inside a PSBT or an API key), a ``detail`` object (what the
coordinator did: a txid, the signers) and ``at``. Its hash is the SHA-256 hex of the canonical
encoding of those fields; the coordinator signs ``b"owm/governance-log/v1\\x00" +
canonical(fields)``.

:func:`verify_log` (``owm gov log verify``) reports the first entry that was edited, removed,
inserted or reordered, whose statement does not verify against its signer, or whose statement
says something else than the entry or is addressed to another coordinator. A removal at the
end shows only against a head hash known from elsewhere (``expected_head``). SRS-GOV-01..06.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import attrs

from owm_core import fields
from owm_core.errors import DomainError, InvalidValue
from owm_core.identity.chained_log import GENESIS_HASH as GENESIS_HASH
from owm_core.identity.chained_log import (
    LogVerification,
    SignedLogEntry,
    chain_position,
    verify_chain,
)
from owm_core.identity.chained_log import check_next_entry as check_next_entry
from owm_core.identity.envelopes import (
    Envelope,
    check_canonical,
    sha256_hex,
    verify,
)
from owm_core.identity.keys import Identity, parse_public_key

LOG_DOMAIN = b"owm/governance-log/v1\x00"
_ACTOR_MAX = 256


def _canonical_dict(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidValue(attribute.name, f"must be an object, got {type(value).__name__}")
    check_canonical(value, attribute.name)


def _statement(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        _canonical_dict(_instance, attribute, value)


@attrs.frozen
class GovernanceLogEntry(SignedLogEntry):
    """One governance action as published (GET /v1/governance/log), chained and signed (see
    the module docstring)."""

    LOG: ClassVar[str] = "governance log"
    DOMAIN: ClassVar[bytes] = LOG_DOMAIN

    index: int = attrs.field(validator=fields.integer(minimum=0))
    prev_hash: str = attrs.field(validator=fields.hex_digest(32))
    action: str = attrs.field(validator=fields.text(max_len=32))
    proposal_id: str = attrs.field(validator=fields.text(max_len=128))
    actor: str = attrs.field(validator=fields.text(max_len=_ACTOR_MAX))
    statement: dict[str, Any] | None = attrs.field(validator=_statement, hash=False)
    detail: dict[str, Any] = attrs.field(validator=_canonical_dict, hash=False)
    at: int = attrs.field(validator=fields.timestamp())
    signature: str = attrs.field(validator=fields.hex_digest(64))

    def statement_hash(self) -> str | None:
        """SHA-256 hex of the embedded statement's signature (replays are refused by it)."""
        if self.statement is None:
            return None
        return sha256_hex(bytes.fromhex(str(self.statement.get("signature", ""))))


def statement_hash_of(envelope: Envelope) -> str:
    """The replay key of a statement: the SHA-256 hex of its signature."""
    return sha256_hex(bytes.fromhex(envelope.signature))


def append_to_log(
    coordinator: Identity,
    previous: GovernanceLogEntry | None,
    *,
    action: str,
    proposal_id: str,
    actor: str,
    statement: Envelope | None,
    detail: dict[str, Any],
    at: int,
) -> GovernanceLogEntry:
    """The next entry, chained to ``previous`` and signed by the coordinator. Persisting it
    (in the same transaction as the action's effect) is the caller's job."""
    wire = None
    if statement is not None:
        wire = {**statement.unsigned(), "signature": statement.signature}
    return GovernanceLogEntry(
        **chain_position(previous),
        action=action, proposal_id=proposal_id, actor=actor, statement=wire,
        detail=detail, at=max(at, previous.at) if previous is not None else at,
    ).signed(coordinator)  # fmt: skip


def _statement_problem(entry: GovernanceLogEntry, coordinator_pubkey: str) -> str | None:
    """Why the embedded statement does not back the entry, or None. A statement logged
    before statements named their coordinator (no ``coordinator`` in its body), or signed
    before envelopes were bound to their coordinator (an unbound signature), still backs its
    entry: the coordinator's signature over the entry says it was taken there."""
    if entry.statement is None:
        return None
    try:
        envelope = Envelope(**entry.statement)
        verify(envelope, audience=coordinator_pubkey, recorded=True)
    except (DomainError, TypeError):
        return "the statement does not verify against its signer"
    body = envelope.body
    if envelope.signer != entry.actor:
        return "the statement's signer is not the entry's actor"
    if body.get("action") != entry.action:
        return "the statement's action is not the entry's"
    if body.get("proposal_id") not in ("", entry.proposal_id):
        return "the statement names another proposal"
    if body.get("coordinator", coordinator_pubkey) != coordinator_pubkey:
        return "the statement is addressed to another coordinator"
    return None


def verify_log(
    entries: Iterable[GovernanceLogEntry],
    coordinator_pubkey: str,
    expected_head: str | None = None,
) -> LogVerification:
    """Check a whole governance log; report the first fault (see the module docstring)."""
    parse_public_key(coordinator_pubkey, "coordinator_pubkey")

    def problem_of(entry: GovernanceLogEntry) -> str | None:
        if not entry.signed_by(coordinator_pubkey):
            return "signature does not verify: entry edited or forged"
        return _statement_problem(entry, coordinator_pubkey)

    return verify_chain(entries, problem_of, expected_head)
