"""Task inputs: each submitted task's input bytes, durable across coordinator restarts.

Adds ``task_inputs`` (task_id → data), so a task re-pushed to its node after a coordinator
restart still carries its input (nothing is lost on restart; tasks are durable before they
are acknowledged).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "task_inputs",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_task_inputs")),
    )


def downgrade() -> None:
    op.drop_table("task_inputs")
