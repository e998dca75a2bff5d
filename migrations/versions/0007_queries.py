"""Stored results of conglomerate queries (GET /v1/query/{query_id}).

Adds ``query_answers`` (query_id → created_at, the answer's fields as JSON text; see
``owm_core.routing.answer_fields``), written once per answered query (issue 9).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "query_answers",
        sa.Column("query_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("query_id", name=op.f("pk_query_answers")),
    )


def downgrade() -> None:
    op.drop_table("query_answers")
