"""The task streams open at each coordinator, with their nodes' offers, in the database, so
that several coordinators on one PostgreSQL database see every node that may take work now,
wherever it connected (SRS-COORD-05): the FL round scheduler counts trainers there
(SRS-COORD-03).

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_streams",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("coordinator", sa.String(length=255), nullable=False),
        sa.Column("capabilities", sa.Text(), nullable=False),
        sa.Column("tier", sa.String(length=8), nullable=False),
        sa.Column("has_gpu", sa.Boolean(), nullable=False),
        sa.Column("vram_mb", sa.BigInteger(), nullable=False),
        sa.Column("ram_mb", sa.BigInteger(), nullable=False),
        sa.Column("ask_msat", sa.BigInteger(), nullable=False),
        sa.Column("reliability_ppm", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_task_streams")),
    )
    op.create_index(op.f("ix_task_streams_seen_at"), "task_streams", ["seen_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_streams_seen_at"), table_name="task_streams")
    op.drop_table("task_streams")
