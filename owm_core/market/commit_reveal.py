"""Commit–reveal for replicated tasks: a replica's result cannot be copied from a sibling.

Redundant execution (data flow 3) pays the replicas that agree with the majority, so a node
that could read a sibling's output hash before delivering its own would be paid without
working, and then its copy would even count as a vote for the fake-proof check (SRS-SEC-11).
This module owns the rule that stops it:

1. **Commit.** Each assigned node sends only a commitment::

       digest = SHA-256(COMMIT_DOMAIN ‖ lp(replica_id) ‖ lp(node_id) ‖ output_hash ‖ lp(salt))

   where ``lp(x)`` is ``x`` prefixed with its length as 4 big-endian bytes and ``output_hash``
   is the 32 raw bytes of the SHA-256 of the output. The salt (16–64 bytes, drawn by the node)
   hides the output hash; the replica and node ids bind the commitment to one replica of one
   node, so a copied digest is worthless to anyone else.
2. **Reveal.** Only when every replica of the task has committed, or the commit window has
   closed, may nodes reveal ``(output_hash, salt, output bytes)``. A reveal is accepted only
   if it recomputes the node's own commitment *and* the output bytes hash to the output hash,
   so knowing a sibling's hash without its bytes gets a node nothing.

:class:`CommitRound` holds one task's phase; :meth:`CommitRound.revealed_results` feeds
:func:`owm_core.market.tasks.verify_outcome`. Time is POSIX seconds passed in by the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from owm_core import fields
from owm_core.errors import Conflict, InvalidTransition, InvalidValue, PolicyViolation

COMMIT_DOMAIN = b"owm/replica-commit/v1\x00"
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 64

_ID = fields.text(max_len=128)
_HASH = fields.hex_digest(32)


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def commitment_digest(replica_id: str, node_id: str, output_hash: str, salt: bytes) -> str:
    """The hex commitment of ``node_id`` to ``output_hash`` for ``replica_id`` under ``salt``."""
    reveal = Reveal(replica_id, node_id, output_hash, salt, b"")
    return _digest(reveal)


def _digest(reveal: Reveal) -> str:
    return hashlib.sha256(
        COMMIT_DOMAIN
        + _lp(reveal.replica_id.encode("utf-8"))
        + _lp(reveal.node_id.encode("utf-8"))
        + bytes.fromhex(reveal.output_hash)
        + _lp(reveal.salt)
    ).hexdigest()


@attrs.frozen
class Commitment:
    """A node's sealed answer for one replica: only the digest travels before the reveal."""

    replica_id: str = attrs.field(validator=_ID)
    node_id: str = attrs.field(validator=_ID)
    digest: str = attrs.field(validator=_HASH)


@attrs.frozen
class RecordedCommitment:
    """A commitment as the coordinator stores it: in which round, and when it arrived.

    ``round_id`` names the replicas judged together (a redundant task's id, or a spot-checked
    replica's own id); the earliest ``committed_at`` of a round starts its commit window.
    """

    round_id: str = attrs.field(validator=_ID)
    commitment: Commitment = attrs.field(validator=fields.instance_of(Commitment))
    committed_at: int = attrs.field(validator=fields.timestamp())


@attrs.frozen(repr=False)
class Reveal:
    """The opening of a commitment: the output hash, the salt and the output bytes themselves."""

    replica_id: str = attrs.field(validator=_ID)
    node_id: str = attrs.field(validator=_ID)
    output_hash: str = attrs.field(validator=_HASH)
    salt: bytes = attrs.field(validator=fields.raw_bytes(max_len=MAX_SALT_BYTES))
    output: bytes = attrs.field(validator=fields.instance_of(bytes))

    def __attrs_post_init__(self) -> None:
        if len(self.salt) < MIN_SALT_BYTES:
            raise InvalidValue("salt", f"must be at least {MIN_SALT_BYTES} bytes")

    def __repr__(self) -> str:
        return f"Reveal(replica_id={self.replica_id!r}, node_id={self.node_id!r})"


