"""Proposal comments are append-only: the database refuses UPDATE and DELETE on their rows.

Comments used to be rewritten, all of them, whenever one was added; the store now inserts one
row per comment (``ProposalRepository.append_comment``), and these triggers make sure nothing
rewrites or removes an earlier one (SRS-GOV-04). No table changes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSAL = "proposal_comments is append-only"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION owm_proposal_comments_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION '{_REFUSAL}' USING ERRCODE = 'integrity_constraint_violation'; "
            "END $$"
        )
        op.execute(
            "CREATE TRIGGER proposal_comments_append_only BEFORE UPDATE OR DELETE "
            "ON proposal_comments "
            "FOR EACH ROW EXECUTE FUNCTION owm_proposal_comments_append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER proposal_comments_no_{event.lower()} BEFORE {event} "
            f"ON proposal_comments BEGIN SELECT RAISE(ABORT, '{_REFUSAL}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS proposal_comments_append_only ON proposal_comments")
        op.execute("DROP FUNCTION IF EXISTS owm_proposal_comments_append_only()")
        return
    op.execute("DROP TRIGGER IF EXISTS proposal_comments_no_update")
    op.execute("DROP TRIGGER IF EXISTS proposal_comments_no_delete")
