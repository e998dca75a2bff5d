"""In-memory twin: stake records, the slashing log and slashing evidence (SRS-STAKE)."""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from owm_adapters.storage.memory.state import StateRepository
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope
from owm_core.stake.changes import StakeChange, change_of
from owm_core.stake.channel import Stake
from owm_core.stake.reporters import ChannelBindings
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingLogRecord,
    SlashingSignal,
    check_next_entry,
)
from owm_core.stake.tally import StakeTally, tally_stakes

_PUBLIC_KEY = operator.attrgetter("public_key")
_DUE_AT = operator.attrgetter("next_verification_at")


class MemoryStakeRepository(StateRepository):
    """Stake records per public key in a dict."""

    def save(self, stake: Stake) -> None:
        """Insert or replace the stake record of ``stake.public_key``, recording a change of
        status."""
        with self._lock:
            change = change_of(self._state.stakes.get(stake.public_key), stake)
            self._state.stakes[stake.public_key] = stake
            if change is not None:
                self._state.stake_changes.append(change)

    def get(self, public_key: str) -> Stake | None:
        """The stake record of ``public_key``, or None (keeps slashed keys for the cooldown)."""
        with self._lock:
            return self._state.stakes.get(public_key)

    def get_many(self, public_keys: Collection[str]) -> Mapping[str, Stake]:
        """The stake records of ``public_keys``, by key (a key with none: absent)."""
        return self._picked("stakes", public_keys)

    def due_for_verification(self, now: int) -> Sequence[Stake]:
        """Stakes whose ``next_verification_at`` ≤ ``now``, earliest first (SRS-STAKE-03)."""
        with self._lock:
            due = [
                s
                for s in self._state.stakes.values()
                if s.next_verification_at is not None and s.next_verification_at <= now
            ]
            # By (next_verification_at, public_key): two stable sorts on one field each, so
            # that no key tuple is built per stake (a burst that set off the cyclic GC).
            due.sort(key=_PUBLIC_KEY)
            due.sort(key=_DUE_AT)
            return due

    def changes(self, start: int, limit: int = 10_000) -> Sequence[StakeChange]:
        """Up to ``limit`` status changes at or after ``start``, in the order they were saved."""
        with self._lock:
            return [c for c in self._state.stake_changes if c.at >= start][:limit]

    def tally(self) -> StakeTally:
        """The tally of the registered nodes' stakes (SRS-STAKE-09)."""
        with self._lock:
            stakes = self._state.stakes
            keys = (node.public_key for node in self._state.nodes.values())
            return tally_stakes(stakes[key] for key in keys if key in stakes)


class MemoryChannelBindingRepository(StateRepository):
    """Channel point → node id in a dict, bound by the core rule :class:`ChannelBindings`."""

    def bind(self, channel_point: str, node_id: str, now: int) -> None:
        """Bind ``channel_point`` to ``node_id`` in place of the node's earlier channel;
        Conflict naming the channel when another node holds it (SRS-STAKE-01)."""
        with self._lock:
            table = self._state.channel_bindings
            holder = table.get(channel_point)
            if holder == node_id and self._state.bound_channels.get(node_id) == channel_point:
                return  # Binding the same pair again is a no-op (every re-verification does).
            # The core rule decides over the one binding that matters (no copy of them all).
            ChannelBindings({channel_point: holder} if holder else {}).bind(channel_point, node_id)
            earlier = self._state.bound_channels.get(node_id)
            if earlier is not None and earlier != channel_point and table.get(earlier) == node_id:
                del table[earlier]
            table[channel_point] = node_id
            self._state.bound_channels[node_id] = channel_point

    def node_of(self, channel_point: str) -> str | None:
        """The node id ``channel_point`` backs, or None."""
        with self._lock:
            return self._state.channel_bindings.get(channel_point)

    def release(self, channel_point: str) -> None:
        """Free ``channel_point`` (the node left cooperatively); unknown points are ignored."""
        with self._lock:
            node_id = self._state.channel_bindings.pop(channel_point, None)
            if node_id is not None and self._state.bound_channels.get(node_id) == channel_point:
                del self._state.bound_channels[node_id]


class MemorySlashingLogRepository(StateRepository):
    """The slashing log as an append-only list."""

    def append(self, entry: SlashingLogRecord) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        with self._lock:
            check_next_entry(self.latest(), entry)
            self._state.slashing_log.append(entry)

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogRecord]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        with self._lock:
            chosen = [e for e in self._state.slashing_log if e.index >= start]
            return chosen if limit is None else chosen[:limit]

    def latest(self) -> SlashingLogRecord | None:
        """The last entry (the head of the chain), or None for an empty log."""
        with self._lock:
            return self._state.slashing_log[-1] if self._state.slashing_log else None

    def slashings_since(self, at: int) -> int:
        """How many slashing entries (reversals not counted) were made at or after ``at``."""
        with self._lock:
            log = self._state.slashing_log
            return sum(1 for e in log if isinstance(e, SlashingLogEntry) and e.at >= at)


