"""SQL repositories: proposals with their comments, the governance log, treasury spends,
bounties and analysis requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, text, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository
from owm_adapters.storage.sql.rows import (
    Encoding,
    KeyedRepository,
    MappedRepository,
    from_row,
    register_row,
    to_row,
)
from owm_core.coordination.governance_log import GovernanceLogEntry, check_next_entry
from owm_core.errors import Conflict
from owm_core.governance.bounty_rules import Funding
from owm_core.governance.contributions import AnalysisRequest, Bounty, BountyStatus
from owm_core.governance.github_app import HandlerRetry, WebhookEvent
from owm_core.governance.proposals import Comment, Proposal, ProposalStatus
from owm_core.governance.treasury import TreasurySpend
from owm_core.identity.envelopes import canonical_bytes, parse_canonical_json

BUDGET_LOCK_KEY = int.from_bytes(b"owm/bdgt", "big") & 0x7FFF_FFFF_FFFF_FFFF
"""The PostgreSQL advisory lock id that serialises the treasury-budget checks of bounties."""

register_row(Proposal, omitted=["comments", "acknowledgements"])
register_row(
    Bounty, int64_columns=["amount_sat", "created_at", "installation_id", "issue_closed_at"]
)
register_row(AnalysisRequest, int64_columns=["requested_at", "updated_at", "pull_request"])
register_row(WebhookEvent, int64_columns=["installation_id", "received_at"])
register_row(HandlerRetry, int64_columns=["next_at", "expires_at"])
register_row(Comment)
_SIGNERS = Encoding(
    encode=lambda keys: ",".join(sorted(keys)),
    decode=lambda joined: [k for k in joined.split(",") if k],
)
"""Multisig keys as sorted, comma-separated text (the ``treasury_spends.signers`` column)."""
register_row(TreasurySpend, encoded={"signers": _SIGNERS})


def _comment_row(proposal_id: str, position: int, comment: Comment) -> dict[str, Any]:
    return {"proposal_id": proposal_id, "position": position, **to_row(comment)}


def _next(last: int | None) -> int:
    return 0 if last is None else last + 1


class SqlProposalRepository(SqlRepository):
    """Proposals in ``proposals``, their comments and holder acknowledgements in child tables."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.proposals).values(to_row(proposal)))
            self._write_children(conn, proposal)

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, deadline, acks, txid…); Conflict if unknown.

        Comment rows are not touched (the database refuses to change them anyway): comments
        are added by :meth:`append_comment`.
        """
        pid = proposal.proposal_id
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.proposals)
                .where(t.proposals.c.proposal_id == pid)
                .values(to_row(proposal))
            )
            if done.rowcount == 0:
                raise Conflict(f"proposal {pid} does not exist")
            conn.execute(
                delete(t.proposal_acknowledgements).where(
                    t.proposal_acknowledgements.c.proposal_id == pid
                )
            )
            self._write_children(conn, attrs.evolve(proposal, comments=()))

    def append_comment(self, proposal_id: str, comment: Comment) -> None:
        """Insert one comment row after the stored ones; Conflict if the proposal is unknown
        (or another comment took the same place meanwhile: the caller may try again)."""
        pc = t.proposal_comments
        with self._db.tx(write=True) as conn:
            known = conn.execute(
                select(t.proposals.c.proposal_id).where(t.proposals.c.proposal_id == proposal_id)
            ).first()
            if known is None:
                raise Conflict(f"proposal {proposal_id} does not exist")
            last = conn.execute(
                select(func.max(pc.c.position)).where(pc.c.proposal_id == proposal_id)
            ).scalar()
            conn.execute(insert(pc).values(_comment_row(proposal_id, _next(last), comment)))

    @staticmethod
    def _write_children(conn: Connection, proposal: Proposal) -> None:
        pid = proposal.proposal_id
        if proposal.comments:
            conn.execute(
                insert(t.proposal_comments),
                [_comment_row(pid, i, c) for i, c in enumerate(proposal.comments)],
            )
        if proposal.acknowledgements:
            conn.execute(
                insert(t.proposal_acknowledgements),
                [{"proposal_id": pid, "holder_key": k} for k in sorted(proposal.acknowledgements)],
            )

    def get(self, proposal_id: str) -> Proposal | None:
        """The proposal with ``proposal_id``, or None."""
        found = self._load(t.proposals.c.proposal_id == proposal_id)
        return found[0] if found else None

    def list(self, status: ProposalStatus | None = None) -> Sequence[Proposal]:
        """Proposals (of ``status`` if given), newest submission first, then by id."""
        if status is None:
            return self._load()
        return self._load(t.proposals.c.status == status.value)

    def _load(self, *condition: Any) -> Sequence[Proposal]:
        p, pc, pa = t.proposals, t.proposal_comments, t.proposal_acknowledgements
        with self._db.tx() as conn:
            rows = conn.execute(
                select(p).where(*condition).order_by(p.c.submitted_at.desc(), p.c.proposal_id)
            ).all()
            comment_rows = conn.execute(
                select(pc)
                .join(p, p.c.proposal_id == pc.c.proposal_id)
                .where(*condition)
                .order_by(pc.c.proposal_id, pc.c.position)
            ).all()
            ack_rows = conn.execute(
                select(pa).join(p, p.c.proposal_id == pa.c.proposal_id).where(*condition)
            ).all()
        comments: dict[str, list[Comment]] = {}
        for r in comment_rows:
            comments.setdefault(r.proposal_id, []).append(from_row(r, Comment))
        acks: dict[str, list[str]] = {}
        for r in ack_rows:
            acks.setdefault(r._mapping["proposal_id"], []).append(r._mapping["holder_key"])
        return [
            from_row(
                r,
                Proposal,
                comments=tuple(comments.get(r.proposal_id, [])),
                acknowledgements=frozenset(acks.get(r.proposal_id, [])),
            )
            for r in rows
        ]


class SqlBountyRepository(KeyedRepository[Bounty]):
    """GitHub bounties in ``bounties``, by bounty id."""

    _table = t.bounties
    _unknown = "bounty {} is unknown"

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        c = t.bounties.c
        query = select(t.bounties).order_by(c.created_at.desc(), c.bounty_id).limit(limit)
        if status is not None:
            query = query.where(c.status == status.value)
        return self._all(query, Bounty)

    def after(self, status: BountyStatus, after: str = "", limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties of ``status`` whose bounty_id sorts after ``after``, by id."""
        c = t.bounties.c
        query = select(t.bounties).where(c.status == status.value, c.bounty_id > after)
        return self._all(query.order_by(c.bounty_id).limit(limit), Bounty)

    def for_issue(self, repository: str, issue_number: int) -> Sequence[Bounty]:
        """The bounties of one issue, oldest first, then by id."""
        c = t.bounties.c
        query = (
            select(t.bounties)
            .where(c.repository == repository, c.issue_number == issue_number)
            .order_by(c.created_at, c.bounty_id)
        )
        return self._all(query, Bounty)

    def committed_treasury_sat(self) -> int:
        """The satoshis of the treasury-funded bounties still open.

        On PostgreSQL it first takes the transaction's budget advisory lock
        (:data:`BUDGET_LOCK_KEY`, held until commit), so two bounties opened at once in
        ``atomic()`` blocks check the budget one after the other: under READ COMMITTED a plain
        sum followed by an insert lets both pass and exceed the budget (SRS-LN-08). SQLite's
        write transactions (``BEGIN IMMEDIATE``) are serialised already."""
        c = t.bounties.c
        query = select(func.coalesce(func.sum(c.amount_sat), 0)).where(
            c.status == BountyStatus.OPEN.value, c.funding == Funding.TREASURY.value
        )
        with self._db.tx() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": BUDGET_LOCK_KEY})
            return int(conn.execute(query).scalar_one())


