"""Shares rejected per miner and reason code, and the indexes the pool dashboard reads.

``share_rejections`` keeps the rejected-share totals the live feed shows, so they survive a
restart (SRS-POOL-06/09). ``ix_shares_accepted_at_work`` lets the hourly sums of the last day
read the index alone, and ``ix_shares_blocks`` (partial: block shares only) answers the blocks
found in 30 days and the newest block at once, at 10 million shares (SRS-POOL-10/11, SRS-LN-14).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "share_rejections",
        sa.Column("miner_id", sa.String(length=256), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("miner_id", "code", name=op.f("pk_share_rejections")),
    )
    op.create_index(
        "ix_shares_accepted_at_work", "shares", ["accepted_at", "miner_id", "share_difficulty"]
    )
    op.create_index(
        "ix_shares_blocks", "shares", ["accepted_at"],
        postgresql_where=sa.text("is_block"), sqlite_where=sa.text("is_block"),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_shares_blocks", table_name="shares")
    op.drop_index("ix_shares_accepted_at_work", table_name="shares")
    op.drop_table("share_rejections")
