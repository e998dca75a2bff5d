"""What each miner has earned at the FPPS rate: whole msat and the fraction carried.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "miner_credits",
        sa.Column("miner_id", sa.String(length=256), nullable=False),
        sa.Column("credited_msat", sa.BigInteger(), nullable=False),
        sa.Column("carry", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("miner_id", name=op.f("pk_miner_credits")),
    )


def downgrade() -> None:
    op.drop_table("miner_credits")