class SqlAnalysisRepository(KeyedRepository[AnalysisRequest]):
    """Repository analysis requests in ``analyses``, by analysis id."""

    _table = t.analyses
    _unknown = "analysis {} is unknown"


class SqlWebhookEventRepository(KeyedRepository[WebhookEvent]):
    """The GitHub App's webhook deliveries in ``webhook_events``, by delivery id (its primary
    key: a stored id added again is a Conflict, the replay refused)."""

    _table = t.webhook_events
    _unknown = "delivery {} is unknown"

    def add(self, value: WebhookEvent, pending: Sequence[HandlerRetry] = ()) -> None:
        """Store a delivery and its pending handler runs in one transaction; Conflict if its
        delivery_id was stored before (a replay; then neither is stored)."""
        try:
            with self._db.tx(write=True) as conn:
                conn.execute(insert(self._table).values(to_row(value)))
                if pending:
                    conn.execute(insert(t.handler_retries), [to_row(r) for r in pending])
        except Conflict:
            replay = f"delivery {value.delivery_id} was received already (a replay)"
            raise Conflict(replay) from None

    def list(self, limit: int = 100) -> Sequence[WebhookEvent]:
        """Up to ``limit`` deliveries, newest first, then by delivery id."""
        c = t.webhook_events.c
        query = select(t.webhook_events).order_by(c.received_at.desc(), c.delivery_id)
        return self._all(query.limit(limit), WebhookEvent)

    def installation_of(self, repository: str) -> int | None:
        """The installation id of the newest delivery from ``repository`` that names one: one
        row through the ``(repository, received_at)`` index (migration 0041), not a read of
        the newest deliveries with their payloads."""
        c = t.webhook_events.c
        query = (
            select(c.installation_id)
            .where(c.repository == repository, c.installation_id.is_not(None))
            .order_by(c.received_at.desc(), c.delivery_id)
            .limit(1)
        )
        with self._db.tx() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)


