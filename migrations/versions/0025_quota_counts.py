"""Daily quota counters of paying API keys and tokens (SRS-API-03) in the database, so that
several coordinators on one PostgreSQL database count one quota per key, not one each
(SRS-COORD-05).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "quota_counts",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("period", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "period", name=op.f("pk_quota_counts")),
    )


def downgrade() -> None:
    op.drop_table("quota_counts")
