"""An index on the repository each GitHub webhook delivery came from, with its time, so that
finding the GitHub App's installation on a repository (opening a bounty, analysing a
contribution) reads one row, not the newest ten thousand deliveries with their payloads, and
still finds a repository whose last delivery is older than those.

Revision ID: 0041
Revises: 0040
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0041"
down_revision: str | None = "0040"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_webhook_events_repository_received_at"), "webhook_events",
        ["repository", "received_at"],
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_events_repository_received_at"), table_name="webhook_events")