class MemorySlashingEvidenceRepository(StateRepository):
    """Open slashing signals, acknowledgements and decisions in dicts (closed ones are kept)."""

    def _add_statement(
        self, table: str, about: str | int, envelope: Envelope, received_at: int
    ) -> bool:
        """Store a signed statement (an acknowledgement, a reversal statement) in the state's
        ``table`` under its signature as ``(seq, about, envelope, received_at, None)``, where
        ``about`` says what it is about and None is "not closed / not counted yet"; False if
        its signature is already known."""
        with self._lock:
            stored: dict[str, Any] = getattr(self._state, table)
            if envelope.signature in stored:
                return False
            row = (self._state.next_seq(), about, envelope, received_at, None)
            stored[envelope.signature] = row
            return True

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False if the same evidence from the same reporter is known."""
        key = (signal.node_id, signal.reporter, signal.reason.value, signal.evidence_hash)
        with self._lock:
            if key in self._state.slashing_signals:
                return False
            self._state.slashing_signals[key] = (self._state.next_seq(), signal, None)
            return True

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open acknowledgement envelope; False if its signature is already known."""
        return self._add_statement("slashing_acks", node_id, envelope, received_at)

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        with self._lock:
            rows = [
                (seq, s)
                for seq, s, closed in self._state.slashing_signals.values()
                if s.node_id == node_id and closed is None
            ]
        return [s for _, s in sorted(rows, key=lambda r: (r[1].at, r[0]))]

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        with self._lock:
            rows = [
                (at, seq, e)
                for seq, n, e, at, closed in self._state.slashing_acks.values()
                if n == node_id and closed is None
            ]
        return [e for _, _, e in sorted(rows, key=lambda r: (r[0], r[1]))]

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        oldest: dict[str, int] = {}
        with self._lock:
            for _seq, s, closed in self._state.slashing_signals.values():
                if closed is None:
                    oldest[s.node_id] = min(oldest.get(s.node_id, s.at), s.at)
            for _seq, n, _e, at, closed in self._state.slashing_acks.values():
                if closed is None:
                    oldest[n] = min(oldest.get(n, at), at)
        return sorted(oldest, key=lambda n: (oldest[n], n))[:limit]

    def open_node_ids_after(self, after: str = "", limit: int = 100) -> Sequence[str]:
        """Up to ``limit`` nodes with open evidence whose node id sorts after ``after``."""
        with self._lock:
            found = {s.node_id for _seq, s, closed in self._state.slashing_signals.values()
                     if closed is None}
            found |= {n for _seq, n, _e, _at, closed in self._state.slashing_acks.values()
                      if closed is None}
        return sorted(n for n in found if n > after)[:limit]

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` before it is carried out; an unfinished one of the node wins."""
        with self._lock:
            for stored, finished in self._state.slashing_decisions.values():
                if stored.node_id == decision.node_id and finished is None:
                    return stored
            self._state.slashing_decisions[self._state.next_seq()] = (decision, None)
            return decision

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished, oldest first."""
        with self._lock:
            return [d for _, (d, f) in sorted(self._state.slashing_decisions.items()) if f is None]

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        with self._lock:
            for seq, (stored, finished) in list(self._state.slashing_decisions.items()):
                if stored.node_id == node_id and finished is None:
                    self._state.slashing_decisions[seq] = (stored, finished_at)
            self.close_evidence(node_id, finished_at)

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        closed = 0
        with self._lock:
            signals = self._state.slashing_signals
            for key, (seq, s, was) in list(signals.items()):
                if s.node_id == node_id and was is None:
                    signals[key] = (seq, s, closed_at)
                    closed += 1
            acks = self._state.slashing_acks
            for sig, (seq, n, e, at, was) in list(acks.items()):
                if n == node_id and was is None:
                    acks[sig] = (seq, n, e, at, closed_at)
                    closed += 1
        return closed

    def decision_for(
        self, node_id: str, evidence_hash: str, reason: str
    ) -> SlashingDecision | None:
        """The latest decision to slash ``node_id`` for this evidence and reason, or None."""
        with self._lock:
            found = [
                d for _, (d, _f) in sorted(self._state.slashing_decisions.items())
                if (d.node_id, d.evidence_hash, d.reason.value) == (node_id, evidence_hash, reason)
            ]  # fmt: skip
        return found[-1] if found else None

    def add_reversal_statement(self, log_index: int, envelope: Envelope, received_at: int) -> bool:
        """Store a reversal statement; False if its signature is already known."""
        return self._add_statement("reversal_statements", log_index, envelope, received_at)

    def reversal_statements(self, log_index: int) -> Sequence[Envelope]:
        """The reversal statements about ``log_index``, oldest first."""
        with self._lock:
            rows = [
                (at, seq, e)
                for seq, i, e, at, _counted in self._state.reversal_statements.values()
                if i == log_index
            ]
        return [e for _, _, e in sorted(rows, key=lambda r: (r[0], r[1]))]

    def count_reversal_statements(self, signatures: Sequence[str], counted_in: int) -> None:
        """Mark the statements counted by reversal entry ``counted_in``; Conflict (nothing
        marked) if one is unknown or counted already."""
        with self._lock:
            stored = self._state.reversal_statements
            for signature in signatures:
                row = stored.get(signature)
                if row is None or row[4] is not None:
                    raise Conflict(f"reversal statement {signature[:16]}… is unknown or counted")
            for signature in signatures:
                seq, log_index, envelope, at, _none = stored[signature]
                stored[signature] = (seq, log_index, envelope, at, counted_in)

    def counted_reversal_statements(self, counted_in: int) -> Sequence[Envelope]:
        """The statements reversal entry ``counted_in`` counted, in signer order."""
        with self._lock:
            found = [
                e for _seq, _i, e, _at, c in self._state.reversal_statements.values()
                if c == counted_in
            ]  # fmt: skip
        return sorted(found, key=lambda e: e.signer)