class SqlHandlerRetryRepository(MappedRepository):
    """Webhook handlers' pending retries in ``handler_retries``, by (delivery id, handler);
    a claim is one conditional UPDATE (compare and set on attempts and next_at), so two
    coordinators never both take the same retry."""

    def _key(self, delivery_id: str, handler: str) -> tuple[ColumnElement[bool], ...]:
        c = t.handler_retries.c
        return (c.delivery_id == delivery_id, c.handler == handler)

    def add(self, retry: HandlerRetry) -> None:
        """Store a new retry; Conflict if one is stored for its delivery and handler."""
        self._insert(t.handler_retries, retry)

    def get(self, delivery_id: str, handler: str) -> HandlerRetry | None:
        """The retry of ``handler`` with ``delivery_id``, or None."""
        query = select(t.handler_retries).where(*self._key(delivery_id, handler))
        return self._first(query, HandlerRetry)

    def due(self, now: int, limit: int = 100) -> Sequence[HandlerRetry]:
        """Up to ``limit`` retries due at ``now``, earliest first, then by key."""
        c = t.handler_retries.c
        query = select(t.handler_retries).where(c.next_at <= now)
        return self._all(query.order_by(c.next_at, c.delivery_id, c.handler).limit(limit),
                         HandlerRetry)  # fmt: skip

    def claim(self, retry: HandlerRetry, until: int) -> HandlerRetry | None:
        """Take ``retry`` for one run if it is stored as read (one conditional UPDATE)."""
        c = t.handler_retries.c
        taken = attrs.evolve(retry, attempts=retry.attempts + 1, next_at=until)
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.handler_retries)
                .where(*self._key(retry.delivery_id, retry.handler),
                       c.attempts == retry.attempts, c.next_at == retry.next_at)
                .values(attempts=taken.attempts, next_at=until)
            )  # fmt: skip
        return taken if done.rowcount == 1 else None

    def save(self, retry: HandlerRetry) -> None:
        """Replace the stored retry of its delivery and handler; Conflict if there is none."""
        missing = f"no retry of ({retry.delivery_id}, {retry.handler}) is stored"
        self._overwrite(t.handler_retries, retry, missing,
                        *self._key(retry.delivery_id, retry.handler))  # fmt: skip

    def remove(self, delivery_id: str, handler: str) -> None:
        """Forget the retry of ``handler`` with ``delivery_id``, if any."""
        with self._db.tx(write=True) as conn:
            conn.execute(delete(t.handler_retries).where(*self._key(delivery_id, handler)))

    def count(self) -> int:
        """How many retries are stored."""
        with self._db.tx() as conn:
            return int(conn.execute(select(func.count()).select_from(t.handler_retries))
                       .scalar_one())  # fmt: skip


