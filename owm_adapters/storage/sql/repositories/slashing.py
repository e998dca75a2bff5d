"""SQL repositories: the append-only slashing log and the open slashing evidence (SRS-STAKE-06)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, func, insert, select, union, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_adapters.storage.sql.rows import (
    EnvelopeRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope, to_bytes
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingLogRecord,
    SlashingReversalEntry,
    SlashingSignal,
    check_next_entry,
)

register_row(SlashingLogEntry, renamed={"index": "entry_index"})
# A reversal shares the log's columns: its statement hash in ``evidence_hash``, its maintainers
# as a JSON list, and ``reverses`` set (NULL in a slashing's row).
register_row(
    SlashingReversalEntry,
    renamed={"index": "entry_index", "statement_hash": "evidence_hash"},
    int64_columns=["at"],
)
register_row(SlashingSignal)
register_row(
    SlashingDecision,
    omitted=["consequences"],
    int64_columns=["decided_at", "cooldown_s"],
)


def _log_entry(row: Row[Any]) -> SlashingLogRecord:
    """The entry a ``slashing_log`` row holds (a reversal when ``reverses`` is set)."""
    if row.reverses is None:
        return from_row(row, SlashingLogEntry)
    return from_row(row, SlashingReversalEntry)


class SqlSlashingLogRepository(SqlRepository):
    """The slashing log in ``slashing_log``: insert only (the database refuses UPDATE/DELETE)."""

    def append(self, entry: SlashingLogRecord) -> None:
        """Append ``entry``; Conflict unless its index and prev_hash continue the latest entry."""
        with self._db.tx(write=True) as conn:
            check_next_entry(self._latest(conn), entry)
            conn.execute(insert(t.slashing_log).values(to_row(entry)))

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[SlashingLogRecord]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        c = t.slashing_log.c
        query = (
            select(t.slashing_log)
            .where(c.entry_index >= start)
            .order_by(c.entry_index)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [_log_entry(r) for r in conn.execute(query).all()]

    def latest(self) -> SlashingLogRecord | None:
        """The last entry (the head of the chain), or None for an empty log."""
        with self._db.tx() as conn:
            return self._latest(conn)

    def slashings_since(self, at: int) -> int:
        """How many slashing entries (reversals not counted) were made at or after ``at``."""
        c = t.slashing_log.c
        query = select(func.count()).where(c.reverses.is_(None), c.at >= at)
        with self._db.tx() as conn:
            return int(conn.execute(query).scalar_one())

    @staticmethod
    def _latest(conn: Connection) -> SlashingLogRecord | None:
        query = select(t.slashing_log).order_by(t.slashing_log.c.entry_index.desc()).limit(1)
        row = conn.execute(query).first()
        return None if row is None else _log_entry(row)


class SqlSlashingEvidenceRepository(EnvelopeRepository):
    """Open slashing signals (``slashing_signals``), acknowledgements (``slashing_acks``) and
    decisions under way (``slashing_decisions``); closed rows are kept for the record."""

    def _insert_new(self, table: Table, row: dict[str, Any], unique: list[str]) -> bool:
        with self._db.tx(write=True) as conn:
            dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            statement = (
                dialect_insert(table)
                .values(row)
                .on_conflict_do_nothing(index_elements=[table.c[n] for n in unique])
                .returning(table.c.seq)
            )
            return conn.execute(statement).first() is not None

    def _add_statement(
        self, table: Table, about: dict[str, Any], envelope: Envelope, received_at: int
    ) -> bool:
        """Store a signed statement (an acknowledgement, a reversal statement) in ``table``:
        the columns ``about`` say what it is about, then its signer and canonical bytes; False
        if its signature is already known."""
        row = {
            "signature": envelope.signature,
            **about,
            "signer": envelope.signer,
            "envelope": to_bytes(envelope),
            "received_at": int64("received_at", received_at),
        }
        return self._insert_new(table, row, ["signature"])

    def add_signal(self, signal: SlashingSignal) -> bool:
        """Store an open signal; False if the same evidence from the same reporter is known."""
        row = {
            "node_id": signal.node_id,
            "reporter": signal.reporter,
            "reason": signal.reason.value,
            "evidence_hash": signal.evidence_hash,
            "at": int64("at", signal.at),
        }
        unique = ["node_id", "reporter", "reason", "evidence_hash"]
        return self._insert_new(t.slashing_signals, row, unique)

    def add_acknowledgement(self, node_id: str, envelope: Envelope, received_at: int) -> bool:
        """Store an open acknowledgement envelope; False if its signature is already known."""
        return self._add_statement(t.slashing_acks, {"node_id": node_id}, envelope, received_at)

    def open_signals(self, node_id: str) -> Sequence[SlashingSignal]:
        """The open signals about ``node_id``, oldest first."""
        c = t.slashing_signals.c
        query = (
            select(t.slashing_signals)
            .where(c.node_id == node_id, c.closed_at.is_(None))
            .order_by(c.at, c.seq)
        )
        with self._db.tx() as conn:
            return [from_row(r, SlashingSignal) for r in conn.execute(query).all()]

    def open_acknowledgements(self, node_id: str) -> Sequence[Envelope]:
        """The open acknowledgement envelopes about ``node_id``, oldest first."""
        c = t.slashing_acks.c
        return self._envelopes(
            select(c.envelope)
            .where(c.node_id == node_id, c.closed_at.is_(None))
            .order_by(c.received_at, c.seq)
        )

    def open_node_ids(self, limit: int = 100) -> Sequence[str]:
        """Nodes with open evidence, by their oldest open evidence (then node id)."""
        s, a = t.slashing_signals.c, t.slashing_acks.c
        signals = (
            select(s.node_id, func.min(s.at).label("oldest"))
            .where(s.closed_at.is_(None))
            .group_by(s.node_id)
        )
        acks = (
            select(a.node_id, func.min(a.received_at).label("oldest"))
            .where(a.closed_at.is_(None))
            .group_by(a.node_id)
        )
        both = union_all(signals, acks).subquery()
        query = (
            select(both.c.node_id, func.min(both.c.oldest).label("first"))
            .group_by(both.c.node_id)
            .order_by(func.min(both.c.oldest), both.c.node_id)
            .limit(limit)
        )
        with self._db.tx() as conn:
            return [r.node_id for r in conn.execute(query).all()]

    def open_node_ids_after(self, after: str = "", limit: int = 100) -> Sequence[str]:
        """Up to ``limit`` nodes with open evidence whose node id sorts after ``after``."""
        s, a = t.slashing_signals.c, t.slashing_acks.c
        signals = select(s.node_id).where(s.closed_at.is_(None), s.node_id > after)
        acks = select(a.node_id).where(a.closed_at.is_(None), a.node_id > after)
        both = union(signals, acks).subquery()
        query = select(both.c.node_id).order_by(both.c.node_id).limit(limit)
        with self._db.tx() as conn:
            return [r.node_id for r in conn.execute(query).all()]

    def begin_decision(self, decision: SlashingDecision) -> SlashingDecision:
        """Record ``decision`` before it is carried out; an unfinished one of the node wins."""
        c = t.slashing_decisions.c
        with self._db.tx(write=True) as conn:
            row = conn.execute(
                select(t.slashing_decisions)
                .where(c.node_id == decision.node_id, c.finished_at.is_(None))
                .order_by(c.seq)
                .limit(1)
            ).first()
            if row is not None:
                return from_row(row, SlashingDecision)
            conn.execute(insert(t.slashing_decisions).values(to_row(decision)))
            return decision

    def unfinished_decisions(self) -> Sequence[SlashingDecision]:
        """Decisions begun and not finished, oldest first."""
        c = t.slashing_decisions.c
        query = select(t.slashing_decisions).where(c.finished_at.is_(None)).order_by(c.seq)
        with self._db.tx() as conn:
            return [from_row(r, SlashingDecision) for r in conn.execute(query).all()]

    def finish_decision(self, node_id: str, finished_at: int) -> None:
        """Mark the node's unfinished decision done and close its open evidence, together."""
        c = t.slashing_decisions.c
        with self._db.tx(write=True) as conn:
            conn.execute(
                update(t.slashing_decisions)
                .where(c.node_id == node_id, c.finished_at.is_(None))
                .values(finished_at=int64("finished_at", finished_at))
            )
            self._close(conn, node_id, finished_at)

    def close_evidence(self, node_id: str, closed_at: int) -> int:
        """Close the node's open evidence without a decision; returns how many were open."""
        with self._db.tx(write=True) as conn:
            return self._close(conn, node_id, closed_at)

    @staticmethod
    def _close(conn: Connection, node_id: str, closed_at: int) -> int:
        closed = 0
        for table in (t.slashing_signals, t.slashing_acks):
            done = conn.execute(
                update(table)
                .where(table.c.node_id == node_id, table.c.closed_at.is_(None))
                .values(closed_at=int64("closed_at", closed_at))
            )
            closed += done.rowcount
        return closed

    def decision_for(
        self, node_id: str, evidence_hash: str, reason: str
    ) -> SlashingDecision | None:
        """The latest decision to slash ``node_id`` for this evidence and reason, or None."""
        c = t.slashing_decisions.c
        query = (
            select(t.slashing_decisions)
            .where(c.node_id == node_id, c.evidence_hash == evidence_hash, c.reason == reason)
            .order_by(c.seq.desc())
            .limit(1)
        )
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else from_row(row, SlashingDecision)

    def add_reversal_statement(self, log_index: int, envelope: Envelope, received_at: int) -> bool:
        """Store a reversal statement; False if its signature is already known."""
        about = {"log_index": int64("log_index", log_index)}
        return self._add_statement(t.slashing_reversal_statements, about, envelope, received_at)

    def reversal_statements(self, log_index: int) -> Sequence[Envelope]:
        """The reversal statements about ``log_index``, oldest first."""
        c = t.slashing_reversal_statements.c
        return self._envelopes(
            select(c.envelope).where(c.log_index == log_index).order_by(c.received_at, c.seq)
        )

    def count_reversal_statements(self, signatures: Sequence[str], counted_in: int) -> None:
        """Mark the statements counted by reversal entry ``counted_in``; Conflict (nothing
        marked) if one is unknown or counted already."""
        c = t.slashing_reversal_statements.c
        wanted = set(signatures)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.slashing_reversal_statements)
                .where(c.signature.in_(wanted), c.counted_in.is_(None))
                .values(counted_in=int64("counted_in", counted_in))
            )
            if done.rowcount != len(wanted):
                raise Conflict(
                    f"a reversal statement counted by entry {counted_in} is unknown or counted"
                )

    def counted_reversal_statements(self, counted_in: int) -> Sequence[Envelope]:
        """The statements reversal entry ``counted_in`` counted, in signer order."""
        c = t.slashing_reversal_statements.c
        found = self._envelopes(select(c.envelope).where(c.counted_in == counted_in))
        return sorted(found, key=lambda e: e.signer)
