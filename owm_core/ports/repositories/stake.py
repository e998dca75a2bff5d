"""The stake's repositories: each node's stake, the public slashing log, and the evidence
waiting for a slashing decision (SRS-STAKE-06).

The semantics every store keeps are in :mod:`owm_core.ports.repositories`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from owm_core.identity.envelopes import Envelope
from owm_core.stake.changes import StakeChange
from owm_core.stake.channel import Stake
from owm_core.stake.slashing import SlashingDecision, SlashingLogRecord, SlashingSignal
from owm_core.stake.tally import StakeTally


class StakeRepository(Protocol):
    """The latest stake record of each node key (spec 4.12, SRS-STAKE-01..10)."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``; when that gives the key
        a status it did not have, also record the :class:`StakeChange` (same commit)."""
        ...

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        ...

    def get_many(self, public_keys: Collection[str]) -> Mapping[str, Stake]:
        """The stake records of ``public_keys``, by key (a key with none: absent)."""
        ...

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        ...

    def changes(self, start: int, limit: int = 10_000) -> Sequence[StakeChange]:
        """Up to ``limit`` status changes at or after ``start``, in the order they were saved."""
        ...

    def tally(self) -> StakeTally:
        """:func:`~owm_core.stake.tally.tally_stakes` over the stakes of the registered nodes
        (a key with no node record counts nothing; SRS-STAKE-09)."""
        ...


class ChannelBindingRepository(Protocol):
    """Which node id each stake channel backs (SRS-STAKE-01, SRS-LN-11): one channel point, at
    most one node, and one channel per node (its current stake)."""

    def bind(self, channel_point: str, node_id: str, now: int) -> None:
        """Bind ``channel_point`` to ``node_id`` in place of the node's earlier channel; the same
        pair again is a no-op; Conflict naming the channel when another node holds it."""
        ...

    def node_of(self, channel_point: str) -> str | None:
        """The node id ``channel_point`` backs, or None."""
        ...

    def release(self, channel_point: str) -> None:
        """Free ``channel_point`` (its node left cooperatively); unknown points are ignored."""
        ...


class SlashingLogRepository(Protocol):
    """The public, append-only, hash-chained slashing log (SRS-STAKE-06, SRS-LN-13).

    There is no update or delete: entries are immutable once appended (the SQL adapter also
    refuses UPDATE and DELETE in the database itself). An entry is a slashing or the reversal
    of one (:data:`~owm_core.stake.slashing.SlashingLogRecord`), in one chain.
    """

    def append(self, entry: SlashingLogRecord) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        ...

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogRecord]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        ...

    def latest(self) -> SlashingLogRecord | None:
        """The last entry (the head of the chain), or None for an empty log."""
        ...

    def slashings_since(self, at: int) -> int:
        """How many slashing entries (reversals not counted) were made at or after ``at``."""
        ...


class SlashingEvidenceRepository(Protocol):
    """Slashing signals and maintainer acknowledgements waiting for a decision, and decisions
    being carried out (SRS-STAKE-04, SRS-SEC-14), so a coordinator restart loses none of them.

    Evidence is *open* until a decision about its node finishes (or the node turns out to be
    slashed already); then it is *closed*, kept for the record, and never counted again. The
    same evidence reported twice is stored once.
    """

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False (nothing stored) if node, reporter, reason and evidence
        hash are already known, open or closed."""
        ...

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open maintainer_ack envelope about ``node_id``; False if its signature is
        already known."""
        ...

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        ...

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        ...

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        ...

    def open_node_ids_after(self, after: str = "", limit: int = 100) -> Sequence[str]:
        """Up to ``limit`` nodes with open evidence whose node id sorts after ``after``, by
        node id (pass the last one back to go on: a sweep)."""
        ...

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` as being carried out, before anything is done (write-ahead);
        if the node already has an unfinished decision, store nothing and return that one."""
        ...

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished (a crash in between), oldest first."""
        ...

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        ...

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        ...

    def decision_for(
        self, node_id: str, evidence_hash: str, reason: str
    ) -> SlashingDecision | None:
        """The latest decision (finished or not) to slash ``node_id`` for this evidence and
        reason: whose acknowledgements it counted (``supporters``), for an appeal."""
        ...

    def add_reversal_statement(self, log_index: int, envelope: Envelope, received_at: int) -> bool:
        """Store a maintainer's ``slashing_reversal`` envelope about slashing-log entry
        ``log_index`` (kept for the record); False if its signature is already known."""
        ...

    def reversal_statements(self, log_index: int) -> Sequence[Envelope]:
        """The reversal statements about slashing-log entry ``log_index``, oldest first."""
        ...

    def count_reversal_statements(self, signatures: Sequence[str], counted_in: int) -> None:
        """Record that the stored statements with ``signatures`` are the ones reversal entry
        ``counted_in`` counted (what its ``statement_hash`` covers). Called in the transaction
        that appends that entry, so both commit or neither; Conflict (nothing recorded) if a
        signature is unknown or its statement was counted already."""
        ...

    def counted_reversal_statements(self, counted_in: int) -> Sequence[Envelope]:
        """The statements reversal entry ``counted_in`` counted, in signer order: exactly the
        ones it was made on, whatever else was stored about the same slashing later."""
        ...
