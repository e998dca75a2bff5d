"""Task outputs: the output a node delivered with its proof (hash-checked), kept for submitters
(the query path reads the verified output of an inference task).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_outputs",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_outputs")),
    )


def downgrade() -> None:
    op.drop_table("task_outputs")
