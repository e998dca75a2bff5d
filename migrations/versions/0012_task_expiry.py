"""Task expiry: when a waiting task leaves the market if no node has taken it.

Adds ``tasks.expires_at`` (POSIX seconds, NULL = never; rows from before this migration never
expire) and an index on (``state``, ``expires_at``) for the coordinator's expiry sweep
(SRS-COORD-02: work no node takes expires instead of piling up in front of dispatch).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
    op.create_index(op.f("ix_tasks_state_expires_at"), "tasks", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_tasks_state_expires_at"), table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("expires_at")