def _frozen_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


def _check_assignments(
    _instance: object, attribute: attrs.Attribute[object], value: object
) -> None:
    if not isinstance(value, Mapping) or not value:
        raise InvalidValue(attribute.name, "must assign at least one replica")
    for replica_id, node_id in value.items():
        _ID(None, attribute, replica_id)
        _ID(None, attribute, node_id)


@attrs.frozen
class CommitRound:
    """One replicated task's commit and reveal phases.

    ``assignments`` maps each replica id to the node assigned to it; ``commit_deadline`` is
    the POSIX second at which the commit window closes even if some replicas never committed.
    ``waiting`` counts replicas of the task no node holds yet: they keep the commit phase open
    until the deadline, since their future nodes have not committed either.
    """

    task_id: str = attrs.field(validator=_ID)
    assignments: Mapping[str, str] = attrs.field(
        converter=_frozen_map, validator=_check_assignments
    )
    commit_deadline: int = attrs.field(validator=fields.timestamp())
    commitments: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    revealed: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    waiting: int = attrs.field(default=0, validator=fields.integer(minimum=0))

    def commit(self, commitment: Commitment, now: int) -> CommitRound:
        """Record the assigned node's commitment for its replica, once, within the window."""
        self._own(commitment.replica_id, commitment.node_id)
        if self.reveals_open(now):
            raise InvalidTransition(f"the commit phase of task {self.task_id} is closed")
        if commitment.replica_id in self.commitments:
            raise Conflict(f"replica {commitment.replica_id} has already committed")
        changed = {**self.commitments, commitment.replica_id: commitment.digest}
        return attrs.evolve(self, commitments=changed)

    def reveals_open(self, now: int) -> bool:
        """Whether reveals are accepted: every replica committed, or the window closed."""
        every = not self.waiting and len(self.commitments) == len(self.assignments)
        return every or now >= self.commit_deadline

    def reveal(self, reveal: Reveal, now: int) -> CommitRound:
        """Accept a reveal that opens the node's own commitment and carries the real output.

        Refused before the commit phase ends (``InvalidTransition``), for a replica without a
        commitment or one already revealed, when the opening does not match the commitment
        (``PolicyViolation``) or when the output bytes do not hash to the revealed hash
        (``InvalidValue`` on ``output``).
        """
        self._own(reveal.replica_id, reveal.node_id)
        if not self.reveals_open(now):
            raise InvalidTransition(f"task {self.task_id}: reveals wait for every commitment")
        committed = self.commitments.get(reveal.replica_id)
        if committed is None:
            raise InvalidTransition(f"replica {reveal.replica_id} never committed")
        if reveal.replica_id in self.revealed:
            raise Conflict(f"replica {reveal.replica_id} has already revealed")
        if _digest(reveal) != committed:
            raise PolicyViolation(f"the reveal of {reveal.replica_id} does not open its commitment")
        if hashlib.sha256(reveal.output).hexdigest() != reveal.output_hash:
            raise InvalidValue("output", "does not hash to the revealed output hash")
        changed = {**self.revealed, reveal.replica_id: reveal.output_hash}
        return attrs.evolve(self, revealed=changed)

    def revealed_results(self) -> dict[str, str]:
        """``node_id → output_hash`` of every accepted reveal, for ``verify_outcome``."""
        return {self.assignments[r]: h for r, h in self.revealed.items()}

    def silent_nodes(self) -> Iterable[str]:
        """Nodes assigned a replica that has not revealed (no commitment, or no opening)."""
        return sorted(n for r, n in self.assignments.items() if r not in self.revealed)

    def _own(self, replica_id: str, node_id: str) -> None:
        assigned = self.assignments.get(replica_id)
        if assigned is None:
            raise InvalidValue("replica_id", f"{replica_id} is not a replica of {self.task_id}")
        if assigned != node_id:
            raise PolicyViolation(f"replica {replica_id} is not assigned to node {node_id}")
