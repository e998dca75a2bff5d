"""The market tick's page of expired tasks reads an index range that stops at the page:
``tasks (state, expires_at, seq)`` replaces ``tasks (state, expires_at)``, which it covers.

The tick pages through the assignable tasks past their queue time by ``(expires_at, seq)``
after the last one it looked at; with ``(state, expires_at)`` alone a page could start only at
the expiry time, read every task expiring then (every replica of a task, and every task
submitted in the same second, share it) and sorted them by position, on each tick.

Revision ID: 0040
Revises: 0039
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0040"
down_revision: str | None = "0039"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_tasks_state_expires_at_seq"), "tasks", ["state", "expires_at", "seq"]
    )
    op.drop_index(op.f("ix_tasks_state_expires_at"), table_name="tasks")


def downgrade() -> None:
    op.create_index(op.f("ix_tasks_state_expires_at"), "tasks", ["state", "expires_at"])
    op.drop_index(op.f("ix_tasks_state_expires_at_seq"), table_name="tasks")
