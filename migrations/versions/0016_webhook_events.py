"""The GitHub App's webhook deliveries, stored before they are acknowledged; the delivery id
is the primary key, so a replayed delivery is refused by the database itself (SRS-SEC-08).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("repository", sa.String(length=140), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_webhook_events")),
    )
    op.create_index(
        op.f("ix_webhook_events_received_at"), "webhook_events", ["received_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_events_received_at"), table_name="webhook_events")
    op.drop_table("webhook_events")
