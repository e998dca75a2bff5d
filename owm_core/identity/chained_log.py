"""Hash-chained logs signed by the coordinator: the rules the slashing log (SRS-STAKE-06,
SRS-LN-13) and the governance log (SRS-GOV-01..06) share.

An entry of either log is a :class:`SignedLogEntry`: it holds its ``index`` (from 0), the
previous entry's hash (``prev_hash``, :data:`GENESIS_HASH` for the first), its own fields, the
time ``at`` and the coordinator's ``signature``. Its hash is the SHA-256 hex of the canonical
encoding of every field but the signature; the coordinator signs its log's domain tag followed
by that encoding. :func:`check_next_entry` is the one append rule every store applies;
:func:`verify_chain` walks a whole log and reports its first fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Self, TypeVar, cast

import attrs

from owm_core.errors import Conflict, DomainError
from owm_core.identity.envelopes import canonical_bytes, plain_fields, sha256_hex
from owm_core.identity.keys import Identity, verify_signature
from owm_core.json_objects import exact_fields

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of a log's first entry, and the head of an empty log."""
_UNSIGNED = "0" * 128

_Entry = TypeVar("_Entry", bound="SignedLogEntry")


class SignedLogEntry:
    """Base of an ``attrs`` entry class of a hash-chained, coordinator-signed log.

    A subclass declares ``index``, ``prev_hash``, ``at`` and ``signature`` among its fields,
    its log's name ``LOG`` (in error messages) and its signing domain ``DOMAIN``.
    """

    LOG: ClassVar[str]
    DOMAIN: ClassVar[bytes]
    index: int
    prev_hash: str
    at: int
    signature: str

    def signed_fields(self) -> dict[str, Any]:
        """Every field except the signature (enums as their value), as a canonical dict."""
        return plain_fields(self, without=("signature",))

    def entry_hash(self) -> str:
        """SHA-256 hex of the canonical encoding of the signed fields; the next ``prev_hash``."""
        return sha256_hex(canonical_bytes(self.signed_fields()))

    def to_dict(self) -> dict[str, Any]:
        """The entry as published: its signed fields and its signature."""
        return {**self.signed_fields(), "signature": self.signature}

    @classmethod
    def from_dict(cls, data: object) -> Self:
        """Read a published entry; missing or unknown fields raise ``InvalidValue``."""
        names = [a.name for a in attrs.fields(cast(Any, cls))]
        return cls(**exact_fields(data, names, f"is not a {cls.LOG} field"))

    def message(self) -> bytes:
        """What the coordinator signs: the log's domain tag, then the signed fields."""
        return self.DOMAIN + canonical_bytes(self.signed_fields())

    def signed(self, coordinator: Identity) -> Self:
        """This entry carrying the ``coordinator`` key's signature over :meth:`message`."""
        signature = coordinator.sign(self.message()).hex()
        return cast(Self, attrs.evolve(cast(Any, self), signature=signature))

    def signed_by(self, coordinator_pubkey: str) -> bool:
        """Whether the signature is the coordinator key's over the fields (not the chain)."""
        try:
            verify_signature(coordinator_pubkey, self.message(), bytes.fromhex(self.signature))
        except DomainError:
            return False
        return True


def chain_position(previous: SignedLogEntry | None) -> dict[str, Any]:
    """The ``index``, ``prev_hash`` and placeholder ``signature`` of the entry that follows
    ``previous`` (None: the first entry), to be signed with :meth:`SignedLogEntry.signed`."""
    if previous is None:
        return {"index": 0, "prev_hash": GENESIS_HASH, "signature": _UNSIGNED}
    return {"index": previous.index + 1, "prev_hash": previous.entry_hash(), "signature": _UNSIGNED}


def check_next_entry(latest: _Entry | None, entry: _Entry) -> None:
    """Raise Conflict unless ``entry`` continues the log whose head is ``latest``.

    Both logs are append-only and hash-chained: the next entry has the next index, names the
    head's :meth:`~SignedLogEntry.entry_hash` (or :data:`GENESIS_HASH` for the first entry)
    as ``prev_hash``, and is not dated before the head. Every store checks appends with it.
    """
    expected = chain_position(latest)
    if entry.index != expected["index"]:
        raise Conflict(f"{entry.LOG} entry has index {entry.index}, expected {expected['index']}")
    if entry.prev_hash != expected["prev_hash"]:
        raise Conflict(f"{entry.LOG} entry does not chain to the latest entry (prev_hash)")
    if latest is not None and entry.at < latest.at:
        raise Conflict(f"{entry.LOG} entry is dated before the latest entry")


@attrs.frozen
class LogVerification:
    """The outcome of a log check: ``ok``, or the first bad ``index`` and ``problem``."""

    ok: bool
    index: int | None = None
    problem: str | None = None


def verify_chain(
    entries: Iterable[_Entry],
    problem_of: Callable[[_Entry], str | None],
    expected_head: str | None = None,
) -> LogVerification:
    """Walk a hash-chained log and report its first fault: ``problem_of`` an entry (its
    signature, say), an index out of place, a broken ``prev_hash`` chain, a timestamp going
    back, or with ``expected_head`` a log that does not end there. The slashing log and the
    governance log are checked with it."""
    prev_hash = GENESIS_HASH
    prev_at = 0
    count = 0
    for i, entry in enumerate(entries):
        count = i + 1
        problem = problem_of(entry)
        if problem is not None:
            return LogVerification(False, i, problem)
        if entry.index != i:
            return LogVerification(
                False, i, f"index is {entry.index}, expected {i}: entry removed, inserted or moved"
            )
        if entry.prev_hash != prev_hash:
            return LogVerification(
                False, i, "prev_hash does not match the previous entry: chain broken"
            )
        if entry.at < prev_at:
            return LogVerification(False, i, "timestamp is earlier than the previous entry's")
        prev_hash = entry.entry_hash()
        prev_at = entry.at
    if expected_head is not None and prev_hash != expected_head:
        return LogVerification(
            False, count, "log does not end at the expected head: truncated or extended"
        )
    return LogVerification(True)
