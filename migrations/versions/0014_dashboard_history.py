"""The history the dashboard's charts plot: heartbeats per node and minute, stake status
changes, and indexes to read payments and the payment log by time.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "heartbeat_activity",
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("heartbeats", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("minute", "node_id", name=op.f("pk_heartbeat_activity")),
    )
    op.create_table(
        "stake_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_stake_changes")),
    )
    op.create_index(op.f("ix_stake_changes_at"), "stake_changes", ["at"], unique=False)
    op.create_index(
        op.f("ix_payment_attempts_at"), "payment_attempts", ["at"], unique=False
    )
    op.create_index(
        op.f("ix_payments_state_updated_at"), "payments", ["state", "updated_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payments_state_updated_at"), table_name="payments")
    op.drop_index(op.f("ix_payment_attempts_at"), table_name="payment_attempts")
    op.drop_index(op.f("ix_stake_changes_at"), table_name="stake_changes")
    op.drop_table("stake_changes")
    op.drop_table("heartbeat_activity")
