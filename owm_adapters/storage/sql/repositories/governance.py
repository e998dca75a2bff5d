"""SQL repositories: proposals with their votes and comments, bounties and analysis requests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from owm_adapters.storage.sql import tables as t
from owm_adapters.storage.sql.database import SqlRepository, int64
from owm_core.errors import Conflict
from owm_core.governance.contributions import AnalysisRequest, AnalysisState, Bounty, BountyStatus
from owm_core.governance.proposals import Comment, Proposal, ProposalStatus, ProposalType


def _proposal_row(p: Proposal) -> dict[str, Any]:
    return {
        "proposal_id": p.proposal_id,
        "author": p.author,
        "title": p.title,
        "description": p.description,
        "type": p.type.value,
        "implementation_plan": p.implementation_plan,
        "requested_sat": p.requested_sat,
        "submitted_at": p.submitted_at,
        "comment_deadline_at": p.comment_deadline_at,
        "status": p.status.value,
        "txid": p.txid,
    }


def _row_proposal(
    row: Row[Any], comments: Sequence[Comment], acknowledgements: Sequence[str]
) -> Proposal:
    m = row._mapping
    return Proposal(
        proposal_id=m["proposal_id"],
        author=m["author"],
        title=m["title"],
        description=m["description"],
        type=ProposalType(m["type"]),
        implementation_plan=m["implementation_plan"],
        requested_sat=m["requested_sat"],
        submitted_at=m["submitted_at"],
        comment_deadline_at=m["comment_deadline_at"],
        status=ProposalStatus(m["status"]),
        comments=tuple(comments),
        acknowledgements=frozenset(acknowledgements),
        txid=m["txid"],
    )


class SqlProposalRepository(SqlRepository):
    """Proposals in ``proposals``, their comments and holder acknowledgements in child tables."""

    def add(self, proposal: Proposal) -> None:
        """Store a new proposal; Conflict if its proposal_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.proposals).values(_proposal_row(proposal)))
            self._write_children(conn, proposal)

    def save(self, proposal: Proposal) -> None:
        """Replace a stored proposal (status, comments, acks, txid…); Conflict if unknown."""
        pid = proposal.proposal_id
        with self._db.tx(write=True) as conn:
            done = conn.execute(
                update(t.proposals)
                .where(t.proposals.c.proposal_id == pid)
                .values(_proposal_row(proposal))
            )
            if done.rowcount == 0:
                raise Conflict(f"proposal {pid} does not exist")
            conn.execute(
                delete(t.proposal_comments).where(t.proposal_comments.c.proposal_id == pid)
            )
            conn.execute(
                delete(t.proposal_acknowledgements).where(
                    t.proposal_acknowledgements.c.proposal_id == pid
                )
            )
            self._write_children(conn, proposal)

    @staticmethod
    def _write_children(conn: Connection, proposal: Proposal) -> None:
        pid = proposal.proposal_id
        if proposal.comments:
            conn.execute(
                insert(t.proposal_comments),
                [
                    {
                        "proposal_id": pid,
                        "position": i,
                        "author": c.author,
                        "text": c.text,
                        "at": c.at,
                    }
                    for i, c in enumerate(proposal.comments)
                ],
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
            m = r._mapping
            comments.setdefault(m["proposal_id"], []).append(
                Comment(author=m["author"], text=m["text"], at=m["at"])
            )
        acks: dict[str, list[str]] = {}
        for r in ack_rows:
            acks.setdefault(r._mapping["proposal_id"], []).append(r._mapping["holder_key"])
        return [
            _row_proposal(r, comments.get(r.proposal_id, []), acks.get(r.proposal_id, []))
            for r in rows
        ]


def _bounty_row(b: Bounty) -> dict[str, Any]:
    return {
        "bounty_id": b.bounty_id,
        "repository": b.repository,
        "issue_number": b.issue_number,
        "title": b.title,
        "amount_sat": int64("amount_sat", b.amount_sat),
        "created_by": b.created_by,
        "created_at": int64("created_at", b.created_at),
        "status": b.status.value,
    }


def _row_bounty(row: Row[Any]) -> Bounty:
    m = row._mapping
    return Bounty(
        bounty_id=m["bounty_id"],
        repository=m["repository"],
        issue_number=m["issue_number"],
        title=m["title"],
        amount_sat=m["amount_sat"],
        created_by=m["created_by"],
        created_at=m["created_at"],
        status=BountyStatus(m["status"]),
    )


class SqlBountyRepository(SqlRepository):
    """GitHub bounties in ``bounties``."""

    def add(self, bounty: Bounty) -> None:
        """Store a new bounty; Conflict if its bounty_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.bounties).values(_bounty_row(bounty)))

    def save(self, bounty: Bounty) -> None:
        """Replace a stored bounty (its status); Conflict if unknown."""
        self._replace(
            t.bounties,
            t.bounties.c.bounty_id,
            bounty.bounty_id,
            _bounty_row(bounty),
            f"bounty {bounty.bounty_id} is unknown",
        )

    def get(self, bounty_id: str) -> Bounty | None:
        """The bounty with ``bounty_id``, or None."""
        with self._db.tx() as conn:
            query = select(t.bounties).where(t.bounties.c.bounty_id == bounty_id)
            row = conn.execute(query).first()
        return None if row is None else _row_bounty(row)

    def list(self, status: BountyStatus | None = None, limit: int = 100) -> Sequence[Bounty]:
        """Up to ``limit`` bounties (of ``status`` if given), newest first, then by id."""
        c = t.bounties.c
        query = select(t.bounties).order_by(c.created_at.desc(), c.bounty_id).limit(limit)
        if status is not None:
            query = query.where(c.status == status.value)
        with self._db.tx() as conn:
            return [_row_bounty(r) for r in conn.execute(query).all()]


def _analysis_row(a: AnalysisRequest) -> dict[str, Any]:
    return {
        "analysis_id": a.analysis_id,
        "repository": a.repository,
        "requested_by": a.requested_by,
        "requested_at": int64("requested_at", a.requested_at),
        "state": a.state.value,
        "updated_at": None if a.updated_at is None else int64("updated_at", a.updated_at),
        "result": a.result,
    }


def _row_analysis(row: Row[Any]) -> AnalysisRequest:
    m = row._mapping
    return AnalysisRequest(
        analysis_id=m["analysis_id"],
        repository=m["repository"],
        requested_by=m["requested_by"],
        requested_at=m["requested_at"],
        state=AnalysisState(m["state"]),
        updated_at=m["updated_at"],
        result=m["result"],
    )


class SqlAnalysisRepository(SqlRepository):
    """Repository analysis requests in ``analyses``."""

    def add(self, request: AnalysisRequest) -> None:
        """Store a new request; Conflict if its analysis_id exists."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(t.analyses).values(_analysis_row(request)))

    def save(self, request: AnalysisRequest) -> None:
        """Replace a stored request (state, result); Conflict if unknown."""
        self._replace(
            t.analyses,
            t.analyses.c.analysis_id,
            request.analysis_id,
            _analysis_row(request),
            f"analysis {request.analysis_id} is unknown",
        )

    def get(self, analysis_id: str) -> AnalysisRequest | None:
        """The request with ``analysis_id``, or None."""
        query = select(t.analyses).where(t.analyses.c.analysis_id == analysis_id)
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else _row_analysis(row)
