"""Replicas' commitments (commit–reveal, SRS-SEC-11): one row per replica of a round not yet
judged, so that a coordinator restart in the middle of a round keeps every commitment.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_commitments",
        sa.Column("replica_id", sa.String(length=128), nullable=False),
        sa.Column("round_id", sa.String(length=128), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("committed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("replica_id", name=op.f("pk_task_commitments")),
    )
    op.create_index(
        op.f("ix_task_commitments_round_id"), "task_commitments", ["round_id"], unique=False
    )
    op.create_index(
        op.f("ix_task_commitments_committed_at"),
        "task_commitments",
        ["committed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_task_commitments_committed_at"), table_name="task_commitments")
    op.drop_index(op.f("ix_task_commitments_round_id"), table_name="task_commitments")
    op.drop_table("task_commitments")