def _entry_of(raw: bytes) -> GovernanceLogEntry:
    return GovernanceLogEntry.from_dict(parse_canonical_json(bytes(raw), "entry"))


class SqlGovernanceLogRepository(SqlRepository):
    """The governance log in ``governance_log``: one canonical-JSON entry per row, insert
    only (the database refuses UPDATE/DELETE); a statement logged twice clashes on
    ``statement_hash``."""

    def append(self, entry: GovernanceLogEntry) -> None:
        """Append ``entry``; Conflict unless it chains to the head and its statement is new."""
        digest = entry.statement_hash()
        with self._db.tx(write=True) as conn:
            check_next_entry(self._latest(conn), entry)
            if digest is not None and self._has(conn, digest):
                raise Conflict("this governance statement is logged already (a replay)")
            conn.execute(
                insert(t.governance_log).values(
                    entry_index=entry.index, prev_hash=entry.prev_hash, statement_hash=digest,
                    entry=canonical_bytes(entry.to_dict()),
                )
            )  # fmt: skip

    def entries(self, start: int = 0, limit: int | None = None) -> Sequence[GovernanceLogEntry]:
        """Entries with index ≥ ``start``, in index order, at most ``limit`` of them."""
        c = t.governance_log.c
        query = select(c.entry).where(c.entry_index >= start).order_by(c.entry_index).limit(limit)
        with self._db.tx() as conn:
            return [_entry_of(r.entry) for r in conn.execute(query).all()]

    def latest(self) -> GovernanceLogEntry | None:
        """The last entry, or None for an empty log."""
        with self._db.tx() as conn:
            return self._latest(conn)

    def has_statement(self, statement_hash: str) -> bool:
        """Whether a statement with this hash is logged."""
        with self._db.tx() as conn:
            return self._has(conn, statement_hash)

    @staticmethod
    def _has(conn: Connection, statement_hash: str) -> bool:
        c = t.governance_log.c
        query = select(c.entry_index).where(c.statement_hash == statement_hash)
        return conn.execute(query).first() is not None

    @staticmethod
    def _latest(conn: Connection) -> GovernanceLogEntry | None:
        c = t.governance_log.c
        row = conn.execute(select(c.entry).order_by(c.entry_index.desc()).limit(1)).first()
        return None if row is None else _entry_of(row.entry)


class SqlTreasurySpendRepository(MappedRepository):
    """Treasury spends in ``treasury_spends``; signers as sorted, comma-separated keys."""

    def get(self, proposal_id: str) -> TreasurySpend | None:
        """The spend of ``proposal_id``, or None."""
        query = select(t.treasury_spends).where(t.treasury_spends.c.proposal_id == proposal_id)
        return self._first(query, TreasurySpend)

    def save(self, spend: TreasurySpend) -> None:
        """Store or replace the spend; Conflict if the stored one was broadcast."""
        c = t.treasury_spends.c
        values = to_row(spend)
        with self._db.tx(write=True) as conn:
            stored = conn.execute(
                select(c.txid).where(c.proposal_id == spend.proposal_id)
            ).first()
            if stored is None:
                conn.execute(insert(t.treasury_spends).values(values))
                return
            if stored.txid is not None:
                raise Conflict(f"the spend of {spend.proposal_id} was broadcast already")
            conn.execute(
                update(t.treasury_spends).where(c.proposal_id == spend.proposal_id).values(values)
            )
