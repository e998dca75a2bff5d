"""The treasury's payout-channel openings, the latest per node, recorded before the channel is
opened so that a restart or a crash never opens a second one while the first confirms.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payout_channels",
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("amount_sat", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("channel_point", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_payout_channels")),
    )
    op.create_index(
        op.f("ix_payout_channels_started_at"), "payout_channels", ["started_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_payout_channels_started_at"), table_name="payout_channels")
    op.drop_table("payout_channels")
